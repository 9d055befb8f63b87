"""The published EnCodecMAE weights: names, where they live on the Hugging Face hub, licences.

``hear_codec.load_model()`` with no path loads :data:`DEFAULT`; ``load_model(published=NAME)``
(or ``--model-options '{"published": "NAME"}'``) loads another entry of :data:`PUBLISHED`.
A name not in the table can be given as ``"owner/repo/file.pt"`` (a v2-layout file on the hub).

Files are looked up first in :func:`published_dir` (``$HEAR_CODEC_PUBLISHED_DIR``, default
``~/.cache/hear_codec/published``), then fetched with ``huggingface_hub.hf_hub_download`` into
the usual Hugging Face cache. Offline, :class:`PublishedWeightsUnavailable` says which file to
download and where to put it, or how to pass a path instead. Nothing falls back to random weights.

The model's sizes, heads and front end are always read from the file's own gin config
(hear_codec/convert.py, through hear_codec/gin.py); this table only says where files are and under which terms.

    python -m hear_codec.published          # print the table
"""
from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

V2_REPO = "lpepino/encodecmae-v2"
ENCODEC_WEIGHTS_LICENCE = "CC BY-NC 4.0 (EnCodec 24 kHz weights, facebookresearch/encodec)"
V2_LICENCE = "not stated (no licence on the hub repo page we could find; the GitHub code repo has no LICENSE file)"
V1_LICENCE = "MIT (Hugging Face model card licence tag)"


class PublishedWeightsUnavailable(RuntimeError):
    """The published weights are neither on disk nor downloadable (offline, unknown file, no huggingface_hub)."""


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
    or the Hugging Face cache). Raises :class:`PublishedWeightsUnavailable` with instructions
    when neither works.
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
        raise PublishedWeightsUnavailable(offline_message(model, f"{type(e).__name__}: {e}")) from e
    return paths[0] if model.layout == "v2" else paths[0].parent


def offline_message(model: PublishedModel, reason: str) -> str:
    local = model.local_path()
    if model.layout == "v2":
        get = f"download {model.urls[0]}\n     and save it as {local}"
        direct = str(local)
    else:
        get = ("download " + " and ".join(model.urls) + f"\n     into the folder {local}/ (keeping the names "
               + " and ".join(model.files) + ")")
        direct = str(local)
    offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE", "").strip() not in ("", "0") else ""
    return (
        f"could not get the published EnCodecMAE weights {model.name!r} ({model.repo_id}/{model.files[0]}){offline}: "
        f"{reason}\n"
        "hear_codec downloads them with huggingface_hub on first use. On a machine without internet, either:\n"
        f"  1. {get}\n"
        f"     (or point HEAR_CODEC_PUBLISHED_DIR at the folder that holds it), then call load_model() again;\n"
        f"  2. or pass the file's path: hear_codec.load_model({direct!r}), "
        f"`hear-validator hear_codec --model {direct}`;\n"
        f"  3. or convert it once: python -m hear_codec.convert {direct} encodecmae.ckpt, then use --model encodecmae.ckpt.\n"
        f"Licence of these weights: {model.licence}."
    )


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
    from hear_codec import cli  # here, not at the top: cli imports this module for its error type

    cli.run(main)
