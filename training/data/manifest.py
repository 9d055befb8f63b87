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
* several of either, joined.

Every file without a known duration is probed once (``soundfile.info``, header only, in
threads). Files that cannot be opened, have no samples or a zero sample rate are skipped,
counted, and listed in ``OUT/skipped_files.tsv``.

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
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from hear_codec.audio import AUDIO_EXTENSIONS, find_audio_files

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

    ``val_fraction`` of the files, at most ``val_max`` (the defaults: ``DataConfig``); at
    least one file goes to validation when there are two or more files; 0 fraction = none."""
    if val_fraction <= 0 or len(entries) < 2:
        return list(entries), []
    n_val = min(val_max, max(1, int(round(len(entries) * val_fraction))), len(entries) - 1)
    ranked = sorted(entries, key=lambda e: hashlib.md5(e.path.encode()).hexdigest())
    val = {id(e) for e in ranked[:n_val]}
    return [e for e in entries if id(e) not in val], [e for e in entries if id(e) in val]
