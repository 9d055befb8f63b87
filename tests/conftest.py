"""Shared test fixtures: reference-data locations, tiny checkpoints, paths to the venv's tools."""
from __future__ import annotations

import csv
import errno
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
# CI clones the repo with shared/ beside it: ../shared/fixtures (HEAR_CODEC_FIXTURES overrides it).
FIXTURES = Path(os.environ.get("HEAR_CODEC_FIXTURES") or REPO.parent / "shared" / "fixtures")
ENCODECMAE_FIXTURES = FIXTURES / "encodecmae_official"
ENCLAP_FIXTURES = FIXTURES / "enclap_official"
BIN = Path(sys.executable).parent


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip where no CUDA GPU is visible (run them with ``-m cuda`` on one)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (benchmarks/gpu_check.sh runs these on one)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def tool(name: str) -> str:
    """A console script installed next to the running interpreter (e.g. hear-validator)."""
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed next to {sys.executable}; run `make venv`")
    return str(path)


def run_module(module: str, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m module args`` as a user runs it (this checkout first on the path, hub offline)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=timeout)


def assert_user_error(result: subprocess.CompletedProcess, match: str) -> None:
    """A command line's answer to an error the user can fix (hear_codec/cli.py): exit status 2 and
    a message matching ``match`` on stderr, with no traceback."""
    assert result.returncode == 2, f"exit status {result.returncode}:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert re.search(match, result.stderr), result.stderr[-3000:]


def fixtures_required() -> bool:
    """In CI (CI=true) or with HEAR_CODEC_REQUIRE_FIXTURES=1 the parity tests must run, never skip."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("HEAR_CODEC_REQUIRE_FIXTURES") == "1"


def require_fixture(path: Path) -> Path:
    """``path`` if it exists; otherwise skip the test, or fail it where fixtures are required."""
    if not path.exists():
        message = f"reference data {path} is absent (it lives in ../shared/fixtures beside the repo)"
        if fixtures_required():
            pytest.fail(f"{message}; CI=true or HEAR_CODEC_REQUIRE_FIXTURES=1 requires it", pytrace=False)
        pytest.skip(message)
    return path


def assert_log_mel_close(ours: torch.Tensor, ref: torch.Tensor, mean: float = -6.12, std: float = 4.82) -> None:
    """Normalised log-mel features [batch, frames, bins] agree with the official ones elementwise.

    Bound: 1e-4 in the normalised log domain, or an energy error of 1e-10 of the frame's total
    mel energy, whichever is larger. Why two regimes: a bin more than ~60 dB below its frame
    (low bins after DC removal and pre-emphasis) is computed by fp32 rounding noise, and
    that noise differs between CPUs' FFT kernels. On the mel fixture the official features
    themselves are 2.2e-4 from an fp64 run of the same computation at such a bin (128 dB
    below its frame), so a flat 1e-4 bound only held on a CPU that rounds like the one that
    made the fixture (AVX2: 4e-5 here; AVX-512: 3.7e-4).
    """
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    energy = (ref.double() * std + mean).exp()  # [B, F, bins]
    frame_total = energy.sum(dim=-1, keepdim=True)
    allowed = torch.maximum(torch.full_like(energy, 1e-4), 1e-10 * frame_total / energy / std)
    error = (ours.double() - ref.double()).abs()
    worst = int((error - allowed).argmax())
    assert (error <= allowed).all(), (
        f"log-mel features differ by {error.flatten()[worst]:.3g} at flat index {worst} "
        f"(allowed {allowed.flatten()[worst]:.3g}); max difference {error.max():.3g}")


def noise(n, seconds, sr, seed=0):
    """Uniform noise in [-0.5, 0.5), [n, seconds * sr], the same for a seed."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, int(seconds * sr), generator=g) * 2 - 1) * 0.5


def write_noise_wav(path, seconds=0.4, rate=16_000, seed=0):
    """A mono float wav of Gaussian noise (std 0.1) at ``path``."""
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32), rate)


def write_csv(path, header, rows):
    """A CSV file of a header row and ``rows``; returns its path."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


class FillingFile(io.FileIO):
    """A file on a disk with ``room`` bytes left: a write beyond them fails as the kernel's does
    (ENOSPC, or EDQUOT for a quota)."""

    room = 50_000
    error = errno.ENOSPC

    def write(self, data):
        if self.tell() + len(memoryview(data)) > self.room:
            raise OSError(self.error, os.strerror(self.error))
        return super().write(data)


def fill_disk(monkeypatch, which=lambda path: True):
    """Make the files hear_codec.files opens for writing (``which(path)`` says which) fill up after
    FillingFile.room bytes, as on a nearly full disk. Returns FillingFile, whose ``room`` and
    ``error`` a test may change."""
    from hear_codec import files

    def fake_open(path, mode="r", *args, **kwargs):
        if "w" in mode and which(str(path)):
            return FillingFile(path, "w")
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(files, "open", fake_open, raising=False)
    monkeypatch.setattr(FillingFile, "room", FillingFile.room)
    monkeypatch.setattr(FillingFile, "error", FillingFile.error)
    return FillingFile


@pytest.fixture
def filling_disk(monkeypatch):
    """Every file hear_codec.files opens for writing fills up after FillingFile.room bytes."""
    return fill_disk(monkeypatch)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """{front_end: path} of random-weight tiny EnCodecMAE checkpoints (mel256 and ec)."""
    import hear_codec
    from hear_codec.checkpoint import save_checkpoint

    out = tmp_path_factory.mktemp("checkpoints")
    paths = {}
    for front_end in ("mel256", "ec"):
        model = hear_codec.load_model(random_weights=f"encodecmae-tiny-{front_end}", seed=0).model
        paths[front_end] = save_checkpoint(out / f"tiny-{front_end}.pt", model, {"note": "random weights"})
    return paths


@pytest.fixture(scope="session")
def predicted(tmp_path_factory):
    """Run heareval's embeddings and predictions commands with the spectral baseline on the three
    synthetic tasks (16 kHz audio): {task name: its embeddings folder}. Shared by the prediction
    and score tests, so heareval trains once."""
    from hear_codec.evaluation import embeddings, predictions, tasks

    baseline = "hear_codec.evaluation.spectral_baseline"
    root = tmp_path_factory.mktemp("hear")
    made = tasks.make_synthetic_tasks(root / "tasks", sample_rates=(16000,), param_grid=tasks.QUICK_PARAM_GRID)
    embeddings.main([baseline, "--tasks-dir", str(root / "tasks"), "--embeddings-dir", str(root / "embeddings")])
    task_dirs = [root / "embeddings" / baseline / t.name for t in made]
    predictions.main([str(t) for t in task_dirs] + ["--grid", "faster", "--grid-points", "1"])
    return {t.name: t for t in task_dirs}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A random-weight tiny EnCodecMAE (1 s chunks, offline codec) saved as a self-training teacher."""
    from hear_codec import encodecmae as emae
    from hear_codec.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = emae.preset("tiny", codec_weights="offline", chunk_seconds=1.0)
    path = tmp_path_factory.mktemp("teacher") / "teacher.hearcodec"
    save_checkpoint(path, emae.EncodecMAE(cfg), metadata={"preset": "tiny"})
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one thread avoids oversubscription (several x faster).
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def rng():
    return torch.Generator().manual_seed(1234)
