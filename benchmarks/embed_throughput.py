"""Embedding throughput: our defaults against the official EnCodecMAE plan, in one run.

    python benchmarks/embed_throughput.py                 # EnCodecMAE-base, mel256 + ec, 8 clips x 10 s, CPU
    python benchmarks/embed_throughput.py --device cuda --clips 64

Rows, for each front end:
  default    load_model() as it comes (precision="auto", chunk_context 0.25 s), get_scene_embeddings
             and get_timestamp_embeddings on all clips in one call;
  fp32       the same with precision="fp32" forced;
  bf16       the same with precision="bf16" forced (not run unless asked: --rows ... bf16-scene);
  official   the official wrapper's plan (extract_features_from_array) run with our model: one clip
             per call, non-overlapping 4 s chunks one forward each, a shorter last chunk, tails of
             2048 samples or fewer dropped, every layer computed, fp32, and for ec the EnCodec
             encoder run by encodec's own forward, as the official EncodecEncoder runs it (ours
             runs hear_codec/seanet.py on CPU).

Each row runs in a fresh process (peak RSS is that row's alone) on random weights (speed does not
depend on them): one warm-up clip, then ``--clips`` clips of ``--seconds`` s at 48 kHz. "auto"
is decided in the first default row's warm-up, by hear_codec/precision.py's measurement (outside
the timed calls), into a precision cache made for this run (``--precision-cache`` keeps another);
the later rows read it, as a user's later runs do. The decision and its reason are printed. Columns:
x real-time; chunk-seconds computed per audio-second (from the plan); GFLOP counted by torch's
FlopCounterMode on the same calls (matmuls, convolutions, attention; the EnCodec LSTM is not
counted) and GFLOP/s as a share of the matmul ceiling of the row's precision, measured in the same
run; peak memory (RSS on CPU, torch's peak allocation on GPU); the precision the row resolved to.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
from machine import ceiling_shape, describe_ceilings, describe_machine, matmul_ceilings  # noqa: E402  (benchmarks/machine.py)

OFFICIAL_CHUNK = 96000  # 4 s at 24 kHz
OFFICIAL_MIN_LENGTH = 2048  # the official wrapper drops chunks of this many samples or fewer


def official_plan(model, audio: torch.Tensor) -> list:
    """The official wrapper's work on [n, S] audio at the HEAR rate, one clip at a time:
    [n] frame embeddings [T, D] of the last layer (all layers computed, as it does)."""
    from unittest import mock

    from hear_codec import codec
    from hear_codec.audio import resample

    out = []
    with torch.no_grad(), mock.patch.object(codec, "run_encoder", codec.encodec_forward):
        for clip in audio:
            wav = resample(clip[None], model.sample_rate, 24000)
            chunks = [wav[:, i:i + OFFICIAL_CHUNK] for i in range(0, wav.shape[1], OFFICIAL_CHUNK)]
            out.append(torch.cat([model.model.embed_layers(c)[-1][0] for c in chunks
                                  if c.shape[1] > OFFICIAL_MIN_LENGTH]))
    return out


def chunk_seconds_per_audio_second(model, row: str, samples: int) -> float:
    if row == "official":
        kept = [min(OFFICIAL_CHUNK, samples - i) for i in range(0, samples, OFFICIAL_CHUNK)]
        return sum(k for k in kept if k > OFFICIAL_MIN_LENGTH) / samples
    plan = model.chunk_plan(samples, 0.0 if row.endswith("scene") else None)
    return sum(end - start for start, end in model.chunk_samples(plan, samples)) / samples


def own_peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM on Linux (ru_maxrss is carried over from the process that
    forked this one, the benchmark's parent, man getrusage), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_row(args) -> dict:
    """One row, in this process: its measurements."""
    import hear_codec
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    precision = "fp32" if args.row.startswith(("fp32", "official")) else "bf16" if args.row.startswith("bf16") else "auto"
    model = hear_codec.load_model(random_weights=f"encodecmae-{args.preset}-{args.front_end}",
                                  precision=precision).to(args.device)
    audio = (torch.rand(args.clips, int(args.seconds * model.sample_rate)) * 2 - 1).mul(0.5).to(args.device)
    if args.row == "official":
        def embed(batch):
            return official_plan(model, batch)
    elif args.row.endswith("scene"):
        def embed(batch):
            return hear_codec.get_scene_embeddings(batch, model)
    else:
        def embed(batch):
            return hear_codec.get_timestamp_embeddings(batch, model)

    def synchronize():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    embed(audio[:1])  # warm-up (kernels, caches, allocator)
    synchronize()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    embed(audio)
    synchronize()
    seconds = time.perf_counter() - start
    with FlopCounterMode(display=False) as counter:  # every clip has the same plan: count one
        embed(audio[:1])
    if args.device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = own_peak_rss_mb()
    samples = round(args.seconds * 24000)
    row = dict(audio_s=args.clips * args.seconds, wall_s=seconds, gflop=counter.get_total_flops() * args.clips / 1e9,
               peak_mb=peak_mb, precision=str(model.resolved_precision),
               precision_reason=getattr(model.resolved_precision, "reason", "a flag rule (before measurement)"),
               chunk_ratio=chunk_seconds_per_audio_second(model, args.row, samples))
    if args.profile:  # after the timing, on a quarter of the clips
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
        with profile(activities=activities) as prof:
            embed(audio[:max(1, args.clips // 4)])
            synchronize()
        sort = "self_cuda_time_total" if args.device.startswith("cuda") else "self_cpu_time_total"
        row["profile"] = prof.key_averages().table(sort_by=sort, row_limit=10)
    return row


ROWS = ("default-scene", "default-timestamp", "fp32-scene", "fp32-timestamp", "official")
EXTRA_ROWS = ("bf16-scene", "bf16-timestamp")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device to run on (default: cuda if available, else cpu)")
    p.add_argument("--front-ends", nargs="+", default=["mel256", "ec"], help="front ends to measure")
    p.add_argument("--preset", default="base", help="EnCodecMAE preset (tiny, small, base, large)")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS + EXTRA_ROWS,
                   help=f"rows to measure (default: {' '.join(ROWS)})")
    p.add_argument("--precision-cache", metavar="DIR",
                   help="HEAR_CODEC_CACHE_DIR for the rows (default: a new empty folder, so that \"auto\" is "
                        "measured in this run)")
    p.add_argument("--clips", type=int, default=8, help="clips per measurement")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each clip")
    p.add_argument("--repeats", type=int, default=1,
                   help="run every row this many times, in turns, and keep each row's fastest run (on a shared "
                        "machine a neighbour's burst then slows one run of a row, not the row)")
    p.add_argument("--profile", action="store_true", help="also print each row's torch.profiler table (top 10 ops)")
    p.add_argument("--ceiling-shape", type=int, nargs=3, metavar=("M", "K", "N"), default=None,
                   help="the matmul whose rate is the ceiling (default: benchmarks/machine.py's ceiling_shape; "
                        "a small one for smoke runs)")
    p.add_argument("--ceiling-seconds", type=float, default=2.0,
                   help="seconds of matmuls per measurement of the ceiling, after as many of warm-up (default: 2)")
    p.add_argument("--row", help=argparse.SUPPRESS)  # internal: run one row and print it as JSON
    p.add_argument("--front-end", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.row:
        print(json.dumps(run_row(args)))
        return

    import tempfile

    cache = args.precision_cache or tempfile.mkdtemp(prefix="hear_codec-precision-")
    shape = tuple(args.ceiling_shape or ceiling_shape(args.device))
    ceilings = matmul_ceilings(args.device, shape, args.ceiling_seconds)
    fastest = {}
    for _ in range(args.repeats):
        for front_end in args.front_ends:
            for row in args.rows:
                # A fresh process per row, so that peak RSS belongs to that row alone.
                cmd = [sys.executable, __file__, "--row", row, "--front-end", front_end, "--device", args.device,
                       "--preset", args.preset, "--clips", str(args.clips), "--seconds", str(args.seconds)]
                cmd += ["--profile"] if args.profile else []
                out = subprocess.run(cmd, capture_output=True, text=True,
                                     env={**os.environ, "HEAR_CODEC_CACHE_DIR": cache})
                if out.returncode != 0:
                    sys.exit(f"row {row} ({front_end}) failed:\n{out.stderr[-2000:]}")
                result = dict(front_end=front_end, row=row, **json.loads(out.stdout.strip().splitlines()[-1]))
                if (front_end, row) not in fastest or result["wall_s"] < fastest[front_end, row]["wall_s"]:
                    fastest[front_end, row] = result
    rows = list(fastest.values())
    # The ceiling is the better of two measurements, before and after the rows (a shared machine
    # and clock changes move it); both are printed.
    after = matmul_ceilings(args.device, shape, args.ceiling_seconds)
    measured = {"before the rows": ceilings, "after": after}
    ceilings = {name: max(ceilings[name], after[name]) for name in ceilings}

    print(f"machine: {describe_machine(args.device)}")
    print(describe_ceilings(measured, shape))
    for r in rows:
        if r["row"].startswith("default"):
            print(f"precision=\"auto\" ({r['front_end']}, {r['row']}): {r['precision_reason']}")
    print(f"EnCodecMAE-{args.preset}, random weights, {args.clips} clips x {args.seconds:g} s at 48 kHz; "
          f"each row the fastest of {args.repeats} run(s) taken in turns\n")
    print("| front end | row | precision | x real-time | vs official | chunk-s per audio-s | GFLOP | GFLOP/s "
          "| % of ceiling | peak MB |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        official = next((o for o in rows if o["front_end"] == r["front_end"] and o["row"] == "official"), None)
        speedup = f"{official['wall_s'] / r['wall_s']:.2f}x" if official else "-"
        rate = r["gflop"] / r["wall_s"]
        print(f"| {r['front_end']} | {r['row']} | {r['precision']} | {r['audio_s'] / r['wall_s']:.1f} | {speedup} | "
              f"{r['chunk_ratio']:.3f} | {r['gflop']:.0f} | {rate:.0f} | {100 * rate / ceilings[r['precision']]:.0f} | "
              f"{r['peak_mb']:.0f} |")
    for r in rows:
        if "profile" in r:
            print(f"\n{r['front_end']} {r['row']} ({r['precision']}), torch.profiler:\n{r['profile']}")


if __name__ == "__main__":
    main()
