"""The frozen EnCodec of a training run: which weights (``--codec``) and where they are (``--codec-path``).

EnCodecMAE predicts its codes (and the ec front end reads its encoder features); AudioFormer reads
its codes as tokens. The codec is loaded once per run, in eval mode, and never trained.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from hear_codec.codec import Codec, load_codec

log = logging.getLogger(__name__)

CODEC_WEIGHTS = ("pretrained", "offline")


@dataclass(frozen=True)
class CodecConfig:
    """``weights``: "pretrained" (the published EnCodec 24 kHz, the papers') or "offline" (random
    weights, deterministic: demos and tests); ``path``: a local copy of the published file."""

    weights: str = "pretrained"
    path: str | None = None

    @classmethod
    def from_args(cls, args) -> "CodecConfig":
        return cls(weights=args.codec, path=args.codec_path)

    def load(self) -> Codec:
        log.info("codec: the %s EnCodec", "published" if self.weights == "pretrained" else "offline (random-weight)")
        return load_codec(self.weights, path=self.path) if self.weights == "pretrained" else load_codec("offline")


def add_codec_args(group, *, use: str, default: str | None = "pretrained", default_note: str = "%(default)s",
                   extra_choices=(), extra_help: str = "") -> None:
    """``--codec`` and ``--codec-path``; ``use``: what the codec makes for this model (for the help);
    a ``default`` of None is filled in by the caller, and ``default_note`` says how."""
    group.add_argument("--codec", default=default, choices=list(CODEC_WEIGHTS) + list(extra_choices),
                       help=f"EnCodec weights that make {use}: pretrained (published, the paper's) or offline (random "
                            f"weights, for demos and tests){extra_help} (default: {default_note})")
    group.add_argument("--codec-path", default=None,
                       help="local copy of encodec_24khz-d7cc33bc.th (default: torch hub cache / download)")
