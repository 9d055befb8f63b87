"""``python -m hear_codec.evaluate``: its input checks and its errors (heareval runs: test_evaluation_predictions.py)."""
from conftest import assert_user_error, run_module


def test_cli_missing_checkpoint_is_a_message_not_a_traceback(tmp_path):
    result = run_module("hear_codec.evaluate", tmp_path / "model.ckpt", "--tasks-dir", tmp_path, "--out", tmp_path / "o")
    assert_user_error(result, r"checkpoint .*model.ckpt does not exist")
