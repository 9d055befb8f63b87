"""Real heareval embeddings + predictions on generated HEAR tasks, through our documented commands.

Tasks come from hear_codec.evaluation.tasks: a scene multiclass task, a multilabel k-fold task and
an event task, each built to be easy (one tone frequency per label). With a parameter-free band
energy front end (hear_codec.evaluation.spectral_baseline) they must score far above chance; the
end-to-end test then runs ``python -m hear_codec.evaluate`` on a random-weight hear_codec
checkpoint, where only a sane, finite score is expected.

Each task's metadata narrows heareval's "faster" grid to a learning rate that trains in a few
epochs (evaluation_params.task_specific_param_grid), so the suite stays quick.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("heareval")
pytest.importorskip("tensorflow")

from hear_codec.evaluation import tasks  # noqa: E402

pytestmark = pytest.mark.slow

EASY_GRID = tasks.QUICK_PARAM_GRID
BASELINE = "hear_codec.evaluation.spectral_baseline"


def _scores(task_dir: Path) -> dict:
    return json.loads((task_dir / "test.predicted-scores.json").read_text())


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    """Run the embeddings and predictions commands on the three synthetic tasks (16 kHz audio)."""
    from hear_codec.evaluation import embeddings, predictions

    root = tmp_path_factory.mktemp("hear")
    made = tasks.make_synthetic_tasks(root / "tasks", sample_rates=(16000,), param_grid=EASY_GRID)
    embeddings.main([BASELINE, "--tasks-dir", str(root / "tasks"), "--embeddings-dir", str(root / "embeddings")])
    task_dirs = [root / "embeddings" / BASELINE / t.name for t in made]
    predictions.main([str(t) for t in task_dirs] + ["--grid", "faster", "--grid-points", "1"])
    return {t.name: t for t in task_dirs}


def test_scene_multiclass_scores_well_above_chance(predicted):
    test = _scores(predicted["synthetic_scene"])["test"]
    assert test["test_top1_acc"] >= 0.75, test  # 4 classes: chance is 0.25
    assert 0.0 <= test["test_mAP"] <= 1.0


def test_multilabel_kfold_scores_every_fold(predicted):
    results = _scores(predicted["synthetic_multilabel_kfold"])
    assert {"fold00", "fold01", "fold02"} <= set(results), results.keys()
    for fold in ("fold00", "fold01", "fold02"):
        assert 0.0 <= results[fold]["test_mAP"] <= 1.0
    # every label is present in half the files, so a constant guess has mAP about 0.5
    assert results["aggregated_scores"]["test_mAP_mean"] >= 0.8, results["aggregated_scores"]


def test_event_task_finds_the_events(predicted):
    results = _scores(predicted["synthetic_event"])
    test = results["test"]
    assert test["test_event_onset_200ms_fms"] >= 0.5, test  # guessing finds almost no onsets
    assert math.isfinite(test["test_segment_1s_er"])
    # The post-processing chosen on validation was the one used for the test (compat patch 4).
    assert dict(results["postprocessing"]).keys() == {"median_filter_ms", "min_duration"}


def test_score_table(predicted):
    from hear_codec.evaluation.scores import markdown_table, read_task_score

    rows = [read_task_score(predicted[name]) for name in sorted(predicted)]
    assert [(r.task, r.metric, r.folds) for r in rows] == [
        ("synthetic_event", "event_onset_200ms_fms", 1),
        ("synthetic_multilabel_kfold", "mAP", 3),
        ("synthetic_scene", "top1_acc", 1),
    ]
    assert rows[1].std is not None and rows[0].std is None
    assert "| synthetic_scene | scene multiclass | top1_acc ↑ |" in markdown_table(rows)


def test_evaluate_checkpoint_end_to_end(tiny_checkpoints, tmp_path):
    """``python -m hear_codec.evaluate`` on a random-weight checkpoint: embeddings with the real
    plugin at its default 48 kHz, predictions, and the CSV/Markdown table."""
    from hear_codec import evaluate

    tasks.make_scene_task(tmp_path / "tasks", "synthetic_scene", files_per_split=8, sample_rates=(48000,),
                          param_grid=EASY_GRID)
    out = tmp_path / "out"
    assert evaluate.main([str(tiny_checkpoints["mel256"]), "--tasks-dir", str(tmp_path / "tasks"),
                          "--grid", "fast", "--out", str(out)]) == 0
    with open(out / "scores.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["task"] == "synthetic_scene" and row["metric"] == "top1_acc"
    assert 0.0 <= float(row["score"]) <= 1.0
    assert "synthetic_scene" in (out / "scores.md").read_text()
    assert (out / "embeddings" / "hear_codec" / "synthetic_scene" / "prediction-done.json").is_file()


def test_evaluate_reports_bad_input(tmp_path):
    from hear_codec import evaluate

    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"")
    assert evaluate.main([str(ckpt), "--tasks-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    (tmp_path / "tasks" / "not_a_task").mkdir(parents=True)
    assert evaluate.main([str(ckpt), "--tasks-dir", str(tmp_path / "tasks"), "--out", str(tmp_path / "o")]) == 2
    assert "no task_metadata.json" in (tmp_path / "o" / "evaluate.log").read_text()
    assert evaluate.main([str(ckpt), "--tasks-dir", str(tmp_path / "tasks"), "--model-options", "[1]",
                          "--out", str(tmp_path / "o")]) == 2


def test_wrong_sample_rate_is_explained(tmp_path):
    task = tasks.make_scene_task(tmp_path, "t", files_per_split=1, sample_rates=(16000,))
    with pytest.raises(FileNotFoundError, match="no 48000 Hz audio.*sample_rate"):
        tasks.check_sample_rate(task, 48000)


def test_out_dir_keeps_one_run(tmp_path):
    from hear_codec import evaluate

    fast = evaluate.run_settings("hear_codec", "m.pt", {}, "fast", None)
    evaluate.check_out_dir(tmp_path, fast)  # empty folder: fine
    (tmp_path / "run.json").write_text(json.dumps(fast))
    evaluate.check_out_dir(tmp_path, fast)  # same settings: resume
    with pytest.raises(ValueError, match="other settings"):
        evaluate.check_out_dir(tmp_path, evaluate.run_settings("hear_codec", "m.pt", {"sample_rate": 16000}, "fast", None))
