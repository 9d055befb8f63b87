"""Random spectral colouring of EnCodecMAE's input: the built-in run's one augmentation.

Each training clip's log-mel frames get one smooth random equaliser curve over the mel bins, the
same in every frame of the clip, while its targets are those of the clean clip: to predict the
targets the model has to see past the clip's overall colour (its level in each part of the
spectrum) to what changes between frames. On the built-in run it put the transfer check's
held-out noise events at 4 labels beyond the draws' std in three seeds of four (none without it),
at a cost to instruments in two (docs/pretraining.md, "A twelfth pass"); the paper has no
augmentation, so ``--data`` runs default to none.

    curves = draw_curves(B, bins, depth_db, generator)    [B, bins] dB     (the collate, seeded by the batch's items)
    features + in_feature_units(curves, mel_std)[:, None]  [B, T, bins]    (the training step only)

A curve is ``sum_k a_k cos(pi k x + phi_k)`` over the bins' positions x in [0, 1], k = 1..COMPONENTS,
a_k uniform in [-depth_db, depth_db], phi_k uniform in [0, 2 pi): a tilt, a bump, a dip, at most
``COMPONENTS * depth_db`` dB from flat. Validation, the learning and transfer checks and
hear_codec never colour.
"""
from __future__ import annotations

import math

import torch

COMPONENTS = 3  # cosines per curve: broad shapes (tilts, one or two bumps), not a comb
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
