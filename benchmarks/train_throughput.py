"""EnCodecMAE training throughput: samples/s, frames/s and model-FLOP utilisation (MFU).

    python benchmarks/train_throughput.py                       # small and base, on whatever device is there
    python benchmarks/train_throughput.py --presets base --batch-size 128 --steps 20

For each preset it times, separately and then together:
  * ``codec``: the frozen EnCodec computing the 8-codebook targets for one batch (fp32);
  * ``step``: one training step (front end, masking, forward, loss, backward, AdamW) with the
    targets already computed, bf16 autocast on GPU;
  * ``step+codec``: the step with targets computed on the fly (what training.pretrain does);
and the data loader (``training.data.crops.AudioCrops`` over 44.1 kHz stereo files, so reading,
downmixing and resampling are included) in batches/s with ``--workers`` processes.

The step mirrors training/encodecmae/module.py: the mask and padding are built on the CPU by the
collate (in loader workers), targets come from the codec under ``no_grad`` in fp32, and the step
itself has no host synchronisation (no ``.item()``); timings synchronise only around the timed
loop. Attention runs through ``scaled_dot_product_attention`` (flash / memory-efficient kernels
on GPU). MFU = analytic model FLOPs per step (matmuls of the encoder on visible frames, decoder
and head on all frames, x3 for forward+backward; the frozen codec and the fbank are not counted)
divided by step time and the device's peak dense bf16 FLOP/s (H100/H200 SXM: 989 TFLOP/s; give
``--peak-tflops`` for other devices; no MFU is printed on CPU unless given).
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
from training import data as D  # noqa: E402
from training.encodecmae.losses import encodecmae_loss  # noqa: E402
from training.encodecmae.masking import MaskingCollate, Seeded  # noqa: E402
from machine import describe_machine  # noqa: E402  (benchmarks/machine.py)

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "RTX 3090": 71e12,
             "RTX 4090": 165e12}


def peak_flops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16.items():
        if key in name:
            return value
    return None


def train_flops(cfg: emae.EncodecMAEConfig, frames: int, batch: int, front_dim: int) -> float:
    """Analytic FLOPs of one training step (forward + backward = 3 x forward matmul FLOPs)."""
    d, visible = cfg.dim, frames - int(frames * cfg.mask_prop)  # the encoder sees only the unmasked frames
    enc_layer = 2 * (4 * d * d + 2 * d * cfg.ff_dim) * visible + 2 * 2 * visible * visible * d
    dec_layer = 2 * (4 * d * d + 2 * d * cfg.decoder_ff_dim) * frames + 2 * 2 * frames * frames * d
    forward = (2 * front_dim * d * frames + cfg.num_layers * enc_layer + 2 * d * d * visible
               + cfg.decoder_layers * dec_layer + 2 * d * cfg.num_streams * cfg.vocab_size * frames)
    return 3.0 * forward * batch


def timed(fn, steps: int, warmup: int, device) -> float:
    """Seconds per call (median of ``steps`` after ``warmup``)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bench_preset(name, args, device, codec, batch_cpu):
    cfg = emae.preset(name, front_end=args.front_end, codec_weights="offline", chunk_seconds=args.seconds)
    model = emae.new_model(cfg, codec_encoder=codec.encoder if args.front_end == "ec" else None).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05, fused=device.type == "cuda")
    weights = torch.tensor(cfg.codec_stream_weights, device=device)
    batch = {k: v.to(device, non_blocking=True) for k, v in batch_cpu.items() if torch.is_tensor(v)}
    t = batch["mask"].shape[1]
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" and not args.fp32)
    state = {}

    def targets():
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            feats = model.input_features(batch["wav"])[:, :t]
            codes = (codec.quantize_features(feats, 8) if args.front_end == "ec"
                     else codec.encode_codes(batch["wav"], 8))[..., :t]
        return feats, codes

    def step(with_codec: bool):
        if with_codec or "codes" not in state:
            state["feats"], state["codes"] = targets()
        with torch.autocast(**autocast):
            out = model(None, batch["mask"], batch["padding_mask"], features=state["feats"])
            loss = encodecmae_loss(out["logits"], state["codes"], batch["mask"], batch["padding_mask"], weights)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    rows = {}
    rows["codec"] = timed(targets, args.steps, 1, device)
    rows["step"] = timed(lambda: step(False), args.steps, args.warmup, device)
    rows["step+codec"] = timed(lambda: step(True), args.steps, 1, device)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    flops = train_flops(cfg, t, args.batch_size, model.front_end.input_dim)
    del model, opt
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows, params, flops, t


def bench_loader(args, crop_seconds: float) -> float:
    """Batches/s of AudioCrops + MaskingCollate over 44.1 kHz stereo files with --workers processes."""
    from torch.utils.data import DataLoader

    with tempfile.TemporaryDirectory() as tmp:
        import soundfile as sf

        rng = np.random.default_rng(0)
        for i in range(16):
            sf.write(Path(tmp) / f"{i}.flac", (0.1 * rng.standard_normal((44100 * 10, 2))).astype(np.float32), 44100)
        entries, _ = D.probe_files(D.list_sources(tmp))
        crops = D.AudioCrops(entries, crop_seconds)
        sampler = D.StepSampler(crops.draws_per_epoch, args.batch_size)
        loader = DataLoader(Seeded(crops), batch_size=args.batch_size, sampler=sampler,
                            collate_fn=MaskingCollate(args.front_end, int(crop_seconds * 24000)),
                            num_workers=args.workers, prefetch_factor=4 if args.workers else None)
        it = iter(loader)
        next(it)
        n = max(3, args.steps)
        t0 = time.perf_counter()
        for _ in range(n):
            next(it)
        rate = n / (time.perf_counter() - t0)
        del it  # stop the workers before the files go away
        return rate


def main(argv=None):
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["small", "base"], choices=sorted(emae.PRESETS),
                   help="model sizes to time (default: small base)")
    p.add_argument("--batch-size", type=int, default=128 if cuda else 2,
                   help="clips per step (default: 128 on GPU, the paper's; 2 on CPU)")
    p.add_argument("--seconds", type=float, default=4.0, help="crop length in seconds (default: %(default)s)")
    p.add_argument("--front-end", default="mel256", choices=["mel256", "ec"], help="front end (default: %(default)s)")
    p.add_argument("--steps", type=int, default=10 if cuda else 3, help="timed steps per measurement (default: 10 GPU, 3 CPU)")
    p.add_argument("--warmup", type=int, default=3 if cuda else 1, help="untimed steps first (default: 3 GPU, 1 CPU)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="data-loader processes for the loader measurement; 0 = in-process (default: min(8, CPUs))")
    p.add_argument("--no-loader", action="store_true", help="skip the data-loader measurement")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast on GPU")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak (dense bf16) for MFU, if not known")
    args = p.parse_args(argv)

    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    peak = peak_flops(device, args.peak_tflops)
    print(f"device: {describe_machine(device)}; torch {torch.__version__}; torch threads {torch.get_num_threads()}; "
          f"precision {'bf16 autocast' if cuda and not args.fp32 else 'fp32'}; batch {args.batch_size} x "
          f"{args.seconds:g} s; front end {args.front_end}")
    codec = load_codec("offline").to(device)  # random weights: same cost as the published ones
    crop = int(round(args.seconds * 24000))
    corpus = D.SyntheticCorpus(args.batch_size, args.seconds, seed=0)
    batch_cpu = MaskingCollate(args.front_end, crop)([dict(corpus[i], seed=i) for i in range(args.batch_size)])
    header = f"{'preset':7} {'params':>8} {'what':>11} {'s/step':>8} {'samples/s':>10} {'frames/s':>10} {'MFU':>6}"
    print(header)
    print("-" * len(header))
    for name in args.presets:
        rows, params, flops, frames = bench_preset(name, args, device, codec, batch_cpu)
        for what, sec in rows.items():
            mfu = f"{100 * flops / sec / peak:5.1f}%" if (peak and what != "codec") else "   n/a"
            print(f"{name:7} {params / 1e6:7.1f}M {what:>11} {sec:8.3f} {args.batch_size / sec:10.1f} "
                  f"{args.batch_size * frames / sec:10.0f} {mfu:>6}")
        print(f"{'':7} model FLOPs/step {flops / 1e12:.2f} TFLOP; codec share of step+codec "
              f"{100 * rows['codec'] / rows['step+codec']:.0f}%")
    if not args.no_loader:
        bps = bench_loader(args, args.seconds)
        print(f"data loader: {bps:.2f} batches/s = {bps * args.batch_size:.0f} samples/s with {args.workers} workers "
              f"(44.1 kHz stereo FLAC -> 24 kHz mono crops + masks)")


if __name__ == "__main__":
    main()
