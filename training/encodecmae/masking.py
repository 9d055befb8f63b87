"""EnCodecMAE's time-gap masking, vectorised over the batch.

The official rule (TimeGapMask): for a clip of L valid frames, draw span starts uniformly in
[0, L - gap] and mask [start, start + gap) until at least floor(L * prop) frames are masked; then
unmask the excess at the start of the first span, so exactly floor(L * prop) frames are masked.
"""
from __future__ import annotations

import math

import torch


def time_gap_mask(lengths: torch.Tensor, max_len: int, prop: float = 0.5, gap: int = 15,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """lengths [B] valid frames per clip -> mask [B, max_len] bool, True = masked.

    Exactly floor(length * prop) frames of each clip are masked; padding frames never are.
    """
    lengths = lengths.to(torch.long).cpu()
    if (lengths > max_len).any():
        raise ValueError(f"a length exceeds max_len={max_len}: {lengths.tolist()}")
    target = (lengths.double() * prop).floor().long()
    mask = torch.zeros(len(lengths), max_len, dtype=torch.bool)
    todo = torch.nonzero(target > 0).flatten()
    # Enough candidate spans that a row almost never runs out; rows that do are drawn again.
    spans = 4 * math.ceil(max(1, int(target.max()) if len(target) else 1) / gap) + 16
    while len(todo):
        rows = _draw_rows(lengths[todo], target[todo], max_len, gap, spans, generator)
        done = rows.sum(dim=1) == target[todo]
        mask[todo[done]] = rows[done]
        todo = todo[~done]
        spans *= 2
    return mask


def _draw_rows(lengths, target, max_len, gap, spans, generator):
    """Masks for rows whose spans reach the target; unfinished rows come back all False."""
    b = len(lengths)
    high = (lengths - gap).clamp(min=0) + 1  # randint(0, max(0, L - gap)) inclusive
    starts = (torch.rand(b, spans, generator=generator) * high[:, None]).long()  # [b, spans]
    t = torch.arange(max_len)
    covered = (t >= starts[..., None]) & (t < starts[..., None] + gap) & (t < lengths[:, None, None])
    covered = torch.cummax(covered.to(torch.uint8), dim=1).values.bool()  # after k spans, [b, spans, T]
    counts = covered.sum(dim=2)
    reached = counts >= target[:, None]
    first = reached.to(torch.uint8).argmax(dim=1)  # first k whose coverage reaches the target
    rows = covered[torch.arange(b), first]
    excess = counts[torch.arange(b), first] - target
    # Unmask the excess at the beginning of the first span (always inside it: excess < gap).
    unmask = (t >= starts[:, :1]) & (t < starts[:, :1] + excess[:, None])
    rows = rows & ~unmask
    rows[~reached.any(dim=1)] = False
    return rows
