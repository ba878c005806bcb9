"""Property-based tests (hypothesis) for the two parsers untrusted input reaches first:
the model spec validator and the CSV sniffer.

- ``trainer.spec.validate`` answers any JSON-like value with a normalised spec or a
  ``SpecError`` — never another exception — and a valid spec survives validation twice and a
  trip through JSON unchanged.
- ``webapp.datasets.sniff`` with ``webapp.datasets.ingest.read_csv`` either refuses bytes with an
  ``IngestError`` (a message for the user) or reads a table whose row count is the file's.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainer import spec as spec_module
from webapp.datasets import ingest, sniff

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ----------------------------------------------------------------------------- the spec validator

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
SPEC_WORDS = st.sampled_from([
    "input_shape", "layers", "compile", "fit", "name", "type", "units", "activation", "filters", "kernel_size",
    "Dense", "Conv2D", "Flatten", "Dropout", "LSTM", "rate", "loss", "optimizer", "metrics", "epochs",
    "batch_size", "learning_rate", "early_stopping", "adam", "sgd", "relu", "softmax", "accuracy", "patience",
    "sparse_categorical_crossentropy", "mse", "validation_split", "seed", "pool_size", "strides", "padding",
])
KEYS = st.one_of(SPEC_WORDS, st.text(max_size=10))
JSON_LIKE = st.recursive(
    st.one_of(SCALARS, SPEC_WORDS),
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(KEYS, children, max_size=6)),
    max_leaves=15,
)


def _spec_shaped(draw_layers, draw_value):
    """Dicts with the right top-level keys and plausible but arbitrary values."""
    layer = st.fixed_dictionaries({"type": st.sampled_from(["Dense", "Conv2D", "Flatten", "Dropout", "LSTM", "Nope"])},
                                  optional={"units": draw_value, "activation": draw_value, "rate": draw_value,
                                            "filters": draw_value, "kernel_size": draw_value, "name": draw_value})
    return st.fixed_dictionaries(
        {"layers": st.one_of(st.lists(layer, max_size=4), draw_layers)},
        optional={"input_shape": st.one_of(st.lists(draw_value, max_size=5), draw_value),
                  "compile": st.one_of(st.dictionaries(st.sampled_from(["loss", "optimizer", "metrics", "x"]),
                                                       draw_value, max_size=3), draw_value),
                  "fit": st.one_of(st.dictionaries(st.sampled_from(["epochs", "batch_size", "validation_split",
                                                                    "shuffle", "seed", "early_stopping", "x"]),
                                                   draw_value, max_size=4), draw_value),
                  "name": draw_value},
    )


@settings(PROPERTY_SETTINGS, max_examples=100)
@given(st.one_of(JSON_LIKE, _spec_shaped(JSON_LIKE, JSON_LIKE)))
def test_the_spec_validator_raises_nothing_but_spec_error(value):
    try:
        result = spec_module.validate(value)
    except spec_module.SpecError as error:
        assert str(error), "a SpecError must say what is wrong"
        assert all(isinstance(path, str) and isinstance(message, str) for path, message in error.errors)
    else:
        assert isinstance(result, dict) and result["layers"]


def test_the_spec_validator_answers_deep_nesting_with_a_spec_error():
    deep: object = {"type": "Dense", "units": 3}
    for _ in range(50_000):
        deep = [deep]
    try:
        spec_module.validate({"input_shape": [4], "layers": deep})
    except spec_module.SpecError:
        pass


ACTIVATIONS = st.sampled_from(["relu", "tanh", "sigmoid", "linear", "softmax"])
DENSE = st.fixed_dictionaries({"type": st.just("Dense"), "units": st.integers(1, 64)},
                              optional={"activation": ACTIVATIONS, "use_bias": st.booleans()})
DROPOUT = st.fixed_dictionaries({"type": st.just("Dropout"), "rate": st.floats(0.0, 0.9)})
VALID_SPECS = st.fixed_dictionaries(
    {"input_shape": st.lists(st.integers(1, 32), min_size=1, max_size=1),
     "layers": st.lists(st.one_of(DENSE, DROPOUT), min_size=0, max_size=4).map(
         lambda hidden: hidden + [{"type": "Dense", "units": 3, "activation": "softmax"}])},
    optional={
        "compile": st.fixed_dictionaries({
            "loss": st.sampled_from(["sparse_categorical_crossentropy", "mse", "categorical_crossentropy"]),
            "optimizer": st.one_of(st.sampled_from(["adam", "sgd", "rmsprop"]),
                                   st.fixed_dictionaries({"type": st.just("adam"),
                                                          "learning_rate": st.floats(1e-5, 0.5)})),
            "metrics": st.lists(st.sampled_from(["accuracy", "mae"]), max_size=2, unique=True)}),
        "fit": st.fixed_dictionaries({"epochs": st.integers(1, 50), "batch_size": st.integers(1, 512)},
                                     optional={"validation_split": st.floats(0.0, 0.5),
                                               "seed": st.integers(0, 2 ** 31)}),
        "name": st.text(min_size=0, max_size=50),
    },
)


@PROPERTY_SETTINGS
@given(VALID_SPECS)
def test_a_valid_spec_round_trips_through_validation_and_json(value):
    once = spec_module.validate(value)
    assert spec_module.validate(once) == once
    assert spec_module.validate(json.loads(json.dumps(once))) == once
    assert [layer["type"] for layer in once["layers"]] == [layer["type"] for layer in value["layers"]]
    assert once["input_shape"] == value["input_shape"]


# ----------------------------------------------------------------------------- the CSV sniffer


def _read(raw: bytes):
    """The table read from ``raw`` the way ingestion reads a CSV, or the IngestError it gives."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload.bin"
        path.write_bytes(raw)
        try:
            if sniff.detect_format(path) != "csv":
                return None
            text_format = sniff.sniff_text(path)
            return ingest.read_csv(path, text_format)
        except sniff.IngestError as error:
            assert str(error).strip(), "an IngestError must say what is wrong"
            return error


@PROPERTY_SETTINGS
@given(st.binary(max_size=3000))
def test_the_sniffer_never_crashes_on_arbitrary_bytes(raw):
    _read(raw)


@PROPERTY_SETTINGS
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=2000))
def test_the_sniffer_never_crashes_on_arbitrary_text(text):
    _read(text.encode("utf-8"))


CELL = st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFXYZ0123456789 .-_", max_size=12),
    st.integers(-10 ** 6, 10 ** 6).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda f: f"{f:.6g}"),
)
NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10)


@st.composite
def tables(draw):
    columns = draw(st.integers(2, 8))
    header = draw(st.lists(NAME, min_size=columns, max_size=columns, unique=True))
    rows = draw(st.lists(st.lists(CELL, min_size=columns, max_size=columns), min_size=1, max_size=40))
    delimiter = draw(st.sampled_from([",", "\t", ";", "|"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    bom = draw(st.booleans())
    return header, rows, delimiter, quoting, bom


@PROPERTY_SETTINGS
@given(tables())
def test_the_sniffer_reads_every_row_of_a_well_formed_table(table):
    header, rows, delimiter, quoting, bom = table
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, quoting=quoting, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    raw = (b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode("utf-8")
    result = _read(raw)
    assert not isinstance(result, sniff.IngestError), f"a well-formed table was refused: {result}"
    assert result is not None
    assert result.num_rows == len(rows)
    assert result.num_columns == len(header)
    assert result.column_names == header
