"""Which audio files a run trains on: folders and manifests listed, headers probed once, the
official length-proportional mix, the validation split, and the run's data reports.

Sources
-------
* a folder: every file below it with an audio extension (``hear_codec.audio.AUDIO_EXTENSIONS``:
  wav, flac, ogg, mp3, aiff, ...);
* a manifest: a text file with one audio path per line (relative paths are relative to the
  manifest's folder); an optional second tab-separated column gives the duration in seconds,
  which skips probing, and further columns are ignored (``OUT/data_index.tsv``, written by every
  run, is such a manifest);
* a prepared corpus (``python -m training.prepare``): its folder, or its ``manifest.tsv``. Its
  items are the original source files, each read from its 24 kHz segment files
  (``training/data/prepared.py``); nothing is probed, and the sources ``training.prepare``
  skipped are listed with the run's;
* several of these, joined.

Every file without a known duration is probed once (``soundfile.info``, header only, in
threads), after an ``os.stat``: a missing file, and a path that is no regular file (a pipe, which
an open would wait on forever, a device, a socket, a folder), is skipped without being opened.
Files that cannot be opened, have no samples or a zero sample rate are skipped too; all are
counted and listed in ``OUT/skipped_files.tsv``.

The run's files are held in numpy arrays (:class:`~training.data.index.AudioIndex`), not one
Python object per file, so that DataLoader workers share them (``training/data/index.py``).

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
"""
from __future__ import annotations

import hashlib
import itertools
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from hear_codec.audio import AUDIO_EXTENSIONS, find_audio_files
from hear_codec.codec import SAMPLE_RATE
from training.data.index import AudioIndex, PathTable
from training.data.prepared import (PREPARED_HEADER, not_regular_reason, prepared_manifest, read_prepared,
                                    read_prepared_skipped)

MAX_FILE_SECONDS = 10_000.0  # official FILTER_AUDIO_LENGTH (configs/base/unsupervised_pretrain.gin)


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


def draws_of(seconds: np.ndarray, crop_seconds: float, max_file_seconds: float = MAX_FILE_SECONDS) -> np.ndarray:
    """:func:`draws_per_epoch` of every file at once: [n] seconds -> [n] int64 (np.floor_divide
    on floats is Python's ``//``, so the two agree on every value)."""
    seconds = np.asarray(seconds, dtype=np.float64)
    if max_file_seconds > 0:
        seconds = np.minimum(seconds, max_file_seconds)
    return np.maximum(1, np.floor_divide(seconds, crop_seconds)).astype(np.int64)


def drop_long_files(index: AudioIndex, items: np.ndarray, max_file_seconds: float = MAX_FILE_SECONDS) -> tuple:
    """The official rule (``remove_long_audios``): keep the files (of ``items``, indices into
    ``index``) shorter than ``max_file_seconds``. Returns (kept items, skipped [(path, reason)])."""
    long = index.seconds[items] >= max_file_seconds
    skipped = [(index.paths[i], f"{index.seconds[i]:.0f} s, not shorter than --max-file-seconds "
                                f"{max_file_seconds:g} (--long-files drop)") for i in items[long]]
    return items[~long], skipped


# ---------------------------------------------------------------- listing and probing

def list_sources(sources) -> list:
    """Folders and manifests -> [(path, seconds or None)], in a stable order.

    A prepared manifest is listed as its segment files (with their exact durations); to train on
    its sources, :func:`index_sources` reads it as a prepared corpus."""
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
    folder = str(path.parent)
    rows = []
    with open(path, encoding="utf-8") as f:
        prepared = f.readline()
        f.seek(0)
        prepared = prepared.startswith(PREPARED_HEADER)
        for line in f:
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split("\t")
            p = parts[0].strip()
            # str(Path(p)) without a Path per row (pathlib costs 10 us a path: 20 s for 2 M rows);
            # only a path that Path would rewrite goes through it
            if "//" in p or "/." in p or p.startswith("./") or p.endswith("/") or p in ("", "."):
                p = str(Path(p))
            if not p.startswith("/"):
                p = p if folder == "." else f"{folder.rstrip('/')}/{p}"
            seconds = None
            if prepared:
                seconds = int(parts[1]) / SAMPLE_RATE  # frames at 24 kHz
            elif len(parts) > 1 and parts[1].strip():
                try:
                    seconds = float(parts[1])
                except ValueError:
                    seconds = None  # a header or a foreign column: probe instead
            rows.append((p, seconds))
    return rows


def _probe(path: str):
    """(AudioEntry, None) or (None, reason). The path is stat-ed first and only a regular file is
    opened: opening a pipe waits for a writer, forever."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None, "no such file"
    except OSError as e:
        return None, f"unreadable: {type(e).__name__}: {e.strerror or e}"
    if not stat.S_ISREG(mode):
        return None, not_regular_reason(mode)
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
    index, skipped = _probe_rows(rows, workers)
    return [AudioEntry(p, float(s)) for p, s in zip(index.paths, index.seconds)], skipped


def _probe_rows(rows, workers: int) -> tuple:
    """[(path, seconds|None)] -> (AudioIndex of the readable files, skipped [(path, reason)])."""
    todo = [p for p, s in rows if s is None]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        probed = dict(zip(todo, pool.map(_probe, todo)))
    paths, seconds, skipped = [], [], []
    for path, known in rows:
        if known is not None:
            if known <= 0:
                skipped.append((path, "empty (duration 0 in manifest)"))
            else:
                paths.append(path)
                seconds.append(known)
            continue
        entry, reason = probed[path]
        if entry is None:
            skipped.append((path, reason))
        else:
            paths.append(path)
            seconds.append(entry.seconds)
    return AudioIndex.of_files(paths, seconds), skipped


def index_sources(sources, probe_workers: int = 16) -> tuple:
    """``--data`` -> (AudioIndex of the readable files, skipped [(path, reason)], files listed).

    Prepared corpora (a folder with a prepared ``manifest.tsv``, or that manifest) become their
    sources, unprobed; folders, manifests and audio files are listed and probed."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    parts, skipped, listed = [], [], 0
    for source in sources:
        manifest = prepared_manifest(source)
        if manifest is not None:
            part, part_skipped = read_prepared(manifest), read_prepared_skipped(manifest)
            listed += len(part) + len(part_skipped)
        else:
            rows = list_sources([source])
            part, part_skipped = _probe_rows(rows, probe_workers)
            listed += len(rows)
        parts.append(part)
        skipped += part_skipped
    return AudioIndex.concat(parts), skipped, listed


def write_report(out_dir, index: AudioIndex, skipped, draws=None) -> None:
    """OUT/data_index.tsv and OUT/skipped_files.tsv.

    The index is a reusable manifest: ``path<TAB>seconds<TAB>draws_per_epoch``, the training draws
    of each file per epoch (``draws``: [n] ints aligned with ``index``; 0 = a validation file)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(index)
    draws = np.zeros(n, dtype=np.int64) if draws is None else np.asarray(draws, dtype=np.int64)
    if len(draws) != n:
        raise ValueError(f"{len(draws)} draws for {n} files")
    # Each distinct duration and draw count formatted once (a corpus has few: AudioSet's clips are
    # 10 s), then the lines joined block by block: 2 M lines in about a second.
    values, which = np.unique(index.seconds, return_inverse=True)
    seconds = [b"\t%.3f\t" % v for v in values.tolist()]
    counts, which_draws = np.unique(draws, return_inverse=True)
    draw_text = [b"%d\n" % v for v in counts.tolist()]
    block = 1 << 16
    with open(out_dir / "data_index.tsv", "wb") as f:
        f.write(b"# path\tseconds\tdraws_per_epoch (training draws of the file per epoch; 0 = validation)\n")
        for a, paths in zip(range(0, n, block), index.paths.blocks(block)):
            rows = zip(paths, map(seconds.__getitem__, which[a:a + block].tolist()),
                       map(draw_text.__getitem__, which_draws[a:a + block].tolist()))
            f.write(b"".join(itertools.chain.from_iterable(rows)))
    with open(out_dir / "skipped_files.tsv", "w", encoding="utf-8") as f:
        f.write("path\treason\n")
        for path, reason in skipped:
            f.write(f"{path}\t{reason}\n")


def split_train_val(paths, val_fraction: float, val_max: int) -> tuple:
    """Hold out files by a hash of their path (stable when files are added): (train, val) index
    arrays into ``paths`` (a :class:`~training.data.index.PathTable`, or a list of str), in order.

    ``val_fraction`` of the files, at most ``val_max`` (the defaults: ``DataConfig``); at
    least one file goes to validation when there are two or more files; 0 fraction = none.
    The held-out files are those whose path's md5 hex digest sorts first (ties: the earlier file)."""
    n = len(paths)
    everything = np.arange(n, dtype=np.int64)
    if val_fraction <= 0 or n < 2:
        return everything, np.zeros(0, dtype=np.int64)
    n_val = min(val_max, max(1, int(round(n * val_fraction))), n - 1)
    if isinstance(paths, PathTable):
        blocks = paths.blocks()
    else:
        blocks = [[p if isinstance(p, bytes) else p.encode("utf-8", "surrogateescape") for p in paths]]
    md5 = hashlib.md5
    # Digest bytes sort as their hex digests do; the first 8 as one big-endian integer find the few
    # candidates, whose full digests then decide (2 M paths: no sort of 2 M strings).
    digests = b"".join(b"".join([md5(p).digest() for p in block]) for block in blocks)
    key = np.frombuffer(digests, dtype=">u8").reshape(n, 2)
    high = key[:, 0].astype(np.uint64)
    kth = np.partition(high, n_val - 1)[n_val - 1]
    candidates = np.flatnonzero(high <= kth)
    order = np.lexsort((candidates, key[candidates, 1], key[candidates, 0]))
    val = np.sort(candidates[order[:n_val]])
    return np.setdiff1d(everything, val, assume_unique=True), val
