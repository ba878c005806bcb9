"""Reading a zip of class folders into one uint8 image array and integer labels.

Pure functions, no Django. The zip is never extracted: members are read in memory, one at a
time, with their sizes checked against caps, and member names are only ever used as labels —
never as paths. Layout: ``<root>/<class>/<file>`` or ``<class>/<file>``.
"""

from __future__ import annotations

import io
import re
import stat
import warnings
import zipfile
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from webapp.datasets.sniff import IngestError

IMAGES_FILE = "images.npy"
LABELS_FILE = "labels.npy"
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
IMAGE_FORMATS = {"PNG", "JPEG", "BMP", "GIF", "WEBP", "MPO"}
ARCHIVE_EXTENSIONS = {".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".npz"}
IGNORED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}

MAX_MEMBERS = 500_000
MAX_MEMBER_BYTES = 64 << 20
MAX_TOTAL_BYTES = 8 << 30
MAX_RATIO = 200  # uncompressed / compressed, for the whole zip and for any member over 1 MiB
MAX_PIXELS = 40_000_000  # per image; Pillow's own bomb check fires at about 179 million
MAX_ARRAY_BYTES = 16 << 30
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def _natural_key(text: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def _check_member(info: zipfile.ZipInfo) -> None:
    name = info.filename
    parts = re.split(r"[\\/]", name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise IngestError(f"The zip contains the path “{name[:200]}”, which points outside the archive "
                          "(absolute or with ..). Nothing was extracted.")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise IngestError(f"The zip contains a symbolic link, “{name[:200]}”; links are not accepted.")
    if info.file_size > MAX_MEMBER_BYTES:
        raise IngestError(f"“{name[:200]}” is {info.file_size / 2**20:.0f} MiB uncompressed; one image may be at "
                          f"most {MAX_MEMBER_BYTES >> 20} MiB.")
    if info.file_size > (1 << 20) and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise IngestError(f"“{name[:200]}” expands {info.file_size // max(info.compress_size, 1):,} times; "
                          "the zip looks like a zip bomb and was refused.")


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    # Read one byte past the declared size: a lying header cannot make us read more.
    with archive.open(info) as member:
        data = member.read(info.file_size + 1)
    if len(data) > info.file_size:
        raise IngestError(f"“{info.filename[:200]}” is larger than its zip header says; the zip was refused.")
    return data


def list_images(path, archive_size: int) -> tuple[list[zipfile.ZipInfo], list[str]]:
    """The image members and their class names, after every check on the archive itself."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise IngestError(f"The zip archive cannot be read: {error}") from None
    with archive:
        infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise IngestError(f"The zip holds {len(infos):,} entries; at most {MAX_MEMBERS:,} are accepted.")
    total = 0
    members = []
    for info in infos:
        _check_member(info)
        total += info.file_size
        if info.is_dir():
            continue
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        if parts[0] == "__MACOSX" or parts[-1] in IGNORED_NAMES or parts[-1].startswith("._"):
            continue
        suffix = PurePosixPath(parts[-1]).suffix.lower()
        if suffix in ARCHIVE_EXTENSIONS:
            raise IngestError(f"The zip contains another archive, “{info.filename[:200]}”; nested archives are "
                              "not accepted. Put the images themselves in class folders.")
        if suffix not in IMAGE_EXTENSIONS:
            raise IngestError(f"“{info.filename[:200]}” is not an image; the zip may hold only class folders of "
                              f"{', '.join(sorted(IMAGE_EXTENSIONS))} files.")
        members.append((info, parts))
    if total > MAX_TOTAL_BYTES:
        raise IngestError(f"The zip expands to {total / 2**30:.1f} GiB; at most {MAX_TOTAL_BYTES >> 30} GiB "
                          "are accepted.")
    if total > (16 << 20) and total > MAX_RATIO * max(archive_size, 1):
        raise IngestError(f"The zip expands {total // max(archive_size, 1):,} times its size; it looks like a zip "
                          "bomb and was refused.")
    if not members:
        raise IngestError("The zip contains no images. Expected class folders: <class>/<image>.png (or .jpg, …).")
    depths = {len(parts) for _, parts in members}
    roots = {parts[0] for _, parts in members}
    if depths == {3} and len(roots) == 1:
        members = [(info, parts[1:]) for info, parts in members]
    elif depths != {2}:
        odd = next(info.filename for info, parts in members if len(parts) != 2)
        raise IngestError(f"“{odd[:200]}” is not inside a class folder; expected <class>/<image> or "
                          "<folder>/<class>/<image>, one folder per class.")
    members.sort(key=lambda m: (_natural_key(m[1][0]), _natural_key(m[1][1])))
    return [info for info, _ in members], [parts[0] for _, parts in members]


def _open(data: bytes, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise IngestError(f"“{name[:200]}” declares more pixels than allowed ({MAX_PIXELS:,}): a decompression "
                          "bomb was refused.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise IngestError(f"“{name[:200]}” is not a readable image (its bytes are not PNG, JPEG, BMP, GIF or "
                          "WebP, or it is corrupt).") from None
    if image.format not in IMAGE_FORMATS:
        raise IngestError(f"“{name[:200]}” is a {image.format} image; accepted: PNG, JPEG, BMP, GIF, WebP.")
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise IngestError(f"“{name[:200]}” is {width}×{height} pixels, more than the {MAX_PIXELS:,} allowed "
                          "(a decompression bomb, or far too large for training).")
    return image


def _is_colour(image: Image.Image) -> bool:
    if image.mode in GREY_MODES:
        return False
    if image.mode in ("P", "PA"):
        palette = image.getpalette() or []
        return any(palette[i] != palette[i + 1] or palette[i] != palette[i + 2] for i in range(0, len(palette), 3))
    return True


def ingest_images(path, out_dir: Path, *, resize: tuple[int, int] | None = None) -> dict:
    """Decode every image into ``images.npy`` (N, H, W, C) uint8 and ``labels.npy`` (N,) int64."""
    infos, class_of = list_images(path, Path(path).stat().st_size)
    sizes: Counter = Counter()
    example_of_size: dict = {}
    colour = False
    with zipfile.ZipFile(path) as archive:
        for info in infos:  # first pass: headers only, nothing decoded
            image = _open(_read_member(archive, info), info.filename)
            sizes[image.size] += 1
            example_of_size.setdefault(image.size, info.filename)
            colour = colour or _is_colour(image)
        if resize is None and len(sizes) > 1:
            listed = ", ".join(f"{w}×{h} ({n} images, e.g. “{example_of_size[(w, h)][:80]}”)"
                               for (w, h), n in sizes.most_common(4))
            raise IngestError(f"The images have {len(sizes)} different sizes: {listed}. Choose a size to resize "
                              "them to when uploading.")
        height, width = resize if resize is not None else next(iter(sizes))[::-1]
        channels = 3 if colour else 1
        if len(infos) * height * width * channels > MAX_ARRAY_BYTES:
            raise IngestError(f"{len(infos):,} images of {height}×{width}×{channels} need more than "
                              f"{MAX_ARRAY_BYTES >> 30} GiB; choose a smaller size.")
        images = np.lib.format.open_memmap(out_dir / IMAGES_FILE, mode="w+", dtype=np.uint8,
                                           shape=(len(infos), height, width, channels))
        for index, info in enumerate(infos):
            image = _open(_read_member(archive, info), info.filename)
            try:
                image = image.convert("RGB" if colour else "L")
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, dtype=np.uint8)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                raise IngestError(f"“{info.filename[:200]}” is a corrupt image: it could not be decoded.") from None
            images[index] = pixels.reshape(height, width, channels)
        images.flush()
    class_names = sorted(set(class_of), key=_natural_key)
    index_of = {name: i for i, name in enumerate(class_names)}
    labels = np.array([index_of[name] for name in class_of], dtype=np.int64)
    np.save(out_dir / LABELS_FILE, labels, allow_pickle=False)
    counts = np.bincount(labels, minlength=len(class_names))
    mean, std = _channel_stats(images)
    del images
    notes = []
    if len(sizes) > 1:
        notes.append(f"Images of {len(sizes)} different sizes were resized to {height}×{width}.")
    elif resize is not None and next(iter(sizes)) != (width, height):
        w, h = next(iter(sizes))
        notes.append(f"Images of {h}×{w} were resized to {height}×{width}.")
    schema = {"kind": "images", "image_shape": [height, width, channels], "classes": class_names,
              "notes": notes, "format": "zip"}
    stats = {"n_images": len(infos), "n_classes": len(class_names),
             "class_counts": [[name, int(c)] for name, c in zip(class_names, counts)],
             "sizes_found": [[w, h, n] for (w, h), n in sizes.most_common(10)],
             "colour": colour, "channel_mean": mean, "channel_std": std}
    return {"schema": schema, "stats": stats, "n_rows": len(infos)}


def _channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    channels = images.shape[-1]
    total = np.zeros(channels)
    squares = np.zeros(channels)
    count = 0
    for start in range(0, len(images), 4096):
        block = images[start:start + 4096].reshape(-1, channels).astype(np.float64)
        total += block.sum(axis=0)
        squares += (block ** 2).sum(axis=0)
        count += len(block)
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - mean ** 2, 0))
    return [round(float(m), 4) for m in mean], [round(float(s), 4) for s in std]
