"""Hostile files, built in memory: each case is (id, filename, bytes builder, expected outcome).

An expected outcome is ``("refused", status)`` — the request itself gets that 4xx — or
``("failed", pattern)`` — the upload is accepted and ingestion fails with a message matching
``pattern`` (case-insensitive) — or ``("ready", None)`` for input that is odd but legitimate.
"""

from __future__ import annotations

import io
import stat
import struct
import zipfile
import zlib

import numpy as np


def _png(width: int = 8, height: int = 8, value: int = 128) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height), value).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A valid PNG header declaring 3.6 billion pixels, with almost no data behind it."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _zip(members: list[tuple], *, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """members: (name, bytes) or (ZipInfo, bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def _good_images(prefix: str = "") -> list[tuple[str, bytes]]:
    return [(f"{prefix}{label}/{i}.png", _png(value=40 * i + 10 * n)) for n, label in enumerate(("cat", "dog"))
            for i in range(3)]


def zip_slip() -> bytes:
    return _zip(_good_images() + [("../../evil/x.png", _png())])


def zip_absolute() -> bytes:
    info = zipfile.ZipInfo("/etc/cron.d/x.png")
    return _zip(_good_images() + [(info, _png())])


def zip_symlink() -> bytes:
    info = zipfile.ZipInfo("cat/link.png")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return _zip(_good_images() + [(info, b"/etc/passwd")])


def zip_bomb() -> bytes:
    return _zip([("cat/a.png", _png()), ("cat/huge.png", b"\x00" * (12 << 20))])


def zip_nested() -> bytes:
    return _zip(_good_images() + [("cat/more.zip", _zip(_good_images()))])


def zip_not_images() -> bytes:
    return _zip(_good_images() + [("cat/readme.txt", b"hello")])


def zip_corrupt_png() -> bytes:
    return _zip(_good_images() + [("cat/broken.png", b"\x89PNG\r\n\x1a\n" + b"\x13" * 200)])


def zip_png_bomb() -> bytes:
    return _zip(_good_images() + [("cat/bomb.png", png_bomb())])


def zip_mixed_sizes() -> bytes:
    return _zip(_good_images() + [("dog/wide.png", _png(width=20, height=5))])


def zip_empty() -> bytes:
    return _zip([])


def zip_office() -> bytes:
    return _zip([("[Content_Types].xml", b"<Types/>"), ("xl/workbook.xml", b"<workbook/>")])


def zip_truncated() -> bytes:
    return _zip(_good_images())[:-40]


def npz_with_pickle() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.array([{"a": 1}, {"b": 2}], dtype=object))
    return buffer.getvalue()


def npz_ragged() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.arange(5.0), y=np.arange(3.0))
    return buffer.getvalue()


def npy_single() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.arange(10))
    return buffer.getvalue()


def wide_csv(columns: int = 50_000) -> bytes:
    header = ",".join(f"c{i}" for i in range(columns))
    row = ",".join("1" for _ in range(columns))
    return f"{header}\n{row}\n".encode()


def binary_garbage() -> bytes:
    return bytes((i * 7919 + 13) % 256 for i in range(4096))


def control_characters() -> bytes:
    return b"a,b\n" + b"".join(bytes([1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 14]) + b",x\n" for _ in range(20))


SCRIPT = "<script>alert('xss')</script>"
IMG = '<img src=x onerror="alert(1)">'

# id, filename, builder, expected
UPLOADS = [
    ("empty-file", "empty.csv", lambda: b"", ("refused", 400)),
    ("only-whitespace", "blank.csv", lambda: b"   \n\n  \n", ("failed", r"empty|no rows")),
    ("only-a-header", "header.csv", lambda: b"a,b,c\n", ("failed", r"no rows")),
    ("ragged-rows", "ragged.csv", lambda: b"a,b,c\n1,2,3\n4,5\n6,7,8\n", ("failed", r"line 3")),
    ("space-delimited", "spaces.csv", lambda: b"alpha beta gamma\n1 2 3\n4 5 6\n", ("failed", r"spaces")),
    ("utf16-text", "utf16.csv", lambda: "a,b\n1,2\n3,4\n".encode("utf-16"), ("failed", r"UTF-16|not text")),  # bug: the NUL check answers before the UTF-16 one
    ("nul-bytes", "nul.csv", lambda: b"a,b\n1,\x002\n", ("failed", r"NUL byte")),
    ("binary-garbage", "garbage.csv", binary_garbage, ("failed", r"not text|NUL|control")),
    ("control-characters", "controls.csv", control_characters, ("failed", r"control characters")),
    ("unclosed-quote", "quote.csv", lambda: b'a,b\n"1,2\n3,4\n', ("failed", r"quot|fields|no rows|read")),
    ("50000-columns", "wide.csv", wide_csv, ("failed", r"columns")),
    ("png-named-csv", "table.csv", _png, ("failed", r"PNG image")),
    ("pdf-named-csv", "table.csv", lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", ("failed", r"PDF")),
    ("gzip-named-csv", "table.csv", lambda: b"\x1f\x8b\x08\x00" + b"\x00" * 60, ("failed", r"gzip")),
    ("office-zip", "book.xlsx", zip_office, ("failed", r"Microsoft Office")),
    ("single-npy", "array.npz", npy_single, ("failed", r"\.npy|npz")),
    ("npz-with-pickle", "objects.npz", npz_with_pickle, ("failed", r"objects|pickle|could not be read")),
    ("npz-ragged", "ragged.npz", npz_ragged, ("failed", r"same length|rows")),
    ("corrupt-parquet", "t.parquet", lambda: b"PAR1" + b"\x07" * 100 + b"PAR1", ("failed", r"Parquet")),
    ("zip-slip", "images.zip", zip_slip, ("failed", r"outside the archive")),
    ("zip-absolute-path", "images.zip", zip_absolute, ("failed", r"outside the archive")),
    ("zip-symlink", "images.zip", zip_symlink, ("failed", r"symbolic link")),
    ("zip-bomb", "images.zip", zip_bomb, ("failed", r"zip bomb|expands")),
    ("zip-nested", "images.zip", zip_nested, ("failed", r"nested archives|another archive")),
    ("zip-not-images", "images.zip", zip_not_images, ("failed", r"not an image")),
    ("zip-corrupt-png", "images.zip", zip_corrupt_png, ("failed", r"not a readable image|corrupt")),
    ("zip-decompression-bomb-png", "images.zip", zip_png_bomb, ("failed", r"decompression bomb|pixels")),
    ("zip-mixed-sizes", "images.zip", zip_mixed_sizes, ("failed", r"different sizes")),
    ("zip-empty", "images.zip", zip_empty, ("failed", r"no images")),
    ("zip-truncated", "images.zip", zip_truncated, ("failed", r"zip")),
    ("html-in-column-names", "xss.csv", lambda: f"{SCRIPT},{IMG},y\n1,2,a\n3,4,b\n".encode(), ("ready", None)),
]
