"""Recognising what an uploaded file is, from its bytes — never from its name.

Pure functions, no Django: the kind of file from its magic bytes, and for text tables the
encoding, the delimiter and whether the first row is a header.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field

SAMPLE_BYTES = 256 * 1024
DELIMITERS = [",", "\t", ";", "|"]
DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}
MAX_COLUMNS = 10_000

_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")


class IngestError(Exception):
    """A problem with the user's file, said in words the user can act on."""


@dataclass
class TextFormat:
    encoding: str  # a Python codec name: "utf-8", "utf-8-sig" or "latin-1"
    delimiter: str
    has_header: bool
    column_names: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def delimiter_name(self) -> str:
        return DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))


# Magic numbers of formats people upload by mistake, so the message can say what the file is.
_FOREIGN_MAGIC = [
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", None),  # too short to trust alone; bitmap files are checked below
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"\xd0\xcf\x11\xe0", "an old Microsoft Office document (.xls)"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x7fELF", "a program (ELF executable)"),
    (b"\x93NUMPY", "a single NumPy .npy array (upload an .npz with named arrays instead)"),
]


def detect_format(path) -> str:
    """One of "csv", "parquet", "npz", "zip" — or an IngestError saying what the file is."""
    with open(path, "rb") as f:
        head = f.read(16)
        if not head:
            raise IngestError("The file is empty (0 bytes).")
        f.seek(-4, 2) if _size(f) >= 8 else f.seek(0)
        tail = f.read(4)
    if head.startswith(b"PAR1") and tail == b"PAR1":
        return "parquet"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        try:
            with zipfile.ZipFile(path) as archive:
                names = [info.filename for info in archive.infolist() if not info.is_dir()]
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            raise IngestError(f"The file starts like a zip archive but cannot be read as one ({error}).") from None
        if names and all(name.endswith(".npy") for name in names):
            return "npz"
        if any(name.startswith("xl/") or name == "word/document.xml" for name in names):
            raise IngestError("The file is a Microsoft Office document; export the sheet as CSV and upload that.")
        return "zip"
    for magic, what in _FOREIGN_MAGIC:
        if what and head.startswith(magic):
            raise IngestError(f"The file is {what}, not a table, an .npz or a zip of images.")
    if head.startswith(b"BM") and len(head) >= 14 and b"\x00" in head[2:14]:
        raise IngestError("The file is a BMP image, not a table: upload images as a zip of class folders.")
    if head[:4] in (b"RIFF",) and head[8:12] == b"WEBP":
        raise IngestError("The file is a WebP image, not a table: upload images as a zip of class folders.")
    return "csv"


def _size(f) -> int:
    position = f.tell()
    f.seek(0, 2)
    size = f.tell()
    f.seek(position)
    return size


def _looks_like_utf16(raw: bytes) -> bool:
    """UTF-16 without a byte order mark: mostly-ASCII text leaves a NUL in every other byte."""
    head = raw[:4096]
    if len(head) < 8:
        return False
    even, odd = head[0::2], head[1::2]
    for nuls, chars in ((even, odd), (odd, even)):
        if nuls.count(0) >= 0.9 * len(nuls) and chars.count(0) == 0:
            return True
    return False


def _decode_sample(raw: bytes, complete: bool) -> tuple[str, str, list[str]]:
    """The sample as text, the codec to read the whole file with, and notes for the user."""
    # UTF-16 is full of NUL bytes, so it is recognised before the NUL check would call it "not text".
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or _looks_like_utf16(raw):
        raise IngestError("The file is UTF-16 text; save it as UTF-8 and upload it again.")
    if b"\x00" in raw:
        offset = raw.index(b"\x00")
        raise IngestError(
            f"The file is not text: it contains a NUL byte at offset {offset}. "
            "Upload a CSV/TSV in UTF-8 or Latin-1, a Parquet file, an .npz, or a zip of images.")
    codec = "utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "utf-8"
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as error:
        # A sample cut in the middle of a multi-byte character is still UTF-8.
        if not complete and error.start >= len(raw) - 3:
            text = raw[: error.start].decode(codec)
        else:
            text = raw.decode("latin-1")
            line = raw[: error.start].count(b"\n") + 1
            return text, "latin-1", [
                (f"The file is not valid UTF-8 (byte 0x{raw[error.start]:02x} on line {line}); "
                 "it was read as Latin-1 (ISO-8859-1).")]
    controls = sum(1 for ch in text[:20000] if ord(ch) < 32 and ch not in "\r\n\t")
    if controls > 10:
        raise IngestError("The file is not text: it is full of control characters. "
                          "Upload a CSV/TSV, a Parquet file, an .npz, or a zip of images.")
    return text, codec, []


def _rows(text: str, delimiter: str, limit: int = 50) -> list[list[str]]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows = []
    try:
        for row in reader:
            if row:
                rows.append(row)
            if len(rows) >= limit:
                break
    except csv.Error:
        pass
    return rows


def _choose_delimiter(lines_text: str) -> str:
    best, best_score = ",", (0, 0)
    for delimiter in DELIMITERS:
        rows = _rows(lines_text, delimiter)
        if not rows:
            continue
        counts = [len(r) for r in rows]
        width = max(set(counts), key=counts.count)
        if width < 2:
            continue
        consistent = counts.count(width)
        score = (consistent, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _looks_numeric(cell: str) -> bool:
    return bool(_NUMBER.match(cell))


def sniff_text(path) -> TextFormat:
    """Encoding, delimiter, header and column names of a text table, checked for caps."""
    with open(path, "rb") as f:
        raw = f.read(SAMPLE_BYTES)
        complete = len(f.read(1)) == 0
    if not raw.strip():
        raise IngestError("The file is empty: it contains no rows at all.")
    text, codec, notes = _decode_sample(raw, complete)
    # Very wide files: count the header's fields before anything else looks at them.
    first_line = text.split("\n", 1)[0]
    if len(first_line) >= len(text) - 1 and not complete:
        raise IngestError(f"The first line is longer than {SAMPLE_BYTES // 1024} KiB; "
                          f"Cupola reads tables of at most {MAX_COLUMNS:,} columns.")
    if not complete:
        text = text[: text.rfind("\n") + 1] or text
    delimiter = _choose_delimiter("\n".join(text.splitlines()[:50]))
    rows = _rows(text, delimiter, limit=50)
    if not rows:
        raise IngestError("The file is empty: it contains no rows at all.")
    header = rows[0]
    if len(header) > MAX_COLUMNS:
        raise IngestError(f"The file has {len(header):,} columns; Cupola reads tables of at most "
                          f"{MAX_COLUMNS:,} columns.")
    first_numeric = all(_looks_numeric(c) or not c.strip() for c in header)
    has_header = not first_numeric
    if has_header:
        names = _clean_names(header)
    else:
        names = [f"column_{i + 1}" for i in range(len(header))]
        notes.append("The first row looks like data, so the columns were named column_1, column_2, …")
    if len(names) == 1 and len(rows) > 1:
        for other in (" ", ":", "/"):
            if other in header[0] and all(other in r[0] for r in rows[1: 6] if r):
                raise IngestError(
                    f"Only one column was found: the header “{header[0][:80]}” seems separated by "
                    f"{'spaces' if other == ' ' else repr(other)}. Cupola reads columns separated by commas, "
                    "tabs, semicolons or pipes.")
    if delimiter != ",":
        notes.append(f"Columns are separated by {DELIMITER_NAMES[delimiter]}s.")
    return TextFormat(encoding=codec, delimiter=delimiter, has_header=has_header, column_names=names, notes=notes)


def _clean_names(header: list[str]) -> list[str]:
    """Strip, fill blanks and make names unique ("a", "a.1") so every column can be addressed."""
    names, seen = [], set()
    for i, raw in enumerate(header):
        name = raw.strip() or f"column_{i + 1}"
        base, n = name, 0
        while name in seen:
            n += 1
            name = f"{base}.{n}"
        seen.add(name)
        names.append(name)
    return names
