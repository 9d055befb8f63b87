"""Held-out sound families for the transfer check: audio kinds the built-in corpus never has.

Each family is a small labelled task made in code (``make_task(family, n, seed)``). They are
chosen to be disjoint from the built-in corpus (training/data.py) in *kind*, not only in random
seed: every mechanism below (a glottal source through formant resonators, a plucked delay line,
inharmonic modes with exponential decays, impulsive noise textures, convolution reverb) appears
nowhere in the corpus, and every pitch, onset and phase is continuous and random (off the
codec's 75 Hz frame grid). The labels ask what a listener would ask: which vowel, which
consonant, which register, which kind of instrument, which kind of noise.

==============  ==========================================  =====================================
family          label                                        nuisance (varies within a class)
==============  ==========================================  =====================================
vowels          vowel /a e i o u/ (formant pattern)          speaker (formant scale), pitch 85-260 Hz,
                                                             intonation, 1-3 syllables
consonants      onset manner: plosive, fricative, nasal,     the vowel, pitch, speaker
                none (vowel only)
pitch           register: 6 bands 106-1273 Hz, each between   pulse-train waveform (duty cycle),
                two pitches of the built-in corpus           tilt, vibrato, loudness
instruments     plucked string, bowed string, struck bar     pitch 90-700 Hz, number of notes,
                or bell, membrane drum                       decay, body resonances
noise_events    impacts, crackle, wind, engine               rates, bands, decays
reverb_mix      the instruments' labels, in a random room    room (RT60 0.3-1.5 s), babble and
                with babble and noise at 0-12 dB SNR         noise, SNR
==============  ==========================================  =====================================

All clips are mono float32 at ``sr`` (48 kHz by default, what a HEAR harness feeds), ``seconds``
long, peak-normalised to a random level. Everything is numpy/scipy: no files, no downloads.
"""
from __future__ import annotations

import zlib

import numpy as np
from scipy.signal import lfilter

FAMILIES = {
    "vowels": ("a", "e", "i", "o", "u"),
    "consonants": ("plosive", "fricative", "nasal", "none"),
    "pitch": ("106Hz", "184Hz", "260Hz", "367Hz", "735Hz", "1273Hz"),
    "instruments": ("plucked", "bowed", "struck", "drum"),
    "noise_events": ("impacts", "crackle", "wind", "engine"),
    "reverb_mix": ("plucked", "bowed", "struck", "drum"),
}

# Peterson & Barney (1952) adult male averages, F1-F3 in Hz.
VOWEL_FORMANTS = {"a": (730, 1090, 2440), "e": (530, 1840, 2480), "i": (270, 2290, 3010),
                  "o": (570, 840, 2410), "u": (300, 870, 2240)}
# Geometric means of neighbouring built-in corpus pitches (75, 150, 225, 300, 450, 600, 900, 1800
# Hz): each register, +-REGISTER_SPREAD semitones wide, lies between two of them.
REGISTER_CENTRES = (106.0, 184.0, 260.0, 367.0, 735.0, 1273.0)
REGISTER_SPREAD = 1.5  # semitones


def make_task(family: str, n: int, seed: int, seconds: float = 2.0, sr: int = 48_000) -> tuple:
    """``n`` clips of one family: (wavs [n, samples] float32, labels [n] int64).

    Labels cycle through the classes (balanced); clip ``i`` depends only on (family, seed, i)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown held-out family {family!r}; choose from {sorted(FAMILIES)}")
    samples = int(round(seconds * sr))
    wavs = np.zeros((n, samples), dtype=np.float32)
    labels = np.arange(n) % len(FAMILIES[family])
    for i in range(n):
        rng = np.random.default_rng(zlib.crc32(f"{family}/{seed}/{i}".encode()))
        wav = _GENERATORS[family](rng, int(labels[i]), samples, sr)
        peak = np.abs(wav).max()
        wavs[i] = wav / (peak + 1e-9) * rng.uniform(0.1, 0.7)
    return wavs, labels


# ---------------------------------------------------------------- building blocks

def _resonator(x: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    """A two-pole resonance (one formant / body mode) at ``freq`` Hz with ``bandwidth`` Hz."""
    r = np.exp(-np.pi * bandwidth / sr)
    theta = 2 * np.pi * min(freq, 0.45 * sr) / sr
    return lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x)


def _one_pole_lowpass(x: np.ndarray, cutoff: float, sr: int) -> np.ndarray:
    a = np.exp(-2 * np.pi * cutoff / sr)
    return lfilter([1 - a], [1, -a], x)


def _highpass(x: np.ndarray, cutoff: float, sr: int) -> np.ndarray:
    return x - _one_pole_lowpass(x, cutoff, sr)


def _bandpass_noise(rng, n: int, lo: float, hi: float, sr: int) -> np.ndarray:
    x = rng.standard_normal(n)
    return _one_pole_lowpass(_highpass(x, lo, sr), hi, sr)


def _glottal_source(rng, f0: np.ndarray, sr: int) -> np.ndarray:
    """An impulse per glottal cycle (with jitter) smoothed to a -12 dB/octave source: [len(f0)]."""
    phase = np.cumsum(f0 * (1 + 0.01 * rng.standard_normal(len(f0))) / sr) + rng.uniform()
    pulses = np.diff(np.floor(phase), prepend=np.floor(phase[0])).astype(float)
    return lfilter([1.0], [1, -2 * 0.96, 0.96 ** 2], pulses) * (1 - 0.96) ** 2 * 4


def _vowel(rng, vowel: str, n: int, sr: int, speaker: float, f0_mean: float) -> np.ndarray:
    """One voiced vowel of ``n`` samples: falling intonation, formants scaled by ``speaker``."""
    t = np.arange(n) / sr
    f0 = f0_mean * (1 + rng.uniform(-0.08, 0.08) - rng.uniform(0.0, 0.15) * t / max(t[-1], 1e-3))
    f0 = f0 * (1 + 0.01 * np.sin(2 * np.pi * rng.uniform(4, 6) * t + rng.uniform(0, 6.3)))
    src = _glottal_source(rng, f0, sr) + 0.02 * rng.standard_normal(n)  # breath
    out = np.zeros(n)
    for k, (formant, bw) in enumerate(zip(VOWEL_FORMANTS[vowel], (70, 100, 160))):
        out += _resonator(src, formant * speaker * rng.uniform(0.96, 1.04), bw * rng.uniform(0.8, 1.3), sr) / (k + 1)
    out *= _attack_release(n, sr, rng.uniform(0.01, 0.04), rng.uniform(0.03, 0.08))
    return out / (out.std() + 1e-9)  # unit RMS: consonants are set relative to it


def _attack_release(n: int, sr: int, attack: float, release: float) -> np.ndarray:
    t = np.arange(n) / sr
    return np.clip(np.minimum(t / attack, (t[-1] - t) / release), 0.0, 1.0)


def _place(out: np.ndarray, event: np.ndarray, start: int) -> None:
    """Add ``event`` into ``out`` at sample ``start`` (cut at the end)."""
    end = min(len(out), start + len(event))
    if end > start:
        out[start:end] += event[: end - start]


def _background(rng, n: int) -> np.ndarray:
    return rng.uniform(0.0005, 0.003) * rng.standard_normal(n)


# ---------------------------------------------------------------- the families

def _gen_vowels(rng, label: int, n: int, sr: int) -> np.ndarray:
    vowel = FAMILIES["vowels"][label]
    speaker, f0 = rng.uniform(0.88, 1.25), rng.uniform(85, 260)
    out = _background(rng, n)
    start = int(rng.uniform(0.0, 0.3) * sr)
    for _ in range(int(rng.integers(1, 4))):
        length = int(rng.uniform(0.25, 0.6) * sr)
        if start + length > n:
            break
        _place(out, _vowel(rng, vowel, length, sr, speaker, f0), start)
        start += length + int(rng.uniform(0.08, 0.3) * sr)
    return out


def _consonant(rng, manner: str, sr: int, speaker: float, f0: float) -> np.ndarray:
    if manner == "plosive":  # closure silence, a short band-passed burst, aspiration
        burst = _bandpass_noise(rng, int(0.015 * sr), 800, rng.uniform(2500, 5000), sr)
        burst *= np.exp(-np.arange(len(burst)) / (0.004 * sr)) / (burst.std() + 1e-9) * rng.uniform(0.5, 1.0)
        asp = _bandpass_noise(rng, int(rng.uniform(0.02, 0.06) * sr), 1000, 6000, sr)
        asp *= rng.uniform(0.05, 0.15) / (asp.std() + 1e-9)
        return np.concatenate([np.zeros(int(rng.uniform(0.03, 0.06) * sr)), burst, asp])
    if manner == "fricative":  # a sustained high-frequency hiss
        m = int(rng.uniform(0.09, 0.18) * sr)
        hiss = _highpass(rng.standard_normal(m), rng.uniform(2500, 5500), sr)
        return hiss * _attack_release(m, sr, 0.02, 0.01) * rng.uniform(0.15, 0.4) / (hiss.std() + 1e-9)
    if manner == "nasal":  # a low voiced murmur with one resonance near 250 Hz
        m = int(rng.uniform(0.06, 0.12) * sr)
        f = np.full(m, f0)
        murmur = _resonator(_glottal_source(rng, f, sr), 250 * speaker, 80, sr)
        murmur += 0.3 * _resonator(_glottal_source(rng, f, sr), 2200 * speaker, 300, sr)
        return murmur * _attack_release(m, sr, 0.01, 0.005) * rng.uniform(0.2, 0.4) / (murmur.std() + 1e-9)
    return np.zeros(0)


def _gen_consonants(rng, label: int, n: int, sr: int) -> np.ndarray:
    manner = FAMILIES["consonants"][label]
    speaker, f0 = rng.uniform(0.88, 1.25), rng.uniform(85, 260)
    out = _background(rng, n)
    start = int(rng.uniform(0.0, 0.25) * sr)
    for _ in range(int(rng.integers(2, 4))):  # "ba da ga" like: same manner, random vowels
        onset = _consonant(rng, manner, sr, speaker, f0)
        vowel = _vowel(rng, "aeiou"[rng.integers(5)], int(rng.uniform(0.18, 0.35) * sr), sr, speaker, f0)
        syllable = np.concatenate([onset, vowel])
        if start + len(syllable) > n:
            break
        _place(out, syllable, start)
        start += len(syllable) + int(rng.uniform(0.06, 0.2) * sr)
    return out


def _gen_pitch(rng, label: int, n: int, sr: int) -> np.ndarray:
    f0 = REGISTER_CENTRES[label] * 2 ** (rng.uniform(-REGISTER_SPREAD, REGISTER_SPREAD) / 12)
    duty = rng.uniform(0.08, 0.45)  # a band-limited pulse train: sinc-shaped partials with notches
    tilt = rng.uniform(0.0, 1.0)
    out = _background(rng, n)
    start = int(rng.uniform(0.0, 0.4) * sr)
    length = min(n - start, int(rng.uniform(0.6, 1.5) * sr))
    t = np.arange(length) / sr
    phase = 2 * np.pi * f0 * (t + 0.003 * np.sin(2 * np.pi * rng.uniform(4, 6.5) * t) / (2 * np.pi * 5))
    k = np.arange(1, int(0.45 * sr / f0))
    k = k[k * f0 < 10_000]
    amps = np.sin(np.pi * k * duty) / (np.pi * k) * k ** -tilt
    offsets = rng.uniform(0, 2 * np.pi, len(k))
    note = (amps[:, None] * np.sin(k[:, None] * phase[None, :] + offsets[:, None])).sum(0)
    _place(out, note * _attack_release(length, sr, rng.uniform(0.01, 0.08), rng.uniform(0.05, 0.2)), start)
    return out


def _pluck(rng, f0: float, n: int, sr: int) -> np.ndarray:
    """Karplus-Strong: a noise burst circulating in a lossy, low-passed delay line."""
    delay = max(2, int(round(sr / f0)))
    loss = rng.uniform(0.985, 0.998)
    excitation = np.zeros(n)
    excitation[:delay] = _one_pole_lowpass(rng.uniform(-1, 1, delay), rng.uniform(2000, 8000), sr)
    a = np.zeros(delay + 2)
    a[0], a[delay], a[delay + 1] = 1.0, -loss / 2, -loss / 2
    return lfilter([1.0], a, excitation)


def _bow(rng, f0: float, n: int, sr: int) -> np.ndarray:
    """A band-limited sawtooth with vibrato and bow noise through a few body resonances."""
    t = np.arange(n) / sr
    vibrato = 1 + 0.006 * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * t) * np.clip(t / 0.3, 0, 1)
    phase = 2 * np.pi * np.cumsum(f0 * vibrato) / sr
    k = np.arange(1, int(min(10_000, 0.45 * sr) / f0))
    saw = (np.sin(k[:, None] * phase[None, :]) / k[:, None]).sum(0)
    saw += 0.05 * rng.standard_normal(n)
    body = sum(_resonator(saw, rng.uniform(250, 3500), rng.uniform(80, 300), sr) for _ in range(3))
    return (0.3 * saw + body) * _attack_release(n, sr, rng.uniform(0.08, 0.25), rng.uniform(0.05, 0.2))


BAR_RATIOS = (1.0, 2.756, 5.404, 8.933)
BELL_RATIOS = (0.5, 1.0, 1.183, 1.506, 2.0, 2.514, 2.662, 3.011)


def _strike(rng, f0: float, n: int, sr: int) -> np.ndarray:
    """Inharmonic modes (a bar or a bell) with exponential decays, shorter for higher modes."""
    t = np.arange(n) / sr
    ratios = BAR_RATIOS if rng.random() < 0.5 else BELL_RATIOS
    t60 = rng.uniform(0.4, 1.5)
    out = np.zeros(n)
    for r in ratios:
        f = f0 * r * rng.uniform(0.99, 1.01)
        if f < 0.45 * sr:
            out += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3)) * np.exp(-6.9 * t * r ** 0.5 / t60)
    return out * np.clip(t / 0.001, 0, 1)


MEMBRANE_RATIOS = (1.0, 1.594, 2.136, 2.296, 2.653)


def _drum(rng, f0: float, n: int, sr: int) -> np.ndarray:
    """A membrane: modes of a circular drum whose pitch drops after the hit, plus a noise click."""
    t = np.arange(n) / sr
    f0 = f0 * 0.4  # drums sit lower than the strings
    glide = 1 + rng.uniform(0.2, 0.5) * np.exp(-t / rng.uniform(0.02, 0.06))
    decay = rng.uniform(0.08, 0.35)
    out = np.zeros(n)
    for j, r in enumerate(MEMBRANE_RATIOS):
        phase = 2 * np.pi * np.cumsum(f0 * r * glide) / sr
        out += np.sin(phase) * np.exp(-t / (decay / (1 + j))) / (1 + j)
    click = _bandpass_noise(rng, n, 1000, 6000, sr) * np.exp(-t / 0.004) * rng.uniform(0.5, 2.0)
    return out + click


_INSTRUMENTS = (_pluck, _bow, _strike, _drum)


def _gen_instruments(rng, label: int, n: int, sr: int) -> np.ndarray:
    out = _background(rng, n)
    start = int(rng.uniform(0.0, 0.3) * sr)
    for _ in range(int(rng.integers(1, 5))):
        length = min(n - start, int(rng.uniform(0.3, 1.0) * sr) if label == 1 else n - start)
        if length < int(0.1 * sr):
            break
        note = _INSTRUMENTS[label](rng, 90 * 2 ** rng.uniform(0, 2.95), length, sr)
        _place(out, note * rng.uniform(0.5, 1.0), start)
        start += int(rng.uniform(0.25, 0.7) * sr) + (length if label == 1 else 0)
    return out


def _gen_noise_events(rng, label: int, n: int, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    out = _background(rng, n)
    kind = FAMILIES["noise_events"][label]
    if kind == "impacts":  # a few knocks: band-passed noise with a fast exponential decay
        for _ in range(int(rng.integers(2, 7))):
            start = int(rng.uniform(0, 1.8) * sr)
            m = int(0.25 * sr)
            centre = rng.uniform(300, 5000)
            hit = _resonator(rng.standard_normal(m), centre, centre / rng.uniform(1, 4), sr)
            _place(out, hit * np.exp(-np.arange(m) / (rng.uniform(0.005, 0.04) * sr)) * rng.uniform(0.3, 1), start)
    elif kind == "crackle":  # Poisson clicks of random sizes (rain, fire)
        rate = rng.uniform(20, 200)
        clicks = np.zeros(n)
        where = rng.random(n) < rate / sr
        clicks[where] = rng.lognormal(0, 1, where.sum()) * rng.choice((-1, 1), where.sum())
        out += _highpass(lfilter([1.0], [1, -rng.uniform(0.3, 0.9)], clicks), rng.uniform(500, 3000), sr)
    elif kind == "wind":  # low-passed noise with slow gusts of level and colour
        gust = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t + rng.uniform(0, 6.3))
        noise = _one_pole_lowpass(rng.standard_normal(n), rng.uniform(200, 1200), sr)
        out += noise * gust * 5 + 0.3 * _resonator(noise, rng.uniform(300, 900), 100, sr) * gust ** 2
    else:  # engine: noise pulses at a firing rate, plus a hum at its harmonics
        rate = rng.uniform(15, 60)
        pulses = (np.sin(2 * np.pi * rate * t) > rng.uniform(0.3, 0.8)).astype(float)
        out += _one_pole_lowpass(rng.standard_normal(n) * pulses, rng.uniform(400, 2000), sr) * 3
        out += 0.2 * sum(np.sin(2 * np.pi * rate * k * t + rng.uniform(0, 6.3)) / k for k in (1, 2, 3))
    return out


def _room(rng, sr: int) -> np.ndarray:
    """A synthetic room impulse response: direct sound, then exponentially decaying noise."""
    rt60 = rng.uniform(0.3, 1.5)
    m = int(rt60 * sr)
    tail = rng.standard_normal(m) * np.exp(-6.9 * np.arange(m) / m)
    tail = _one_pole_lowpass(tail, rng.uniform(2000, 8000), sr)
    ir = np.concatenate([[1.0], np.zeros(int(rng.uniform(0.003, 0.02) * sr)), tail])
    direct_to_reverb = 10 ** (rng.uniform(-6, 6) / 20)
    ir[1:] *= 1 / direct_to_reverb / np.sqrt((tail ** 2).sum())
    return ir


def _gen_reverb_mix(rng, label: int, n: int, sr: int) -> np.ndarray:
    from scipy.signal import fftconvolve

    dry = _gen_instruments(rng, label, n, sr)
    wet = fftconvolve(dry, _room(rng, sr))[:n]
    babble = sum(_gen_vowels(rng, int(rng.integers(5)), n, sr) for _ in range(int(rng.integers(1, 4))))
    noise = babble / (np.std(babble) + 1e-9) + rng.uniform(0, 1) * _one_pole_lowpass(rng.standard_normal(n), 1000, sr) * 5
    snr_db = rng.uniform(0, 12)
    noise *= np.std(wet) / (np.std(noise) + 1e-9) / 10 ** (snr_db / 20)
    return wet + noise


_GENERATORS = {"vowels": _gen_vowels, "consonants": _gen_consonants, "pitch": _gen_pitch,
               "instruments": _gen_instruments, "noise_events": _gen_noise_events, "reverb_mix": _gen_reverb_mix}
