"""The held-out sound families of the transfer check (training/builtin/transfer_families.py)."""
import numpy as np
import pytest

from training.builtin import transfer_families as TF


@pytest.mark.parametrize("family", sorted(TF.FAMILIES))
def test_every_family_makes_balanced_deterministic_clips(family):
    classes = len(TF.FAMILIES[family])
    wavs, labels = TF.make_task(family, 2 * classes, seed=3, seconds=0.5, sr=16000)
    assert wavs.shape == (2 * classes, 8000) and wavs.dtype == np.float32
    assert np.bincount(labels).tolist() == [2] * classes
    assert np.isfinite(wavs).all() and np.abs(wavs).max() <= 0.7 + 1e-6
    assert (np.abs(wavs).max(axis=1) >= 0.1 - 1e-6).all()  # peak-normalised: no silent clip
    again, _ = TF.make_task(family, 2 * classes, seed=3, seconds=0.5, sr=16000)
    assert np.array_equal(wavs, again)
    other, _ = TF.make_task(family, 2 * classes, seed=4, seconds=0.5, sr=16000)
    assert not np.allclose(wavs, other)


def test_unknown_family_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown held-out family 'speech'"):
        TF.make_task("speech", 4, seed=0)


def test_held_out_registers_hold_no_pitch_of_the_built_in_corpus():
    from training.builtin import corpus as D

    for words in D.SOUNDS.values():
        corpus = set(words.tone_hz) | set(words.note_hz) | set(words.carrier_hz)
        for centre in TF.REGISTER_CENTRES:
            low, high = centre * 2 ** (-TF.REGISTER_SPREAD / 12), centre * 2 ** (TF.REGISTER_SPREAD / 12)
            assert not any(low <= f <= high for f in corpus), (words.name, centre)
