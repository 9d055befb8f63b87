"""heareval's score files read into one table (hear_codec/evaluation/scores.py), on the runs of the
``predicted`` fixture (conftest.py)."""
import pytest

pytest.importorskip("heareval")
pytest.importorskip("tensorflow")

pytestmark = pytest.mark.slow


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
