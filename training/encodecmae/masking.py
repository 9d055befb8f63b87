"""EnCodecMAE's masking: which frames of a batch are hidden from the encoder.

The official rule (TimeGapMask): for a clip of L valid frames, draw span starts uniformly in
[0, L - gap] and mask [start, start + gap) until at least floor(L * prop) frames are masked; then
unmask the excess at the start of the first span, so exactly floor(L * prop) frames are masked.
:func:`time_gap_mask` draws it vectorised over the batch; :class:`MaskingCollate` draws it in the
data loader's workers (CPU), from a generator seeded by the batch's items (exact resume), and
with it the per-clip parameters of the run's input augmentation, when it has one.
"""
from __future__ import annotations

import functools
import math

import torch
from torch.utils.data import default_collate

from hear_codec import codec as codec_lib
from hear_codec import encodecmae as emae
from training.data.sampler import mix_seed


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
        rows, done = _draw_rows(lengths[todo], target[todo], max_len, gap, spans, generator)
        mask[todo[done]] = rows[done]
        todo = todo[~done]
        spans *= 2
    return mask


def _draw_rows(lengths, target, max_len, gap, spans, generator):
    """Draw ``spans`` span starts per row and mask the spans in order until the row's target is
    reached -> (rows [b, max_len] bool, done [b] bool: the target was reached within the spans).

    Each frame is labelled with the first span that covers it (``first_cover``), so "the union of
    spans 0..k" is ``first_cover <= k`` and its size after each k is a cumulative histogram: the
    work is O(b * (max_len * gap + spans)) with no [b, spans, max_len] tensor."""
    b = len(lengths)
    high = (lengths - gap).clamp(min=0) + 1  # randint(0, max(0, L - gap)) inclusive
    starts = (torch.rand(b, spans, generator=generator) * high[:, None]).long()  # [b, spans]
    # The first span starting at each position (spans: none), then the first covering each frame:
    # frame t is covered by the spans starting in [t - gap + 1, t].
    first_start = torch.full((b, max_len + gap), spans, dtype=torch.long)
    first_start.scatter_reduce_(1, starts + gap - 1, torch.arange(spans).expand(b, spans), "amin")
    first_cover = first_start[:, :max_len].clone()  # [b, max_len]
    for shift in range(1, gap):  # a sliding minimum over gap positions (amin over an unfold is ~50x slower)
        torch.minimum(first_cover, first_start[:, shift:shift + max_len], out=first_cover)
    t = torch.arange(max_len)
    first_cover[t >= lengths[:, None]] = spans  # frames past the clip's end are never covered
    # Frames covered after k spans, k = 0..spans-1, and the first k that reaches the target.
    per_span = torch.zeros(b, spans + 1, dtype=torch.long)
    per_span.scatter_add_(1, first_cover, torch.ones_like(first_cover))
    counts = per_span[:, :spans].cumsum(dim=1)
    reached = counts >= target[:, None]
    first = reached.to(torch.uint8).argmax(dim=1)
    excess = counts[torch.arange(b), first] - target
    # Unmask the excess at the beginning of the first span (always inside it: excess < gap).
    unmask = (t >= starts[:, :1]) & (t < starts[:, :1] + excess[:, None])
    rows = (first_cover <= first[:, None]) & ~unmask
    return rows, reached.any(dim=1)


# ---------------------------------------------------------------- framing and the collate (CPU, in workers)

@functools.lru_cache(maxsize=4096)  # called per item of every batch, with few distinct lengths
def frames_for(front_end: str, samples: int) -> int:
    """Frames of a clip of ``samples`` at 24 kHz that have both an input frame and a codec target
    (the official loss crops the longer)."""
    return min(emae.num_frames(front_end, samples), codec_lib.num_frames(samples))


class MaskingCollate:
    """Stacks items and adds ``padding_mask`` and ``mask`` [B, T] (T = frames of the crop), and
    with an ``augment`` (an input augmentation, see ``module.EncodecMAEModule``) ``augment``: its
    per-clip parameters, ``augment.draw(B, generator)``, which the training step applies.

    Valid frames of a clip of ``length`` samples: ``frames_for(front_end, length)``; everything
    after is padding and never masked nor counted. The random generator is seeded from the
    items' seeds, so a batch's mask and augmentation depend only on which samples it holds (exact
    resume).
    """

    def __init__(self, front_end: str, crop_samples: int, prop: float = 0.5, gap: int = 15, augment=None):
        self.front_end, self.crop_samples, self.prop, self.gap = front_end, int(crop_samples), prop, gap
        self.augment = augment
        self.frames = frames_for(front_end, self.crop_samples)

    def __call__(self, items: list) -> dict:
        # default_collate stacks straight into shared memory in a worker (torch.stack, then the
        # queue's move to shared memory, would copy the batch twice).
        wav = default_collate([it["wav"] for it in items])
        lengths = torch.tensor([frames_for(self.front_end, int(it["length"])) for it in items])
        lengths = lengths.clamp(max=self.frames)
        gen = torch.Generator().manual_seed(mix_seed(*[int(it["seed"]) for it in items]))
        batch = {
            "wav": wav,
            "frames": lengths,
            "padding_mask": torch.arange(self.frames)[None, :] >= lengths[:, None],
            "mask": time_gap_mask(lengths, self.frames, self.prop, self.gap, generator=gen),
            "ok": torch.tensor([bool(it["ok"]) for it in items]),
        }
        # Known here on the host, so the model need not read it back from the GPU each step.
        batch["max_visible"] = int((~(batch["mask"] | batch["padding_mask"])).sum(1).max())
        if self.augment is not None:  # drawn after the mask from the same generator: the masks do not depend on it
            batch["augment"] = self.augment.draw(len(items), gen)
        if "codes" in items[0]:
            batch["codes"] = default_collate([it["codes"] for it in items]).long()[..., : self.frames]
        if "label" in items[0]:
            batch["label"] = torch.tensor([it["label"] for it in items])
        return batch


class Seeded(torch.utils.data.Dataset):
    """Adds each item's mask seed: the crop seed for training keys ``(index, crop_seed)``, a
    function of the index for validation (the same masks at every validation)."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.draws_per_epoch = dataset.draws_per_epoch

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        item = self.dataset[key]
        item["seed"] = int(key[1]) if isinstance(key, (tuple, list)) else mix_seed(int(key), 3)
        return item
