"""The training order: :class:`StepSampler`, a pure function of (seed, optimiser step, rank), and
:func:`mix_seed`, the seed mixer of every run (crops, masks, permutations).

Each global sample index picks a draw from a per-epoch permutation of all draws and seeds its
crop, and each rank takes its own slice of every micro-batch. A run resumed at step k therefore
sees exactly the samples an uninterrupted run sees after step k (Lightning does not save RNG
states). Used by every pretraining family and by EnCLAP captioning.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch
from torch.utils.data import Sampler


def mix_seed(*values) -> int:
    """A 31-bit seed from integers (the crop, mask and permutation seeds of every run)."""
    return zlib.crc32(np.asarray(values, dtype=np.int64).tobytes()) & 0x7FFFFFFF


class StepSampler(Sampler):
    """An endless, resumable training order: a pure function of (seed, step, rank).

    ``draws_per_item[i]`` is how often one epoch draws item i (an int ``n``: ``n`` items drawn once
    each, e.g. a dataset of fixed clips); an epoch is the ``N = sum(draws)`` draws in a seeded
    random permutation (the official DataLoader's ``shuffle=True`` over its length-compensated
    index). Global sample ``g`` is draw ``perm_e[g % N]`` of epoch ``e = g // N``, i.e. the item
    that draw belongs to, with crop seed ``mix(seed, g)``. Micro-batch ``m`` of rank
    ``r`` holds global samples ``(m * world + r) * batch_size + j``. Set ``start_step`` (optimiser
    steps already taken), ``accumulate``, ``rank`` and ``world`` before iterating
    (``training.engine.StepSamplerCallback`` does). Yields ``(item_index, crop_seed)``.
    """

    def __init__(self, draws_per_item, batch_size: int, seed: int = 0):
        if isinstance(draws_per_item, int):
            draws_per_item = [1] * draws_per_item
        draws = torch.as_tensor(np.asarray(draws_per_item), dtype=torch.int64)
        if draws.ndim != 1 or len(draws) == 0 or bool((draws < 1).any()):
            raise ValueError("draws_per_item must hold at least one count, each at least 1")
        self.item_ends = torch.cumsum(draws, 0)  # draws of items 0..i end before item_ends[i]
        self.epoch_draws = int(self.item_ends[-1])
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.start_step = 0
        self.accumulate = 1
        self.rank = 0
        self.world = 1
        self._perm_epoch, self._perm = None, None

    def _item(self, g: int) -> int:
        e = g // self.epoch_draws
        if self._perm_epoch != e:
            gen = torch.Generator().manual_seed(mix_seed(self.seed, e, 1))
            self._perm, self._perm_epoch = torch.randperm(self.epoch_draws, generator=gen), e
        draw = self._perm[g % self.epoch_draws]
        return int(torch.searchsorted(self.item_ends, draw, right=True))

    def __iter__(self):
        m = self.start_step * self.accumulate
        while True:
            base = (m * self.world + self.rank) * self.batch_size
            for g in range(base, base + self.batch_size):
                yield self._item(g), mix_seed(self.seed, g, 2)
            m += 1
