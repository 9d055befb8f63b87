"""Real heareval embeddings + predictions on generated HEAR tasks, through our documented commands
(hear_codec/evaluation/embeddings.py, predictions.py; the run itself: the ``predicted`` fixture in
conftest.py).

Tasks come from hear_codec.evaluation.tasks: a scene multiclass task, a multilabel k-fold task and
an event task, each built to be easy (one tone frequency per label). With a parameter-free band
energy front end (hear_codec.evaluation.spectral_baseline) they must score far above chance.
``python -m hear_codec.evaluate`` on a random-weight hear_codec checkpoint: test_evaluate.py.

Each task's metadata narrows heareval's "faster" grid to a learning rate that trains in a few
epochs (evaluation_params.task_specific_param_grid), so the suite stays quick.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("heareval")
pytest.importorskip("tensorflow")

pytestmark = pytest.mark.slow


def _scores(task_dir: Path) -> dict:
    return json.loads((task_dir / "test.predicted-scores.json").read_text())


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
