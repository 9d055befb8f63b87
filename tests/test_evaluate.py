"""``python -m hear_codec.evaluate``: a run end to end on a random-weight checkpoint (only a sane,
finite score is expected), its input checks and its errors."""
import csv
import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import assert_user_error, run_module
from hear_codec.evaluation import tasks

EASY_GRID = tasks.QUICK_PARAM_GRID
needs_heareval = pytest.mark.skipif(not (importlib.util.find_spec("heareval") and importlib.util.find_spec("tensorflow")),
                                    reason="heareval and tensorflow are not installed")


def test_cli_missing_checkpoint_is_a_message_not_a_traceback(tmp_path):
    result = run_module("hear_codec.evaluate", tmp_path / "model.ckpt", "--tasks-dir", tmp_path, "--out", tmp_path / "o")
    assert_user_error(result, r"checkpoint .*model.ckpt does not exist")


@pytest.mark.slow
@needs_heareval
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


@pytest.mark.slow
@needs_heareval
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


@pytest.mark.slow
@needs_heareval
def test_out_dir_keeps_one_run(tmp_path):
    from hear_codec import evaluate

    fast = evaluate.run_settings("hear_codec", "m.pt", {}, "fast", None)
    evaluate.check_out_dir(tmp_path, fast)  # empty folder: fine
    (tmp_path / "run.json").write_text(json.dumps(fast))
    evaluate.check_out_dir(tmp_path, fast)  # same settings: resume
    with pytest.raises(ValueError, match="other settings"):
        evaluate.check_out_dir(tmp_path, evaluate.run_settings("hear_codec", "m.pt", {"sample_rate": 16000}, "fast", None))


def fake_hub(tmp_path, name="encodecmae-base"):
    """The Hugging Face hub's offline cache layout holding a tiny v1 ``name``: HF_HUB_CACHE for it."""
    from test_published import SNAPSHOT, tiny_v1_folder
    repo = tmp_path / "hub" / f"models--lpepino--{name}"
    tiny_v1_folder(repo / "snapshots" / SNAPSHOT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT)
    return tmp_path / "hub"


def run_offline(tmp_path, module, *args, **env):
    from test_published import offline_env
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], env=offline_env(tmp_path, **env),
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)


def test_published_offline_without_the_weights_is_one_line(tmp_path):
    tasks.make_scene_task(tmp_path / "tasks", "synthetic_scene", files_per_split=2, sample_rates=(48000,))
    result = run_offline(tmp_path, "hear_codec.evaluate", "--published", "encodecmae-base", "--tasks-dir",
                         tmp_path / "tasks", "--out", tmp_path / "o")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = [x for x in result.stderr.splitlines() if "cannot download" in x]
    assert "cannot download encodecmae-base (offline?)" in line
    assert_user_error(run_module("hear_codec.evaluate", "--tasks-dir", tmp_path), "give a CHECKPOINT or --published")
    assert_user_error(run_module("hear_codec.evaluate", "m.ckpt", "--published", "encodecmae-base", "--tasks-dir",
                                 tmp_path), "give a CHECKPOINT or --published")


@pytest.mark.slow
@needs_heareval
def test_evaluate_published_weights_in_one_command(tmp_path):
    """``--published NAME`` with the weights in the hub's cache (offline): embeddings, predictions, table."""
    tasks.make_scene_task(tmp_path / "tasks", "synthetic_scene", files_per_split=8, sample_rates=(48000,),
                          param_grid=EASY_GRID)
    out = tmp_path / "out"
    result = run_offline(tmp_path, "hear_codec.evaluate", "--published", "encodecmae-base", "--tasks-dir",
                         tmp_path / "tasks", "--grid", "fast", "--out", out, HF_HUB_CACHE=str(fake_hub(tmp_path)))
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out / "scores.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["task"] == "synthetic_scene" and 0.0 <= float(row["score"]) <= 1.0
    embedded = out / "embeddings" / "hear_codec-published=encodecmae-base" / "synthetic_scene"
    assert (embedded / "prediction-done.json").is_file()
    assert json.loads((out / "run.json").read_text())["model_options"] == {"published": "encodecmae-base"}
