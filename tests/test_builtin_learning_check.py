"""``python -m training.builtin.learning_check``: its errors (the run itself: test_pretrain.py)."""
from conftest import assert_user_error, run_module


def test_cli_missing_run_is_a_message_not_a_traceback(tmp_path):
    result = run_module("training.builtin.learning_check", "--run", tmp_path / "nothing")
    assert_user_error(result, r"error: .*nothing/last.ckpt.hearcodec not found: --run must be the OUT folder")
