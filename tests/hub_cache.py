"""Published EnCodecMAE weights without the network: tiny random models in the published formats,
and a Hugging Face hub cache that holds them, for subprocesses run with HF_HUB_OFFLINE=1.

Shared by tests/test_published.py, tests/test_evaluate.py, tests/test_embed.py and
tests/test_readme.py.
"""
from __future__ import annotations

import os
import subprocess
import sys

import torch

from hear_codec import published
from hear_codec.codec import build_encoder
from official_encodecmae_helpers import REPO, official_state, v1_gin, v2_gin

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


def tiny_v2_file(path):
    """A v2 published file (one .pt, gin config inside): a 32-wide mel256 model, self-trained head."""
    torch.save({"imports": "", "config": v2_gin("mel256", dim=32, heads=4, st=True),
                "state_dict": official_state("v2", 32, 2, 1, 64, 256, streams=1)}, path)
    return path


def tiny_v1_folder(folder):
    """A v1 published folder (model.pt + config.gin): a 32-wide ec model, 8 EnCodec streams + 1 k-means."""
    folder.mkdir(parents=True, exist_ok=True)
    state = official_state("v1", 32, 2, 1, 64, 128, streams=8, extra_streams=1,
                           codec_encoder_state=build_encoder().state_dict())
    torch.save({"state_dict": state}, folder / "model.pt")
    (folder / "config.gin").write_text(v1_gin(dim=32, heads=4, extra_targets=1))
    return folder


def offline_env(tmp_path, **extra):
    """The environment of a subprocess that cannot download: HF_HUB_OFFLINE=1, its own HF_HOME and
    local published folder under ``tmp_path``, this checkout on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "HEAR_CODEC_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"),
               HEAR_CODEC_PUBLISHED_DIR=str(tmp_path / "published"), PYTHONPATH=str(REPO), **extra)
    return env


def fake_hub(tmp_path, *names):
    """The Hugging Face hub's offline cache layout (``models--owner--repo/snapshots/<rev>``,
    ``refs/main``) holding a tiny model for each published ``name`` (default: encodecmae-base), in
    its own layout (v2: the .pt file; v1: model.pt + config.gin). Returns the folder for HF_HUB_CACHE."""
    hub = tmp_path / "hub"
    first_v1 = None
    for name in names or ("encodecmae-base",):
        model = published.resolve(name)
        repo = hub / f"models--{model.repo_id.replace('/', '--')}"
        snapshot = repo / "snapshots" / SNAPSHOT
        snapshot.mkdir(parents=True, exist_ok=True)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(SNAPSHOT)
        if model.layout == "v2":
            tiny_v2_file(snapshot / model.files[0])
        elif first_v1 is None:
            first_v1 = tiny_v1_folder(snapshot)
        else:  # the hub's snapshots are links to blobs too; one tiny v1 model serves every v1 name
            for f in model.files:
                (snapshot / f).symlink_to(first_v1 / f)
    return hub


def run_offline(tmp_path, module, *args, **env):
    """``python -m module args`` in ``tmp_path`` with :func:`offline_env` (plus ``env``)."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], env=offline_env(tmp_path, **env),
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
