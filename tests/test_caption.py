"""``python -m training.caption``: its subcommands end to end on tiny settings, and its errors."""
from conftest import assert_user_error, run_module


def test_cli_missing_feature_cache_is_a_message_not_a_traceback(tmp_path):
    result = run_module("training.caption", "train", "--train", tmp_path / "cache-train", "--val", tmp_path / "cache-val",
                        "--out", tmp_path / "run", "--model", "tiny")
    assert_user_error(result, r"error: .*cache-train is not a feature cache \(no manifest.json\)")
