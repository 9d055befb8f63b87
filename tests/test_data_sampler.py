"""training/data/sampler.py: the step sampler resumes exactly, shards by rank, draws every item as
often as its draws per epoch, and shuffles each epoch anew."""
import numpy as np
import pytest

from training.data import sampler as D


def take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_step_sampler_resumes_and_shards():
    draws = [1, 3, 1, 2, 1, 1, 4, 1, 1, 1]  # 16 draws per epoch
    full = D.StepSampler(draws, batch_size=4, seed=3)
    full.accumulate = 2
    stream = take(full, 4 * 2 * 6)  # 6 optimiser steps: three epochs
    resumed = D.StepSampler(draws, batch_size=4, seed=3)
    resumed.accumulate, resumed.start_step = 2, 4
    assert take(resumed, 16) == stream[32:48]
    # every item as often as it is drawn, in every epoch; epochs in different orders
    for epoch in range(3):
        items = [i for i, _ in stream[16 * epoch: 16 * (epoch + 1)]]
        assert np.bincount(items, minlength=10).tolist() == draws
    assert stream[:16] != stream[16:32]
    # two ranks split each micro-batch: together they are the single-process stream
    ranks = []
    for r in range(2):
        s = D.StepSampler(draws, batch_size=2, seed=3)
        s.rank, s.world = r, 2
        ranks.append(take(s, 4))
    single = take(D.StepSampler(draws, batch_size=2, seed=3), 8)
    assert ranks[0][:2] + ranks[1][:2] + ranks[0][2:] + ranks[1][2:] == single
    with pytest.raises(ValueError, match="at least 1"):
        D.StepSampler([1, 0], batch_size=2)
    assert take(D.StepSampler(10, batch_size=2, seed=3), 12) == take(D.StepSampler([1] * 10, batch_size=2, seed=3), 12)


def test_every_epoch_has_its_own_order_of_items():
    """The permutation depends on the epoch: the items (not just their crop seeds, which always
    differ) come in another order in each of several epochs."""
    sampler = D.StepSampler([1] * 50, batch_size=10, seed=0)
    stream = take(sampler, 50 * 4)
    orders = [tuple(i for i, _ in stream[50 * e: 50 * (e + 1)]) for e in range(4)]
    assert all(sorted(order) == list(range(50)) for order in orders)
    assert len(set(orders)) == 4


def test_mix_seed_is_stable_and_31_bit():
    assert D.mix_seed(1, 2, 3) == D.mix_seed(1, 2, 3) != D.mix_seed(1, 2, 4)
    assert all(0 <= D.mix_seed(i, 10**12) < 2**31 for i in range(100))
