"""Audio data for pretraining: files or a manifest, random crops at 24 kHz, a built-in synthetic corpus.

Sources
-------
* a folder: every file below it with an audio extension (``hear_codec.audio.AUDIO_EXTENSIONS``: wav, flac, ogg, mp3, aiff, ...);
* a manifest: a text file with one audio path per line (relative paths are relative to the
  manifest's folder); an optional second tab-separated column gives the duration in seconds,
  which skips probing, and further columns are ignored (``OUT/data_index.tsv``, written by every
  run, is such a manifest);
* several of either, joined.

Every file is probed once (``soundfile.info``, header only, in threads). Files that cannot be
opened, have no samples or a zero sample rate are skipped, counted, and listed in
``OUT/skipped_files.tsv``; a file that passes the probe but fails to decode later is replaced by
the next readable file in that batch and counted in the ``data/unreadable`` metric — a bad file
never stops a run.

Items
-----
Each item is a dict ``{"wav": [crop_samples] float32 at 24 kHz, mono (channels averaged),
"length": valid samples (the rest is zero padding), "ok": False if the item replaced an
unreadable file}``. Clips shorter than the crop are zero-padded and ``length`` says where the
padding starts; the training module turns it into a frame padding mask so the padding never
counts in the loss. The synthetic corpus adds ``"label"`` (its sound class).

Mix
---
As the official EnCodecMAE pretraining (``compensate_lengths`` with ``chunk_length`` = the crop),
an epoch draws each training file ``max(1, floor(seconds / crop_seconds))`` times, each draw a
fresh random crop: a file's share of the training stream is proportional to its length (a
10 s AudioSet clip counts 2 draws of 4 s, a 30 min audiobook chapter 450), and a file no longer
than a crop still counts once. ``OUT/data_index.tsv`` lists every file's ``draws_per_epoch``.

Long files: the official code drops files of 10 000 s or more (its comment: their length, as
reported, may be wrong). Here they are kept and cropped at random like any other, with their
draws capped at ``floor(max_file_seconds / crop_seconds)`` (``--max-file-seconds``, default
10 000): a genuinely long recording is still training data, and a header that claims an absurd
length cannot take over the mix (crops past a file's real end fail to decode and are replaced,
as any unreadable crop). ``--long-files drop`` is the official rule (listed in
``OUT/skipped_files.tsv``).

Order
-----
:class:`StepSampler` makes the training stream a pure function of (seed, optimiser step): each
global sample index picks a draw from a per-epoch permutation of all draws and seeds its crop,
and each rank takes its own slice of every micro-batch. A run resumed at step k therefore sees
exactly the samples an uninterrupted run sees after step k (Lightning does not save RNG states).
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset, Sampler

from hear_codec import cli
from hear_codec.files import atomic_torch_save
from hear_codec.audio import AUDIO_EXTENSIONS, find_audio_files, read_audio
from hear_codec.codec import FRAME_RATE, PRETRAINED_CHECKPOINT, SAMPLE_RATE, load_codec
from training import spectral_targets

log = logging.getLogger(__name__)

MAX_FILE_SECONDS = 10_000.0  # official FILTER_AUDIO_LENGTH (configs/base/unsupervised_pretrain.gin)


@dataclass
class DataConfig:
    """Data and codec of a pretraining run (the options of :func:`add_data_args`).

    ``sources``: folders / manifests / audio files, or None for the built-in synthetic corpus.
    ``seed`` seeds the data order, crops and masks, and the built-in corpus."""

    sources: list | None
    codec: str  # "pretrained" (published EnCodec), "offline" (random weights) or "mel-kmeans" (stand-in targets)
    crop_seconds: float
    batch_size: int  # clips per micro-batch per device
    num_workers: int
    seed: int = 0
    codec_path: str | None = None
    val_fraction: float = 0.02
    val_max_files: int = 200
    synthetic_clips: int = 384
    synthetic_val_clips: int = 32
    probe_workers: int = 16
    max_file_seconds: float = MAX_FILE_SECONDS
    long_files: str = "crop"  # or "drop"

    @classmethod
    def from_args(cls, args) -> "DataConfig":
        """From the options of :func:`add_data_args` (``--num-workers`` None: min(8, CPUs - 1))."""
        names = {f.name for f in fields(cls)} - {"sources", "num_workers"}
        workers = args.num_workers if args.num_workers is not None else max(0, min(8, (os.cpu_count() or 1) - 1))
        return cls(sources=args.data, num_workers=workers, **{k: getattr(args, k) for k in names})


@dataclass
class AudioEntry:
    path: str
    seconds: float  # duration: probed from the header, or as a manifest gives it


def draws_per_epoch(seconds: float, crop_seconds: float, max_file_seconds: float = MAX_FILE_SECONDS) -> int:
    """Training draws of a file per epoch: the official ``compensate_lengths`` rule,
    ``max(1, seconds // crop_seconds)``, with ``seconds`` capped at ``max_file_seconds`` (0 = no cap)."""
    if max_file_seconds > 0:
        seconds = min(seconds, max_file_seconds)
    return int(max(1, seconds // crop_seconds))


def drop_long_files(entries, max_file_seconds: float = MAX_FILE_SECONDS) -> tuple:
    """The official rule (``remove_long_audios``): keep files shorter than ``max_file_seconds``.
    Returns (kept, skipped [(path, reason)])."""
    kept = [e for e in entries if e.seconds < max_file_seconds]
    skipped = [(e.path, f"{e.seconds:.0f} s, not shorter than --max-file-seconds {max_file_seconds:g} "
                        "(--long-files drop)") for e in entries if e.seconds >= max_file_seconds]
    return kept, skipped


# ---------------------------------------------------------------- listing and probing

def list_sources(sources) -> list:
    """Folders and manifests -> [(path, seconds or None)], in a stable order."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    out = []
    for source in sources:
        source = Path(source)
        if source.is_dir():
            out.extend((str(p), None) for p in find_audio_files(source))
        elif source.is_file() and source.suffix.lower() in AUDIO_EXTENSIONS:
            out.append((str(source), None))
        elif source.is_file():
            out.extend(_read_manifest(source))
        else:
            raise FileNotFoundError(f"--data: {source} is neither a folder, an audio file nor a manifest")
    return out


def _read_manifest(path: Path) -> list:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split("\t")
            p = Path(parts[0].strip())
            if not p.is_absolute():
                p = path.parent / p
            seconds = None
            if len(parts) > 1 and parts[1].strip():
                try:
                    seconds = float(parts[1])
                except ValueError:
                    seconds = None  # a header or a foreign column: probe instead
            rows.append((str(p), seconds))
    return rows


def _probe(path: str):
    """(AudioEntry, None) or (None, reason)."""
    try:
        info = sf.info(path)
    except Exception as e:  # soundfile raises RuntimeError/LibsndfileError/OSError
        return None, f"unreadable: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if info.samplerate <= 0:
        return None, "zero sample rate"
    if info.frames <= 0:
        return None, "empty (no samples)"
    return AudioEntry(path, info.frames / info.samplerate), None


def probe_files(rows, workers: int = 8) -> tuple:
    """[(path, seconds|None)] -> (entries, skipped [(path, reason)]).

    Rows with a known duration are trusted (the file is first opened when a crop is read)."""
    entries, skipped = [], []
    todo = [p for p, s in rows if s is None]
    known = {p: s for p, s in rows if s is not None}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        probed = dict(zip(todo, pool.map(_probe, todo)))
    for path, seconds in rows:
        if path in known:
            if seconds <= 0:
                skipped.append((path, "empty (duration 0 in manifest)"))
            else:
                entries.append(AudioEntry(path, seconds))
            continue
        entry, reason = probed[path]
        if entry is None:
            skipped.append((path, reason))
        else:
            entries.append(entry)
    return entries, skipped


def write_report(out_dir, entries, skipped, draws=None) -> None:
    """OUT/data_index.tsv and OUT/skipped_files.tsv.

    The index is a reusable manifest: ``path<TAB>seconds<TAB>draws_per_epoch``, the training draws
    of each file per epoch (``draws``, aligned with ``entries``; 0 = a validation file)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    draws = [0] * len(entries) if draws is None else list(draws)
    with open(out_dir / "data_index.tsv", "w", encoding="utf-8") as f:
        f.write("# path\tseconds\tdraws_per_epoch (training draws of the file per epoch; 0 = validation)\n")
        for e, n in zip(entries, draws, strict=True):
            f.write(f"{e.path}\t{e.seconds:.3f}\t{n}\n")
    with open(out_dir / "skipped_files.tsv", "w", encoding="utf-8") as f:
        f.write("path\treason\n")
        for path, reason in skipped:
            f.write(f"{path}\t{reason}\n")


def split_train_val(entries, val_fraction: float, val_max: int) -> tuple:
    """Hold out files by a hash of their path (stable when files are added): (train, val).

    ``val_fraction`` of the files, at most ``val_max`` (the defaults: :class:`DataConfig`); at
    least one file goes to validation when there are two or more files; 0 fraction = none."""
    if val_fraction <= 0 or len(entries) < 2:
        return list(entries), []
    n_val = min(val_max, max(1, int(round(len(entries) * val_fraction))), len(entries) - 1)
    ranked = sorted(entries, key=lambda e: hashlib.md5(e.path.encode()).hexdigest())
    val = {id(e) for e in ranked[:n_val]}
    return [e for e in entries if id(e) not in val], [e for e in entries if id(e) in val]


# ---------------------------------------------------------------- reading and cropping

def read_segment(entry: AudioEntry, start_seconds: float, seconds: float) -> np.ndarray:
    """Mono float32 at 24 kHz of [start, start + seconds) (shorter at the end of the file)."""
    return read_audio(entry.path, SAMPLE_RATE, start=start_seconds, duration=seconds)[0].numpy()


def mix_seed(*values) -> int:
    """A 31-bit seed from integers (the crop, mask and permutation seeds of every run)."""
    return zlib.crc32(np.asarray(values, dtype=np.int64).tobytes()) & 0x7FFFFFFF


class AudioCrops(Dataset):
    """Crops of ``crop_seconds`` from audio files.

    Indexed by ``(file_index, crop_seed)`` pairs (what :class:`StepSampler` yields) for random
    crops, or by a plain int for the fixed validation crop of that file (its middle).
    ``draws_per_epoch[i]``: how often an epoch draws file i (:func:`draws_per_epoch`).
    """

    def __init__(self, entries, crop_seconds: float, max_file_seconds: float = MAX_FILE_SECONDS):
        if not entries:
            raise ValueError("no readable audio files")
        self.entries = list(entries)
        self.crop_seconds = float(crop_seconds)
        self.crop_samples = int(round(self.crop_seconds * SAMPLE_RATE))
        self.draws_per_epoch = [draws_per_epoch(e.seconds, self.crop_seconds, max_file_seconds) for e in self.entries]

    def __len__(self):
        return len(self.entries)

    def __getitem__(self, key):
        if isinstance(key, (tuple, list)):
            index, seed = int(key[0]), int(key[1])
        else:
            index, seed = int(key), None
        for attempt in range(len(self.entries)):
            entry = self.entries[(index + attempt) % len(self.entries)]
            try:
                wav = self._crop(entry, seed)
                return self._item(wav, ok=attempt == 0)
            except Exception as e:  # decode error hours in: report, use the next file
                log.warning("skipping unreadable audio %s (%s: %s)", entry.path, type(e).__name__, e)
        raise RuntimeError("none of the audio files could be read")

    def _crop(self, entry: AudioEntry, seed):
        room = max(0.0, entry.seconds - self.crop_seconds)
        if seed is None:
            start = room / 2
        else:
            start = np.random.default_rng(seed).uniform(0.0, room) if room > 0 else 0.0
        return read_segment(entry, start, self.crop_seconds)

    def _item(self, wav: np.ndarray, ok: bool) -> dict:
        length = min(len(wav), self.crop_samples)
        out = np.zeros(self.crop_samples, dtype=np.float32)
        out[:length] = wav[:length]
        return {"wav": torch.from_numpy(out), "length": length, "ok": ok}


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
        draws = torch.as_tensor(list(draws_per_item), dtype=torch.int64)
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


# ---------------------------------------------------------------- the synthetic corpus

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
# (training/transfer_families.py), so that family stays unheard.
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
    from training.transfer_families import REGISTER_CENTRES

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


def corpus_sounds(codec: str) -> str:
    """The sound vocabulary of the built-in corpus for a run whose codes come from ``codec``
    (a --codec choice): the frame-grid words for the random-weight EnCodec, else the spectral ones."""
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


def codes_cache_key(dataset: SyntheticCorpus, codec_weights: str, n_q: int) -> str:
    """What the cached codes of a fixed corpus depend on (stored beside them, checked on reuse)."""
    return (f"{CORPUS_VERSION}-{dataset.sounds}-{dataset.num_clips}-{dataset.offset}-{dataset.seed}-{dataset.seconds}-"
            f"{codec_weights}-{n_q}")


def precompute_codes(dataset: SyntheticCorpus, codec, n_q: int, cache: Path | None, batch: int = 16) -> torch.Tensor:
    """RVQ codes of every clip of a fixed corpus, [N, n_q, T] int16, cached on disk.

    On CPU the codec encoder costs several times the tiny model's step, so the built-in corpus
    (fixed clips, no random crops) encodes each clip once."""
    key = codes_cache_key(dataset, codec.weights, n_q)
    if cache is not None and cache.exists():
        stored = torch.load(cache, map_location="cpu", weights_only=True)
        if stored.get("key") == key:
            return stored["codes"]
    parts = []
    for start in range(0, len(dataset), batch):
        wav = torch.stack([dataset[i]["wav"] for i in range(start, min(len(dataset), start + batch))])
        parts.append(codec.encode_codes(wav, n_q).to(torch.int16))
    codes = torch.cat(parts)
    if cache is not None:
        atomic_torch_save({"key": key, "codes": codes}, cache)
    return codes


def frozen_codec(cfg: DataConfig):
    """What makes the targets: the published EnCodec, the offline (random) EnCodec, or the
    log-mel k-means stand-in fitted on the built-in corpus (training/spectral_targets.py)."""
    if cfg.codec == spectral_targets.NAME:
        if cfg.sources:
            raise SystemExit(f"--codec {spectral_targets.NAME}: the stand-in targets are fitted on the built-in corpus; "
                             "with --data use --codec pretrained (the paper's targets) or offline")
        log.info("targets: %s, a stand-in for EnCodec's codes (k-means of log-mel bands and of their modulation; "
                 "training/spectral_targets.py), "
                 "not the paper's; --codec pretrained gives the published EnCodec's", spectral_targets.NAME)
        published = Path(torch.hub.get_dir()) / "checkpoints" / PRETRAINED_CHECKPOINT
        if published.is_file():
            log.warning("the published EnCodec weights are on this machine (%s), but --codec %s was chosen: "
                        "--codec pretrained trains on the paper's targets", published, spectral_targets.NAME)
        corpus = SyntheticCorpus(cfg.synthetic_clips, cfg.crop_seconds, seed=cfg.seed, offset=0,
                                 sounds=corpus_sounds(cfg.codec))
        return spectral_targets.fit_on_corpus(corpus, spectral_targets.BANDS, seed=cfg.seed)
    log.info("targets: the %s EnCodec's codes", "published" if cfg.codec == "pretrained" else "offline (random-weight)")
    return load_codec(cfg.codec, path=cfg.codec_path) if cfg.codec == "pretrained" else load_codec("offline")


def build_datasets(cfg: DataConfig, out_dir: Path, codec=None, n_q: int = 0) -> tuple:
    """(train_set, val_set or None, data metadata) for a pretraining run: ``cfg.sources``
    (probed; unreadable files skipped and reported in ``OUT/skipped_files.tsv``, the rest in
    ``OUT/data_index.tsv`` with their draws per epoch) or the built-in corpus, whose ``n_q`` codec
    streams are encoded once and cached in ``OUT/cache/`` (none when ``n_q`` is 0)."""
    out_dir = Path(out_dir)
    if cfg.sources:
        rows = list_sources(cfg.sources)
        entries, skipped = probe_files(rows, cfg.probe_workers)
        if cfg.long_files == "drop":
            entries, too_long = drop_long_files(entries, cfg.max_file_seconds)
            skipped += too_long
        if skipped:
            log.warning("skipped %d of %d audio files (unreadable, empty or too long); see %s", len(skipped),
                        len(rows), out_dir / "skipped_files.tsv")
        train_entries, val_entries = split_train_val(entries, cfg.val_fraction, cfg.val_max_files)
        if not train_entries:
            write_report(out_dir, entries, skipped)
            raise SystemExit(f"--data: no readable audio among {len(rows)} files (see {out_dir / 'skipped_files.tsv'})")
        cap = cfg.max_file_seconds if cfg.long_files == "crop" else 0.0
        train_set = AudioCrops(train_entries, cfg.crop_seconds, cap)
        val_set = AudioCrops(val_entries, cfg.crop_seconds) if val_entries else None
        draws = dict(zip((id(e) for e in train_entries), train_set.draws_per_epoch))
        write_report(out_dir, entries, skipped, [draws.get(id(e), 0) for e in entries])
        epoch = sum(train_set.draws_per_epoch)
        log.info("one epoch: %d draws of %g s from %d training files (%.1f h); draws per file in %s", epoch,
                 cfg.crop_seconds, len(train_entries), sum(e.seconds for e in train_entries) / 3600,
                 out_dir / "data_index.tsv")
        meta = dict(data=[str(x) for x in cfg.sources], files=len(rows), skipped=len(skipped),
                    train_files=len(train_entries), val_files=len(val_entries), draws_per_epoch=epoch)
        return train_set, val_set, meta
    sounds = corpus_sounds(cfg.codec)
    train_set = SyntheticCorpus(cfg.synthetic_clips, cfg.crop_seconds, seed=cfg.seed, offset=0, sounds=sounds)
    val_set = SyntheticCorpus(cfg.synthetic_val_clips, cfg.crop_seconds, seed=cfg.seed, offset=cfg.synthetic_clips,
                              sounds=sounds)
    if n_q:
        t0 = time.time()
        for name, ds in (("train", train_set), ("val", val_set)):  # fixed clips: encode each once
            ds.targets = precompute_codes(ds, codec, n_q, out_dir / "cache" / f"codes-{name}.pt")
        log.info("codec targets for the synthetic corpus: %.1f s", time.time() - t0)
    return train_set, val_set, dict(data="synthetic", corpus_sounds=sounds, train_clips=len(train_set),
                                    val_clips=len(val_set))


def make_loaders(train_set, val_set, collate, cfg: DataConfig) -> tuple:
    """(train_loader, val_loader or None, sampler): the training stream in :class:`StepSampler`
    order (``train_set.draws_per_epoch`` draws per item and epoch), validation in file order."""
    sampler = StepSampler(train_set.draws_per_epoch, cfg.batch_size, seed=cfg.seed)
    common = dict(collate_fn=collate, num_workers=cfg.num_workers, pin_memory=torch.cuda.is_available(),
                  persistent_workers=cfg.num_workers > 0)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler,
                                               prefetch_factor=4 if cfg.num_workers else None, **common)
    val_loader = None
    if val_set is not None and len(val_set):
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=min(cfg.batch_size, 32), shuffle=False, **common)
    return train_loader, val_loader, sampler


# ---------------------------------------------------------------- command-line options

def add_data_args(group, *, codec_use: str, defaults: "DataDependentDefaults", synthetic_clips: int,
                  stand_in_targets: bool = False) -> None:
    """The data and codec options every pretraining model shares (``training.pretrain --model ...``).

    codec_use: what the codec makes for this model (shown in --codec's help); ``defaults``: the
    model's data-dependent defaults (shown in the help of --crop-seconds, --batch-size, --codec);
    ``stand_in_targets``: the model only needs targets from the codec, so --codec may also be the
    log-mel k-means stand-in (training/spectral_targets.py).
    """
    d = {f.name: f.default for f in fields(DataConfig)}
    group.add_argument("--data", nargs="+", default=None, metavar="DIR_OR_MANIFEST",
                       help="audio folders and/or manifests (one path per line, optional tab + seconds); any rate "
                            "and channel count. Without it: the built-in synthetic corpus")
    group.add_argument("--crop-seconds", type=cli.positive_float, default=None,
                       help="training crop length, also the model's chunk length for HEAR embeddings; shorter clips "
                            f"are zero-padded and the padding is excluded from the loss "
                            f"(default: {defaults.note('crop_seconds')})")
    group.add_argument("--batch-size", type=cli.positive_int, default=None,
                       help=f"clips per micro-batch per device (default: {defaults.note('batch_size')})")
    stand_in = [spectral_targets.NAME] if stand_in_targets else []
    stand_in_help = (f"; or {spectral_targets.NAME}: not EnCodec, a stand-in fitted on the built-in corpus "
                     "(k-means of log-mel bands and of how they move, 9 streams; targets that mean the same for "
                     "any audio; the mel256 front end only)" if stand_in_targets else "")
    group.add_argument("--codec", default=None, choices=["pretrained", "offline"] + stand_in,
                       help=f"EnCodec weights that make {codec_use}: pretrained (published, the paper) or offline "
                            f"(random, for demos/tests; the built-in corpus then uses its frame-grid sound "
                            f"vocabulary, training/data.py){stand_in_help} (default: {defaults.note('codec')})")
    group.add_argument("--codec-path", default=None,
                       help="local copy of encodec_24khz-d7cc33bc.th (default: torch hub cache / download)")
    group.add_argument("--num-workers", type=cli.non_negative_int, default=None,
                       help="data loader processes per device (default: min(8, CPUs - 1))")
    group.add_argument("--val-fraction", type=cli.fraction, default=d["val_fraction"],
                       help="fraction of files held out for validation, chosen by a hash of the path "
                            "(default: %(default)s)")
    group.add_argument("--val-max-files", type=cli.non_negative_int, default=d["val_max_files"],
                       help="at most this many validation files (official EnCodecMAE: 200) (default: %(default)s)")
    group.add_argument("--synthetic-clips", type=cli.positive_int, default=synthetic_clips,
                       help="training clips of the built-in corpus (default: %(default)s)")
    group.add_argument("--synthetic-val-clips", type=cli.non_negative_int, default=d["synthetic_val_clips"],
                       help="validation clips of the built-in corpus (default: %(default)s)")
    group.add_argument("--probe-workers", type=cli.positive_int, default=d["probe_workers"],
                       help="threads probing audio headers at start-up (default: %(default)s)")
    group.add_argument("--max-file-seconds", type=cli.non_negative_float, default=d["max_file_seconds"],
                       help="files at least this long: their draws per epoch are capped as if they were this long "
                            "(--long-files crop) or they are skipped as in the official code (--long-files drop); "
                            "0 = no cap (default: %(default)g, the official limit)")
    group.add_argument("--long-files", default=d["long_files"], choices=["crop", "drop"],
                       help="what to do with files longer than --max-file-seconds: keep them with capped draws and "
                            "random crops, or drop them (official) (default: %(default)s)")


@dataclass(frozen=True)
class DataDependentDefaults:
    """Defaults of the options that depend on whether ``--data`` is given: the tiny built-in run
    (``builtin``) or the paper's setting (``paper``). Options whose default is None in the parser
    take them; ``note(name)`` says so in --help (``notes``: the text for an option whose default
    the CLI takes from elsewhere, e.g. self-training's teacher)."""

    builtin: dict
    paper: dict
    notes: dict = field(default_factory=dict)

    def fill(self, args, **overrides) -> None:
        """Set every option still None in ``args`` (``overrides`` first) - the one place a CLI's
        data-dependent defaults are resolved, before the typed configs are built."""
        for key, value in {**(self.paper if args.data else self.builtin), **overrides}.items():
            if getattr(args, key, None) is None:
                setattr(args, key, value)

    def note(self, name: str) -> str:
        if name in self.notes:
            return self.notes[name]
        return f"{self.paper[name]} with --data, {self.builtin[name]} built-in"
