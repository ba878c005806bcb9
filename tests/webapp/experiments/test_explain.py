"""Which test images a run's saliency maps explain, and how a map is laid over its image."""

import numpy as np

from webapp.experiments import explain


def test_the_misclassified_images_come_first_then_right_ones_of_each_class_in_turn():
    true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 0, 1, 2, 1])
    predicted = np.array([0, 1, 0, 1, 0, 2, 2, 0, 0, 1, 2, 1])
    rows = explain.chosen_rows(true, predicted)
    assert rows[:3] == [1, 4, 7]  # every misclassified row, in order
    # Then the first right row of classes 0, 1, 2, then the second of each.
    assert rows[3:] == [0, 3, 5, 2, 9]
    assert len(rows) == explain.SALIENCY_IMAGES and len(set(rows)) == len(rows)
    many_wrong = explain.chosen_rows(np.zeros(20, dtype=int), np.ones(20, dtype=int))
    assert many_wrong == list(range(explain.SALIENCY_MISCLASSIFIED))  # no right rows to add
    assert explain.chosen_rows([0, 1], [0, 1]) == [0, 1]


def test_a_map_is_heat_over_a_grey_image_scaled_to_its_own_strength():
    image = np.full((4, 4, 3), 0.5)  # unit-scaled mid grey
    gradients = np.zeros((4, 4, 3))
    gradients[1, 2, 0] = -3.0  # the sign does not matter, the largest channel does
    gradients[3, 3, 1] = 0.3
    picture = explain.heat_overlay(image, gradients, "unit")
    assert picture.shape == (4, 4, 3) and picture.dtype == np.uint8
    quiet = picture[0, 0]
    assert quiet[0] == quiet[1] == quiet[2]  # no gradient: the grey image alone
    hot = picture[1, 2].astype(int)
    assert hot[0] > 220 and hot[0] > hot[2] + 150  # the strongest pixel: red to yellow, little blue
    warm = picture[3, 3].astype(int)
    assert quiet[0] < warm[0] < hot[0]
    flat = explain.heat_overlay(image, np.zeros((4, 4, 3)), "unit")
    assert (flat == quiet).all()  # a map without gradient shows the image only
