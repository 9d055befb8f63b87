"""Checkpoint files: write and load ours, and tell every format hear_codec reads apart.

Every format is recognised by its content, never by its name, and read once (:func:`detect`):

* **ours, format 2** (what :func:`save_checkpoint` writes): a safetensors file holding the
  model's state_dict. The header's metadata (JSON text, readable without loading the weights)::

      format "hear_codec", format_version "2", family "encodecmae" | "audioformer",
      config {...}, metadata {...}, weights_sha256 {tensor name: sha256 hex}

* **ours, format 1** (written before weight hashes existed): a ``torch.save``d dict
  ``{"format", "format_version": 1, "family", "config", "state_dict", "metadata"}``, read with
  ``weights_only=True``. It loads with a one-line notice that its weights cannot be checked.
* **published EnCodecMAE** (habla-liaa/encodecmae): a v2 ``.pt`` file (a dict with a gin
  ``config`` string and a ``state_dict``) or a v1 folder (``model.pt`` + ``config.gin``),
  recognised by hear_codec/published.py and converted to our model by hear_codec/convert.py.
  :func:`load_checkpoint` loads our format only; ``hear_codec.load_model`` and
  ``hear_codec.convert.load_any`` load either.

Before a model is built, the shapes its stored config implies are checked against the tensors in
the file (the model is first built on torch's ``meta`` device, which allocates nothing), so a
header whose config claims a vocabulary of 2^22 in a 3 MB file is refused at once, not after
allocating gigabytes.

The weight hash: each tensor's sha256 over its dtype and shape (``"float32[768, 256]"``) and then
its bytes (C order, little-endian), written at save time and checked on every load, so damage
anywhere in the weights fails with :class:`DamagedCheckpointError` naming the tensors.

Why safetensors for format 2 rather than a torch file with a hash field: loading our files runs no
unpickler at all (``weights_only=True`` is a restricted unpickler whose code-execution holes were
fixed in torch 2.6, CVE-2025-32434, and 2.10, CVE-2026-24747, while we support torch >= 2.4); the
config and metadata are JSON that any tool reads without our code or the weights; the reader checks
that the header's offsets cover the file exactly (truncation); it is the Hugging Face hub's
convention. Peak memory is the same as for the torch file; the price of either format with hashes
is one sha256 pass over the weights per load, less than building the model takes.

Model families register in :data:`FAMILIES`; each model has ``family``, ``config`` (with
``to_dict``) and is rebuilt by its module's ``build(config_dict)``.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from . import published
from .errors import CheckpointError, DamagedCheckpointError, UnknownFormatError
from .files import atomic_path

FORMAT = "hear_codec"
FORMAT_VERSION = 2  # safetensors + weight hashes
TORCH_FORMAT_VERSION = 1  # the torch.save dict written before weight hashes; still read
# family -> module with build(config: dict) -> nn.Module
FAMILIES = {
    "encodecmae": "hear_codec.encodecmae",
    "audioformer": "hear_codec.audioformer",
}
ACCEPTED = ("hear_codec loads:\n"
            "  - its own checkpoints (written by save_checkpoint or `python -m hear_codec.convert`);\n"
            + published.FORMATS)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, metadata: dict | None = None) -> Path:
    """Write ``model`` in format 2, atomically (temporary file in the same folder, then rename).

    ``metadata`` (JSON data) defaults to the model's own (what load_checkpoint put on ``model.metadata``).
    """
    family = getattr(model, "family", None)
    if family not in FAMILIES:
        raise ValueError(f"cannot save a model of family {family!r}; known: {sorted(FAMILIES)}")
    metadata = dict(metadata if metadata is not None else getattr(model, "metadata", {}))
    try:
        metadata_json = json.dumps(metadata)
    except TypeError as e:
        raise ValueError(f"checkpoint metadata must be JSON data (str, numbers, bools, None, lists, dicts): {e}") from e
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "family": family,
        "config": json.dumps(model.config.to_dict()),
        "metadata": metadata_json,
        "weights_sha256": json.dumps({k: tensor_sha256(v) for k, v in state.items()}),
    }
    with atomic_path(path) as tmp:
        safetensors.torch.save_file(state, tmp, metadata=header)
    return Path(path)


def tensor_sha256(tensor: torch.Tensor) -> str:
    """sha256 (hex) of ``"<dtype><shape>"``, e.g. ``"float32[768, 256]"``, then the tensor's bytes in C order."""
    t = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{str(t.dtype).removeprefix('torch.')}{list(t.shape)}".encode())
    digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def load_checkpoint(path: str | os.PathLike) -> torch.nn.Module:
    """The model in our checkpoint ``path`` (eval mode, on CPU), read once; its metadata is on
    ``model.metadata``. A published EnCodecMAE file is refused with a message that says how to
    load it (``hear_codec.load_model``, or ``python -m hear_codec.convert`` once)."""
    return model_from_checkpoint(read_checkpoint(path), str(path))


def model_from_checkpoint(payload: dict, source: str) -> torch.nn.Module:
    """The model (eval mode) rebuilt from :func:`read_checkpoint`'s dict; ``source`` names it in errors.

    The shapes the config implies are checked against the stored tensors before any weight is
    allocated: the model is built on the ``meta`` device first."""
    family = importlib.import_module(FAMILIES[payload["family"]])
    state = payload["state_dict"]
    try:
        with torch.device("meta"):
            expected = family.build(payload["config"]).state_dict()
    except (RuntimeError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise CheckpointError(f"{source}: its stored config does not describe a {payload['family']} model: "
                              f"{type(e).__name__}: {e}") from e
    _check_shapes(source, expected, state)
    try:
        model = family.build(payload["config"])
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"{source}: weights do not match the stored config: {e}") from e
    model.metadata = payload["metadata"]
    return model.eval()


def _check_shapes(source: str, expected: dict, state: dict) -> None:
    """Raise CheckpointError unless ``state`` has exactly the tensors of ``expected`` (a state_dict
    on the meta device), shape for shape."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {list(state[k].shape)} (the config implies {list(v.shape)})"
             for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    for keys, what in ((missing, "missing"), (unexpected, "not in the model"), (wrong, "of another shape")):
        if keys:
            problems.append(f"{len(keys)} tensors {what}: {', '.join(keys[:4])}" + (", ..." if len(keys) > 4 else ""))
    if problems:
        raise CheckpointError(f"{source}: weights do not match the stored config: " + "; ".join(problems))


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Our checkpoint as plain data, checked, no model built: {"format", "format_version", "family",
    "config", "state_dict", "metadata"}."""
    kind, payload = detect(path)
    if kind != "hear_codec":
        raise CheckpointError(f"{path} is a published EnCodecMAE model ({kind}), not a hear_codec checkpoint: "
                              f"load it with hear_codec.load_model({str(path)!r}), or convert it once with "
                              f"`python -m hear_codec.convert {path} model.hearcodec`")
    return payload


def detect(path: str | os.PathLike, allow_pickle: bool = False) -> tuple:
    """(kind, payload) for ``path``, read once: kind is 'hear_codec', 'encodecmae-v2' or 'encodecmae-v1'.

    payload: for ours, :func:`read_checkpoint`'s dict (weights checked against their hashes); for
    the published kinds, what hear_codec.published.recognise returns. A missing path raises
    FileNotFoundError; anything unreadable, damaged or foreign a :class:`CheckpointError` naming
    the path.
    """
    if isinstance(path, str) and not path.strip():
        raise CheckpointError(f"the checkpoint path is empty ({path!r}): give a file")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        weights = published.v1_weights(path)
        if weights is None:
            raise UnknownFormatError(f"{path} is a folder, but neither a hear_codec checkpoint file nor a v1 folder "
                                     f"with {published.V1_WEIGHTS} and {published.V1_CONFIG}.\n{ACCEPTED}")
        found = published.recognise(weights, _torch_load(weights, allow_pickle))
        if found is None:
            raise UnknownFormatError(f"{weights} does not hold an EnCodecMAE state_dict.\n{ACCEPTED}")
        return found
    if not path.is_file():  # opening a FIFO would wait for a writer; a device could be endless
        raise CheckpointError(f"{path} is not a regular file (a pipe, device or socket): give a checkpoint file")
    if _is_safetensors(path):
        return "hear_codec", _read_safetensors(path)
    payload = _torch_load(path, allow_pickle)
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        return "hear_codec", _read_torch_format(path, payload)
    found = published.recognise(path, payload)
    if found is not None:
        return found
    what = type(payload).__name__ + (f" with keys {sorted(map(str, payload))[:6]}" if isinstance(payload, dict) else "")
    raise UnknownFormatError(f"{path} is not a hear_codec checkpoint nor a published EnCodecMAE model "
                             f"(found a {what}).\n{ACCEPTED}")


def _read_failed(path: Path, error: OSError) -> CheckpointError:
    """An I/O error (a bad disk, a lost network mount) as a CheckpointError that names the file."""
    return CheckpointError(f"{path}: cannot read the file ({error.strerror or error})")


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with its header's length (8 bytes, little-endian) and then '{'."""
    try:
        with open(path, "rb") as f:
            start = f.read(9)
    except OSError as e:
        raise _read_failed(path, e) from e
    return len(start) == 9 and start[8:] == b"{" and int.from_bytes(start[:8], "little") < path.stat().st_size


def _read_safetensors(path: Path) -> dict:
    try:
        with safetensors.safe_open(path, framework="pt") as f:
            header = f.metadata() or {}
            if header.get("format") != FORMAT:
                raise UnknownFormatError(f"{path} is a safetensors file but not a hear_codec checkpoint "
                                         f"(its header has no format={FORMAT!r}).\n{ACCEPTED}")
            _check_version_and_family(path, header.get("format_version"), str(FORMAT_VERSION), header.get("family"))
            try:
                config, metadata, hashes = (json.loads(header[k]) for k in ("config", "metadata", "weights_sha256"))
            except (KeyError, ValueError) as e:
                raise DamagedCheckpointError(f"damaged checkpoint {path}: its header's config, metadata or "
                                             f"weights_sha256 is missing or not JSON ({type(e).__name__}: {e})") from e
            if not isinstance(config, dict):
                raise DamagedCheckpointError(f"damaged checkpoint {path}: its header's config is a JSON "
                                             f"{type(config).__name__}, not an object of model settings")
            state = {k: f.get_tensor(k) for k in f.keys()}
    except CheckpointError:
        raise
    except OSError as e:
        raise _read_failed(path, e) from e
    except Exception as e:  # the safetensors reader: a short file, offsets that do not fit, a bad header
        raise CheckpointError(f"{path} could not be read as a checkpoint (truncated, damaged, or not a safetensors "
                              f"file): {e}") from e
    _verify_weights(path, state, hashes)
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "family": header["family"], "config": config,
            "state_dict": state, "metadata": metadata}


def _read_torch_format(path: Path, payload: dict) -> dict:
    """Our format 1: a torch.save'd dict with no weight hashes."""
    _check_version_and_family(path, payload.get("format_version"), TORCH_FORMAT_VERSION, payload.get("family"))
    for key in ("config", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"{path}: checkpoint has no {key} dict")
    log.warning("%s: checkpoint format 1 has no weight hashes, so damage cannot be detected; "
                "`python -m hear_codec.convert %s NEW` rewrites it in format %d", path, path, FORMAT_VERSION)
    return {**payload, "metadata": payload.get("metadata", {})}


def _check_version_and_family(path: Path, version, expected, family) -> None:
    if version != expected:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this hear_codec reads version {FORMAT_VERSION} "
            f"(safetensors) and version {TORCH_FORMAT_VERSION} (torch) files")
    if family not in FAMILIES:
        raise CheckpointError(f"{path}: unknown model family {family!r}; known: {sorted(FAMILIES)}")


def _verify_weights(path: Path, state: dict, hashes) -> None:
    """Raise DamagedCheckpointError unless every tensor matches the sha256 stored with it."""
    if not isinstance(hashes, dict):
        raise DamagedCheckpointError(f"damaged checkpoint {path}: its header's weights_sha256 is not a table")
    changed = [k for k in state if k in hashes and tensor_sha256(state[k]) != hashes[k]]
    unhashed = [k for k in state if k not in hashes]
    lost = [k for k in hashes if k not in state]
    problems = []
    for keys, what in ((changed, "differ from the sha256 written with them"),
                       (unhashed, "have no stored sha256"), (lost, "are listed in the header but missing")):
        if keys:
            problems.append(f"{len(keys)} of {len(state)} tensors {what}: {', '.join(keys[:8])}"
                            + (", ..." if len(keys) > 8 else ""))
    if problems:
        raise DamagedCheckpointError(
            f"damaged checkpoint {path}: " + "; ".join(problems)
            + ". The file changed after it was written (disk, copy or download error): use an intact copy.")


def _torch_load(path: Path, allow_pickle: bool = False):
    """torch.load on CPU, memory-mapped where the file format allows it; clear errors."""
    kwargs = dict(map_location="cpu", weights_only=not allow_pickle)
    try:
        try:
            return torch.load(path, mmap=True, **kwargs)
        except RuntimeError as e:
            if "mmap" not in str(e).lower():
                raise
        return torch.load(path, **kwargs)  # legacy (non-zip) torch files cannot be memory-mapped
    except OSError as e:
        raise _read_failed(path, e) from e
    except Exception as e:
        if not allow_pickle and ("Unsupported global" in str(e) or "can still be loaded" in str(e)):
            raise UnknownFormatError(
                f"{path} could not be read safely: it holds pickled Python objects besides tensors, which hear_codec "
                "does not execute by default. If you trust the file, convert it with "
                "`python -m hear_codec.convert --allow-pickle SRC DST`.") from e
        raise CheckpointError(
            f"{path} could not be read as a checkpoint (truncated, damaged, or not a torch file): {e}\n{ACCEPTED}") from e
