"""Synthetic HEAR tasks (hear_codec/evaluation/tasks.py): the sample-rate check. The tasks in
heareval's runs: test_evaluation_predictions.py."""
import pytest

pytest.importorskip("heareval")
pytest.importorskip("tensorflow")

from hear_codec.evaluation import tasks  # noqa: E402

pytestmark = pytest.mark.slow


def test_wrong_sample_rate_is_explained(tmp_path):
    task = tasks.make_scene_task(tmp_path, "t", files_per_split=1, sample_rates=(16000,))
    with pytest.raises(FileNotFoundError, match="no 48000 Hz audio.*sample_rate"):
        tasks.check_sample_rate(task, 48000)
