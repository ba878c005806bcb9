"""What an image classifier looks at: saliency maps of a few test images, recorded with a run's
results (see trainer.inspection.saliency).

The images explained are the misclassified ones first (people ask why those went wrong), then
correctly classified ones of as many classes as there are, each explained for the class the
model predicted. A map is the largest absolute gradient over an image's channels, averaged over
noisy copies (SmoothGrad), scaled to its own 99th percentile and laid over the image, dimmed to
grey, as a heat colour.
"""

from __future__ import annotations

import numpy as np

SALIENCY_IMAGES = 8
SALIENCY_MISCLASSIFIED = 4  # at most this many of them misclassified
SMOOTHGRAD_SAMPLES = 16
SMOOTHGRAD_NOISE = 0.1  # of the images' value range


def chosen_rows(true_codes, predicted_codes) -> list[int]:
    """Test rows to explain: misclassified first, then one correct row per class in turn."""
    true_codes, predicted_codes = np.asarray(true_codes), np.asarray(predicted_codes)
    wrong = np.flatnonzero(true_codes != predicted_codes)[:SALIENCY_MISCLASSIFIED].tolist()
    right = np.flatnonzero(true_codes == predicted_codes)
    by_class = [right[true_codes[right] == k].tolist() for k in np.unique(true_codes[right])]
    chosen = list(wrong)
    depth = 0
    while len(chosen) < SALIENCY_IMAGES and any(depth < len(rows) for rows in by_class):
        chosen += [rows[depth] for rows in by_class if depth < len(rows)][: SALIENCY_IMAGES - len(chosen)]
        depth += 1
    return chosen


def heat_overlay(image, gradients, scaling: str) -> np.ndarray:
    """An (H, W, 3) uint8 picture: the image in grey, the map's strength in a red-to-yellow heat over it."""
    strength = np.abs(np.asarray(gradients, dtype=np.float64)).max(axis=-1)
    top = np.percentile(strength, 99)
    strength = np.clip(strength / top, 0, 1) if top > 0 else np.zeros_like(strength)
    picture = np.asarray(image, dtype=np.float64) * (255.0 if scaling == "unit" else 1.0)
    grey = np.clip(np.nan_to_num(picture), 0, 255).mean(axis=-1, keepdims=True) / 255.0
    heat = np.stack([np.ones_like(strength), strength, np.zeros_like(strength)], axis=-1)  # red, then yellow
    alpha = strength[..., None] ** 1.5 * 0.85  # faint gradients stay faint, so the image shows through
    mixed = (0.55 * grey + 0.1) * (1 - alpha) + heat * alpha
    return np.clip(mixed * 255, 0, 255).astype(np.uint8)


PREDICT_EXPLAINED = 12  # the predict page explains its first this many images


def smoothgrad(model, images, classes):
    from trainer.inspection import saliency

    return saliency(model, images, classes=np.asarray(classes), samples=SMOOTHGRAD_SAMPLES,
                    noise=SMOOTHGRAD_NOISE, seed=0)


def picture_pairs(model, images, classes, scaling: str) -> list[dict]:
    """Each image and its saliency map for the class given, as PNG data URLs."""
    from webapp.experiments import preparation

    found = smoothgrad(model, images, classes)
    return [{"image": preparation.image_thumbnail(image, scaling),
             "map": preparation.png_data_url(heat_overlay(image, gradients, scaling))}
            for image, gradients in zip(images, found)]


def image_saliency(model, prepared, true_codes, predicted_codes, probabilities, classes) -> dict:
    """The results block: how the maps were made, and each explained image with its map."""
    rows = chosen_rows(true_codes, predicted_codes)
    pairs = picture_pairs(model, np.asarray(prepared.x_test[rows]), np.asarray(predicted_codes)[rows],
                          prepared.preprocessing.get("scaling"))
    explained = []
    for row, pair in zip(rows, pairs):
        code, truth = int(predicted_codes[row]), int(true_codes[row])
        explained.append({
            "row": prepared.sample_ids[row] if row < len(prepared.sample_ids) else row,
            "true": str(classes[truth]), "predicted": str(classes[code]), "correct": code == truth,
            "confidence": float(probabilities[row][code]), **pair})
    return {"method": f"SmoothGrad: the gradient of the predicted class's score with respect to each pixel, "
                      f"averaged over {SMOOTHGRAD_SAMPLES} copies with noise of {SMOOTHGRAD_NOISE:.0%} of the value range",
            "images": explained}
