"""The built-in corpus: sound clips generated in code, for the offline demo runs (no download).

Six sound classes (:data:`SYNTH_CLASSES`), each clip 1-4 events of its class over faint noise,
from one of two sound vocabularies (:data:`SOUNDS`): "spectral" for targets that read the
spectrum (EnCodecMAE's built-in run), "grid" for the random-weight EnCodec's codes (AudioFormer's).
Clips are a pure function of (seed, index), so a run, its learning check and its transfer check
agree on which clips were trained on and which are held out.

:func:`corpus_datasets` gives a run its (train, validation) datasets, with the targets of every
clip computed once and cached in ``OUT/cache/`` (fixed clips, no random crops: on a CPU the
targets cost several times the tiny model's step).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from hear_codec.codec import FRAME_RATE, SAMPLE_RATE
from hear_codec.files import atomic_torch_save
from training.builtin.transfer_families import REGISTER_CENTRES
from training.data.sampler import mix_seed

log = logging.getLogger(__name__)

SYNTH_CLASSES = ("tone", "chirp", "harmonic", "noise_burst", "am", "fm")
CORPUS_VERSION = 5  # bump when corpus_clip changes: cached codec targets are keyed on it


def corpus_clip(index: int, seconds: float = 2.0, seed: int = 0, sr: int = SAMPLE_RATE,
                min_fraction: float = 1.0, sounds: str = "spectral") -> tuple:
    """One clip of the built-in corpus: (wav float32 [<= seconds * sr], label).

    The label (index into SYNTH_CLASSES) is drawn from the index. A clip holds 1-4 events of its
    class one after another, with short silences between them, over faint pink-ish noise; each
    event is a word of the sound vocabulary ``sounds`` (a key of SOUNDS, below: pitch, timbre,
    modulation, loudness) and lasts 0.4-1 s (the first one less if the clip is shorter); with the
    spectral words, half the clips also hold 1-3 quieter events of another class (_add_underlay). With
    ``min_fraction < 1`` a quarter of the clips are shorter (uniform in [min_fraction, 1] of
    ``seconds``), to exercise padding.
    """
    words = corpus_words(sounds)
    rng = np.random.default_rng(mix_seed(seed, index, 7))
    label = int(rng.integers(len(SYNTH_CLASSES)))
    n = int(round(seconds * sr))
    if min_fraction < 1.0 and rng.random() < 0.25:
        n = int(n * rng.uniform(min_fraction, 1.0))
    t = np.arange(n) / sr
    noise = np.cumsum(rng.standard_normal(n)) * 1e-3
    wav = 0.003 * rng.standard_normal(n) + (noise - noise.mean()) * 0.05
    frame = sr / FRAME_RATE  # onsets on the codec's frame grid
    start = rng.uniform(0.0, 0.15)
    for k in range(4):  # as many events as fit, at most 4
        dur = rng.uniform(0.4, 1.0)
        room = n / sr - start
        if room < (0.1 if k == 0 else 0.4):  # a short clip still gets one (shorter) event
            break
        if k == 0:
            dur = min(dur, room)
        a = int(round(start * sr / frame) * frame)
        b = min(n, a + int(dur * sr))
        tt = t[a:b] - t[a]
        ramp = _fades(tt)
        level = rng.choice(LEVELS)
        if words.envelopes:
            ramp = ramp * event_envelope(rng, tt)
        wav[a:b] += level * ramp * _event(SYNTH_CLASSES[label], rng, t[a:b], tt, sr, words)
        start = (b / sr) + rng.uniform(0.05, 0.15)
    if words.mixtures and rng.random() < MIX_SHARE:
        _add_underlay(wav, rng, label, t, sr, words)
    return np.clip(wav, -1, 1).astype(np.float32), label


# The sound vocabularies. Two, because the two kinds of built-in targets need different ones.
#
# "grid", for the offline codec (--codec offline: AudioFormer's built-in run, whose codes are its
# input as well as its targets). A random EnCodec is close to a linear filter bank: its codes
# follow each partial's phase at the frame, and they change with loudness in steps. So pitches are
# multiples of the codec frame rate (75 Hz) with phases locked to the clip start (the same phase in
# every frame), chirps start on the frame grid, and each event has one of two loudness levels and a
# flat envelope: an event then keeps the same codes while it sounds (or repeats them, for AM/FM),
# and a small vocabulary means each word recurs across clips, so a model can learn its codes from a
# few hundred clips (tests/test_data.py checks this). Noise bursts stay random: their codes are not
# predictable.
#
# "spectral", for targets that read the spectrum (the mel-kmeans stand-in, EnCodecMAE's built-in
# default, and the published EnCodec): these need no grid, and what the corpus lacks, a model
# trained on it does not learn to tell apart. With the grid words alone the corpus held almost no
# sound below ~300 Hz (three note pitches, one tone, the noise floor), and the trained model held
# low pitches and low noises closer together than its init did (docs/pretraining.md, "A fourth
# pass"). So this vocabulary adds 30 tone pitches 55-302 Hz (every third of them also an AM/FM
# carrier), replaces the four grid note pitches by 56 from 60 to 1662 Hz, and draws noise-burst
# band edges log-uniform from 60 Hz (low bands as often as high ones). Every added pitch lies more
# than 2.5 semitones from each register centre of the transfer check's held-out pitch family
# (training/builtin/transfer_families.py), so that family stays unheard.
LEVELS = (0.12, 0.35)
TIMBRES = ((0.6, 1.0), (1.0, 0.3), (2.0, 0.5))  # (spectral tilt, even-partial level)
CHIRPS = ((200, 1600), (1600, 200), (400, 3200), (3200, 400))  # (start Hz, end Hz) over 0.4 s
MODULATION_PERIODS = (2, 5, 8)  # AM/FM modulators repeat every this many frames


@dataclass(frozen=True)
class CorpusSounds:
    """The pitches and noise bands one sound vocabulary draws its events from."""

    name: str
    tone_hz: tuple  # sine tones
    note_hz: tuple  # fundamentals of the harmonic notes
    carrier_hz: tuple  # AM and FM carriers
    noise_low_hz: float  # noise-burst band edges lie in [noise_low_hz, 0.8 * Nyquist] ...
    noise_log_edges: bool  # ... drawn log-uniform (True) or uniform (False)
    envelopes: bool = False  # events hold, decay or swell (event_envelope); False: every event holds
    mixtures: bool = False  # MIX_SHARE of the clips get another class's events underneath (_add_underlay)


def _off_register_pitches(lowest_hz: float, steps: int, below_hz: float) -> tuple:
    """``lowest_hz * 2 ** (k / 24)``, k < steps (a half-semitone grid), below ``below_hz`` and more
    than 2.5 semitones from every held-out register centre."""
    grid = lowest_hz * 2 ** (np.arange(steps) / 24)
    return tuple(float(f) for f in grid
                 if f < below_hz and all(abs(12 * np.log2(f / c)) > 2.5 for c in REGISTER_CENTRES))


_LOW_TONES_HZ = _off_register_pitches(55.0, 60, 350.0)  # 30 pitches, 55-302 Hz
GRID_SOUNDS = CorpusSounds("grid", tone_hz=(225, 450, 900, 1800, 3000), note_hz=(75, 150, 300, 600),
                           carrier_hz=(300, 900, 1800), noise_low_hz=100.0, noise_log_edges=False)
SPECTRAL_SOUNDS = CorpusSounds("spectral", tone_hz=GRID_SOUNDS.tone_hz + _LOW_TONES_HZ,
                               note_hz=_off_register_pitches(60.0, 120, 1700.0),  # 56 pitches, 60-1662 Hz
                               carrier_hz=GRID_SOUNDS.carrier_hz + _LOW_TONES_HZ[::3],
                               noise_low_hz=60.0, noise_log_edges=True, envelopes=True,
                               mixtures=True)
SOUNDS = {s.name: s for s in (GRID_SOUNDS, SPECTRAL_SOUNDS)}


def corpus_words(sounds: str) -> CorpusSounds:
    """The vocabulary named ``sounds`` (a key of SOUNDS); an unknown name is a clear error."""
    if sounds not in SOUNDS:
        raise ValueError(f"unknown corpus sounds {sounds!r}; choose from {', '.join(SOUNDS)}")
    return SOUNDS[sounds]


def corpus_sounds(codec: str | None) -> str:
    """The sound vocabulary of the built-in corpus for a run whose codes come from the EnCodec
    weights ``codec`` ("pretrained", "offline", or None for no EnCodec): the frame-grid words for
    the random-weight EnCodec, else the spectral ones."""
    return "grid" if codec == "offline" else "spectral"


def _fades(tt: np.ndarray) -> np.ndarray:
    """5 ms linear fades in and out of one event (no clicks). tt: time since its onset (s) -> gains."""
    return np.minimum(1.0, np.minimum(tt, tt[-1] - tt) / 0.005)


ENVELOPES = ("hold", "decay", "swell")
DECAY_SECONDS = (0.02, 0.3)  # time constant of a decaying event (a pluck or a knock ... a slow fade)
SWELL_SECONDS = (0.05, 0.3)  # rise time of a swelling event (a bowed or blown attack)


def event_envelope(rng, tt: np.ndarray) -> np.ndarray:
    """The loudness shape of one event of the spectral words, one of ENVELOPES with equal odds:
    hold (flat), decay (exp(-t / tau)) or swell (a linear rise, then flat). tt: time since the
    event's onset (s) -> gains in [0, 1], same shape as ``tt``."""
    shape = ENVELOPES[int(rng.integers(len(ENVELOPES)))]
    if shape == "decay":
        return np.exp(-tt / rng.uniform(*DECAY_SECONDS))
    if shape == "swell":
        return np.minimum(1.0, tt / rng.uniform(*SWELL_SECONDS))
    return np.ones_like(tt)


MIX_SHARE = 0.5  # of the spectral words' clips that hold a second class underneath their own
MIX_DB = (3.0, 15.0)  # how far below the clip's own events that class sounds (dB, uniform)


def _add_underlay(wav: np.ndarray, rng, label: int, t: np.ndarray, sr: int, words: CorpusSounds) -> None:
    """Add 1-3 events of another class than ``label`` to ``wav`` [n] in place, at random onsets
    (overlapping the clip's own events or not), 0.3-1 s each, MIX_DB below them. The clip keeps
    its label: the louder class. Real audio is rarely one source at a time; the held-out
    reverb_mix family has babble and noise under its instruments (docs/pretraining.md, "A seventh
    pass")."""
    other = SYNTH_CLASSES[(label + int(rng.integers(1, len(SYNTH_CLASSES)))) % len(SYNTH_CLASSES)]
    gain = 10 ** (-rng.uniform(*MIX_DB) / 20)
    n = len(wav)
    for _ in range(int(rng.integers(1, 4))):
        a = int(rng.uniform(0, max(0.01, n / sr - 0.3)) * sr)
        b = min(n, a + int(rng.uniform(0.3, 1.0) * sr))
        tt = t[a:b] - t[a]
        ramp = _fades(tt) * event_envelope(rng, tt)
        wav[a:b] += gain * rng.choice(LEVELS) * ramp * _event(other, rng, t[a:b], tt, sr, words)


def _event(kind, rng, t, tt, sr, words: CorpusSounds = SPECTRAL_SOUNDS):
    """One event's waveform from the vocabulary ``words``. t: clip time of its samples (s), tt: time
    since its onset (s)."""
    nyq = sr / 2
    if kind == "tone":
        return np.sin(2 * np.pi * rng.choice(words.tone_hz) * t)
    if kind == "chirp":  # a 0.4 s glide, repeated while the event lasts
        f0, f1 = CHIRPS[rng.integers(len(CHIRPS))]
        u = tt % 0.4
        return np.sin(2 * np.pi * (f0 * u + 0.5 * (f1 - f0) / 0.4 * u ** 2))
    if kind == "harmonic":
        f0 = rng.choice(words.note_hz)
        tilt, even = TIMBRES[rng.integers(len(TIMBRES))]
        k = np.arange(1, 13)
        k = k[k * f0 < nyq * 0.9]
        amps = k ** -tilt * np.where(k % 2 == 1, 1.0, even)
        x = (amps[:, None] * np.sin(2 * np.pi * f0 * k[:, None] * t[None, :])).sum(0)
        return x / amps.sum()
    if kind == "noise_burst":
        x = rng.standard_normal(len(tt))
        if words.noise_log_edges:
            lo, hi = sorted(np.exp(rng.uniform(np.log(words.noise_low_hz), np.log(nyq * 0.8), size=2)))
        else:
            lo, hi = sorted(rng.uniform(words.noise_low_hz, nyq * 0.8, size=2))
        spec = np.fft.rfft(x)
        f = np.fft.rfftfreq(len(tt), 1 / sr)
        spec[(f < lo) | (f > hi)] = 0
        x = np.fft.irfft(spec, len(tt))
        return x / (np.abs(x).max() + 1e-8)
    if kind == "am":
        fc, fm = rng.choice(words.carrier_hz), FRAME_RATE / rng.choice(MODULATION_PERIODS)
        return (1 + 0.9 * np.sin(2 * np.pi * fm * t)) / 1.9 * np.sin(2 * np.pi * fc * t)
    if kind == "fm":
        fc, fm = rng.choice(words.carrier_hz), FRAME_RATE / rng.choice(MODULATION_PERIODS)
        beta = rng.choice((1.0, 4.0))
        return np.sin(2 * np.pi * fc * t + beta * np.sin(2 * np.pi * fm * t))
    raise ValueError(kind)


class SyntheticCorpus(Dataset):
    """``num_clips`` clips of :func:`corpus_clip`, same item format as :class:`AudioCrops` plus
    ``label``; indices ``offset .. offset + num_clips - 1`` of the generator (disjoint offsets give
    disjoint sets), words of the vocabulary ``sounds`` (a key of SOUNDS). Accepts
    ``(index, crop_seed)`` keys too (the seed is ignored: clips are already crop-length). Optional
    ``targets`` [num_clips, n_q, T] are returned as ``codes``."""

    fixed_clips = True  # every draw of an item is the same clip (no random crops)

    def __init__(self, num_clips: int, seconds: float = 2.0, seed: int = 0, offset: int = 0,
                 min_fraction: float = 0.5, sounds: str = "spectral"):
        corpus_words(sounds)  # an unknown name fails here, not at the first clip
        self.num_clips, self.seconds, self.seed, self.offset = int(num_clips), float(seconds), int(seed), int(offset)
        self.sounds = sounds
        self.min_fraction = min_fraction
        self.crop_samples = int(round(self.seconds * SAMPLE_RATE))
        self.draws_per_epoch = [1] * self.num_clips  # every clip fits in one crop
        self.targets = None
        self._cache: dict = {}

    def __len__(self):
        return self.num_clips

    def clip(self, i: int) -> tuple:
        if i not in self._cache:
            self._cache[i] = corpus_clip(self.offset + i, self.seconds, self.seed, min_fraction=self.min_fraction,
                                         sounds=self.sounds)
        return self._cache[i]

    def __getitem__(self, key):
        i = int(key[0]) if isinstance(key, (tuple, list)) else int(key)
        wav, label = self.clip(i)
        out = np.zeros(self.crop_samples, dtype=np.float32)
        out[: len(wav)] = wav
        item = {"wav": torch.from_numpy(out), "length": len(wav), "ok": True, "label": label}
        if self.targets is not None:
            item["codes"] = self.targets[i]
        return item

    def labels(self) -> list:
        return [self.clip(i)[1] for i in range(self.num_clips)]


def codes_cache_key(dataset: SyntheticCorpus, targets_name: str, n_q: int) -> str:
    """What the cached codes of a fixed corpus depend on (stored beside them, checked on reuse)."""
    return (f"{CORPUS_VERSION}-{dataset.sounds}-{dataset.num_clips}-{dataset.offset}-{dataset.seed}-{dataset.seconds}-"
            f"{targets_name}-{n_q}")


def precompute_codes(dataset: SyntheticCorpus, encode, targets_name: str, n_q: int, cache: Path | None,
                     batch: int = 16) -> torch.Tensor:
    """``encode`` (wav [B, S] -> codes [B, n_q, T]) of every clip of a fixed corpus, [N, n_q, T]
    int16, cached on disk and keyed on :func:`codes_cache_key`."""
    key = codes_cache_key(dataset, targets_name, n_q)
    if cache is not None and cache.exists():
        stored = torch.load(cache, map_location="cpu", weights_only=True)
        if stored.get("key") == key:
            return stored["codes"]
    parts = []
    for start in range(0, len(dataset), batch):
        wav = torch.stack([dataset[i]["wav"] for i in range(start, min(len(dataset), start + batch))])
        parts.append(encode(wav).to(torch.int16))
    codes = torch.cat(parts)
    if cache is not None:
        atomic_torch_save({"key": key, "codes": codes}, cache)
    return codes


def corpus_datasets(clips: int, val_clips: int, seconds: float, seed: int, sounds: str, out_dir,
                    encode=None, targets_name: str = "", n_q: int = 0) -> tuple:
    """(train_set, val_set, data metadata) of the built-in corpus: ``clips`` training clips and
    ``val_clips`` held-out ones after them, of ``seconds``; with ``encode`` (wav [B, S] -> codes
    [B, n_q, T], named ``targets_name``) every clip's targets, computed once and cached in
    ``OUT/cache/``."""
    train_set = SyntheticCorpus(clips, seconds, seed=seed, offset=0, sounds=sounds)
    val_set = SyntheticCorpus(val_clips, seconds, seed=seed, offset=clips, sounds=sounds)
    if encode is not None:
        t0 = time.time()
        for name, ds in (("train", train_set), ("val", val_set)):  # fixed clips: encode each once
            ds.targets = precompute_codes(ds, encode, targets_name, n_q, Path(out_dir) / "cache" / f"codes-{name}.pt")
        log.info("targets of the built-in corpus: %.1f s", time.time() - t0)
    return train_set, val_set, dict(data="synthetic", corpus_sounds=sounds, train_clips=len(train_set),
                                    val_clips=len(val_set))
