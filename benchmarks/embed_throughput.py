"""Throughput of hear_codec.get_scene_embeddings: x real-time, achieved GFLOP/s, peak memory.

    python benchmarks/embed_throughput.py                       # base mel256 + ec, fp32 and bf16, CPU
    python benchmarks/embed_throughput.py --device cuda --precision bf16 --clips 64

Each row embeds ``--clips`` clips of ``--seconds`` s at the HEAR input rate (48 kHz by default),
after one warm-up call, with random weights (the speed does not depend on them). FLOPs are
counted by torch's FlopCounterMode on the same call (matmuls, convolutions, attention): the
model's own count, chunk overlap included. Peak memory is the process's peak RSS on CPU (each
row runs in a fresh subprocess) and torch's peak allocation on GPU. "1 clip per call" rows embed
one clip at a time in non-overlapping 4 s chunks, the way the official EnCodecMAE wrapper does;
the batched row with 0 s context does the same work batched.
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
from machine import describe_machine  # noqa: E402  (benchmarks/machine.py)


def run_one(args) -> dict:
    """One configuration, in this process: returns the row's measurements."""
    import hear_codec
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = hear_codec.load_model(random_weights=f"encodecmae-{args.preset}-{args.front_end}",
                                  precision=args.precision, batch_size=args.batch_size,
                                  chunk_context=args.chunk_context).to(args.device)
    audio = (torch.rand(args.clips, int(args.seconds * model.sample_rate)) * 2 - 1).mul(0.5).to(args.device)
    calls = [audio[i:i + 1] for i in range(args.clips)] if args.one_by_one else [audio]

    def embed():
        for batch in calls:
            hear_codec.get_scene_embeddings(batch, model)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    embed()  # warm-up (kernels, caches, allocator)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    embed()
    seconds = time.perf_counter() - start
    with FlopCounterMode(display=False) as counter:
        hear_codec.get_scene_embeddings(calls[0], model)
    flops = counter.get_total_flops() * len(calls)
    if args.device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(audio_s=args.clips * args.seconds, wall_s=seconds, gflop=flops / 1e9, peak_mb=peak_mb)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device to run on (default: cuda if available, else cpu)")
    p.add_argument("--front-ends", nargs="+", default=["mel256", "ec"], help="front ends to measure")
    p.add_argument("--preset", default="base", help="EnCodecMAE preset (tiny, small, base, large)")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], help="fp32 and/or bf16 (autocast)")
    p.add_argument("--clips", type=int, default=8, help="clips per measurement")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each clip")
    p.add_argument("--batch-size", type=int, default=16, help="chunks per forward pass")
    p.add_argument("--chunk-context", type=float, default=0.5, help="seconds of context kept at chunk cuts")
    p.add_argument("--no-one-by-one", action="store_true", help="skip the one-clip-per-call fp32 rows")
    p.add_argument("--row", help=argparse.SUPPRESS)  # internal: run one row and print it as JSON
    args = p.parse_args(argv)
    if args.row:
        for key, value in json.loads(args.row).items():
            setattr(args, key, value)
        print(json.dumps(run_one(args)))
        return

    rows = []
    for front_end in args.front_ends:
        configs = [dict(precision=pr, one_by_one=False) for pr in args.precisions]
        # the same work as the official wrapper (no overlap), batched
        configs.append(dict(precision="fp32", one_by_one=False, chunk_context=0.0))
        if not args.no_one_by_one:
            configs.append(dict(precision="fp32", one_by_one=True, chunk_context=0.0))
        for config in configs:
            row = dict(front_end=front_end, **config)
            # A fresh process per row, so that peak RSS belongs to that row alone.
            cmd = [sys.executable, __file__, "--row", json.dumps(row), "--device", args.device, "--preset",
                   args.preset, "--clips", str(args.clips), "--seconds", str(args.seconds), "--batch-size",
                   str(args.batch_size), "--chunk-context", str(config.get("chunk_context", args.chunk_context))]
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
            if out.returncode != 0:
                sys.exit(f"row {row} failed:\n{out.stderr[-2000:]}")
            rows.append({**row, **json.loads(out.stdout.strip().splitlines()[-1])})

    print(f"machine: {describe_machine(args.device)}")
    print(f"get_scene_embeddings, EnCodecMAE-{args.preset}, {args.clips} clips x {args.seconds:g} s at 48 kHz, "
          f"batch_size {args.batch_size}\n")
    print("| front end | precision | calls | context at cuts | x real-time | wall s | GFLOP | GFLOP/s | peak MB |")
    print("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        calls = "1 clip per call" if r["one_by_one"] else "batched"
        context = f"{r.get('chunk_context', args.chunk_context):g} s"
        print(f"| {r['front_end']} | {r['precision']} | {calls} | {context} | {r['audio_s'] / r['wall_s']:.1f} | "
              f"{r['wall_s']:.2f} | {r['gflop']:.0f} | {r['gflop'] / r['wall_s']:.0f} | {r['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
