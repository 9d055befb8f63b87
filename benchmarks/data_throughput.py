"""Data pipeline throughput on this machine's CPUs: how many loader processes EnCodecMAE needs.

    python benchmarks/data_throughput.py                      # the whole table (several minutes)
    python benchmarks/data_throughput.py --quick              # a smoke run of every row (about a minute)
    python benchmarks/data_throughput.py --only read pipeline # some sections only
    python benchmarks/data_throughput.py --manifest-rows 500000 --startup-workers 1 2

One table, rows by section (``--only``):

  read      crops/s of one process reading random 4 s crops at 24 kHz through the training
            dataset (``training.data.crops.file_datasets`` -> ``AudioCrops``, keys in
            ``StepSampler`` order, one torch thread as in a loader worker; no collate), for raw
            formats written on the spot: AudioSet-like (10 s, 48 kHz stereo FLAC), FMA-like (30 s,
            44.1 kHz stereo MP3) and Libri-Light-like (30 min, 16 kHz mono FLAC), and for the same
            audio prepared by ``python -m training.prepare`` as 24 kHz mono WAV and FLAC;
  pipeline  crops/s of the whole pipeline as training runs it (crop -> ``MaskingCollate`` -> masks,
            ``training.encodecmae.train.build_loaders``: StepSampler, the real DataLoader) with
            ``--pipeline-workers`` processes, on the prepared WAV corpus; and the processes that
            feed EnCodecMAE base at 40 % MFU on an H100: clips/s needed = 0.40 x 989e12 FLOP/s /
            the FLOPs of one clip's training step (``train_throughput.train_flops``), processes =
            ceil(clips/s needed / the one-worker pipeline's crops/s);
  startup   seconds from ``file_datasets`` to the first batch, and memory (RSS of the parent and
            of each worker, with the worker's private pages: what it does not share with the
            parent), of a run on a prepared manifest of ``--manifest-rows`` rows (default
            2,000,000 sources, each a distinct fake path, pointing at a few real segment files),
            one fresh process per ``--startup-workers`` count.

The audio is noise with a slow envelope (FLAC compresses it less than music or speech: its decode
costs are an upper bound). Files are read once before timing (page cache): the figures are CPU,
not disk. A row that cannot run here (MP3 needs libsndfile >= 1.1) prints ``n/a (reason)``. Time
it alone on the machine (another process's load halves a 2-core machine's figures); the header
prints the load.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hear_codec import encodecmae as emae  # noqa: E402
from hear_codec.codec import SAMPLE_RATE  # noqa: E402
from machine import describe_ceilings, describe_machine, matmul_ceilings  # noqa: E402  (benchmarks/machine.py)
from train_throughput import train_flops  # noqa: E402

H100_BF16 = 989e12  # datasheet dense bf16 FLOP/s
TARGET_MFU = 0.40
CROP_SECONDS = 4.0
PREPARED_HEADER = "# hear_codec prepared corpus"  # the contract's first line of a prepared manifest
SECTIONS = ("read", "pipeline", "startup")


# ---------------------------------------------------------------- the corpus, written on the spot

# name -> (label, files (full, quick), seconds (full, quick), rate, channels, format, subtype, extension)
RAW = {
    "audioset": ("AudioSet-like: 10 s 48 kHz stereo FLAC", (64, 2), (10, 10), 48000, 2, "FLAC", "PCM_16", "flac"),
    "fma": ("FMA-like: 30 s 44.1 kHz stereo MP3", (16, 1), (30, 30), 44100, 2, "MP3", "MPEG_LAYER_III", "mp3"),
    "librilight": ("Libri-Light-like: 30 min 16 kHz mono FLAC", (2, 1), (1800, 30), 16000, 1, "FLAC", "PCM_16",
                   "flac"),
}


def write_noise(path: Path, seconds: float, rate: int, channels: int, fmt: str, subtype: str, seed: int) -> None:
    """Noise under a slow random envelope, written block by block (a 30 min file never in memory)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    block, total = 10 * rate, int(seconds * rate)
    with sf.SoundFile(path, "w", rate, channels, format=fmt, subtype=subtype) as f:
        for start in range(0, total, block):
            n = min(block, total - start)
            envelope = 0.05 + 0.2 * np.abs(np.sin(np.linspace(0, rng.uniform(1, 10), n)))
            f.write((envelope[:, None] * rng.standard_normal((n, channels))).astype(np.float32))


def write_raw(work: Path, name: str, quick: bool) -> tuple[Path, str]:
    """The folder of raw files ``name`` (:data:`RAW`) and its label; raises on a format soundfile cannot write."""
    label, files, seconds, rate, channels, fmt, subtype, ext = RAW[name]
    files, seconds = files[quick], seconds[quick]
    folder = work / "raw" / name
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        write_noise(folder / f"{name}{i:03d}.{ext}", seconds, rate, channels, fmt, subtype, seed=i)
    if quick and seconds != RAW[name][2][0]:
        label = label.replace(f"{RAW[name][2][0] // 60} min", f"{seconds} s")
    return folder, f"{label}, {files} file{'s' * (files > 1)}"


def prepare(raw_folders: list, out: Path, fmt: str, workers: int) -> float:
    """``python -m training.prepare RAW... --out OUT --format FMT``; returns its seconds."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "training.prepare", *map(str, raw_folders), "--out", str(out),
                    "--format", fmt, "--workers", str(workers), "--no-progress-bar"], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t0


def warm_page_cache(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                while f.read(1 << 24):
                    pass


# ---------------------------------------------------------------- measurements

def data_config(sources, batch_size: int = 1, workers: int = 0, **kw):
    from training.data.crops import DataConfig

    return DataConfig(sources=[str(s) for s in sources], crop_seconds=CROP_SECONDS, batch_size=batch_size,
                      num_workers=workers, **kw)


def crops_per_second(folder: Path, out: Path, seconds: float, min_crops: int) -> tuple[float, int]:
    """(crops/s of one process, crops replaced because unreadable): random crops of ``folder``'s
    training set in StepSampler order, one torch thread (a loader worker's)."""
    from training.data.crops import file_datasets
    from training.data.sampler import StepSampler

    train_set, _, _ = file_datasets(data_config([folder], val_fraction=0.0), out)
    keys = iter(StepSampler(train_set.draws_per_epoch, 1, seed=0))
    for _ in range(3):
        train_set[next(keys)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        n, bad, t0 = 0, 0, time.perf_counter()
        while n < min_crops or time.perf_counter() - t0 < seconds:
            bad += not train_set[next(keys)]["ok"]
            n += 1
        return n / (time.perf_counter() - t0), bad
    finally:
        torch.set_num_threads(threads)


def pipeline_crops_per_second(folder: Path, out: Path, workers: int, batch_size: int, seconds: float) -> float:
    """Crops/s of the training loader (crops, MaskingCollate's stacking and masks) with ``workers``
    processes, after each worker has delivered two batches (its queue filled and drained)."""
    from training.data.crops import file_datasets
    from training.encodecmae.train import build_loaders

    data = data_config([folder], batch_size, workers, val_fraction=0.0)
    train_set, _, _ = file_datasets(data, out)
    loader, _, _ = build_loaders(train_set, None, data, emae.preset("base", chunk_seconds=CROP_SECONDS))
    it = iter(loader)
    for _ in range(2 * max(1, workers)):
        next(it)
    n, t0 = 0, time.perf_counter()
    while n < 3 * max(1, workers) or time.perf_counter() - t0 < seconds:
        next(it)
        n += 1
    rate = n * batch_size / (time.perf_counter() - t0)
    del it, loader  # stops the workers
    return rate


def clips_needed() -> tuple[float, float]:
    """(clips/s that keep EnCodecMAE base at TARGET_MFU on an H100, FLOPs of one clip's step)."""
    from training.encodecmae.masking import frames_for

    cfg = emae.preset("base", chunk_seconds=CROP_SECONDS)
    frames = frames_for(cfg.front_end, round(CROP_SECONDS * SAMPLE_RATE))
    flops = train_flops(cfg, frames, 1, emae.FRONT_ENDS[cfg.front_end].input_dim)
    return TARGET_MFU * H100_BF16 / flops, flops


def write_big_manifest(folder: Path, rows: int, segments: int = 8, seconds: float = 10.0) -> None:
    """A prepared corpus of ``rows`` sources (fake paths, one segment each) whose rows point at
    ``segments`` real 24 kHz mono WAV files of ``seconds``."""
    import soundfile as sf

    (folder / "audio").mkdir(parents=True, exist_ok=True)
    frames = int(seconds * SAMPLE_RATE)
    for i in range(segments):
        write_noise(folder / "audio" / f"seg{i}.wav", seconds, SAMPLE_RATE, 1, "WAV", "PCM_16", seed=100 + i)
        assert sf.info(folder / "audio" / f"seg{i}.wav").frames == frames
    with open(folder / "manifest.tsv", "w", encoding="utf-8") as f:
        f.write(f"{PREPARED_HEADER}\tsample_rate={SAMPLE_RATE}\n# path\tframes\tsource\toffset\n")
        step = 100_000
        for start in range(0, rows, step):
            f.write("".join(f"audio/seg{i % segments}.wav\t{frames}\t/fake/corpus/{i // 1000:04d}/{i:07d}.flac\t0\n"
                            for i in range(start, min(rows, start + step))))


def memory_kib(pid) -> dict:
    """{"rss", "hwm", "private", "pss"} KiB of a process, from /proc (Linux)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line[2:5].lower()] = int(line.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            rollup = {line.split(":")[0]: int(line.split()[1]) for line in f if line.endswith("kB\n")}
        out["private"] = rollup["Private_Clean"] + rollup["Private_Dirty"]
        out["pss"] = rollup["Pss"]
    except (OSError, KeyError):
        pass
    return out


def startup_child(folder: str, workers: int, batch_size: int, out: str) -> None:
    """In a fresh process: seconds to index, to the first batch, and memory with ``workers``
    workers, as JSON on stdout (the function training.pretrain uses: file_datasets, then the
    family's loaders)."""
    t0 = time.perf_counter()
    from training.data.crops import file_datasets
    from training.encodecmae.train import build_loaders

    imported = time.perf_counter()
    data = data_config([folder], batch_size, workers)
    train_set, val_set, meta = file_datasets(data, Path(out))
    indexed = time.perf_counter()
    loader, _, _ = build_loaders(train_set, val_set, data, emae.preset("base", chunk_seconds=CROP_SECONDS))
    it = iter(loader)
    next(it)
    first = time.perf_counter()
    for _ in range(max(0, workers - 1)):  # every worker has made a batch
        next(it)
    pids = [w.pid for w in getattr(it, "_workers", [])]
    print(json.dumps(dict(imports=imported - t0, index=indexed - imported, first_batch=first - indexed,
                          items=len(train_set), parent=memory_kib("self"), workers=[memory_kib(p) for p in pids])))


def run_startup(folder: Path, out: Path, workers: int, batch_size: int) -> dict:
    cmd = [sys.executable, __file__, "--startup-child", str(folder), str(workers), str(batch_size), str(out)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the table

def processes(ratio: float) -> str:
    n = math.ceil(ratio)
    return f"{n} process{'es' * (n != 1)}"


def mib(kib) -> str:
    return f"{kib / 1024:.0f} MiB"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: few short files, 1 s per row, batch 16, a 20,000-row manifest, 1 worker")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run (default: all)")
    p.add_argument("--formats", nargs="+", choices=[*RAW, "prepared-wav", "prepared-flac"], default=None,
                   help="read rows to run (default: all)")
    p.add_argument("--seconds", type=float, default=None, help="timed seconds per row (default: 10; --quick 1)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="pipeline and start-up batch (default: 128; --quick 16)")
    p.add_argument("--pipeline-workers", type=int, nargs="+", default=None, help="(default: 1 2; --quick 1)")
    p.add_argument("--manifest-rows", type=int, default=None,
                   help="start-up manifest rows (default: 2000000; --quick 20000)")
    p.add_argument("--startup-workers", type=int, nargs="+", default=None, help="(default: 1 2 4; --quick 1)")
    p.add_argument("--prepare-workers", type=int, default=None,
                   help="training.prepare --workers (default: the CPU count; --quick 1)")
    p.add_argument("--ceiling-seconds", type=float, default=None,
                   help="seconds per matmul rate (default: 2; --quick 0.2)")
    p.add_argument("--work", type=Path, default=None, help="folder for the generated audio (default: a temporary one)")
    p.add_argument("--startup-child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.startup_child:
        folder, workers, batch, out = args.startup_child
        return startup_child(folder, int(workers), int(batch), out)
    q = args.quick
    seconds = args.seconds if args.seconds is not None else (1.0 if q else 10.0)
    batch = args.batch_size or (16 if q else 128)
    pipeline_workers = args.pipeline_workers or ([1] if q else [1, 2])
    rows = args.manifest_rows or (20_000 if q else 2_000_000)
    startup_workers = args.startup_workers or ([1] if q else [1, 2, 4])
    formats = args.formats or [*RAW, "prepared-wav", "prepared-flac"]
    prepare_workers = args.prepare_workers or (1 if q else os.cpu_count() or 1)

    import logging
    logging.basicConfig(level=logging.ERROR)  # the loader's per-run info lines would break the table
    print(f"machine: {describe_machine('cpu')}")
    print(describe_ceilings({"cpu": matmul_ceilings("cpu", seconds=args.ceiling_seconds or (0.2 if q else 2.0))}))
    needed, flops = clips_needed()
    print(f"crops of {CROP_SECONDS:g} s at 24 kHz; {'--quick: a smoke run, not a measurement; ' if q else ''}"
          f"{seconds:g} s per row; pipeline batch {batch}")
    print()
    print("| section | data | result | detail |")
    print("| --- | --- | ---: | --- |")

    def row(section, data, result, detail=""):
        print(f"| {section} | {data} | {result} | {detail} |", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        runs = Path(tmp) / "runs"
        raw, labels = {}, {}
        want_prepared = {f for f in ("wav", "flac") if "read" in args.only and f"prepared-{f}" in formats}
        if "pipeline" in args.only:
            want_prepared.add("wav")
        for name in RAW:
            if ("read" in args.only and name in formats) or want_prepared:
                try:
                    raw[name], labels[name] = write_raw(work, name, q)
                except Exception as e:  # e.g. MP3 needs libsndfile >= 1.1
                    labels[name] = f"n/a (cannot write {RAW[name][0]}: {type(e).__name__}: {e})"
        prepared, prepared_label = {}, {}
        for fmt in sorted(want_prepared, reverse=True):
            out = work / f"prepared-{fmt}"
            try:
                took = prepare(list(raw.values()), out, fmt, prepare_workers)
            except subprocess.CalledProcessError as e:
                prepared_label[fmt] = f"n/a (training.prepare failed: {e.stderr.strip().splitlines()[-1:]})"
                continue
            prepared[fmt] = out
            prepared_label[fmt] = (f"prepared {fmt.upper()} (24 kHz mono) of the raw rows, by training.prepare in "
                                   f"{took:.0f} s with {prepare_workers} worker{'s' * (prepare_workers > 1)}")

        if "read" in args.only:
            for name in formats:
                fmt = name.removeprefix("prepared-")
                folder = raw.get(name) or prepared.get(fmt)
                label = labels.get(name) or prepared_label.get(fmt)
                if folder is None:
                    row("read, 1 process", RAW[name][0] if name in RAW else f"prepared {fmt.upper()}", label)
                    continue
                warm_page_cache(folder)
                rate, bad = crops_per_second(folder, runs / f"read-{name}", seconds, 5 if q else 50)
                detail = f"{1e3 / rate:.2f} ms a crop; reading alone needs {processes(needed / rate)} at 40 % MFU"
                row("read, 1 process", label, f"{rate:.0f} crops/s", detail + (f"; {bad} unreadable" if bad else ""))

        if "pipeline" in args.only:
            folder, label = prepared.get("wav"), prepared_label.get("wav", "prepared WAV").split(", by")[0]
            if folder is None:
                row("pipeline", "prepared WAV", label)
            else:
                warm_page_cache(folder)
                per_process = None
                for workers in pipeline_workers:
                    rate = pipeline_crops_per_second(folder, runs / f"pipe{workers}", workers, batch, seconds)
                    per_process = per_process or rate / workers
                    row(f"pipeline, {workers} worker{'s' * (workers > 1)}", label,
                        f"{rate:.0f} crops/s", f"{rate / workers:.0f} per worker; crop -> MaskingCollate -> masks, "
                                               f"batch {batch}")
                row("processes for base at 40 % MFU (H100)", "the pipeline's crops/s per process above",
                    processes(needed / per_process),
                    f"clips/s needed = 0.40 x 989e12 / {flops / 1e9:.1f} GFLOP a clip = {needed:,.0f}; "
                    f"ceil({needed:,.0f} / {per_process:.0f})")

        if "startup" in args.only:
            folder = work / "big-manifest"
            t0 = time.perf_counter()
            write_big_manifest(folder, rows)
            written = time.perf_counter() - t0
            data = f"prepared manifest, {rows:,} rows ({(folder / 'manifest.tsv').stat().st_size / 2**20:.0f} MiB)"
            for workers in startup_workers:
                r = run_startup(folder, runs / f"startup{workers}", workers, batch)
                per_worker = ", ".join(f"{mib(w['rss'])} (private {mib(w.get('private', 0))})"
                                       for w in r["workers"])
                row(f"start-up, {workers} worker{'s' * (workers > 1)}", data,
                    f"{r['index'] + r['first_batch']:.1f} s to the first batch",
                    f"index {r['index']:.1f} s + loaders and first batch {r['first_batch']:.1f} s "
                    f"({r['items']:,} training items); RSS parent {mib(r['parent']['rss'])} "
                    f"(peak {mib(r['parent']['hwm'])}), per worker {per_worker}")
            print(f"\n(the manifest took {written:.1f} s to write; imports are not counted in start-up)")


if __name__ == "__main__":
    main()
