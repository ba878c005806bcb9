"""Broken and hostile uploads: each ends with a message naming what is wrong, and nothing else is touched."""

import io
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.webapp.datasets.conftest import FIXTURES
from webapp.datasets import services, storage
from webapp.datasets.models import DatasetVersion


def _png(size=(8, 8), colour=0, mode="L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(entries: dict, *, symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def _classes(extra: dict | None = None) -> dict:
    entries = {f"set/{c}/{i}.png": _png(colour=c * 40 + i) for c in range(2) for i in range(3)}
    entries.update(extra or {})
    return entries


@pytest.fixture
def existing(ingest):
    """A data set ingested before each hostile upload; it must come out untouched."""
    version = ingest(FIXTURES / "iris.csv", name="Existing")
    files = {p.name: p.read_bytes() for p in version.folder.iterdir()}
    yield version
    version.refresh_from_db()
    assert version.status == "ready" and version.n_rows == 150
    assert {p.name: p.read_bytes() for p in version.folder.iterdir()} == files
    assert storage.load_table(version).shape == (150, 5)


def _failed(ingest, content, **kwargs) -> str:
    version = ingest(content, name="Hostile", **kwargs)
    assert version.status == "failed", version.schema
    assert "Traceback" not in version.error
    assert not (version.folder / "table.arrow").exists() and not (version.folder / "images.npy").exists()
    return version.error


def test_an_empty_file_is_refused_at_upload(existing, people):
    with pytest.raises(services.DatasetError, match="empty"):
        services.dataset_create_from_file(workspace=people.workspace, user=people.owner, name="E",
                                          uploaded_file_path=_write(existing, b""), original_filename="e.csv")


def _write(existing, content):
    path = existing.folder.parent.parent / "hostile-upload"
    path.write_bytes(content)
    return path


def test_a_file_of_blank_lines_says_it_has_no_rows(existing, ingest):
    assert "no rows" in _failed(ingest, "\n\n  \n")


def test_a_header_without_rows_says_so(existing, ingest):
    assert _failed(ingest, "a,b,c\n") == "The file has a header (3 columns) but no rows of data."


def test_a_ragged_row_is_reported_by_its_line_number(existing, ingest):
    error = _failed(ingest, "a,b,c\n1,2,3\n4,5,6\n7,8,9,10\n11,12,13\n")
    assert error.startswith("Line 4 has 4 fields but the header has 3")


def test_a_file_with_an_unusual_delimiter_says_only_one_column_was_found(existing, ingest):
    error = _failed(ingest, "height weight age\n1.5 60 30\n1.7 70 40\n")
    assert "Only one column was found" in error and "spaces" in error


def test_binary_garbage_is_not_taken_for_text(existing, ingest):
    error = _failed(ingest, bytes(range(256)) * 4)
    assert "not text" in error


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf_16_text_is_named_as_utf_16(existing, ingest, encoding):
    error = _failed(ingest, "name,city\nJosé,Zürich\nRenée,Besançon\n".encode(encoding))
    assert error == "The file is UTF-16 text; save it as UTF-8 and upload it again."


def test_latin_1_text_is_read_and_the_fallback_is_stated(existing, ingest):
    version = ingest("name,city\nJosé,Zürich\nRenée,Besançon\n".encode("latin-1"))
    assert version.status == "ready"
    assert storage.load_table(version)["city"].tolist() == ["Zürich", "Besançon"]
    assert any("Latin-1" in note for note in version.schema["notes"])


def test_utf_8_with_a_byte_order_mark_keeps_the_first_column_name_clean(existing, ingest):
    version = ingest("\ufeffa;b\n1;2\n3;4\n".encode())
    assert [c["name"] for c in version.schema["columns"]] == ["a", "b"]


def test_fifty_thousand_columns_are_refused_with_the_cap(existing, ingest):
    header = ",".join(f"c{i}" for i in range(50_000))
    error = _failed(ingest, header + "\n" + ",".join("1" * 50_000) + "\n")
    assert "10,000 columns" in error


def test_a_zip_with_path_traversal_is_refused(existing, ingest):
    error = _failed(ingest, _zip(_classes({"../../evil/x.png": _png()})), filename="x.zip")
    assert "outside the archive" in error and "../../evil/x.png" in error


def test_a_zip_with_an_absolute_path_is_refused(existing, ingest):
    error = _failed(ingest, _zip(_classes({"/etc/cron.d/x.png": _png()})), filename="x.zip")
    assert "outside the archive" in error


def test_a_zip_with_a_symlink_is_refused(existing, ingest):
    error = _failed(ingest, _zip(_classes(), symlink="set/0/link.png"), filename="x.zip")
    assert "symbolic link" in error


def test_a_zip_bomb_is_refused(existing, ingest):
    error = _failed(ingest, _zip(_classes({"set/0/big.png": b"\0" * (40 << 20)})), filename="bomb.zip")
    assert "zip bomb" in error


def test_a_nested_zip_is_refused(existing, ingest):
    error = _failed(ingest, _zip(_classes({"set/0/more.zip": _zip(_classes())})), filename="x.zip")
    assert "nested archives" in error and "set/0/more.zip" in error


def test_a_file_that_is_not_an_image_is_named(existing, ingest):
    error = _failed(ingest, _zip(_classes({"set/1/notes.txt": b"hello"})), filename="x.zip")
    assert "“set/1/notes.txt” is not an image" in error


def test_a_corrupt_png_is_named(existing, ingest):
    broken = _png()[:40] + b"garbage" * 3
    error = _failed(ingest, _zip(_classes({"set/1/broken.png": broken})), filename="x.zip")
    assert "set/1/broken.png" in error and ("corrupt" in error or "not a readable image" in error)


def _png_header_only(width, height) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


def test_a_decompression_bomb_image_is_refused(existing, ingest):
    error = _failed(ingest, _zip(_classes({"set/1/bomb.png": _png_header_only(30_000, 30_000)})), filename="x.zip")
    assert "set/1/bomb.png" in error and "decompression bomb" in error


def test_images_of_mixed_sizes_are_reported_and_resized_only_when_asked(existing, ingest):
    content = _zip(_classes({"set/1/wide.png": _png(size=(16, 8))}))
    error = _failed(ingest, content, filename="x.zip")
    assert "2 different sizes" in error and "8×8 (6 images" in error
    version = ingest(content, filename="x.zip", image_size=[4, 4])
    assert version.status == "ready" and version.schema["image_shape"] == [4, 4, 1]
    assert "resized" in version.schema["notes"][0]


def test_colour_images_are_kept_in_three_channels(existing, ingest):
    content = _zip({f"{c}/{i}.png": _png(colour=(200, c * 100, 0), mode="RGB") for c in range(2) for i in range(2)})
    version = ingest(content, filename="c.zip")
    images, _, classes = storage.load_images(version)
    assert images.shape == (4, 8, 8, 3) and images[0, 0, 0].tolist() == [200, 0, 0] and classes == ["0", "1"]


def test_an_extension_that_lies_does_not_matter(existing, ingest):
    as_csv = ingest(FIXTURES.joinpath("digits8x8.zip").read_bytes(), filename="table.csv")
    assert as_csv.status == "ready" and as_csv.schema["kind"] == "images"
    as_zip = ingest(FIXTURES.joinpath("wine.csv").read_bytes(), filename="images.zip")
    assert as_zip.status == "ready" and as_zip.schema["kind"] == "table"
    png = _failed(ingest, _png(), filename="data.csv")
    assert "PNG image" in png


def test_an_npz_with_object_arrays_is_refused_without_unpickling(existing, ingest, tmp_path):
    path = tmp_path / "o.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object), y=np.arange(2))
    error = _failed(ingest, path.read_bytes(), filename="o.npz")
    assert "“x” holds Python objects" in error


def test_an_npz_with_named_arrays_becomes_columns(existing, ingest, tmp_path):
    path = tmp_path / "ok.npz"
    np.savez(path, x=np.arange(6, dtype=np.float32).reshape(3, 2), label=np.array(["a", "b", "a"]))
    version = ingest(path.read_bytes(), filename="whatever.bin")
    frame = storage.load_table(version)
    assert list(frame.columns) == ["x_0", "x_1", "label"] and frame["x_1"].tolist() == [1.0, 3.0, 5.0]


def test_a_parquet_file_is_read_with_its_types(existing, ingest, tmp_path):
    import pandas as pd

    path = tmp_path / "t.parquet"
    pd.DataFrame({"n": [1, 2, None], "s": ["a", "b", "c"], "b": [True, False, True]}).to_parquet(path)
    version = ingest(path.read_bytes(), filename="t.csv")
    assert {c["name"]: c["type"] for c in version.schema["columns"]} == {"n": "numeric", "s": "categorical",
                                                                          "b": "boolean"}


def test_column_names_with_html_are_escaped_on_the_page(existing, ingest, client, people):
    version = ingest('"<script>alert(1)</script>","<img src=x onerror=alert(2)>",y\n1,2,a\n3,4,b\n')
    assert version.status == "ready"
    client.force_login(people.owner)
    page = client.get(f"/w/{people.workspace.slug}/datasets/{version.dataset_id}/").content.decode()
    assert "<script>alert(1)</script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # the chart data is JSON inside a json_script element, where "<" is escaped as \u003C
    assert "\\u003Cscript\\u003E" in page


def test_a_crash_inside_ingestion_fails_the_version_instead_of_leaving_it_stuck(existing, ingest, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "ingest_table", explode)
    version = ingest("a,b\n1,2\n")
    assert version.status == "failed" and "unexpectedly (RuntimeError)" in version.error


def test_a_version_whose_ingestion_killed_the_worker_twice_is_failed(existing, ingest):
    version = ingest("a,b\n1,2\n")
    DatasetVersion.objects.filter(pk=version.pk).update(status="ingesting", options={"kind": "auto", "attempts": 2})
    version = services.ingest_version(version.pk)
    assert version.status == "failed" and "twice" in version.error


def test_quoted_newlines_and_delimiters_inside_values_are_read(existing, ingest):
    version = ingest('note,n\n"two\nlines",1\n"a, b",2\n')
    assert version.status == "ready", version.error
    assert storage.load_table(version)["note"].tolist() == ["two\nlines", "a, b"]
