"""The published EnCodecMAE weights: names, where they live on the Hugging Face hub, licences,
and how their files are recognised.

``hear_codec.load_model()`` with no path loads :data:`DEFAULT`; ``load_model(published=NAME)``
(or ``--model-options '{"published": "NAME"}'``) loads another entry of :data:`PUBLISHED`.
A name not in the table can be given as ``"owner/repo/file.pt"`` (a v2-layout file on the hub).

Files are looked up first in :func:`published_dir` (``$HEAR_CODEC_PUBLISHED_DIR``, default
``~/.cache/hear_codec/published``), then fetched with ``huggingface_hub.hf_hub_download`` into
the usual Hugging Face cache. Offline, :class:`PublishedWeightsUnavailable` says which file to
download and where to put it, or how to pass a path instead. Nothing falls back to random weights.

Their files are recognised by content (:func:`recognise`, called by hear_codec.checkpoint.detect,
which reads each file once): a v2 file is a dict with a gin ``config`` string and a
``state_dict``; a v1 model is a folder with ``model.pt`` (an official state_dict) and
``config.gin``. The model's sizes, heads and front end are always read from the file's own gin
config (hear_codec/convert.py, through hear_codec/gin.py); this table only says where files are
and under which terms.

    python -m hear_codec.published          # print the table
"""
from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import cli
from .errors import CheckpointError, PublishedWeightsUnavailable, UnknownFormatError

V1_WEIGHTS, V1_CONFIG = "model.pt", "config.gin"  # a published EnCodecMAE v1 folder
FORMATS = """\
  - a published EnCodecMAE v2 file (e.g. mel256-ec-base_st.pt from lpepino/encodecmae-v2): a dict with a gin
    'config' string and a 'state_dict';
  - a published EnCodecMAE v1 folder (e.g. a snapshot of lpepino/encodecmae-base) holding model.pt and config.gin,
    or that model.pt with config.gin beside it."""
V2_REPO = "lpepino/encodecmae-v2"
ENCODEC_WEIGHTS_LICENCE = "CC BY-NC 4.0 (EnCodec 24 kHz weights, facebookresearch/encodec)"
V2_LICENCE = "not stated (no licence on the hub repo page we could find; the GitHub code repo has no LICENSE file)"
V1_LICENCE = "MIT (Hugging Face model card licence tag)"


@dataclass(frozen=True)
class PublishedModel:
    name: str
    repo_id: str
    files: tuple  # files to fetch from the repo; v2: (name.pt,), v1: (model.pt, config.gin)
    layout: str  # "v2" (one .pt with gin config inside) or "v1" (model.pt + config.gin)
    front_end: str  # as the official name says; the loaded config is read from the file itself
    description: str
    licence: str
    evidence: str  # where the name was seen

    @property
    def urls(self) -> list:
        return [f"https://huggingface.co/{self.repo_id}/resolve/main/{f}" for f in self.files]

    def local_path(self, root: Path | None = None) -> Path:
        """Where hear_codec looks for it before asking the hub: a file (v2) or a folder (v1)."""
        root = published_dir() if root is None else Path(root)
        return root / self.files[0] if self.layout == "v2" else root / self.name


def _v2(name, front_end, description, evidence):
    return PublishedModel(name, V2_REPO, (f"{name}.pt",), "v2", front_end, description,
                          V2_LICENCE + "; embeds/derives from " + ENCODEC_WEIGHTS_LICENCE, evidence)


def _v1(size, description, licence=V1_LICENCE):
    repo = f"lpepino/encodecmae-{size}"
    return PublishedModel(f"encodecmae-{size}", repo, ("model.pt", "config.gin"), "v1", "ec", description,
                          licence + "; embeds " + ENCODEC_WEIGHTS_LICENCE,
                          "encodecmae v.1.0.0 hub.py (repo list)")


PUBLISHED = {m.name: m for m in [
    _v2("mel256-ec-base_st", "mel256", "v2 Base (10 layers, 768-d), mel input, EnCodec targets, then self-training "
        "on k-means targets", "official README (habla-liaa/encodecmae @ 2dd6759) example"),
    _v2("mel256-ec-large_st", "mel256", "v2 Large (20 layers, 1024-d), mel input, self-trained; the paper's best "
        "HEAR model (12 heads of 85 channels on 1024, as the official recipe)",
        "used by name with the official loader in third-party code"),
    _v1("small", "v1 Small (5 layers, 768-d), EnCodec input and targets",
        "MIT for lpepino/encodecmae-base; this repo's tag not checked"),
    _v1("base", "v1 Base (10 layers, 768-d), EnCodec input and targets"),
    _v1("large", "v1 Large (20 layers, 1024-d), EnCodec input and targets",
        "MIT for lpepino/encodecmae-base; this repo's tag not checked"),
    _v1("base-st", "v1 Base + self-training (8 EnCodec streams + 1 k-means stream)",
        "MIT for lpepino/encodecmae-base; this repo's tag not checked"),
    _v1("large-st", "v1 Large + self-training (8 EnCodec streams + 1 k-means stream)",
        "MIT for lpepino/encodecmae-base; this repo's tag not checked"),
]}

# The default: the paper's best HEAR model (Large + self-training, normalised HEAR score 97.1).
# mel256-ec-base_st is about 3x faster; pick it with {"published": "mel256-ec-base_st"}.
DEFAULT = "mel256-ec-large_st"
DEFAULT_REASON = ("the paper's best HEAR model (v2 Large + self-training); mel256-ec-base_st is ~3x faster")

_SPEC = re.compile(r"^[\w.-]+/[\w.-]+/[\w./-]+\.pt$")


def published_dir() -> Path:
    """Folder searched before the hub: ``$HEAR_CODEC_PUBLISHED_DIR`` or ``~/.cache/hear_codec/published``."""
    env = os.environ.get("HEAR_CODEC_PUBLISHED_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hear_codec" / "published"


def resolve(name: str) -> PublishedModel:
    """A table entry, or an ad-hoc v2 entry for ``"owner/repo/file.pt"``."""
    if not isinstance(name, str):
        raise TypeError(f"published must be a model name (str), got {type(name).__name__}")
    if name in PUBLISHED:
        return PUBLISHED[name]
    if _SPEC.match(name) and ".." not in name:
        owner, repo, file = name.split("/", 2)
        return PublishedModel(Path(file).stem, f"{owner}/{repo}", (file,), "v2", "?", "hub file given by path",
                              "see the hub repo's model card", "given by the user")
    raise ValueError(f"unknown published EnCodecMAE model {name!r}. Known: {', '.join(PUBLISHED)} "
                     f"(default {DEFAULT}); or give a v2 hub file as 'owner/repo/file.pt'")


def fetch(name: str = DEFAULT, cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the published model ``name`` on this machine (a .pt file for v2, a folder for v1).

    Looks in :func:`published_dir` first, then downloads with huggingface_hub (into ``cache_dir``
    or the Hugging Face cache, ``$HF_HUB_CACHE``; with ``HF_HUB_OFFLINE=1`` only that cache is
    read). Raises :class:`PublishedWeightsUnavailable`, one line starting "cannot download NAME
    (offline?)" that says where to put the file by hand, when neither works.
    """
    model = resolve(name)
    local = model.local_path()
    if local.is_file() or (local.is_dir() and all((local / f).is_file() for f in model.files)):
        return local
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise PublishedWeightsUnavailable(offline_message(model, "huggingface_hub is not installed")) from e
    try:
        paths = [Path(hf_hub_download(model.repo_id, f, cache_dir=cache_dir)) for f in model.files]
    except Exception as e:  # offline mode, no network, unknown file, auth: all end the same way
        if _hub_offline():
            reason = "HF_HUB_OFFLINE is set and the Hugging Face cache does not hold it"
        else:
            reason = f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"
        raise PublishedWeightsUnavailable(offline_message(model, reason)) from e
    return paths[0] if model.layout == "v2" else paths[0].parent


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no", "off")


def offline_message(model: PublishedModel, reason: str) -> str:
    """One line: what could not be downloaded, why, and where to put the files by hand."""
    local = model.local_path()
    if model.layout == "v2":
        by_hand = f"save {model.urls[0]} as {local}"
    else:
        by_hand = (f"put {' and '.join(model.files)} from https://huggingface.co/{model.repo_id} "
                   f"into the folder {local}/")
    return (f"cannot download {model.name} (offline?): {model.repo_id}/{model.files[0]}: {reason}. "
            f"Either {by_hand}, or give the file's path instead (docs/published_models.md)")


# ---------------------------------------------------------------------------------------------
# recognising published files (hear_codec.checkpoint.detect reads them, once)
# ---------------------------------------------------------------------------------------------
def v1_weights(folder: Path) -> Path | None:
    """``folder/model.pt`` if ``folder`` holds a v1 model (model.pt and config.gin), else None."""
    weights, config = Path(folder) / V1_WEIGHTS, Path(folder) / V1_CONFIG
    return weights if weights.is_file() and config.is_file() else None


def recognise(path: Path, payload) -> tuple | None:
    """(kind, payload) if ``payload`` (what torch.load read from the file ``path``) is a published
    EnCodecMAE model, else None.

    kind 'encodecmae-v2': payload is the published dict ({'config': gin text, 'state_dict', ...});
    kind 'encodecmae-v1': {'state_dict', 'config' (the gin text of config.gin beside ``path``),
    'folder'}. An official state_dict without its config.gin raises UnknownFormatError.
    """
    if isinstance(payload, dict) and isinstance(payload.get("config"), str) and isinstance(payload.get("state_dict"), dict):
        return "encodecmae-v2", payload
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not looks_like_official_state(state):
        return None
    config = Path(path).parent / V1_CONFIG
    if not config.is_file():
        raise UnknownFormatError(
            f"{path} holds an EnCodecMAE state_dict without its gin config: a v1 {V1_WEIGHTS} needs the "
            f"{V1_CONFIG} from the same hub repo beside it.\nhear_codec loads:\n{FORMATS}")
    try:
        text = config.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{config} could not be read as gin text: {e}") from e
    return "encodecmae-v1", {"state_dict": state, "config": text, "folder": str(Path(path).parent)}


def looks_like_official_state(state) -> bool:
    """Whether ``state`` is a state_dict of the official EnCodecMAE code (its transformer key names)."""
    return isinstance(state, dict) and any(
        isinstance(k, str) and k.startswith(("visible_encoder.encoder_layers.", "decoder.encoder_layers.")) for k in state)


def describe() -> str:
    lines = [f"default: {DEFAULT} ({DEFAULT_REASON})", f"local folder searched first: {published_dir()}", ""]
    for m in PUBLISHED.values():
        lines += [f"{m.name}{'  [default]' if m.name == DEFAULT else ''}",
                  f"    {m.description}",
                  f"    files: {', '.join(m.urls)}",
                  f"    licence: {m.licence}"]
    return "\n".join(lines)


def main(argv=None) -> None:
    argparse.ArgumentParser(prog="python -m hear_codec.published",
                            description="Print the published EnCodecMAE models hear_codec knows: names, files, "
                                        "licences, and the local folder searched first.").parse_args(argv)
    print(describe())


if __name__ == "__main__":
    cli.run(main)
