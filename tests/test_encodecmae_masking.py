"""EnCodecMAE's masking (training/encodecmae/masking.py): invariants of the time-gap rule, and the
collate that draws the masks for a batch."""
import math

import pytest
import torch

from training.builtin.corpus import SyntheticCorpus
from training.encodecmae import masking
from training.encodecmae.masking import MaskingCollate, frames_for, time_gap_mask


def runs(row):
    """(start, length) of the maximal runs of True in a 1-D bool tensor."""
    out, n = [], 0
    for i, v in enumerate(row.tolist() + [False]):
        if v:
            n += 1
        elif n:
            out.append((i - n, n))
            n = 0
    return out


LENGTHS = [0, 1, 2, 14, 15, 16, 29, 30, 31, 44, 45, 100, 149, 150, 299, 300]


@pytest.mark.parametrize("prop,gap", [(0.5, 15), (0.5, 4), (0.3, 15), (0.8, 10)])
def test_exact_count_and_no_padding_masked(prop, gap):
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor(LENGTHS * 8)
    mask = time_gap_mask(lengths, 300, prop=prop, gap=gap, generator=gen)
    assert mask.shape == (len(lengths), 300) and mask.dtype == torch.bool
    expected = (lengths.double() * prop).floor().long()
    assert torch.equal(mask.sum(1), expected)  # exactly floor(L * prop)
    beyond = torch.arange(300)[None, :] >= lengths[:, None]
    assert not (mask & beyond).any()  # padding is never masked


def test_masked_frames_come_in_gaps():
    """Masked frames are a union of 15-frame spans minus one block (< 15 frames) cut from the first
    span: so runs shorter than the gap are at most two, on either side of that one block."""
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(15, 301, (400,), generator=gen)
    mask = time_gap_mask(lengths, 300, generator=gen)
    for row, length in zip(mask, lengths):
        r = runs(row)
        assert sum(n for _, n in r) == int(length) // 2
        short = [(s, n) for s, n in r if n < 15]
        assert len(short) <= 2, r
        if len(short) == 2:
            (s0, n0), (s1, _) = short
            assert 0 < s1 - (s0 + n0) < 15, r


def test_short_clips_mask_within_the_clip():
    gen = torch.Generator().manual_seed(2)
    lengths = torch.tensor([3, 5, 9, 14] * 10)
    mask = time_gap_mask(lengths, 20, generator=gen)
    assert torch.equal(mask.sum(1), lengths // 2)
    assert not mask[:, 14:].any()


def test_deterministic_given_generator_and_varies_with_seed():
    lengths = torch.full((8,), 300)
    a = time_gap_mask(lengths, 300, generator=torch.Generator().manual_seed(5))
    b = time_gap_mask(lengths, 300, generator=torch.Generator().manual_seed(5))
    c = time_gap_mask(lengths, 300, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert len({tuple(r.tolist()) for r in a}) == 8  # rows differ from each other


def test_positions_roughly_uniform_in_the_middle():
    mask = time_gap_mask(torch.full((2000,), 300), 300, generator=torch.Generator().manual_seed(3))
    rate = mask.float().mean(0)
    assert 0.4 < float(rate[60:240].min()) and float(rate[60:240].max()) < 0.62
    assert abs(float(mask.float().mean()) - 0.5) < 1e-9


def test_length_over_max_len_is_an_error():
    with pytest.raises(ValueError):
        time_gap_mask(torch.tensor([301]), 300)


@pytest.fixture
def rounds(monkeypatch) -> list:
    """The number of rows of each round of span draws (each ``_draw_rows`` call), as they happen."""
    counted = []
    draw_rows = masking._draw_rows

    def counting(lengths, *args):
        counted.append(len(lengths))
        return draw_rows(lengths, *args)

    monkeypatch.setattr(masking, "_draw_rows", counting)
    return counted


def test_vectorised_over_the_batch(rounds):
    """The work is a few batched tensor operations per round of span draws, and a paper-size batch
    (128 x 300 frames) needs one round whatever its size: counted, not timed (a wall-clock bound
    fails on a busy machine). A per-clip or per-span Python loop would need a round per clip."""
    for batch in (128, 1024):
        rounds.clear()
        mask = time_gap_mask(torch.full((batch,), 300), 300, generator=torch.Generator().manual_seed(4))
        assert torch.equal(mask.sum(1), torch.full((batch,), 150))
        assert len(rounds) <= 2 and rounds[0] == batch, rounds  # the whole batch in the first round


def test_collate_padding_and_mask():
    corpus = SyntheticCorpus(32, seconds=2.0, seed=1)
    items = [dict(corpus[i], seed=i) for i in range(32)]
    collate = MaskingCollate("mel256", 48000)
    batch = collate(items)
    assert batch["mask"].shape == batch["padding_mask"].shape == (32, frames_for("mel256", 48000))
    valid = (~batch["padding_mask"]).sum(1)
    assert torch.equal(valid, torch.tensor([frames_for("mel256", it["length"]) for it in items]))
    assert torch.equal(batch["mask"].sum(1), valid // 2)
    assert not (batch["mask"] & batch["padding_mask"]).any()
    assert torch.equal(collate(items)["mask"], batch["mask"])  # a function of the items' seeds
    # The host-side count of visible frames lets the model skip its device read-back; same result.
    from hear_codec import encodecmae as emae

    model = emae.EncodecMAE(emae.preset("tiny", chunk_seconds=2.0)).eval()
    with torch.no_grad():
        feats = model.input_features(batch["wav"][:4])[:, : batch["mask"].shape[1]]
        args = (None, batch["mask"][:4], batch["padding_mask"][:4])
        known = model(*args, features=feats, max_visible=batch["max_visible"])
        read_back = model(*args, features=feats)
    assert known["encoder_out"].shape[1] == batch["max_visible"] >= read_back["encoder_out"].shape[1]
    valid = ~batch["padding_mask"][:4]
    assert torch.allclose(known["logits"][valid], read_back["logits"][valid], atol=1e-5)
    with pytest.raises(ValueError, match="max_visible"):
        model(*args, features=feats, max_visible=read_back["encoder_out"].shape[1] - 1)


def test_every_valid_frame_can_be_masked_the_last_one_included():
    """Span starts are drawn from [0, L - gap], both ends included (the official randint), so the
    last valid frame is masked too: by the span that starts at L - gap alone, which with the
    excess unmasked at the first span's start gives it about 0.06 over many clips of 300 frames
    (interior frames about 0.5). The frames after a shorter clip's end never are."""
    gen = torch.Generator().manual_seed(0)
    full = time_gap_mask(torch.full((4000,), 300), 300, 0.5, 15, generator=gen).float().mean(0)
    assert 0.03 < float(full[-1]) < 0.12 and 0.03 < float(full[0]) < 0.12, (full[0], full[-1])
    assert 0.4 < float(full[100:200].mean()) < 0.6
    short = time_gap_mask(torch.full((4000,), 250), 300, 0.5, 15, generator=gen).float().mean(0)
    assert 0.03 < float(short[249]) < 0.12 and float(short[250:].max()) == 0.0


# ---------------------------------------------------------------- the same masks as before (exact resume)

def reference_time_gap_mask(lengths, max_len, prop=0.5, gap=15, generator=None):
    """Frozen copy of the algorithm as it was when runs started saving checkpoints (span by span,
    as a [b, spans, max_len] coverage): a resumed run must draw the same masks, so any rewrite of
    :func:`time_gap_mask` has to match it bit for bit, random draws included."""
    lengths = lengths.long()
    target = (lengths.double() * prop).floor().long()
    mask = torch.zeros(len(lengths), max_len, dtype=torch.bool)
    todo = torch.nonzero(target > 0).flatten()
    spans = 4 * math.ceil(max(1, int(target.max()) if len(target) else 1) / gap) + 16
    t = torch.arange(max_len)
    while len(todo):
        L, tgt, b = lengths[todo], target[todo], len(todo)
        starts = (torch.rand(b, spans, generator=generator) * ((L - gap).clamp(min=0) + 1)[:, None]).long()
        covered = (t >= starts[..., None]) & (t < starts[..., None] + gap) & (t < L[:, None, None])
        covered = torch.cummax(covered.to(torch.uint8), dim=1).values.bool()
        counts = covered.sum(dim=2)
        reached = counts >= tgt[:, None]
        first = reached.to(torch.uint8).argmax(dim=1)
        rows = covered[torch.arange(b), first]
        excess = counts[torch.arange(b), first] - tgt
        rows &= ~((t >= starts[:, :1]) & (t < starts[:, :1] + excess[:, None]))
        done = reached.any(dim=1)
        mask[todo[done]] = rows[done]
        todo = todo[~done]
        spans *= 2
    return mask


def test_same_masks_as_the_reference_over_seeds_lengths_and_batches():
    picks = torch.Generator().manual_seed(11)
    cases = 0
    for seed in range(60):
        batch = [1, 2, 3, 7, 16, 33, 128][seed % 7]
        max_len = [300, 300, 20, 149, 1][seed % 5]
        gap = [15, 15, 4, 1, 10][seed % 5] if max_len > 1 else 15
        prop = [0.5, 0.5, 0.3, 0.8, 0.05][seed % 5]
        if seed % 3 == 0:  # mostly full crops with a few padded ones, as training sees them
            lengths = torch.full((batch,), max_len)
            lengths[: batch // 4] = torch.randint(0, max_len + 1, (batch // 4,), generator=picks)
        else:
            lengths = torch.randint(0, max_len + 1, (batch,), generator=picks)
        new = time_gap_mask(lengths, max_len, prop, gap, generator=torch.Generator().manual_seed(seed))
        old = reference_time_gap_mask(lengths, max_len, prop, gap, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(new, old), (seed, batch, max_len, gap, prop, lengths.tolist())
        cases += 1
    for lengths in ([0], [0, 0, 0], [1], [1, 2, 3], [14, 15, 16], [0, 300, 1, 299, 2]):  # empty and short clips
        for seed in range(5):
            lengths_t = torch.tensor(lengths)
            new = time_gap_mask(lengths_t, 300, generator=torch.Generator().manual_seed(seed))
            old = reference_time_gap_mask(lengths_t, 300, generator=torch.Generator().manual_seed(seed))
            assert torch.equal(new, old), (seed, lengths)
    assert time_gap_mask(torch.zeros(0, dtype=torch.long), 300).shape == (0, 300)


def test_same_masks_as_the_reference_when_rows_are_drawn_again(rounds):
    """A target near the whole clip runs out of spans now and then: those rows are drawn again
    with twice the spans, from the same generator, in the same order as before."""
    picks = torch.Generator().manual_seed(12)
    for seed in range(20):
        lengths = torch.randint(200, 301, (64,), generator=picks)
        new = time_gap_mask(lengths, 300, 0.99, 15, generator=torch.Generator().manual_seed(seed))
        old = reference_time_gap_mask(lengths, 300, 0.99, 15, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(new, old), seed
    assert max(rounds) == 64 and len(rounds) > 2 * 20, rounds  # second rounds happened


def test_collate_masks_match_the_reference():
    """The collate's masks are the reference algorithm's with the generator seeded by the items."""
    from training.data.sampler import mix_seed

    crop = 96000
    collate = MaskingCollate("mel256", crop)
    picks = torch.Generator().manual_seed(13)
    for batch in (1, 16, 128):
        lengths = [crop] * batch
        for i in range(0, batch, 5):
            lengths[i] = int(torch.randint(0, crop, (1,), generator=picks))  # padded, short and empty clips
        items = [{"wav": torch.zeros(crop), "length": n, "ok": True, "seed": 1000 * batch + i}
                 for i, n in enumerate(lengths)]
        got = collate(items)
        frames = torch.tensor([frames_for("mel256", n) for n in lengths])
        gen = torch.Generator().manual_seed(mix_seed(*[it["seed"] for it in items]))
        assert torch.equal(got["frames"], frames)
        assert torch.equal(got["mask"], reference_time_gap_mask(frames, collate.frames, generator=gen))


def test_collate_stacks_into_shared_memory_in_a_worker(monkeypatch):
    """In a DataLoader worker the batch is stacked straight into shared memory, as default_collate
    does: stacked privately, it would be copied a second time to cross the worker queue."""
    from torch.utils.data._utils import worker

    items = [{"wav": torch.zeros(4800), "length": 4800, "ok": True, "seed": i} for i in range(4)]
    collate = MaskingCollate("mel256", 4800)
    assert not collate(items)["wav"].is_shared()  # in the main process: an ordinary tensor
    monkeypatch.setattr(worker, "_worker_info", object())  # what get_worker_info() sees in a worker
    batch = collate(items)
    assert batch["wav"].is_shared() and torch.equal(batch["wav"], torch.stack([it["wav"] for it in items]))
