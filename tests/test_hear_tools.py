"""The real HEAR tools on our plugin: hear-validator, and heareval's embeddings runner on
generated HEAR-format tasks (one scene, one event), checking what it saves."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import tool
from hear_codec.evaluation.tasks import make_event_task, make_scene_task

ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}


def run(cmd, cwd=None, timeout=600):
    result = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.parametrize("front_end", ["mel256", "ec"])
def test_hear_validator_accepts_checkpoint(tiny_checkpoints, front_end):
    out = run([tool("hear-validator"), "hear_codec", "--model", str(tiny_checkpoints[front_end])])
    assert "Looks good!" in out.stdout


def test_heareval_embeddings_runner(tiny_checkpoints, tmp_path):
    tasks = tmp_path / "tasks"
    make_scene_task(tasks, "scene", files_per_split=3, duration=1.0, sample_rates=[16000])
    make_event_task(tasks, "event", files_per_split=2, duration=2.0, sample_rates=[16000])
    options = json.dumps({"sample_rate": 16000})
    run([sys.executable, "-m", "heareval.embeddings.runner", "hear_codec", "--model",
         str(tiny_checkpoints["mel256"]), "--tasks-dir", str(tasks), "--model-options", options],
        cwd=tmp_path)
    roots = list((tmp_path / "embeddings").iterdir())
    assert [r.name for r in roots] == ["hear_codec-sample-rate=16000"]  # options are slugified into the name
    scene = roots[0] / "scene"
    embeddings = sorted(scene.glob("*/*.embedding.npy"))  # <split>/<file>.embedding.npy
    assert len(embeddings) == 9  # 3 files x train/valid/test
    for path in embeddings:
        e = np.load(path)
        assert e.shape == (64,) and e.dtype == np.float32 and np.isfinite(e).all()
    event = roots[0] / "event"
    stamps = sorted(event.glob("*/*.timestamps.json"))
    assert len(stamps) == 6
    for path in stamps:
        ts = np.array(json.loads(path.read_text()))
        e = np.load(str(path).replace(".timestamps.json", ".embedding.npy"))
        assert e.shape == (len(ts), 64)
        # 2 s at 16 kHz -> 48000 samples at 24 kHz -> 149 mel frames, centres (318 k + 318.5) / 24 ms
        assert len(ts) == 149
        np.testing.assert_allclose(ts, (318 * np.arange(149) + 318.5) / 24, atol=1e-3)
