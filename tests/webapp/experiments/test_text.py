"""A table's text column as a model's input: word indices into an Embedding, trained, predicted on."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.webapp.experiments.conftest import make_version
from tests.webapp.experiments.test_images_and_series import suggested_spec
from webapp.experiments import execution, preparation, services, specs

GOOD = ["great", "lovely", "excellent", "wonderful", "superb", "delightful"]
BAD = ["awful", "terrible", "boring", "dreadful", "poor", "horrible"]
FILLER = ["the", "film", "plot", "was", "really", "acting", "quite", "a", "story", "cast", "ending", "music"]


def review(rng, good: bool) -> str:
    words = list(rng.choice(FILLER, size=rng.integers(4, 12)))
    for _ in range(rng.integers(1, 3)):
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(GOOD if good else BAD)))
    return " ".join(words).capitalize() + rng.choice([".", "!", "..."])


@pytest.fixture
def reviews(people, tmp_path):
    rng = np.random.default_rng(0)
    lines = ["id,review,sentiment"]
    for i in range(600):
        good = bool(rng.random() < 0.5)
        lines.append(f'{i},"{review(rng, good)} (#{i})",{"positive" if good else "negative"}')
    (tmp_path / "reviews.csv").write_text("\n".join(lines) + "\n")
    return make_version(people.workspace, people.owner, str(tmp_path / "reviews.csv"), name="Reviews",
                        target="sentiment")


@pytest.mark.django_db
def test_a_text_column_trains_an_embedding_model_that_reads_the_words_and_predicts_new_texts(client, people, reviews):
    types = {c["name"]: c["type"] for c in reviews.schema["columns"]}
    assert types["review"] == "text"  # free text: ignored as a feature unless chosen as the text column
    config = {"target": "sentiment", "text": "review", "sequence_length": 24}
    spec = suggested_spec(client, people, reviews, config)
    info = client.get(f"/w/{people.workspace.slug}/runs/template.json",
                      {"version": reviews.pk, "data_config": __import__("json").dumps(config)}).json()["data"]
    assert info["kind"] == "text" and info["input_shape"] == [24]
    assert [layer["type"] for layer in spec["layers"]] == ["Embedding", "GlobalAveragePooling1D", "Dense", "Dense"]
    assert spec["layers"][0]["input_dim"] == info["vocabulary_size"] > 30
    spec["fit"]["epochs"] = 15
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=reviews, spec=spec,
                              data_config=config)
    assert execution.run_execute(run.pk) == "succeeded", run.reason
    run.refresh_from_db()
    assert run.results["test"]["accuracy"] > 0.9 and run.preprocessing["kind"] == "text"
    assert "importance" not in run.results  # the words are one input: no columns to shuffle
    new = "id,review\n1,What a wonderful and delightful film!\n2,Boring plot and awful acting.\n3,\n"
    client.force_login(people.viewer)
    answer = client.post(f"/api/v1/runs/{run.pk}/predict", {"file": io.BytesIO(new.encode())},
                         format="multipart").json()
    assert [row[1] for row in answer["rows"][:2]] == ["positive", "negative"] and len(answer["rows"]) == 3
    # What the vectorizer gives those texts: known words by index, the unknown "what" as 1, then padding.
    vectorizer = preparation.tdata.TextVectorizer.from_dict(run.preprocessing["vectorizer"])
    ids = vectorizer.transform(["What a wonderful and delightful film!"])[0]
    assert ids[0] == 1 and ids[2] == vectorizer.vocabulary.index("wonderful") + 2 and ids[-1] == 0


@pytest.mark.django_db
def test_the_bidirectional_lstm_start_reads_each_review_to_its_last_word_and_learns_it(client, people, reviews):
    config = {"target": "sentiment", "text": "review", "sequence_length": 24}
    spec = suggested_spec(client, people, reviews, config, start="lstm")
    assert [layer["type"] for layer in spec["layers"]] == ["Embedding", "Bidirectional", "Dense"]
    assert spec["layers"][0]["mask_zero"] is True  # the LSTM stops at each text's last word
    spec["fit"]["epochs"] = 6
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=reviews, spec=spec,
                              data_config=config)
    assert execution.run_execute(run.pk) == "succeeded", run.reason
    run.refresh_from_db()
    assert run.results["test"]["accuracy"] > 0.9


@pytest.mark.django_db
def test_an_embedding_too_small_for_the_vocabulary_is_refused_naming_its_input_dim(client, people, reviews):
    config = {"target": "sentiment", "text": "review"}
    spec = suggested_spec(client, people, reviews, config)
    size = spec["layers"][0]["input_dim"]
    spec["layers"][0]["input_dim"] = size - 1
    with pytest.raises(specs.SpecInvalid, match=f"layers\\[0\\].input_dim: the text column's words take {size} indices"):
        services.run_create(workspace=people.workspace, user=people.owner, dataset_version=reviews, spec=spec,
                            data_config=config)
    summary = client.post(f"/api/v1/workspaces/{people.workspace.slug}/specs/summary",
                          {"spec": spec, "dataset_version": reviews.pk, "data_config": config},
                          content_type="application/json").json()  # the builder's live check says the same
    assert summary["errors"] == [{"field": "layers[0].input_dim", "message": f"the text column's words take {size} "
                                  f"indices (data_config.max_tokens), more than {size - 1}; set input_dim to {size}"}]
    dense_first = dict(spec, layers=[{"type": "Dense", "units": 4}, spec["layers"][-1]])  # shapes fit; indices are no features
    with pytest.raises(specs.SpecInvalid, match="layers\\[0\\]: a text column gives word indices"):
        services.run_create(workspace=people.workspace, user=people.owner, dataset_version=reviews,
                            spec=dense_first, data_config=config)
    with pytest.raises(services.InvalidInput, match="data_config.text: no column 'comment'"):
        services.run_create(workspace=people.workspace, user=people.owner, dataset_version=reviews, spec=spec,
                            data_config={"target": "sentiment", "text": "comment"})


@pytest.mark.parametrize(("config", "message"), [
    ({"text": 3}, "data_config.text: must be a column name"),
    ({"text": "review", "sequence_length": 0}, "data_config.sequence_length: must be a whole number from 1"),
    ({"text": "review", "max_tokens": 2}, "data_config.max_tokens: must be a whole number from 3"),
])
def test_text_settings_are_checked_naming_the_field(config, message):
    with pytest.raises(preparation.DataError, match=message):
        preparation.normalise_config(config)


@pytest.mark.parametrize(("raw", "shape"), [
    (b'review\nA wonderful film with superb acting!\n"Awful, boring and dreadful."\n', (2, 1)),  # one column
    (b"a;b\n1;2\n3;4\n", (2, 2)), (b"a\tb\n1\t2\n", (1, 2)), (b"a,b\n1,2\n", (1, 2))])
def test_a_file_to_predict_on_is_split_at_its_delimiter_never_at_a_letter(raw, shape):
    from webapp.experiments import prediction

    frame = prediction.read_table_file(raw, {})
    assert frame.shape == shape
    if shape == (2, 1):
        assert list(frame.columns) == ["review"] and frame["review"][1] == "Awful, boring and dreadful."


@pytest.mark.django_db
def test_a_text_model_served_words_it_never_learned_shows_them_as_drift(client, people, reviews):
    from webapp.experiments import monitoring, registry

    config = {"target": "sentiment", "text": "review", "sequence_length": 24}
    spec = suggested_spec(client, people, reviews, config)
    spec["fit"]["epochs"] = 3
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=reviews, spec=spec,
                              data_config=config)
    assert execution.run_execute(run.pk) == "succeeded", run.reason
    run.refresh_from_db()
    training = run.results["input_profile"]["shares"]["review (unknown words)"]
    assert training["count"] > 3000 and training["hits"] / training["count"] < 0.15
    model = registry.register(run=run, user=people.editor, name="sentiment").model
    client.force_login(people.viewer)
    rng = np.random.default_rng(9)
    french = "review\n" + "\n".join(f"Le film était {w} et vraiment très long" for w in rng.choice(GOOD, 60))
    assert client.post(f"/api/v1/models/{model.pk}/predict", {"file": io.BytesIO(french.encode())}).status_code == 200
    found = {c["column"]: c for c in monitoring.report(model)["drift"]["inputs"]}
    unknown = found["review (unknown words)"]
    # Six of its eight words ("le", "était", "et", "vraiment", "très", "long") are not in the vocabulary.
    assert unknown["verdict"] == "different" and unknown["says"] == (
        f"75% of them, against {training['hits'] / training['count']:.0%} in training")
    assert found["review (words)"]["kind"] == "numeric"
