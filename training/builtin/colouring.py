"""Random spectral colouring of EnCodecMAE's input: the built-in run's one augmentation
(:class:`Colouring`, an input augmentation of ``training.encodecmae.module.EncodecMAEModule``).

Each training clip's log-mel frames get one smooth random equaliser curve over the mel bins, the
same in every frame of the clip, while its targets are those of the clean clip: to predict the
targets the model has to see past the clip's overall colour (its level in each part of the
spectrum) to what changes between frames. The built-in run colours the first three quarters of
its steps and trains the last quarter on clean input: over four seeds that put the transfer
check's held-out noise events at 4 labels beyond the draws' std in two (none without colour) and
gave the most held-out cells beyond it of any variant measured (docs/pretraining.md, "A twelfth
pass" and "A thirteenth pass"); the paper has no augmentation, so ``--data`` runs default to none.

    curves = draw_curves(B, bins, depth_db, generator)    [B, bins] dB     (the collate, seeded by the batch's items)
    features + in_feature_units(curves, mel_std)[:, None]  [B, T, bins]    (training steps where
                                                                            is_coloured_step(...), only)

Options: ``--colour-db`` (the depth; 0 = none, the paper's) and ``--colour-until`` (the share of
the run's steps that are coloured), which travel together as a :class:`ColourConfig`.

A curve is ``sum_k a_k cos(pi k x + phi_k)`` over the bins' positions x in [0, 1], k = 1..COMPONENTS,
a_k uniform in [-depth_db, depth_db], phi_k uniform in [0, 2 pi): a tilt and a bump or a dip, at
most ``COMPONENTS * depth_db`` dB from flat. Validation, the learning and transfer checks and
hear_codec never colour.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from hear_codec.encodecmae import MelFrontEnd

# Cosines per curve: broad shapes, not a comb. The tilt (k = 1) teaches the model to look past a clip's
# overall colour (held-out vowels and noise events), the bump (k = 2) keeps it attending to where the
# energy sits (consonants); either alone, or three, gave fewer held-out cells ("A thirteenth pass").
COMPONENTS = 2
DB_PER_LOG_UNIT = 10 / math.log(10)  # the front end's log-mel is ln(power): 1 unit = 4.34 dB


def draw_curves(batch: int, bins: int, depth_db: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """One random curve per clip: [batch, bins] in dB (0 everywhere when ``depth_db`` is 0)."""
    if depth_db < 0 or not math.isfinite(depth_db):
        raise ValueError(f"depth_db must be a finite number >= 0, got {depth_db}")
    amplitude = (torch.rand(batch, COMPONENTS, generator=generator) * 2 - 1) * depth_db  # [B, K]
    phase = torch.rand(batch, COMPONENTS, generator=generator) * (2 * math.pi)  # [B, K]
    k = torch.arange(1, COMPONENTS + 1, dtype=torch.float32)  # [K]
    x = torch.linspace(0, 1, bins)  # [bins]
    waves = torch.cos(math.pi * k[None, :, None] * x[None, None, :] + phase[:, :, None])  # [B, K, bins]
    return (amplitude[:, :, None] * waves).sum(dim=1)


def in_feature_units(curves_db: torch.Tensor, mel_std: float) -> torch.Tensor:
    """[B, bins] dB -> [B, bins] in the units of the normalised log-mel, (ln(power) - mean) / std."""
    return curves_db / (DB_PER_LOG_UNIT * mel_std)


def is_coloured_step(step: int, max_steps: int | None, until: float) -> bool:
    """Whether training step ``step`` (0-based: the optimiser steps done before it) of a run of
    ``max_steps`` colours its input: the first ``until`` share of the steps do, the rest train on
    clean input (``until`` = 1: every step). Without a known length (no trainer), every step does."""
    return max_steps is None or step < round(max_steps * until)


@dataclass(frozen=True)
class ColourConfig:
    """``depth_db``: each cosine's largest gain (0 = no colouring); ``until``: the share of the
    run's first steps that are coloured (1 = every step)."""

    depth_db: float = 0.0
    until: float = 1.0

    @classmethod
    def from_args(cls, args) -> "ColourConfig":
        return cls(depth_db=args.colour_db, until=args.colour_until)


class Colouring:
    """The colouring as an input augmentation of the EnCodecMAE module: ``draw`` in the collate
    (one curve per clip, [B, 256] dB), ``active`` and ``apply`` in the training step (log-mel
    features [B, T, 256] normalised by ``mel_std``)."""

    def __init__(self, config: ColourConfig, mel_std: float):
        if not config.depth_db > 0:
            raise ValueError(f"a colouring needs a depth above 0 dB, got {config.depth_db}")
        self.config, self.mel_std = config, mel_std

    def draw(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        return draw_curves(batch, MelFrontEnd.input_dim, self.config.depth_db, generator)

    def active(self, step: int, run_steps: int | None) -> bool:
        return is_coloured_step(step, run_steps, self.config.until)

    def apply(self, features: torch.Tensor, curves_db: torch.Tensor) -> torch.Tensor:
        return features + in_feature_units(curves_db, self.mel_std)[:, None, :]

    def describe(self) -> dict:
        return {"colour_db": self.config.depth_db, "colour_until": self.config.until}
