"""EnCodecMAE training throughput, fed by the real loader: samples/s, MFU, the codec's share, and
whether the loader keeps up.

    python benchmarks/train_throughput.py                        # small and base, whatever device is there
    python benchmarks/train_throughput.py --data /data/prepared  # a prepared corpus (folders or manifests)
    python benchmarks/train_throughput.py --presets tiny --batch-size 2 --steps 2 --seconds 1   # a smoke run

The step is the training module's own (``EncodecMAEModule._step``: the codec's targets, the front
end, the masked encoder, decoder, loss and accuracies) with the module's optimiser, in bf16
autocast on a GPU as Lightning's default ``bf16-mixed`` runs it, fp32 on a CPU. Rows per preset:

  codec       the frozen EnCodec computing the targets of one batch (fp32, as in training);
  step        the step with the targets given (precomputed codes);
  step+codec  the step as training runs it, on one batch already on the device;
  fed         the same step on batches drawn from the real training loader (``file_datasets`` ->
              ``build_loaders``: step sampler, random crops, masking collate, ``--workers``
              processes, pinned memory) and copied to the device, as training runs.

Times are per step over ``--steps`` consecutive steps with one synchronisation at the end (so the
host queues work ahead as in training), after ``--warmup`` steps. MFU = the analytic model FLOPs
of a step (:func:`train_flops`: the encoder on visible frames, the decoder and head on all frames,
x 3 for forward and backward; the frozen codec and the fbank are not counted) / step time / the
matmul rate of the step's precision measured in this run (bf16, 8192^3, on a GPU; fp32 and the
project's ceiling shape, ``benchmarks/machine.py``, on a CPU). The loader line gives its batches/s alone and says whether it keeps
up: ``fed`` within 5 % of ``step+codec``.

Without ``--data`` the corpus is made on the spot in a temporary folder: ``--corpus-files`` files
of ``--corpus-seconds``, prepared by ``python -m training.prepare`` (:func:`prepared_corpus`).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hear_codec import encodecmae as emae  # noqa: E402
from hear_codec.codec import load_codec  # noqa: E402
from machine import ceiling_shape, describe_machine, matmul_ceiling  # noqa: E402  (benchmarks/machine.py)

# Datasheet dense bf16 peaks, printed beside the measured rate for reference only.
DATASHEET_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}


def train_flops(cfg: emae.EncodecMAEConfig, frames: int, batch: int, front_dim: int) -> float:
    """Analytic FLOPs of one training step (forward + backward = 3 x forward matmul FLOPs)."""
    d, visible = cfg.dim, frames - int(frames * cfg.mask_prop)  # the encoder sees only the unmasked frames
    enc_layer = 2 * (4 * d * d + 2 * d * cfg.ff_dim) * visible + 2 * 2 * visible * visible * d
    dec_layer = 2 * (4 * d * d + 2 * d * cfg.decoder_ff_dim) * frames + 2 * 2 * frames * frames * d
    forward = (2 * front_dim * d * frames + cfg.num_layers * enc_layer + 2 * d * d * visible
               + cfg.decoder_layers * dec_layer + 2 * d * cfg.num_streams * cfg.vocab_size * frames)
    return 3.0 * forward * batch


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, steps: int, warmup: int, device) -> float:
    """Seconds per call: the median of ``steps`` calls, each synchronised, after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def per_step(fn, steps: int, warmup: int, device) -> float:
    """Seconds per call over ``steps`` calls in a row with one synchronisation at the end (the
    host runs ahead of the device as in training), after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    synchronize(device)
    return (time.perf_counter() - t0) / steps


def prepared_corpus(folder: Path, files: int, seconds: float, workers: int) -> tuple[Path, str]:
    """A prepared corpus of ``files`` recordings of ``seconds`` (noise with a slow envelope, so
    crops differ) in ``folder``, and how it was made: written as 48 kHz stereo WAV into
    ``folder/raw`` and prepared into ``folder/prepared`` by ``python -m training.prepare``, so the
    loader reads exactly what training reads (its format, segments and manifest).
    """
    import subprocess

    import soundfile as sf

    rate, channels = 48000, 2
    raw = folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    n = int(seconds * rate)
    for i in range(files):
        envelope = 0.05 + 0.2 * np.abs(np.sin(np.linspace(0, rng.uniform(5, 50), n)))
        wav = (envelope[:, None] * rng.standard_normal((n, channels))).astype(np.float32)
        sf.write(raw / f"clip{i:04d}.wav", wav, rate, subtype="PCM_16")
    prepared = folder / "prepared"
    subprocess.run([sys.executable, "-m", "training.prepare", str(raw), "--out", str(prepared),
                    "--workers", str(max(1, workers)), "--no-progress-bar"], check=True, stdout=sys.stderr)
    return prepared, "48 kHz stereo WAV prepared by python -m training.prepare"


def real_loader(sources: list, args, config: emae.EncodecMAEConfig, work: Path):
    """The training loader of ``python -m training.pretrain --data sources`` (no validation)."""
    from training.data.crops import DataConfig, file_datasets
    from training.encodecmae.train import build_loaders

    data = DataConfig(sources=[str(s) for s in sources], crop_seconds=args.seconds, batch_size=args.batch_size,
                      num_workers=args.workers, val_fraction=0.0)
    train_set, _, _ = file_datasets(data, work)
    loader, _, _ = build_loaders(train_set, None, data, config)
    return loader


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def bench_preset(name: str, args, device, codec, sources: list, work: Path) -> dict:
    from training.encodecmae.module import EncodecMAEModule
    from training.encodecmae.targets import EncodecCodes

    cfg = emae.preset(name, front_end=args.front_end, codec_weights="offline", chunk_seconds=args.seconds)
    torch.manual_seed(0)
    module = EncodecMAEModule(cfg, EncodecCodes(codec, cfg.num_codec_streams, from_features=args.front_end == "ec"),
                              codec_encoder=codec.encoder if args.front_end == "ec" else None).to(device).train()
    module.log = lambda *a, **k: None  # no trainer to log to; Lightning's logging keeps values on the device
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    mixed = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" and not args.fp32)

    loader = real_loader(sources, args, cfg, work)
    it = iter(loader)
    fixed = to_device(next(it), device)
    with_codes = dict(fixed, codes=module.targets_and_features(fixed)[1])

    def step(batch):
        with torch.autocast(**mixed):
            loss = module._step(batch, "train")["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rows = {"codec": timed(lambda: module.targets_and_features(fixed), args.steps, 1, device),
            "step": per_step(lambda: step(with_codes), args.steps, args.warmup, device),
            "step+codec": per_step(lambda: step(fixed), args.steps, args.warmup, device),
            "fed": per_step(lambda: step(to_device(next(it), device)), args.steps, args.warmup, device)}
    peak_gb = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    frames = fixed["mask"].shape[1]
    flops = train_flops(cfg, frames, args.batch_size, module.model.front_end.input_dim)
    params = sum(p.numel() for p in module.model.parameters() if p.requires_grad)
    it = loader = None  # stops the workers (not `del`: the timed lambdas above refer to `it`)
    return dict(rows=rows, params=params, flops=flops, frames=frames, peak_gb=peak_gb)


def bench_loader(sources: list, args, work: Path) -> float:
    """Batches/s of the real training loader alone (crops, collate, masks), ``--workers`` processes."""
    cfg = emae.preset(args.presets[0], front_end=args.front_end, chunk_seconds=args.seconds)  # its masking
    it = iter(real_loader(sources, args, cfg, work))
    for _ in range(max(2, args.warmup)):  # the workers start and fill their queues
        next(it)
    n = max(4, 2 * args.steps)
    t0 = time.perf_counter()
    for _ in range(n):
        next(it)
    return n / (time.perf_counter() - t0)


def main(argv=None):
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["small", "base"], choices=sorted(emae.PRESETS),
                   help="model sizes to time (default: small base)")
    p.add_argument("--data", nargs="+", default=None, metavar="DIR_OR_MANIFEST",
                   help="a prepared corpus, as training.pretrain --data takes it (default: one written on the spot)")
    p.add_argument("--corpus-files", type=int, default=64, help="files of the corpus written on the spot")
    p.add_argument("--corpus-seconds", type=float, default=60.0, help="their length in seconds")
    p.add_argument("--batch-size", type=int, default=128 if cuda else 4,
                   help="clips per step (default: 128 on GPU, the paper's; 4 on CPU)")
    p.add_argument("--seconds", type=float, default=4.0, help="crop length in seconds (default: %(default)s)")
    p.add_argument("--front-end", default="mel256", choices=["mel256", "ec"], help="front end (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20 if cuda else 3, help="timed steps per row (default: 20 GPU, 3 CPU)")
    p.add_argument("--warmup", type=int, default=5 if cuda else 1, help="untimed steps first (default: 5 GPU, 1 CPU)")
    p.add_argument("--workers", type=int, default=min(8, max(1, (os.cpu_count() or 2) - 1)),
                   help="loader processes, as --num-workers in training (default: min(8, CPUs - 1))")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast on GPU")
    p.add_argument("--ceiling-shape", type=int, nargs=3, metavar=("M", "K", "N"), default=None,
                   help="the matmul measured for MFU (default: benchmarks/machine.py's ceiling_shape, 8192^3 on GPU)")
    p.add_argument("--ceiling-seconds", type=float, default=2.0,
                   help="seconds of matmuls per measurement of the ceiling, after as many of warm-up (default: 2)")
    args = p.parse_args(argv)

    device = torch.device("cuda" if cuda else "cpu")
    mixed = cuda and not args.fp32
    shape = tuple(args.ceiling_shape or ceiling_shape(device))
    rates = {name: matmul_ceiling(dtype, device, shape, args.ceiling_seconds) * 1e9
             for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32))}
    peak = rates["bf16" if mixed else "fp32"]  # MFU against the precision the step's matmuls run in
    print(f"device: {describe_machine(device)}")
    if cuda:
        print(f"host: {describe_machine('cpu')}")
    sheet = next((v for k, v in DATASHEET_BF16.items() if cuda and k in torch.cuda.get_device_name(device)), None)
    print(f"matmul [{shape[0]}, {shape[1]}] x [{shape[1]}, {shape[2]}] measured now: bf16 {rates['bf16'] / 1e12:.3g} "
          f"TFLOP/s, fp32 {rates['fp32'] / 1e12:.3g} TFLOP/s" +
          (f" (datasheet dense bf16 {sheet / 1e12:.0f})" if sheet else ""))
    print(f"precision {'bf16 autocast' if mixed else 'fp32'} (MFU against the {'bf16' if mixed else 'fp32'} rate); "
          f"batch {args.batch_size} x {args.seconds:g} s; front end {args.front_end}; loader workers {args.workers}")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.data:
            sources = args.data
            print(f"data: {' '.join(sources)}")
        else:
            corpus, how = prepared_corpus(work / "corpus", args.corpus_files, args.corpus_seconds, args.workers)
            sources = [corpus]
            print(f"data: {args.corpus_files} files x {args.corpus_seconds:g} s written now: {how}")
        codec = load_codec("offline").to(device).eval()  # random weights: the published ones cost the same
        loader_rate = bench_loader(sources, args, work)
        print()
        print("| preset | params | row | s/step | samples/s | frames/s | MFU |")
        print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
        results = {}
        for name in args.presets:
            r = results[name] = bench_preset(name, args, device, codec, sources, work)
            for row, sec in r["rows"].items():
                mfu = f"{100 * r['flops'] / sec / peak:.1f}%" if row != "codec" else "-"
                print(f"| {name} | {r['params'] / 1e6:.1f}M | {row} | {sec:.4f} | {args.batch_size / sec:.1f} | "
                      f"{args.batch_size * r['frames'] / sec:.0f} | {mfu} |")
        print()
        for name, r in results.items():
            rows = r["rows"]
            keeps_up = rows["fed"] <= 1.05 * rows["step+codec"]
            memory = f"; peak GPU memory {r['peak_gb']:.1f} GiB" if r["peak_gb"] is not None else ""
            print(f"{name}: {r['flops'] / 1e12:.3f} TFLOP per step; the codec's targets are "
                  f"{100 * rows['codec'] / rows['step+codec']:.0f}% of a step; fed by the loader "
                  f"{args.batch_size / rows['fed']:.0f} samples/s against {args.batch_size / rows['step+codec']:.0f} "
                  f"on one resident batch: the loader {'keeps up' if keeps_up else 'does NOT keep up'}{memory}")
        print(f"loader alone: {loader_rate:.2f} batches/s = {loader_rate * args.batch_size:.0f} samples/s with "
              f"{args.workers} workers")


if __name__ == "__main__":
    main()
