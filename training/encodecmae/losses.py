"""Training losses: EnCodecMAE's weighted cross-entropy over target streams."""
from __future__ import annotations

import torch
from torch.nn import functional as F


def encodecmae_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                    padding_mask: torch.Tensor, stream_weights, masked_weight: float = 0.9) -> dict:
    """Per-stream cross-entropy, weighted, split into masked and unmasked frames.

    logits [B, T, S, V]; targets [B, S, T] int64; mask [B, T] bool (True = masked);
    padding_mask [B, T] bool (True = frame beyond the clip, never counted).
    For each stream s: CE_s = mean over the batch's masked (or unmasked) valid frames;
    masked_loss = sum_s w_s * CE_s (likewise unmasked); loss = mw * masked + (1 - mw) * unmasked.
    A split with no frames contributes 0. Also returns per-stream masked accuracy.
    """
    b, t, s, v = logits.shape
    if targets.shape != (b, s, t):
        raise ValueError(f"targets must be [B, S, T] = {(b, s, t)}, got {tuple(targets.shape)}")
    weights = torch.as_tensor(stream_weights, dtype=torch.float32, device=logits.device)
    if weights.numel() != s:
        raise ValueError(f"{weights.numel()} stream weights for {s} streams")
    ce = F.cross_entropy(logits.float().permute(0, 3, 2, 1), targets, reduction="none")  # [B, S, T]
    valid = ~padding_mask
    out = {}
    for name, frames in (("masked", mask & valid), ("unmasked", ~mask & valid)):
        n = frames.sum().clamp(min=1)
        per_stream = (ce * frames[:, None, :]).sum(dim=(0, 2)) / n  # [S]
        out[f"{name}_loss"] = (weights * per_stream).sum()
        out[f"{name}_ce_per_stream"] = per_stream.detach()
    out["loss"] = masked_weight * out["masked_loss"] + (1 - masked_weight) * out["unmasked_loss"]
    masked = mask & valid
    correct = (logits.argmax(-1).transpose(1, 2) == targets) & masked[:, None, :]
    out["masked_accuracy_per_stream"] = correct.sum(dim=(0, 2)).float() / masked.sum().clamp(min=1)
    return out
