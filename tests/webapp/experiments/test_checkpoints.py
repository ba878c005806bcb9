"""Which checkpoints a run keeps: the two newest, the best, those other runs start from, and at
most CUPOLA_KEEP_CHECKPOINTS at round epochs spread over the epochs trained so far."""

from __future__ import annotations

import pytest

from tests.webapp.experiments.conftest import iris_spec
from webapp.experiments import checkpoints, execution, services


@pytest.mark.parametrize(("total", "spaced", "interval"), [
    (1, 20, 1), (20, 20, 1), (21, 20, 2), (40, 20, 2), (41, 20, 5), (100, 20, 5), (101, 20, 10),
    (1217, 20, 100), (100_000, 20, 5000), (30, 3, 10), (31, 3, 20),
])
def test_the_spacing_is_the_smallest_round_interval_that_fits(total, spaced, interval):
    assert checkpoints.spacing(total, spaced) == interval
    rounds = [1]
    while rounds[-1] < interval:
        rounds.append(checkpoints._next_round(rounds[-1]))
    assert rounds[-1] == interval and total / interval <= spaced
    assert len(rounds) == 1 or total / rounds[-2] > spaced  # the round interval below would not fit


def test_a_long_cancelled_run_keeps_about_twenty_round_epochs_the_best_and_the_newest_two():
    keep = checkpoints.kept(range(1, 1218), best=140, spaced=20)
    assert keep == {100 * k for k in range(1, 13)} | {140, 1216, 1217}
    assert checkpoints.kept(range(1, 8), best=None, spaced=20) == set(range(1, 8))
    assert checkpoints.kept(range(1, 50), best=3, spaced=0) == {3, 48, 49}
    assert checkpoints.kept(range(1, 50), best=3, spaced=None) == set(range(1, 50))
    assert checkpoints.kept([], best=None, spaced=20) == set()


def test_prune_spares_the_epochs_other_runs_start_from_and_asks_for_them_only_when_it_deletes(settings, tmp_path):
    settings.DATA_DIR, settings.KEEP_CHECKPOINTS = tmp_path, 2
    asked = []

    def pinned():
        asked.append(True)
        return [3]

    for epoch in range(1, 9):
        checkpoints.checkpoint_path(7, epoch).parent.mkdir(parents=True, exist_ok=True)
        checkpoints.checkpoint_path(7, epoch).write_bytes(b"x")
        deleted = checkpoints.prune(7, best=1, pinned=pinned)
        assert 3 not in deleted
    assert checkpoints.epochs_saved(7) == [1, 3, 5, 7, 8]  # best, pinned, round (interval 5), newest two
    assert 0 < len(asked) < 8
    before = len(asked)  # 3 is left to delete but pinned: asked each time
    assert checkpoints.prune(7, best=1, pinned=pinned) == [] and len(asked) == before + 1
    settings.DATA_DIR = tmp_path / "other"
    checkpoints.checkpoint_path(7, 1).parent.mkdir(parents=True)
    checkpoints.checkpoint_path(7, 1).write_bytes(b"x")
    assert checkpoints.prune(7, best=None, pinned=pinned) == [] and len(asked) == before + 1  # nothing to delete


@pytest.mark.django_db
def test_a_trained_run_keeps_the_checkpoints_the_policy_names_and_forks_from_one(people, iris, settings):
    settings.KEEP_CHECKPOINTS = 3
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                              spec=iris_spec(epochs=30), data_config={"target": "species"})
    assert execution.run_execute(run.pk) == "succeeded"
    run.refresh_from_db()
    saved = checkpoints.epochs_saved(run)
    assert saved == sorted({10, 20, 30, run.best_epoch}), (saved, run.best_epoch)
    assert checkpoints.weights_path(run).exists() and run.metric_rows.count() == 30

    fork = services.run_fork(run=run, user=people.owner, from_epoch=20, spec={**run.spec, "fit": {
        **run.spec["fit"], "epochs": 24}})
    assert execution.run_execute(fork.pk) == "succeeded"
    assert list(fork.metric_rows.values_list("epoch", flat=True)) == list(range(1, 25))
    with pytest.raises(services.InvalidInput, match="run has no checkpoint for epoch 15"):
        services.run_fork(run=run, user=people.owner, from_epoch=15)

    settings.KEEP_CHECKPOINTS = None  # CUPOLA_KEEP_CHECKPOINTS=all
    every = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                spec=iris_spec(epochs=12), data_config={"target": "species"})
    assert execution.run_execute(every.pk) == "succeeded"
    assert checkpoints.epochs_saved(every) == list(range(1, 13))


@pytest.mark.django_db
def test_an_epoch_no_rule_keeps_is_written_only_at_the_end_or_after_the_interval(people, iris, settings, monkeypatch):
    settings.KEEP_CHECKPOINTS = 0  # no round epochs: only the best, the newest and what the clock asks for
    written = []
    from trainer import io

    real = io.write_checkpoint
    monkeypatch.setattr(io, "write_checkpoint", lambda path, arrays: (written.append(int(arrays["epoch"])),
                                                                      real(path, arrays)))
    spec = iris_spec(epochs=27)
    spec["compile"]["optimizer"]["learning_rate"] = 1e-12  # float32 weights do not move: no later epoch is best
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris, spec=spec,
                              data_config={"target": "species"})
    assert execution.run_execute(run.pk) == "succeeded"
    run.refresh_from_db()
    assert run.best_epoch == 1 and written == [1, 27]  # the best when it was made; the last at the end
    assert checkpoints.epochs_saved(run) == [1, 27]
    more = services.run_continue(run=run, user=people.owner, epochs=2)  # continues from the written last epoch
    assert execution.run_execute(more.pk) == "succeeded"

    written.clear()
    monkeypatch.setattr(checkpoints, "WRITE_EVERY", 0.0)  # a slow model: every epoch's time is up
    again = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris, spec=spec,
                                data_config={"target": "species"})
    assert execution.run_execute(again.pk) == "succeeded"
    assert written == list(range(1, 28)) and checkpoints.epochs_saved(again) == [1, 26, 27]


@pytest.mark.django_db
def test_a_failed_run_keeps_its_last_good_epoch_to_fork_from(people, iris, settings, monkeypatch):
    settings.KEEP_CHECKPOINTS = 0
    spec = iris_spec(epochs=40)
    spec["compile"]["optimizer"]["learning_rate"] = 1e-12
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris, spec=spec,
                              data_config={"target": "species"})
    real = execution._check_loss

    def fail_in_epoch_8(loss, epoch):
        if epoch == 8:
            loss = float("nan")
        real(loss, epoch)

    monkeypatch.setattr(execution, "_check_loss", fail_in_epoch_8)
    assert execution.run_execute(run.pk) == "failed"
    run.refresh_from_db()
    assert "loss became NaN at epoch 8" in run.reason and run.epochs_done == 7
    assert checkpoints.epochs_saved(run) == [1, 7]
    fork = services.run_fork(run=run, user=people.owner, from_epoch=7)
    assert fork.from_epoch == 7


@pytest.mark.django_db
def test_metric_rows_of_short_epochs_are_written_together_and_none_is_lost(people, iris, settings, monkeypatch):
    from webapp.experiments.models import MetricRow

    settings.KEEP_CHECKPOINTS = 0
    monkeypatch.setattr(execution, "ROWS_EVERY", 1e9)  # only the first epoch, checkpoints and the end write rows
    batches = []
    real = MetricRow.objects.bulk_create
    monkeypatch.setattr(MetricRow.objects, "bulk_create",
                        lambda rows, **kwargs: (batches.append([row.epoch for row in rows]), real(rows, **kwargs))[1])
    spec = iris_spec(epochs=27)
    spec["compile"]["optimizer"]["learning_rate"] = 1e-12  # the first epoch stays the best: one checkpoint
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris, spec=spec,
                              data_config={"target": "species"})
    assert execution.run_execute(run.pk) == "succeeded"
    assert batches == [[1], list(range(2, 28))]
    run.refresh_from_db()
    assert run.epochs_done == 27 and run.best_epoch == 1
    assert list(run.metric_rows.values_list("epoch", flat=True)) == list(range(1, 28))
