"""Self-describing checkpoints: one file rebuilds its model with nothing else.

A checkpoint is a ``torch.save``d dict of plain data (loaded with ``weights_only=True``, so no
pickled code runs)::

    {"format": "hear_codec", "format_version": 1, "family": "encodecmae" | "audioformer",
     "config": {...}, "state_dict": {...}, "metadata": {...}}

Model families register here by name; each exposes ``config`` (with ``to_dict``) and is rebuilt
by its module's ``build(config_dict)``.
"""
from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path

import torch

FORMAT = "hear_codec"
FORMAT_VERSION = 1
# family -> module with build(config: dict) -> nn.Module
FAMILIES = {
    "encodecmae": "hear_codec.encodecmae",
    "audioformer": "hear_codec.audioformer",
}


class CheckpointError(ValueError):
    """A file that is missing, damaged, foreign, or of an unsupported version."""


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, metadata: dict | None = None) -> Path:
    """Write ``model`` atomically (temporary file in the same folder, then rename).

    ``metadata`` defaults to the model's own (what load_checkpoint put on ``model.metadata``).
    """
    family = getattr(model, "family", None)
    if family not in FAMILIES:
        raise ValueError(f"cannot save a model of family {family!r}; known: {sorted(FAMILIES)}")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "family": family,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": dict(metadata if metadata is not None else getattr(model, "metadata", {})),
    }
    return atomic_torch_save(payload, path)


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """torch.save to ``path`` so that a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load and validate a hear_codec checkpoint dict (no model is built)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, expected a hear_codec checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"{path} could not be read as a checkpoint (truncated, damaged, or not a torch file): {e}"
        ) from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a hear_codec checkpoint (expected a dict with format={FORMAT!r}, "
            f"family, config and state_dict)"
        )
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this hear_codec reads version {FORMAT_VERSION}"
        )
    if payload.get("family") not in FAMILIES:
        raise CheckpointError(f"{path}: unknown model family {payload.get('family')!r}; known: {sorted(FAMILIES)}")
    for key in ("config", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"{path}: checkpoint has no {key} dict")
    return payload


def build_model(family: str, config: dict) -> torch.nn.Module:
    if family not in FAMILIES:
        raise CheckpointError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}")
    return importlib.import_module(FAMILIES[family]).build(config)


def load_checkpoint(path: str | os.PathLike) -> torch.nn.Module:
    """Rebuild the model stored in ``path`` (eval mode, on CPU); metadata is on ``model.metadata``."""
    payload = read_checkpoint(path)
    try:
        model = build_model(payload["family"], payload["config"])
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: weights do not match the stored config: {e}") from e
    model.metadata = payload.get("metadata", {})
    return model.eval()
