"""training/builtin/corpus.py: the built-in corpus's classes, clips and sound vocabularies."""
import dataclasses

import numpy as np
import pytest
import torch

from training.builtin import corpus as D


def test_synthetic_corpus_has_classes_and_short_clips():
    corpus = D.SyntheticCorpus(60, seconds=1.0, seed=0)
    labels = corpus.labels()
    assert set(labels) == set(range(len(D.SYNTH_CLASSES)))
    lengths = [corpus[i]["length"] for i in range(60)]
    assert min(lengths) < 24000 and max(lengths) == 24000
    item = corpus[0]
    assert item["wav"].shape == (24000,) and float(item["wav"].abs().max()) <= 1.0
    assert torch.equal(corpus[5]["wav"], D.SyntheticCorpus(60, seconds=1.0, seed=0)[5]["wav"])
    other = D.SyntheticCorpus(10, seconds=1.0, seed=0, offset=60)
    assert not torch.equal(other[0]["wav"], corpus[0]["wav"])


def _share_below(kind, words, hz=300.0, events=200, sr=24000):
    """Mean share of an event's energy below ``hz``, over ``events`` events of one kind."""
    rng = np.random.default_rng(0)
    t = np.arange(sr // 2) / sr
    f = np.fft.rfftfreq(len(t), 1 / sr)
    shares = []
    for _ in range(events):
        power = np.abs(np.fft.rfft(D._event(kind, rng, t, t, sr, words))) ** 2
        shares.append(power[f < hz].sum() / power.sum())
    return float(np.mean(shares))


def test_spectral_vocabulary_puts_sound_below_300_hz():
    """The spectral words (the stand-in targets' corpus) fill the octaves the grid words leave
    almost empty (docs/experiments/builtin-default.md, the fourth pass): low tones and carriers, noise bursts
    whose bands reach down to 60 Hz."""
    for kind, grid_most, spectral_least in (("tone", 0.25, 0.6), ("am", 0.1, 0.5), ("noise_burst", 0.01, 0.1)):
        grid, spectral = _share_below(kind, D.GRID_SOUNDS), _share_below(kind, D.SPECTRAL_SOUNDS)
        assert grid < grid_most and spectral > spectral_least, (kind, grid, spectral)


def test_corpus_sounds_follow_the_codec():
    """The offline codec gets the frame-grid words, every spectral target the spectral ones; the
    cached codes are keyed on the choice, so a cache of one is never read as the other."""
    assert D.corpus_sounds("offline") == "grid"
    assert D.corpus_sounds("mel-kmeans") == D.corpus_sounds("pretrained") == "spectral"
    grid, spectral = D.SyntheticCorpus(4, 1.0, sounds="grid"), D.SyntheticCorpus(4, 1.0, sounds="spectral")
    assert D.codes_cache_key(grid, "w", 8) != D.codes_cache_key(spectral, "w", 8)
    assert grid.labels() == spectral.labels()  # same classes, different words
    assert not all(torch.equal(grid[i]["wav"], spectral[i]["wav"]) for i in range(4))
    with pytest.raises(ValueError, match="unknown corpus sounds 'loud'"):
        D.SyntheticCorpus(4, 1.0, sounds="loud")


def test_vocabulary_sounds_keep_their_codes_while_they_last():
    """Why the offline codec's corpus puts pitches on the 75 Hz frame grid (training/data.py): the
    offline codec's codes hold still through a sustained grid sound and flicker for an off-grid one."""
    from hear_codec.codec import load_codec

    codec = load_codec("offline")
    sr = 24000
    t = np.arange(sr) / sr
    rng = np.random.default_rng(0)
    waves = [
        0.35 * np.sin(2 * np.pi * D.GRID_SOUNDS.tone_hz[2] * t),
        0.35 * D._event("harmonic", rng, t, t, sr, D.GRID_SOUNDS),
        0.35 * np.sin(2 * np.pi * (D.GRID_SOUNDS.tone_hz[2] + 10) * t),  # 10 Hz off the grid
    ]
    codes = codec.encode_codes(torch.tensor(np.stack(waves), dtype=torch.float32), 8)[..., 10:-5]
    steady = (codes[..., 1:] == codes[..., :-1]).float().mean(dim=(1, 2))
    # Deep codebooks flip now and then between near-tied codewords; the contrast is the point.
    assert steady[0] > 0.9 and steady[1] > 0.9, steady
    assert steady[2] < 0.3, steady


def test_event_envelopes_hold_decay_or_swell_in_equal_shares():
    rng = np.random.default_rng(0)
    tt = np.arange(12000) / 24000  # 0.5 s
    shapes = {"hold": 0, "decay": 0, "swell": 0}
    for _ in range(600):
        env = D.event_envelope(rng, tt)
        assert env.shape == tt.shape and env.min() >= 0.0 and env.max() <= 1.0
        if np.all(env == 1.0):
            shapes["hold"] += 1
        elif env[0] == 1.0 and np.all(np.diff(env) < 0) and env[-1] < np.exp(-0.5 / 0.3) + 1e-9:
            shapes["decay"] += 1  # falls from the onset, at least as fast as the slowest time constant
        elif env[0] == 0.0 and np.all(np.diff(env) >= 0) and env[-1] == 1.0:
            shapes["swell"] += 1  # rises from silence to full level within 0.3 s
    assert sum(shapes.values()) == 600 and all(150 < n < 250 for n in shapes.values()), shapes


def _tone_event_spreads(sounds: str, clips: int = 60) -> list:
    """Max / min of the 10 ms RMS inside each tone event of ``clips`` tone clips (frames above the
    noise floor, two dropped at each end for the fades)."""
    spreads = []
    for i in range(clips * len(D.SYNTH_CLASSES)):
        wav, label = D.corpus_clip(i, 2.0, seed=3, sounds=sounds)
        if D.SYNTH_CLASSES[label] != "tone":
            continue
        rms = np.sqrt((wav[: len(wav) // 240 * 240].reshape(-1, 240) ** 2).mean(1))
        loud = np.concatenate([[False], rms > 0.05, [False]]).astype(int)
        starts, ends = np.flatnonzero(np.diff(loud) == 1), np.flatnonzero(np.diff(loud) == -1)
        spreads += [rms[a + 2:b - 2].max() / rms[a + 2:b - 2].min() for a, b in zip(starts, ends) if b - a > 8]
    return spreads


def test_spectral_words_shape_their_events_and_grid_words_hold_them():
    """The grid words keep every event flat (the offline codec's codes must hold still through
    it); the spectral words decay or swell two events in three (docs/experiments/builtin-default.md, the sixth pass)."""
    grid, spectral = _tone_event_spreads("grid"), _tone_event_spreads("spectral")
    assert len(grid) > 30 and max(grid) < 1.1, max(grid)
    shaped = np.mean(np.array(spectral) > 2.0)
    assert len(spectral) > 30 and 0.3 < shaped < 0.9, shaped


def test_half_the_spectral_clips_hold_a_quieter_second_class_and_grid_clips_none(monkeypatch):
    """The underlay (data._add_underlay) is drawn after the clip's own events, so the same index with
    mixtures off gives the clip without it: their difference is the underlay alone. It is in about
    MIX_SHARE of the spectral clips, quieter than the clip's own events, and in no grid clip."""
    def clips(sounds):
        return [D.corpus_clip(i, 2.0, seed=5, sounds=sounds)[0] for i in range(160)]

    mixed = clips("spectral")
    monkeypatch.setitem(D.SOUNDS, "spectral", dataclasses.replace(D.SPECTRAL_SOUNDS, mixtures=False))
    alone = clips("spectral")
    under = [np.sqrt(np.mean((m - a) ** 2)) for m, a in zip(mixed, alone)]
    own = [np.sqrt(np.mean(a ** 2)) for a in alone]
    with_underlay = [i for i, u in enumerate(under) if u > 1e-6]
    assert 0.35 < len(with_underlay) / len(mixed) < 0.65, len(with_underlay)
    quieter = np.mean([under[i] < own[i] for i in with_underlay])
    assert quieter > 0.8, quieter  # 3-15 dB down, though event lengths and classes vary
    assert not D.GRID_SOUNDS.mixtures  # the offline codec's words stay one class at a time
