"""The heareval compatibility layer (hear_codec/evaluation/compat.py).

For each breakage: with every *other* patch applied, heareval's real ``task_predictions`` fails
the way it does on an unpatched stack; with all patches it works. So these tests fail both if a
patch is dropped and if a new Lightning/torch makes a breakage un-patchable (or disappear: then
``needed()`` turns False and the patch should be deleted).

Embeddings are written directly in heareval's embeddings layout (what
heareval/embeddings/task_embeddings.py writes) so that these tests need no TensorFlow, except the
GPU-check test, which must import the embeddings runner.
"""
from __future__ import annotations

import importlib
import json
import logging
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("heareval")
pytest.importorskip("pytorch_lightning")

import torch  # noqa: E402

from hear_codec.evaluation import compat  # noqa: E402

pytestmark = pytest.mark.slow

LABELS = ["a", "b"]
# heareval's "faster" grid trimmed to one cheap point, so each run takes a second or two.
GRID = {"hidden_layers": [0], "lr": [0.1], "max_epochs": [8], "patience": [8]}


def _write_split(task: Path, split: str, emb: np.ndarray, labels: list, extra: dict | None = None) -> None:
    """One split as heareval stores it: raw float32 memmap + dimensions + pickled labels."""
    (task / f"{split}.embedding-dimensions.json").write_text(json.dumps(list(emb.shape)))
    mm = np.memmap(task / f"{split}.embeddings.npy", dtype=np.float32, mode="w+", shape=emb.shape)
    mm[:] = emb
    mm.flush()
    with open(task / f"{split}.target-labels.pkl", "wb") as f:
        pickle.dump(labels, f)
    for name, content in (extra or {}).items():
        (task / name).write_text(json.dumps(content))


def _write_task(root: Path, name: str, embedding_type: str) -> Path:
    """A tiny, separable 2-label task (scene multiclass or event multilabel), splits train/valid/test."""
    task = root / name
    task.mkdir(parents=True)
    evaluation = ["top1_acc"] if embedding_type == "scene" else ["event_onset_200ms_fms"]
    metadata = {
        "task_name": name, "version": "test", "embedding_type": embedding_type,
        "prediction_type": "multiclass" if embedding_type == "scene" else "multilabel",
        "split_mode": "trainvaltest", "splits": ["train", "valid", "test"], "sample_duration": 2.0,
        "evaluation": evaluation, "evaluation_params": {"task_specific_param_grid": GRID},
    }
    if embedding_type == "event":
        # A single post-processing point keeps scoring fast.
        metadata["evaluation_params"]["event_postprocessing_grid"] = {"median_filter_ms": [0], "min_duration": [0]}
    (task / "task_metadata.json").write_text(json.dumps(metadata))
    (task / "labelvocabulary.csv").write_text("idx,label\n0,a\n1,b\n")
    rng = np.random.default_rng(0)
    for split in metadata["splits"]:
        if embedding_type == "scene":
            y = np.arange(8) % 2
            emb = (rng.standard_normal((8, 4)) * 0.1 + y[:, None] * 3).astype(np.float32)
            _write_split(task, split, emb, [[LABELS[i]] for i in y])
        else:
            # 2 files x 20 frames at 50 ms; label "a" in frames 5-14 of every file.
            ts = [50.0 * i for i in range(20)]
            active = np.array([5 <= i < 15 for i in range(20)] * 2)
            emb = (rng.standard_normal((40, 4)) * 0.1 + active[:, None] * 3).astype(np.float32)
            files = [f"{split}-{k}.wav" for k in range(2)]
            frame_labels = [["a"] if a else [] for a in active]
            _write_split(task, split, emb, frame_labels, {
                f"{split}.filename-timestamps.json": [[str(task / split / f), t] for f in files for t in ts],
                f"{split}.json": {f: [{"label": "a", "start": 250.0, "end": 700.0}] for f in files},
            })
    return task


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("embeddings")
    return {kind: _write_task(root, f"tiny_{kind}", kind) for kind in ("scene", "event")}


@pytest.fixture
def heareval_predictions():
    """heareval's task_predictions module, freshly reloaded (unpatched); reloaded again after."""
    module = importlib.import_module("heareval.predictions.task_predictions")
    importlib.reload(module)
    yield module
    importlib.reload(module)


def _apply_all_but(skip: str) -> None:
    for patch in compat.PATCHES:
        if patch.name != skip and patch.needed() and not patch.applied():
            patch.apply_()


def _run(tp, task: Path, tmp_path: Path, monkeypatch) -> dict:
    monkeypatch.chdir(tmp_path)  # heareval writes Lightning logs under ./logs
    embedding_size = json.loads((task / "train.embedding-dimensions.json").read_text())[1]
    for done in task.glob("*.predicted-scores.json"):
        done.unlink()
    tp.task_predictions(
        embedding_path=task, embedding_size=embedding_size, grid_points=1, gpus=None,
        in_memory=True, deterministic=True, grid="faster", logger=logging.getLogger("test"),
    )
    return json.loads((task / "test.predicted-scores.json").read_text())


BREAKAGES = [
    # (patch, task kind, exception heareval raises without it, text in the message)
    ("trainer_gpus", "scene", TypeError, "gpus"),
    ("epoch_end_hooks", "scene", NotImplementedError, "validation_epoch_end"),
    ("checkpoint_loading", "scene", pickle.UnpicklingError, "weights_only"),
    ("test_epoch", "event", KeyError, r"^\d+$"),  # the best epoch, missing from the lookup
]


@pytest.mark.parametrize("name,kind,error,message", BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_each_breakage_is_real_and_patched(name, kind, error, message, tasks, heareval_predictions, tmp_path, monkeypatch):
    patch = next(p for p in compat.PATCHES if p.name == name)
    assert patch.needed(), f"{name}: the breakage is gone from this stack; delete the patch"
    _apply_all_but(name)
    assert not patch.applied()
    with pytest.raises(error, match=message):
        _run(heareval_predictions, tasks[kind], tmp_path, monkeypatch)


@pytest.mark.parametrize("kind", ["scene", "event"])
def test_all_patches_make_predictions_work(kind, tasks, heareval_predictions, tmp_path, monkeypatch):
    status = compat.apply()
    # heareval's predictions module was just reloaded, so its four patches are applied afresh.
    assert [status[name] for name, *_ in BREAKAGES] == ["applied"] * len(BREAKAGES)
    assert all(p.applied() for p in compat.PATCHES if p.needed())
    scores = _run(heareval_predictions, tasks[kind], tmp_path, monkeypatch)
    primary = "test_top1_acc" if kind == "scene" else "test_event_onset_200ms_fms"
    assert scores["test"][primary] > 0.9, scores


def test_apply_is_idempotent(heareval_predictions):
    compat.apply()
    wrapped = heareval_predictions.task_predictions_test, heareval_predictions.pl
    status = compat.apply()
    assert set(status.values()) <= {"already applied", "not needed"}
    assert (heareval_predictions.task_predictions_test, heareval_predictions.pl) == wrapped


def test_trainer_gpus_mapping():
    assert compat.trainer_kwargs_for_gpus(None) == {"accelerator": "cpu", "devices": 1}
    assert compat.trainer_kwargs_for_gpus([0]) == {"accelerator": "gpu", "devices": [0]}
    assert compat.trainer_kwargs_for_gpus(2) == {"accelerator": "gpu", "devices": 2}


def test_trusting_torch_load_is_scoped(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"hidden_norm": torch.nn.BatchNorm1d}, path)
    original = torch.load
    with compat.trusting_torch_load():
        assert torch.load(path)["hidden_norm"] is torch.nn.BatchNorm1d
    assert torch.load is original
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)  # outside the block torch's safe default is back


def test_gpu_device_name_accepts_str_and_bytes(monkeypatch):
    gpu_max_mem = importlib.import_module("heareval.gpu_max_mem")
    monkeypatch.setattr(gpu_max_mem, "device_name", gpu_max_mem.device_name)  # restored after
    monkeypatch.setattr(gpu_max_mem, "nvmlDeviceGetHandleByIndex", lambda i: i, raising=False)
    compat._apply_gpu_device_name()
    for raw in ("NVIDIA H100", b"NVIDIA H100"):
        monkeypatch.setattr(gpu_max_mem, "nvmlDeviceGetName", lambda h, raw=raw: raw, raising=False)
        assert gpu_max_mem.device_name() == "NVIDIA H100"


def test_embeddings_runner_gpu_check(monkeypatch):
    """On a machine where torch sees a GPU and tensorflow-cpu none, the runner refuses to import;
    through compat it imports."""
    pytest.importorskip("tensorflow")
    if torch.cuda.is_available():
        pytest.importorskip("pynvml")  # heareval.gpu_max_mem needs it on GPU machines
    importlib.import_module("heareval.gpu_max_mem")  # imported for real (CPU) before faking a GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert compat.embeddings_gpu_check_fails()
    monkeypatch.delitem(sys.modules, "heareval.embeddings.runner", raising=False)
    with pytest.raises(ValueError, match="GPUs not available in tensorflow"):
        importlib.import_module("heareval.embeddings.runner")
    sys.modules.pop("heareval.embeddings.runner", None)
    runner = compat.import_embeddings_runner()
    assert callable(runner.runner)
    import tensorflow as tf
    assert not getattr(tf.test.is_gpu_available, "__name__", "") == "<lambda>"  # restored


def test_import_hear_codec_stays_light():
    code = ("import sys, hear_codec; bad = [m for m in ('heareval', 'tensorflow', 'hear_codec.evaluation') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
