"""Prepared corpora (``python -m training.prepare``): their manifest read into arrays, and crops
read from their segment files.

A prepared folder DIR holds ``DIR/manifest.tsv``, whose first line starts with
:data:`PREPARED_HEADER`, then ``# path<TAB>frames<TAB>source<TAB>offset`` and one row per segment
file: its path relative to DIR, its exact number of samples (24 kHz mono), the original source
file, and the segment's first sample within that source. The rows of a source are contiguous and
in offset order, and its segments tile the source from sample 0 without gaps.

The loader's item is the source (:class:`~training.data.index.AudioIndex`): its length is the sum
of its segments, and a crop that spans two segments reads both. Nothing is probed at start-up (the
manifest's frames are exact), so a 2-million-row manifest is parsed with numpy, not line by line.

Segments in 16-bit PCM WAV are read by :func:`read_pcm16_wav`: the RIFF header parsed for the
``data`` chunk, then the crop's bytes with one ``os.pread`` (soundfile costs about 1 ms a crop;
this is the same float32 samples, bit for bit). FLAC (and any other) segments go through soundfile.
"""
from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from hear_codec.codec import SAMPLE_RATE
from hear_codec.errors import AudioReadError
from training.data.index import AudioIndex, PathTable

PREPARED_HEADER = "# hear_codec prepared corpus"
MANIFEST_NAME = "manifest.tsv"
COLUMNS = "path<TAB>frames<TAB>source<TAB>offset"


def prepared_manifest(source) -> Path | None:
    """The prepared manifest that ``source`` (a prepared folder, or its manifest) names, else None.

    Only the first line is read: a folder without DIR/manifest.tsv, or whose manifest is of
    another kind, is an ordinary folder or manifest."""
    source = Path(source)
    manifest = source / MANIFEST_NAME if source.is_dir() else source
    try:
        if not manifest.is_file():
            return None
        with open(manifest, "rb") as f:
            first = f.readline(len(PREPARED_HEADER) + 1)
    except OSError:
        return None
    return manifest if first.startswith(PREPARED_HEADER.encode()) else None


def read_prepared(manifest) -> AudioIndex:
    """A prepared manifest -> the :class:`AudioIndex` of its sources, whose path tables point into
    the manifest's bytes (no copy). Raises ValueError naming the line of a malformed row."""
    manifest = Path(manifest)
    data = manifest.read_bytes()
    if not data.endswith(b"\n"):
        data += b"\n"
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == 10)
    # the comment lines at the top (the prepared header, the column names)
    comments, pos = 0, 0
    while comments < len(newlines) and data[pos:pos + 1] == b"#":
        pos, comments = int(newlines[comments]) + 1, comments + 1
    ends = newlines[comments:]
    starts = np.concatenate([[pos], ends[:-1] + 1]).astype(np.int64) if len(ends) else ends
    tabs = np.flatnonzero(buf[pos:] == 9) + pos
    per_line = np.diff(np.searchsorted(tabs, ends), prepend=0)
    if not bool((per_line == 3).all()):
        raise ValueError(_bad_row(manifest, data, comments, lambda line: line.count(b"\t") != 3,
                                  f"expected {COLUMNS}"))
    tabs = tabs.reshape(-1, 3)
    frames = _parse_ints(buf, tabs[:, 0] + 1, tabs[:, 1])
    offset = _parse_ints(buf, tabs[:, 2] + 1, ends)
    if frames is None or offset is None:
        raise ValueError(_bad_row(manifest, data, comments, _not_two_ints, "frames and offset must be whole numbers"))
    if not bool((frames > 0).all()):
        raise ValueError(_bad_row(manifest, data, comments, lambda line: int(line.split(b"\t")[1]) <= 0,
                                  "a segment of 0 frames"))
    # A source starts at offset 0; every other row continues the row above it: the same source,
    # at the sample where that row's segment ends.
    first = offset == 0
    src_start, src_end = tabs[:, 1] + 1, tabs[:, 2]
    cont = np.flatnonzero(~first)
    if len(ends) and (not first[0] or not bool((offset[cont] == offset[cont - 1] + frames[cont - 1]).all())
                      or not _same_strings(buf, src_start[cont], src_end[cont], src_start[cont - 1], src_end[cont - 1])):
        raise ValueError(_bad_order(manifest, data, comments))
    item_rows = np.flatnonzero(first)
    total = np.add.reduceat(frames, item_rows) if len(item_rows) else np.zeros(0, np.int64)
    return AudioIndex(PathTable(buf, src_start[item_rows], src_end[item_rows]), total / SAMPLE_RATE, total,
                      np.append(item_rows, len(ends)).astype(np.int64), PathTable(buf, starts, tabs[:, 0]),
                      offset, frames, np.zeros(len(item_rows), dtype=np.int32), (str(manifest.parent),))


def read_prepared_skipped(manifest) -> list:
    """[(source, reason)] of DIR/skipped.tsv beside a prepared manifest (empty if there is none)."""
    path = Path(manifest).parent / "skipped.tsv"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#") and "\t" in line:
            source, reason = line.split("\t", 1)
            if (source, reason) != ("source", "reason"):
                rows.append((source, f"{reason} (skipped by training.prepare)"))
    return rows


def _parse_ints(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray):
    """Decimal digits in ``buf[starts[i]:ends[i]]`` -> [n] int64, or None if a field is empty, too
    long or not all digits. One pass per digit position, over all rows at once."""
    lengths = ends - starts
    if len(lengths) == 0:
        return np.zeros(0, np.int64)
    if int(lengths.min()) < 1 or int(lengths.max()) > 18:
        return None
    value = np.zeros(len(starts), dtype=np.int64)
    for k in range(int(lengths.max())):
        here = k < lengths
        digit = buf[np.where(here, starts + k, 0)].astype(np.int64) - ord("0")
        if not bool(((digit >= 0) & (digit <= 9) | ~here).all()):
            return None
        value = np.where(here, value * 10 + digit, value)
    return value


def _same_strings(buf: np.ndarray, a0, a1, b0, b1) -> bool:
    """Whether ``buf[a0[i]:a1[i]] == buf[b0[i]:b1[i]]`` for every i, one byte position at a time."""
    length = a1 - a0
    if not np.array_equal(length, b1 - b0):
        return False
    for k in range(int(length.max()) if len(length) else 0):
        here = k < length
        if not np.array_equal(buf[np.where(here, a0 + k, 0)], buf[np.where(here, b0 + k, 0)]):
            return False
    return True


def _rows(data: bytes, comments: int):
    """(line number, line) of the rows (``data`` ends with a newline), for error messages only."""
    yield from enumerate(data.split(b"\n")[comments:-1], comments + 1)


def _bad_row(manifest, data: bytes, comments: int, is_bad, what: str) -> str:
    for number, line in _rows(data, comments):
        if is_bad(line):
            return f"{manifest}:{number}: {what}, got {line[:200].decode('utf-8', 'replace')!r}"
    return f"{manifest}: {what}"


def _not_two_ints(line: bytes) -> bool:
    parts = line.split(b"\t")
    return not (parts[1].isdigit() and parts[3].isdigit() and len(parts[1]) <= 18 and len(parts[3]) <= 18)


def _bad_order(manifest, data: bytes, comments: int) -> str:
    previous = None
    for number, line in _rows(data, comments):
        _, frames, source, offset = line.split(b"\t")
        if int(offset) != 0 and (previous is None or previous[0] != source or previous[1] != int(offset)):
            return (f"{manifest}:{number}: a segment of {source.decode('utf-8', 'replace')} at offset {int(offset)} "
                    "that does not continue the row above (a source's rows are contiguous, in offset order, from 0)")
        previous = (source, int(offset) + int(frames))
    return f"{manifest}: the rows of a source are not contiguous and in offset order"


# ---------------------------------------------------------------- reading crops

def read_item(index: AudioIndex, item: int, start: int, count: int) -> np.ndarray:
    """Samples [start, start + count) of prepared item ``item``: [count] float32 at 24 kHz, read
    from the one or more segments that hold them. Raises AudioReadError (a missing or short
    segment) or ValueError (a range outside the item)."""
    if start < 0 or count < 0 or start + count > int(index.frames[item]):
        raise ValueError(f"samples [{start}, {start + count}) of {index.paths[item]}, which has {index.frames[item]}")
    first, last = int(index.seg_first[item]), int(index.seg_first[item + 1])
    seg = first + int(np.searchsorted(index.seg_offset[first:last], start, side="right")) - 1
    out = np.empty(count, dtype=np.float32)
    filled = 0
    while filled < count:
        local = start + filled - int(index.seg_offset[seg])
        n = min(count - filled, int(index.seg_frames[seg]) - local)
        out[filled:filled + n] = read_segment_file(index.segment_path(item, seg), local, n)
        filled += n
        seg += 1
    return out


def read_segment_file(path: str, start: int, count: int) -> np.ndarray:
    """Samples [start, start + count) of a prepared segment file: [count] float32. 16-bit PCM WAV
    by :func:`read_pcm16_wav`, anything else by soundfile; both must be 24 kHz mono."""
    if path.endswith(".wav"):
        wav = read_pcm16_wav(path, start, count)
        if wav is not None:
            return wav
    _check_regular(path, os.stat(path).st_mode)
    try:
        with sf.SoundFile(path) as f:
            if f.samplerate != SAMPLE_RATE or f.channels != 1:
                raise AudioReadError(f"{path}: {f.channels} channel(s) at {f.samplerate} Hz, a prepared segment "
                                     f"is mono at {SAMPLE_RATE} Hz")
            f.seek(start)
            wav = f.read(count, dtype="float32")
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioReadError(f"{path}: cannot read audio ({e})") from e
    if len(wav) != count:
        raise AudioReadError(f"{path}: {len(wav)} of the {count} samples from {start} (the file is shorter than "
                             "its manifest row)")
    return wav


def read_pcm16_wav(path: str, start: int, count: int) -> np.ndarray | None:
    """Samples [start, start + count) of a 16-bit PCM mono 24 kHz WAV: [count] float32, equal bit
    for bit to soundfile's float32 read (int16 / 32768: a power of two, so exact). None if the file
    is another kind of WAV (the caller reads it with soundfile). Raises AudioReadError (not a
    regular file, no data chunk, fewer samples than asked)."""
    # O_NONBLOCK: opening a FIFO to read waits for a writer; with it the open returns and the
    # fstat below refuses the file (on a regular file the flag changes nothing).
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        _check_regular(path, os.fstat(fd).st_mode)
        layout = _wav_layout(fd, path)
        if layout is None:
            return None
        data_start, data_end = layout
        first = data_start + 2 * start
        if first + 2 * count > data_end:
            raise AudioReadError(f"{path}: samples [{start}, {start + count}) asked, the data chunk holds "
                                 f"{(data_end - data_start) // 2} (the file is shorter than its manifest row)")
        raw = os.pread(fd, 2 * count, first)
    finally:
        os.close(fd)
    if len(raw) != 2 * count:
        raise AudioReadError(f"{path}: {len(raw) // 2} of the {count} samples from {start} (the file is truncated)")
    wav = np.frombuffer(raw, dtype="<i2").astype(np.float32)
    wav *= np.float32(1 / 32768)
    return wav


_PCM_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")  # KSDATAFORMAT_SUBTYPE_PCM after its first 2 bytes (01 00)


def _wav_layout(fd: int, path: str):
    """(first byte, end byte) of the data chunk of a 16-bit PCM mono 24 kHz RIFF WAV, None for
    another format; AudioReadError if the file is no WAV or has no data chunk. One read of the
    first 4 kB holds the header of a WAV that soundfile (or most writers) wrote."""
    size = os.fstat(fd).st_size
    head = os.pread(fd, 4096, 0)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None if head[:4] in (b"RIFX", b"RF64") and head[8:12] == b"WAVE" else _not_wav(path)
    pos, pcm16 = 12, False
    while pos + 8 <= size:
        chunk = head[pos:pos + 8] if pos + 8 <= len(head) else os.pread(fd, 8, pos)
        if len(chunk) < 8:
            break
        cid, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"fmt ":
            want = min(length, 40)
            fmt = head[pos + 8:pos + 8 + want] if pos + 8 + want <= len(head) else os.pread(fd, want, pos + 8)
            if len(fmt) < 16:
                return _not_wav(path)
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
            if tag == 0xFFFE and len(fmt) >= 40:  # WAVE_FORMAT_EXTENSIBLE: the sub-format says PCM
                tag = 1 if fmt[24:26] == b"\x01\x00" and fmt[26:40] == _PCM_GUID_TAIL else tag
            pcm16 = (tag, channels, rate, bits) == (1, 1, SAMPLE_RATE, 16)
            if not pcm16:
                return None
        elif cid == b"data":
            if not pcm16:
                return None  # no fmt chunk before the data: let soundfile judge
            # a header written before the length was known says 0 or 0xFFFFFFFF: the file decides
            end = size if length in (0, 0xFFFFFFFF) else min(size, pos + 8 + length)
            return pos + 8, end
        pos += 8 + length + (length & 1)  # chunks are padded to an even length
    raise AudioReadError(f"{path}: no data chunk in the WAV file")


def _not_wav(path):
    raise AudioReadError(f"{path}: not a RIFF WAVE file")


def _check_regular(path: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise AudioReadError(f"{path}: {not_regular_reason(mode)}")


def not_regular_reason(mode: int) -> str:
    """Why a path that exists is no audio file: a folder, or a pipe, device or socket (which an
    open would wait on forever, or read without end)."""
    return "a folder, not a file" if stat.S_ISDIR(mode) else "not a regular file (a pipe, device or socket)"
