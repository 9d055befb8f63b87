"""The generated labelled task for fine-tuning (training/builtin/labelled_task.py)."""
from training.audioformer.labels import read_labels_file
from training.builtin.labelled_task import TASK_CLASSES, write_synthetic_task


def test_generated_task_is_balanced_and_multilabel_rows_have_two_classes(tmp_path):
    mc = read_labels_file(write_synthetic_task(tmp_path / "mc", train=8, valid=0, seconds=0.1)["train"])
    assert sorted(ex.labels[0] for ex in mc) == sorted(TASK_CLASSES * 2)
    ml = read_labels_file(write_synthetic_task(tmp_path / "ml", train=8, valid=0, seconds=0.1,
                                                     multilabel=True)["train"])
    assert all(len(set(ex.labels)) == 2 for ex in ml)
