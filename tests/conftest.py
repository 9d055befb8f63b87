"""Shared test fixtures: reference-data locations, tiny checkpoints, paths to the venv's tools."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# CI clones the repo with shared/ beside it: ../shared/fixtures.
FIXTURES = REPO.parent / "shared" / "fixtures"
ENCODECMAE_FIXTURES = FIXTURES / "encodecmae_official"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A console script installed next to the running interpreter (e.g. hear-validator)."""
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed next to {sys.executable}; run `make venv`")
    return str(path)


def require_fixture(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (it lives in ../shared/fixtures beside the repo)")
    return path


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
