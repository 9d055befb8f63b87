"""Decode a corpus once: ``python -m training.prepare SOURCE... --out DIR``.

Training reads random 4 s crops from every file of its corpus, many times each. Decoding an MP3
or a FLAC, mixing it down and resampling it to 24 kHz for every crop costs more CPU than the
crop's training step can spare (and a header probe per file at start-up); this command does it
once. Every SOURCE (audio folders, audio files, or manifests: what ``training.pretrain --data``
takes, :func:`training.data.manifest.list_sources`) is decoded, mixed down and resampled to
24 kHz by :func:`hear_codec.audio.stream_audio` in blocks (a 2-hour recording never sits in
memory), cut into segments of at most ``--segment-seconds`` and written as 16-bit mono files.
``python -m training.pretrain --data DIR`` then trains on DIR without decoding, resampling or
probing anything.

DIR holds (the format that training/data/prepared.py reads)::

    manifest.tsv    line 1 "# hear_codec prepared corpus<TAB>sample_rate=24000", line 2 the column
                    names, then one row per segment: path (relative to DIR), frames (exact samples
                    in that file), source (the original file, absolute), offset (the segment's
                    first sample in the source, at 24 kHz). A source's rows are contiguous, in
                    offset order, and tile [0, its length) without gaps; sources are in
                    list_sources order.
    audio/3f/<name>.<hash>.0000.wav   the segments: <hash> is of the source's path, so two sources
                    with the same name never share a segment name; the folder spreads them.
    skipped.tsv     source<TAB>reason for every source that could not be read (corrupt, empty,
                    NaN samples, an absurd rate: any AudioReadError); they never stop a run.
    summary.json    files, segments, hours, bytes on disk, skipped, the settings.
    done/           one record per finished source (its rows, or why it was skipped), written
                    atomically after its last segment: what lets a killed run continue.

Samples are stored as round(x * 32768) clipped to int16 (x = 1.0 becomes 32767): reading them as
int16 / 32768, as soundfile does, gives the decoded audio back within half a step of 1/32768.
Audio beyond [-1, 1] is clipped; summary.json counts the clipped samples.

Defaults, from docs/experiments/prepare-format.md (the cost of reading a random 4 s crop, one
process, against disk bytes per hour of audio, for segments of 10 s to 30 min): **WAV** and
**60 s** segments.

* WAV: a crop read by ``os.pread`` of its PCM bytes (what the loader does) runs at about 13 000
  crops/s whatever the segment length; FLAC, which must seek (a search through the file's
  frames) and decode, at about 550, 25 times fewer: at batch 128 a loader worker would spend a
  quarter of a second per batch on FLAC alone. FLAC saves 38% of the disk on a real recording
  (108 MB per hour against WAV's 173) and 9% on noise: ``--format flac`` is for a corpus whose
  WAV does not fit on the disk.
* 60 s: a crop that crosses a segment boundary reads two files, which happens to about 4 / N of
  the crops (13% at 30 s, 7% at 60 s, 1% at 300 s), and shorter segments mean more files; FLAC's
  seek is as cheap at 60 s as at 10 s, and 20% slower from 300 s on. Beyond 60 s WAV gains a few
  percent at most.

Resume: a source whose done record matches it (same size, modification time, format and segment
length) is not decoded again; any other source is decoded again, from its start (a source killed
halfway included), and its segments rewritten.
Each segment is written atomically (:func:`hear_codec.files.atomic_path`), so a file under
audio/ is whole or absent; the temporary files of a killed run are removed when the next run
takes DIR's lock (``training.engine.run_lock``: a second run into the same DIR is refused), and
segments that no longer belong to the manifest (a source removed, the settings changed) at the
end of a run. The manifest, skipped.tsv and summary.json are rewritten in full by every run.

Workers are processes (``--workers``, default min(8, CPUs)), one source at a time each, longest
first; they end with the run, however it ends (SIGKILL included, on Linux).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import re
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from hear_codec import cli
from hear_codec.audio import stream_audio
from hear_codec.codec import SAMPLE_RATE
from hear_codec.errors import AudioReadError, UserError
from hear_codec.files import atomic_path, size_text, write_json, write_text

HEADER = f"# hear_codec prepared corpus\tsample_rate={SAMPLE_RATE}"  # line 1 of manifest.tsv: how loaders know it
COLUMNS = "# path\tframes\tsource\toffset"
MANIFEST, SKIPPED, SUMMARY, AUDIO, DONE = "manifest.tsv", "skipped.tsv", "summary.json", "audio", "done"
FORMATS = {"wav": "WAV", "flac": "FLAC"}  # --format -> soundfile's format name (always PCM_16)
DEFAULT_FORMAT = "wav"  # docs/experiments/prepare-format.md
DEFAULT_SEGMENT_SECONDS = 60.0  # docs/experiments/prepare-format.md
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Settings:
    format: str  # a key of FORMATS
    segment_seconds: float

    @property
    def segment_frames(self) -> int:
        return max(1, int(self.segment_seconds * SAMPLE_RATE))


@dataclass
class Prepared:
    """One source's outcome: its manifest rows [(path, frames, source, offset)], or why it was skipped."""

    source: str
    rows: list = field(default_factory=list)
    skipped: str | None = None
    bytes: int = 0  # of its segment files
    clipped: int = 0  # samples beyond [-1, 1], stored as +-1
    decoded: bool = True  # False: taken from its done record

    @property
    def frames(self) -> int:
        return sum(row[1] for row in self.rows)


# ---------------------------------------------------------------- one source

def source_key(source: str) -> str:
    """The hash that names a source's segments and done record (of its path, not its content)."""
    return hashlib.sha1(source.encode("utf-8", "surrogateescape")).hexdigest()


def segment_path(source: str, index: int, settings: Settings) -> str:
    """The segment file's path relative to DIR: audio/<2 hex>/<name>.<10 hex>.<index>.<ext>."""
    key = source_key(source)
    stem = _UNSAFE.sub("_", Path(source).stem)[:80] or "audio"  # the manifest is TSV: no tabs, newlines
    return f"{AUDIO}/{key[:2]}/{stem}.{key[:10]}.{index:04d}.{settings.format}"


def done_path(out: Path, source: str) -> Path:
    key = source_key(source)
    return out / DONE / key[:2] / f"{key}.tsv"


def segment_length(total: int, most: int) -> int:
    """The length of each segment when ``total`` samples are cut into the fewest segments of at
    most ``most`` samples, as equal as possible (a 130 s file at 60 s: 3 x 43.3 s, not 60 + 60 + 10)."""
    count = max(1, -(-total // most))
    return max(1, -(-total // count))


def prepare_source(source: str, out: Path, settings: Settings) -> Prepared:
    """Decode ``source`` to 24 kHz mono, write its segments under ``out`` and its done record.

    The segments are cut at :func:`segment_length` of the header's length; a compressed file whose
    decoder delivers more samples than its header said gets one more, shorter, segment. Any
    AudioReadError (also one after some segments were written: the sweep at the end of the run
    removes those) makes it a skipped source."""
    result = Prepared(source)
    stamp = _stamp(source, settings)
    try:
        stream = stream_audio(source, SAMPLE_RATE)
        cut = segment_length(stream.num_samples, settings.segment_frames)
        pending, held, offset = [], 0, 0
        for block in stream:
            pending.append(block)
            held += len(block)
            while held >= cut:
                wav = np.concatenate(pending)
                offset = _write(result, wav[:cut], offset, out, settings)
                pending, held = [wav[cut:]], len(wav) - cut
        if held:
            _write(result, np.concatenate(pending), offset, out, settings)
    except AudioReadError as e:
        result = Prepared(source, skipped=_reason(e, source))
    if stamp is not None:  # None: the source vanished while it was read (then it is skipped above)
        _write_done(out, result, stamp)
    return result


def _write(result: Prepared, wav: np.ndarray, offset: int, out: Path, settings: Settings) -> int:
    """Write ``wav`` [frames] float32 as the result's next segment; return the next offset."""
    scaled = np.rint(wav.astype(np.float64) * 32768.0)
    result.clipped += int(np.count_nonzero((scaled > 32767) | (scaled < -32768)))
    pcm = np.clip(scaled, -32768, 32767).astype(np.int16)
    relative = segment_path(result.source, len(result.rows), settings)
    with atomic_path(out / relative) as tmp:
        sf.write(tmp, pcm, SAMPLE_RATE, format=FORMATS[settings.format], subtype="PCM_16")
    result.bytes += os.path.getsize(out / relative)
    result.rows.append((relative, len(pcm), result.source, offset))
    return offset + len(pcm)


def _reason(error: AudioReadError, source: str) -> str:
    """The error's message without the path it starts with, on one line."""
    text = str(error)
    text = text[len(source) + 2:] if text.startswith(source + ": ") else text
    return " ".join(text.split())


def _stamp(source: str, settings: Settings) -> dict | None:
    """What a done record must match to be reused: the source file as it was, and the settings."""
    try:
        st = os.stat(source)
    except OSError:
        return None
    return {"source": source, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "format": settings.format,
            "segment_seconds": settings.segment_seconds}


def _write_done(out: Path, result: Prepared, stamp: dict) -> None:
    """The done record: line 1 '# ' + the stamp as JSON (with the skip reason, if any), then the rows."""
    head = "# " + json.dumps({**stamp, "skipped": result.skipped, "bytes": result.bytes, "clipped": result.clipped})
    write_text(done_path(out, result.source), "".join([head + "\n"] + [_row(r) for r in result.rows]))


def read_done(out: Path, source: str, settings: Settings) -> Prepared | None:
    """The source's done record if it matches the source and settings and its segments all exist;
    None: the source must be decoded (again)."""
    path = done_path(out, source)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        head = json.loads(lines[0][2:])
    except (OSError, ValueError, IndexError):
        return None
    stamp = _stamp(source, settings)
    if stamp is None or any(head.get(k) != v for k, v in stamp.items()):
        return None
    rows = []
    for line in lines[1:]:
        path_, frames, src, offset = line.split("\t")
        rows.append((path_, int(frames), src, int(offset)))
    if not all((out / r[0]).is_file() for r in rows):
        return None
    return Prepared(source, rows, head["skipped"], head["bytes"], head["clipped"], decoded=False)


def _row(row) -> str:
    return "\t".join(map(str, row)) + "\n"


# ---------------------------------------------------------------- the run

def list_corpus(sources, out: Path) -> list:
    """The source files of SOURCE... as absolute paths, in list_sources order, each once, none
    inside ``out`` (DIR inside a SOURCE folder would otherwise feed its own segments back)."""
    from training.data.manifest import list_sources

    for source in sources:
        if not os.path.exists(source):
            raise FileNotFoundError(f"SOURCE {source} is neither a folder, an audio file nor a manifest")
    inside = os.path.abspath(out) + os.sep
    seen, files = set(), []
    for path, _ in list_sources([os.path.abspath(s) for s in sources]):
        path = os.path.abspath(path)
        if path not in seen and not path.startswith(inside):
            seen.add(path)
            files.append(path)
    return files


def run(sources, out, settings: Settings, workers: int, progress: bool = True) -> dict:
    """Prepare ``sources`` into ``out`` (the whole command without its parsing); returns the summary.
    Raises FileNotFoundError / NotADirectoryError / UserError for bad input."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder")
    files = list_corpus(sources, out)
    if not files:
        raise UserError(f"no audio files in {' '.join(map(str, sources))} (looked for the suffixes of "
                        "hear_codec.audio.AUDIO_EXTENSIONS)")
    from training.engine import run_lock  # here: it imports Lightning (seconds), which bad input need not wait for

    t0 = time.time()
    with run_lock(out):  # refuses a second run into DIR; removes a killed run's temporary files
        results, todo = {}, []
        for source in files:
            if "\t" in source or "\n" in source:
                results[source] = Prepared(source, skipped="its path holds a tab or a newline, which manifest.tsv "
                                                           "cannot hold: rename it", decoded=False)
                continue
            found = read_done(out, source, settings)
            if found is None:
                todo.append(source)
            else:
                results[source] = found
        meter = Progress(len(files), progress)
        for found in results.values():
            meter.update(found)
        for result in _decode_all(todo, out, settings, workers):
            results[result.source] = result
            meter.update(result)
        meter.close()
        summary = _finish(out, [results[s] for s in files], settings, sources, time.time() - t0)
    return summary


def _decode_all(todo: list, out: Path, settings: Settings, workers: int):
    """Yield the Prepared of each source of ``todo`` as it finishes, longest file first."""
    todo = sorted(todo, key=_size, reverse=True)  # the longest ones start first: the run ends sooner
    if workers <= 1 or len(todo) <= 1:
        for source in todo:
            yield prepare_source(source, out, settings)
        return
    pool = ProcessPoolExecutor(min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_start, initargs=(os.getpid(),))
    try:
        futures = [pool.submit(prepare_source, source, out, settings) for source in todo]
        for future in as_completed(futures):
            yield future.result()
    except BaseException:  # Ctrl-C, a full disk, a bug: stop the workers now, not after their files
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _worker_start(parent: int) -> None:
    """A worker ends with its run: Ctrl-C is the run's to handle (the run kills its workers), and
    on Linux the kernel kills the worker when the run's process ends, SIGKILL included (else an
    orphan would go on writing into DIR beside the resumed run)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the run ended before prctl took effect
            os._exit(1)


def _finish(out: Path, results: list, settings: Settings, sources, elapsed: float) -> dict:
    """Write manifest.tsv, skipped.tsv and summary.json; remove what no longer belongs to DIR."""
    prepared = [r for r in results if r.skipped is None]
    skipped = [r for r in results if r.skipped is not None]
    write_text(out / MANIFEST, "".join([HEADER + "\n", COLUMNS + "\n"] + [_row(row) for r in prepared for row in r.rows]))
    write_text(out / SKIPPED, "".join(["source\treason\n"] + [f"{_escape(r.source)}\t{r.skipped}\n" for r in skipped]))
    keep = {row[0] for r in prepared for row in r.rows}
    keep |= {str(done_path(out, r.source).relative_to(out)) for r in results}
    removed = _sweep(out, keep)
    frames = sum(r.frames for r in prepared)
    summary = {
        "files": len(prepared), "segments": sum(len(r.rows) for r in prepared),
        "hours": frames / SAMPLE_RATE / 3600, "frames": frames, "bytes": sum(r.bytes for r in prepared),
        "skipped": len(skipped), "clipped_samples": sum(r.clipped for r in prepared),
        "decoded_this_run": sum(r.decoded for r in results), "removed_stale_files": removed,
        "seconds": round(elapsed, 1), "sample_rate": SAMPLE_RATE, "format": settings.format,
        "segment_seconds": settings.segment_seconds, "sources": [os.path.abspath(s) for s in sources],
    }
    write_json(out / SUMMARY, summary)
    return summary


def _escape(path: str) -> str:
    """A path as one TSV field: tabs and newlines written as \\t and \\n."""
    return path.replace("\t", "\\t").replace("\n", "\\n")


def _sweep(out: Path, keep: set) -> int:
    """Remove the files under DIR/audio and DIR/done that ``keep`` (paths relative to DIR) does not
    name: segments of sources no longer listed, of other settings, of sources that failed midway."""
    removed = 0
    for top in (AUDIO, DONE):
        for folder, _, names in os.walk(out / top, topdown=False):
            for name in names:
                path = os.path.join(folder, name)
                if os.path.relpath(path, out) not in keep and not name.endswith(".tmp"):
                    os.unlink(path)
                    removed += 1
            if folder != str(out / top) and not os.listdir(folder):
                os.rmdir(folder)
    return removed


class Progress:
    """Files done and hours of audio per second: a tqdm bar where tqdm is installed, else a line on
    stderr every few seconds; nothing with ``show`` False."""

    def __init__(self, total: int, show: bool):
        self.total, self.show, self.files, self.hours, self.decoded = total, show, 0, 0.0, 0.0
        self.t0 = self.last = time.time()
        self.bar = None
        if show:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=total, unit="file", desc="prepare", file=sys.stderr, smoothing=0.1)

    def update(self, result: Prepared) -> None:
        self.files += 1
        hours = result.frames / SAMPLE_RATE / 3600
        self.hours += hours
        self.decoded += hours if result.decoded else 0.0
        if not self.show:
            return
        rate = self.decoded / max(time.time() - self.t0, 1e-9)  # what this run decodes, not what it found done
        text = f"{self.hours:.2f} h of audio, {rate:.2f} h/s"
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        elif time.time() - self.last > 5 or self.files == self.total:
            self.last = time.time()
            print(f"prepare: {self.files}/{self.total} files, {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.prepare",
        description="Decode audio once for pretraining: every SOURCE is mixed down, resampled to 24 kHz and cut "
                    "into 16-bit segments in DIR, with DIR/manifest.tsv; `python -m training.pretrain --data DIR` "
                    "trains on it without decoding. A killed run continues where it stopped when run again.")
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="audio folders (searched recursively), audio files, or manifests (one path per line)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the prepared corpus's folder")
    parser.add_argument("--format", choices=sorted(FORMATS), default=DEFAULT_FORMAT,
                        help="segment file format, 16-bit PCM either way: wav is fastest to read, flac smaller "
                             "(default: %(default)s)")
    parser.add_argument("--segment-seconds", type=cli.positive_float, default=DEFAULT_SEGMENT_SECONDS,
                        help="longest segment; longer files are cut into equal segments (default: %(default)g)")
    parser.add_argument("--workers", type=cli.positive_int, default=min(8, os.cpu_count() or 1),
                        help="processes decoding at once, one file each (default: min(8, CPUs) = %(default)s)")
    parser.add_argument("--no-progress-bar", dest="progress", action="store_false",
                        help="no progress bar (batch jobs, logs)")
    return parser


def main(argv=None) -> dict | int:
    args = build_parser().parse_args(argv)
    settings = Settings(args.format, args.segment_seconds)
    try:
        summary = run(args.sources, args.out, settings, args.workers, args.progress)
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue where it stopped", file=sys.stderr)
        return 128 + signal.SIGINT
    out = Path(args.out)
    skipped = f", {summary['skipped']} skipped (listed in {out / SKIPPED})" if summary["skipped"] else ", 0 skipped"
    print(f"prepared {summary['files']} files ({summary['segments']} segments, {summary['hours']:.2f} h of audio, "
          f"{size_text(summary['bytes'])} on disk){skipped} in {summary['seconds']:.0f} s "
          f"({summary['decoded_this_run']} decoded this run): {out / MANIFEST}")
    return summary


if __name__ == "__main__":
    cli.run(main)
