import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer import data as tdata
from trainer.data import (
    LabelEncoder,
    TablePreprocessor,
    TargetScaler,
    chronological_split,
    input_windows,
    interpolate_missing,
    iterate_batches,
    load_array,
    random_crop,
    random_flip,
    scale_images,
    sliding_windows,
    split_indices,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def read_csv(name):
    pd = pytest.importorskip("pandas")
    return pd.read_csv(FIXTURES / name)


# ----------------------------------------------------------------------------- splits


def test_it_splits_every_row_into_exactly_one_part():
    train, val, test = split_indices(100, test_fraction=0.2, validation_fraction=0.1, seed=1)
    assert (len(train), len(val), len(test)) == (70, 10, 20)
    assert np.array_equal(np.sort(np.concatenate([train, val, test])), np.arange(100))


def test_it_splits_the_same_way_for_the_same_seed_and_differently_for_another():
    first = split_indices(50, seed=7)
    again = split_indices(50, seed=7)
    other = split_indices(50, seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[2], other[2])


def test_it_keeps_class_proportions_when_stratified():
    labels = np.array(["a"] * 60 + ["b"] * 30 + ["c"] * 10)
    np.random.default_rng(0).shuffle(labels)
    _, val, test = split_indices(100, test_fraction=0.2, validation_fraction=0.1, seed=3, stratify=labels)
    for part, size in ((test, 20), (val, 10)):
        assert len(part) == size
        counts = {c: int((labels[part] == c).sum()) for c in "abc"}
        assert counts == {"a": 0.6 * size, "b": 0.3 * size, "c": 0.1 * size}


def test_it_falls_back_to_a_plain_split_when_a_class_has_one_row():
    labels = np.array([0] * 9 + [1])
    with pytest.warns(UserWarning, match="fewer than 2 rows"):
        train, val, test = split_indices(10, stratify=labels)
    assert len(train) + len(val) + len(test) == 10


def test_it_rejects_fractions_that_leave_no_training_rows():
    with pytest.raises(ValueError, match="test_fraction \\+ validation_fraction"):
        split_indices(10, test_fraction=0.6, validation_fraction=0.4)
    with pytest.raises(ValueError, match="test_fraction=1.5"):
        split_indices(10, test_fraction=1.5)


def test_it_splits_a_series_chronologically_with_a_gap():
    train, val, test = chronological_split(100, test_fraction=0.2, validation_fraction=0.1, gap=5)
    assert train[0] == 0 and train[-1] < val[0] - 5 + 1 and val[-1] < test[0] - 5 + 1
    assert (len(train), len(val), len(test)) == (60, 10, 20)
    assert test[-1] == 99
    assert np.all(np.diff(np.concatenate([train, val, test])) > 0)


# ----------------------------------------------------------------------------- tables


def test_it_standardizes_with_training_statistics_only():
    train = {"x": np.array([1.0, 2.0, 3.0, 4.0])}
    test = {"x": np.array([100.0])}
    pre = TablePreprocessor(["x"], []).fit(train)
    mean, std = 2.5, np.std([1, 2, 3, 4])
    assert np.allclose(pre.transform(train)[:, 0], (train["x"] - mean) / std)
    assert np.allclose(pre.transform(test)[0, 0], (100 - mean) / std)


def test_it_scales_to_the_training_range_with_minmax():
    pre = TablePreprocessor(["x"], [], scaling="minmax").fit({"x": np.array([2.0, 4.0, 6.0])})
    assert np.allclose(pre.transform({"x": np.array([2.0, 6.0, 8.0])})[:, 0], [0.0, 1.0, 1.5])


def test_it_leaves_a_constant_column_centred_instead_of_dividing_by_zero():
    pre = TablePreprocessor(["x"], []).fit({"x": np.array([5.0, 5.0])})
    assert np.array_equal(pre.transform({"x": np.array([5.0, 6.0])})[:, 0], [0.0, 1.0])


def test_it_one_hot_encodes_categories_and_zeroes_an_unseen_one():
    pre = TablePreprocessor([], ["color"], scaling="none").fit({"color": np.array(["red", "blue", "red"])})
    assert pre.feature_names == ["color=blue", "color=red"]
    out = pre.transform({"color": np.array(["blue", "green", "red"])})
    assert out.dtype == np.float32
    assert out.tolist() == [[1, 0], [0, 0], [0, 1]]


def test_it_groups_each_source_columns_features_in_feature_names_order():
    pre = TablePreprocessor(["x", "y"], ["color", "size"], scaling="none").fit(
        {"x": np.array([1.0, 2.0]), "y": np.array([3.0, 4.0]), "color": np.array(["red", "blue"]),
         "size": np.array(["s", "m"])})
    groups = pre.feature_groups()
    assert groups == {"x": [0], "y": [1], "color": [2, 3], "size": [4, 5]}
    assert [pre.feature_names[i] for i in groups["color"]] == ["color=blue", "color=red"]
    with pytest.raises(RuntimeError, match="call fit"):
        TablePreprocessor(["x"], []).feature_groups()


def test_it_fills_missing_values_with_the_training_mean_and_most_frequent_category():
    frame = {"x": np.array([1.0, np.nan, 5.0]), "c": np.array(["a", None, "a"], dtype=object)}
    pre = TablePreprocessor(["x"], ["c"], scaling="none", missing="mean").fit(frame)
    assert pre.transform(frame).tolist() == [[1, 1], [3, 1], [5, 1]]


def test_it_fills_missing_numbers_with_the_most_frequent_value():
    frame = {"x": np.array([2.0, 2.0, 7.0, np.nan])}
    pre = TablePreprocessor(["x"], [], scaling="none", missing="most_frequent").fit(frame)
    assert pre.transform(frame)[:, 0].tolist() == [2, 2, 7, 2]


def test_it_drops_incomplete_rows_and_says_which_rows_it_kept():
    frame = {"x": np.array([1.0, np.nan, 3.0, 4.0]), "c": np.array(["a", "b", None, "b"], dtype=object)}
    pre = TablePreprocessor(["x"], ["c"], scaling="none", missing="drop").fit(frame)
    features, kept = pre.transform(frame, return_mask=True)
    assert kept.tolist() == [True, False, False, True]
    assert features.tolist() == [[1, 1, 0], [4, 0, 1]]


def test_it_reads_a_pandas_frame_with_nullable_and_string_columns():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {"n": pd.array([1, None, 3], dtype="Int64"), "s": pd.array(["u", "v", None], dtype="string")}
    )
    pre = TablePreprocessor(["n"], ["s"], scaling="none").fit(frame)
    assert pre.transform(frame).tolist() == [[1, 1, 0], [2, 0, 1], [3, 1, 0]]


def test_it_names_an_unknown_column():
    pre = TablePreprocessor(["foo"], [])
    with pytest.raises(ValueError, match="TablePreprocessor: unknown column 'foo'"):
        pre.fit({"bar": np.zeros(3)})


def test_it_names_a_numeric_column_that_holds_text():
    with pytest.raises(ValueError, match="column 'x' is not numeric"):
        TablePreprocessor(["x"], []).fit({"x": np.array(["a", "b"])})


def test_it_rejects_bad_options_echoing_the_value():
    with pytest.raises(ValueError, match="scaling='zscore'"):
        TablePreprocessor(["x"], [], scaling="zscore")
    with pytest.raises(ValueError, match="missing='zero'"):
        TablePreprocessor(["x"], [], missing="zero")


def test_it_round_trips_through_json_and_transforms_identically():
    frame = read_csv("iris.csv")
    numeric = [c for c in frame.columns if c != "species"]
    pre = TablePreprocessor(numeric, ["species"]).fit(frame.iloc[:100])
    restored = TablePreprocessor.from_dict(json.loads(json.dumps(pre.to_dict(), allow_nan=False)))
    assert restored.feature_names == pre.feature_names
    assert np.array_equal(restored.transform(frame), pre.transform(frame))
    # species 'virginica' only appears after row 100: unseen in training, so all zeros.
    assert pre.feature_names[-2:] == ["species=setosa", "species=versicolor"]
    assert pre.transform(frame.iloc[140:141])[0, -2:].tolist() == [0, 0]


def test_it_keeps_integer_categories_equal_after_a_json_round_trip():
    frame = {"k": np.array([1.0, 2.0, 2.0])}  # integer codes read from a CSV as floats
    pre = TablePreprocessor([], ["k"]).fit(frame)
    restored = TablePreprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert restored.feature_names == ["k=1", "k=2"]
    assert restored.transform({"k": np.array([2, 1])}).tolist() == [[0, 1], [1, 0]]


# ----------------------------------------------------------------------------- targets


def test_it_encodes_string_labels_in_sorted_order_and_back():
    encoder = LabelEncoder().fit(["cat", "dog", "ant", "dog"])
    assert encoder.classes_ == ["ant", "cat", "dog"]
    codes = encoder.transform(["dog", "ant"])
    assert codes.tolist() == [2, 0] and codes.dtype == np.int64
    assert encoder.inverse_transform(codes).tolist() == ["dog", "ant"]


def test_it_encodes_integer_labels_and_survives_json():
    encoder = LabelEncoder().fit(np.array([3, 7, 3, 5]))
    restored = LabelEncoder.from_dict(json.loads(json.dumps(encoder.to_dict())))
    assert restored.classes_ == [3, 5, 7]
    assert restored.transform([7, 5]).tolist() == [2, 1]
    assert restored.inverse_transform([0]).tolist() == [3]


def test_it_names_an_unknown_label():
    encoder = LabelEncoder().fit(["a", "b"])
    with pytest.raises(ValueError, match="unknown label 'z'"):
        encoder.transform(["a", "z"])


def test_it_refuses_missing_labels():
    with pytest.raises(ValueError, match="missing labels"):
        LabelEncoder().fit(np.array([1.0, np.nan]))


def test_it_standardizes_regression_targets_and_inverts_predictions():
    y = np.array([10.0, 20.0, 30.0])
    scaler = TargetScaler().fit(y)
    scaled = scaler.transform(y)
    assert np.allclose(scaled.mean(), 0) and np.allclose(scaled.std(), 1)
    restored = TargetScaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert np.allclose(restored.inverse_transform(scaled.reshape(-1, 1))[:, 0], y)


# ----------------------------------------------------------------------------- series


def test_it_cuts_windows_with_the_next_value_as_target():
    x, y = sliding_windows(np.arange(6.0), window=3)
    assert x.shape == (3, 3, 1) and x.dtype == np.float32
    assert x[:, :, 0].tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4]]
    assert y.tolist() == [3, 4, 5]


def test_it_predicts_several_steps_of_the_target_column_from_all_features():
    values = np.stack([np.arange(8.0), 10 * np.arange(8.0)], axis=1)
    x, y = sliding_windows(values, window=2, horizon=3, target_column=1)
    assert x.shape == (4, 2, 2) and y.shape == (4, 3)
    assert x[0].tolist() == [[0, 0], [1, 10]]
    assert y[0].tolist() == [20, 30, 40]


def test_it_refuses_gaps_unless_asked_to_interpolate():
    values = np.array([1.0, np.nan, 3.0, 4.0, np.nan])
    with pytest.raises(ValueError, match="2 missing entries"):
        sliding_windows(values, window=2)
    x, y = sliding_windows(values, window=2, missing="interpolate")
    assert x[:, :, 0].tolist() == [[1, 2], [2, 3], [3, 4]]
    assert y.tolist() == [3, 4, 4]


def test_it_interpolates_the_co2_series_without_leaving_gaps():
    co2 = read_csv("co2_weekly.csv")["co2"].to_numpy()
    assert np.isnan(co2).sum() > 0
    filled = interpolate_missing(co2)
    assert not np.isnan(filled).any()
    assert np.array_equal(filled[~np.isnan(co2)], co2[~np.isnan(co2)])


def test_it_cuts_prediction_windows_that_match_the_training_inputs():
    values = np.stack([np.arange(7.0), -np.arange(7.0)], axis=1)
    windows = input_windows(values, 3)
    x, _ = sliding_windows(values, 3)
    assert windows.shape == (5, 3, 2) and windows.dtype == np.float32
    assert np.array_equal(windows[: len(x)], x)  # the last window predicts past the end of the data
    assert windows[-1, :, 0].tolist() == [4, 5, 6]


def test_it_rejects_a_series_shorter_than_the_window():
    with pytest.raises(ValueError, match="too short for window=5"):
        sliding_windows(np.arange(4.0), window=5)
    with pytest.raises(ValueError, match="too short for window=5"):
        input_windows(np.arange(4.0), 5)


# ----------------------------------------------------------------------------- images


def test_it_scales_uint8_images_to_unit_floats():
    out = scale_images(np.array([[0, 255, 51]], dtype=np.uint8))
    assert out.dtype == np.float32 and np.allclose(out, [[0, 1, 0.2]])
    with pytest.raises(ValueError, match="dtype=float64"):
        scale_images(np.zeros(3))


def test_it_crops_each_image_at_its_own_random_offset_within_the_padding():
    batch = np.arange(1, 1 + 6 * 5 * 5 * 2, dtype=np.float32).reshape(6, 5, 5, 2)
    out = random_crop(batch, 2, np.random.default_rng(0))
    assert out.shape == batch.shape
    padded = np.pad(batch, ((0, 0), (2, 2), (2, 2), (0, 0)))
    for i in range(6):
        windows = [padded[i, t:t + 5, s:s + 5] for t in range(5) for s in range(5)]
        assert any(np.array_equal(out[i], w) for w in windows)
    assert np.array_equal(random_crop(batch, 2, 0), random_crop(batch, 2, 0))


def test_it_crops_channels_first_batches_on_the_spatial_axes():
    batch = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    out = random_crop(batch, 1, 5, data_format="channels_first")
    reference = random_crop(batch.transpose(0, 2, 3, 1), 1, 5).transpose(0, 3, 1, 2)
    assert np.array_equal(out, reference)


def test_it_flips_about_half_the_images_left_to_right():
    batch = np.tile(np.arange(4, dtype=np.float32), (1000, 3, 1))[..., None]  # (1000, 3, 4, 1)
    out = random_flip(batch, np.random.default_rng(1))
    flipped = out[:, 0, 0, 0] == 3
    assert 400 < flipped.sum() < 600
    assert np.array_equal(out[flipped], batch[flipped][:, :, ::-1])
    assert np.array_equal(out[~flipped], batch[~flipped])


# ----------------------------------------------------------------------------- batching


def test_it_visits_every_row_once_per_epoch_with_sorted_indices_inside_a_batch(tmp_path):
    x = np.arange(103 * 3, dtype=np.float32).reshape(103, 3)
    y = np.arange(103)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    xs, ys = load_array(tmp_path / "x.npy"), load_array(tmp_path / "y.npy")
    assert isinstance(xs, np.memmap)
    batches = list(iterate_batches(xs, ys, 10, shuffle=True, rng=np.random.default_rng(0)))
    assert len(batches) == 11
    seen = np.concatenate([yb for _, yb in batches])
    assert np.array_equal(np.sort(seen), y)
    assert not np.array_equal(seen, y)  # shuffled across batches
    for xb, yb in batches:
        assert type(xb) is np.ndarray and np.all(np.diff(yb) > 0)
        assert np.array_equal(xb, x[yb])


def test_it_shuffles_deterministically_and_can_drop_the_last_partial_batch():
    x = np.arange(25)
    first = [b for b, _ in iterate_batches(x, None, 4, shuffle=True, rng=3, drop_last=True)]
    second = [b for b, _ in iterate_batches(x, None, 4, shuffle=True, rng=3, drop_last=True)]
    assert len(first) == 6 and all(len(b) == 4 for b in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_it_reads_a_memory_mapped_set_without_copying_it_whole(tmp_path):
    rows, width = 20_000, 256  # 20 MB of float32
    np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float32, shape=(rows, width))[:] = 1.0
    x = load_array(tmp_path / "big.npy")
    tracemalloc.start()
    total = 0.0
    for xb, _ in iterate_batches(x, None, 500, shuffle=True, rng=0):
        total += float(xb[:, 0].sum())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total == rows
    assert peak < 3 * 500 * width * 4 + 1_000_000  # a few batches, far below the 20 MB array


def test_it_needs_a_generator_to_shuffle_and_matching_lengths():
    with pytest.raises(ValueError, match="needs rng"):
        next(iterate_batches(np.zeros(3), None, 2, shuffle=True))
    with pytest.raises(ValueError, match="same number of rows"):
        next(iterate_batches(np.zeros(3), np.zeros(4), 2))


# ----------------------------------------------------------------------------- properties



@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 300),
    test_fraction=st.floats(0, 0.45),
    validation_fraction=st.floats(0, 0.45),
    seed=st.integers(0, 2**32 - 1),
    classes=st.integers(1, 5),
)
def test_it_always_partitions_the_rows_with_the_requested_sizes(n, test_fraction, validation_fraction, seed, classes):
    labels = np.arange(n) % classes
    train, val, test = split_indices(n, test_fraction=test_fraction, validation_fraction=validation_fraction,
                                     seed=seed, stratify=labels if n >= 2 * classes else None)
    assert np.array_equal(np.sort(np.concatenate([train, val, test])), np.arange(n))
    assert len(test) == round(n * test_fraction) and len(val) == round(n * validation_fraction)


@settings(max_examples=40, deadline=None)
@given(length=st.integers(2, 40), window=st.integers(1, 10), horizon=st.integers(1, 4))
def test_it_makes_windows_whose_targets_follow_their_inputs(length, window, horizon):
    if length < window + horizon:
        return
    values = np.arange(float(length))
    x, y = sliding_windows(values, window, horizon)
    assert len(x) == length - window - horizon + 1
    last_input = x[:, -1, 0]
    first_target = y if horizon == 1 else y[:, 0]
    assert np.array_equal(first_target, last_input + 1)


# ----------------------------------------------------------------------------- ImageRows
def test_image_rows_read_what_scale_images_of_those_rows_gives_and_nothing_before(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 5, 4, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    mapped = np.load(tmp_path / "images.npy", mmap_mode="r")
    indices = rng.permutation(40)[:25]
    rows, expected = tdata.ImageRows(mapped, indices), tdata.scale_images(images[indices])
    assert rows.shape == expected.shape and rows.dtype == np.float32 and len(rows) == 25
    assert rows.size == expected.size and rows.nbytes == expected.nbytes and rows.ndim == 4
    assert np.array_equal(np.asarray(rows), expected)
    assert np.array_equal(rows[7], expected[7]) and np.array_equal(rows[np.int64(-1)], expected[-1])
    assert np.array_equal(rows[[9, 2, 9]], expected[[9, 2, 9]])
    mask = np.arange(25) % 3 == 0
    assert np.array_equal(rows[mask], expected[mask])
    view = rows[5:20:2]
    assert isinstance(view, tdata.ImageRows) and np.array_equal(np.asarray(view), expected[5:20:2])
    assert np.array_equal(rows.astype(np.float64), expected.astype(np.float64))  # computed in float32, then cast
    unscaled = tdata.ImageRows(mapped, indices, scale=False)
    assert np.array_equal(np.asarray(unscaled), images[indices].astype(np.float32))


def test_image_rows_read_a_large_set_a_chunk_at_a_time(monkeypatch):
    images = np.random.default_rng(1).integers(0, 256, (30, 4, 4, 1), dtype=np.uint8)
    monkeypatch.setattr(tdata, "_CHUNK_BYTES", 4 * 16 * 7)  # seven images a chunk
    rows = tdata.ImageRows(images)
    assert rows.chunks() == [(0, 7), (7, 14), (14, 21), (21, 28), (28, 30)]
    assert np.array_equal(np.asarray(rows), tdata.scale_images(images))


@pytest.mark.parametrize("value", [np.zeros((3, 4), dtype=np.float32), np.zeros(3, dtype=np.uint8), [[1, 2]]])
def test_image_rows_refuse_what_is_not_uint8_images(value):
    with pytest.raises(ValueError, match="ImageRows: expected uint8 images"):
        tdata.ImageRows(value)


@pytest.mark.parametrize("stratified", [False, True])
def test_k_folds_test_every_row_once_and_keep_the_classes_in_proportion(stratified):
    labels = np.array([0] * 60 + [1] * 30 + [2] * 13)
    tests = []
    for fold in range(5):
        train, val, test = split_indices(103, validation_fraction=0.1, seed=3, folds=5, fold=fold,
                                         stratify=labels if stratified else None)
        assert len(test) in (20, 21) and len(val) == 10 and len(train) + len(val) + len(test) == 103
        assert not (set(train) & set(test)) and not (set(val) & set(test)) and not (set(train) & set(val))
        if stratified:
            share = np.array([60, 30, 13]) / 5  # each class's rows a fold should hold
            assert np.all(np.abs(np.bincount(labels[test], minlength=3) - share) <= 1)
        tests.append(test)
    assert sorted(np.concatenate(tests).tolist()) == list(range(103))  # each row tested exactly once


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"folds": 1}, "folds must be an integer from 2 to the number of rows \\(50\\). Received: folds=1"),
    ({"folds": 5, "fold": 5}, "fold must be an integer from 0 to 4. Received: fold=5"),
    ({"folds": 2, "validation_fraction": 0.5}, "a fold \\(1/2\\) and validation_fraction=0.5 leave no rows"),
])
def test_it_rejects_folds_that_do_not_fit(kwargs, message):
    with pytest.raises(ValueError, match=message):
        split_indices(50, **kwargs)


# ----------------------------------------------------------------------------- text


def test_text_becomes_word_indices_by_frequency_padded_and_cut_to_length():
    from trainer.data import TextVectorizer

    texts = ["The cat sat.", "the dog sat, the CAT ran!", "Don't panic", None]
    vectorizer = TextVectorizer(max_tokens=6, sequence_length=4).fit(texts)
    # the (3), cat (2), sat (2) - ties alphabetically - then dog (1): max_tokens - 2 = 4 words kept.
    assert vectorizer.vocabulary == ["the", "cat", "sat", "dog"] and vectorizer.vocabulary_size == 6
    out = vectorizer.transform(["the cat sat", "The dog ate the cat", "don't", "", float("nan")])
    assert out.dtype == np.int32 and out.tolist() == [[2, 3, 4, 0], [2, 5, 1, 2], [1, 0, 0, 0], [0] * 4, [0] * 4]
    assert TextVectorizer.tokens("Hello, wörld_42 ça-va") == ["hello", "wörld", "42", "ça", "va"]
    restored = TextVectorizer.from_dict(json.loads(json.dumps(vectorizer.to_dict())))
    assert restored.transform(["dog sat"]).tolist() == vectorizer.transform(["dog sat"]).tolist()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_tokens": 2}, "max_tokens must be an integer from 3 to 1000000. Received: max_tokens=2"),
    ({"sequence_length": 0}, "sequence_length must be an integer from 1 to 10000. Received: sequence_length=0"),
])
def test_a_text_vectorizer_rejects_bad_sizes_naming_them(kwargs, message):
    from trainer.data import TextVectorizer

    with pytest.raises(ValueError, match=message):
        TextVectorizer(**kwargs)
    with pytest.raises(ValueError, match="expected a dict with kind='TextVectorizer'"):
        TextVectorizer.from_dict({"kind": "TablePreprocessor"})
