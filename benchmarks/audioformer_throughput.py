"""AudioFormer throughput: HEAR embedding speed (x real time) and MLM training samples per second.

    python benchmarks/audioformer_throughput.py [--presets tiny base] [--seconds 20] [--batch-size 8]
        [--crop-seconds 10] [--steps 3] [--device cpu|cuda] [--precision fp32|bf16]

Random weights (offline codec; speed does not depend on the values). Prints one markdown table
with the machine named in its caption. Columns:

* ``embed xRT``: seconds of audio per second of wall time through ``hear_codec``'s HEAR API
  (48 kHz input, resampling, the codec, chunking, the anchor backbone), batch of 4 clips;
* ``codec xRT``: the frozen EnCodec encoder + RVQ alone (the part every AudioFormer shares);
* ``train samples/s``: MLM optimiser steps (forward + backward of all codebook backbones, AdamW)
  on precomputed codes, i.e. what ``training.pretrain`` does on a cached corpus; and
  ``train+codec samples/s``: the same with the codec encoding each batch's audio.
"""
from __future__ import annotations

import argparse
import time

import torch
from machine import describe_machine  # noqa: E402  (benchmarks/machine.py)


def timed(fn, repeats: int, device: str) -> float:
    fn()  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["tiny", "base"], help="AudioFormer presets (default: tiny base)")
    p.add_argument("--seconds", type=float, default=20.0, help="clip length for the embedding test (default: 20)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per training step (default: 8)")
    p.add_argument("--crop-seconds", type=float, default=10.0, help="training crop (default: 10, the paper's clips)")
    p.add_argument("--steps", type=int, default=3, help="timed repetitions (default: 3)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    import hear_codec
    from hear_codec import audioformer as af
    from hear_codec.codec import load_codec
    from training.audioformer.losses import mlm_loss
    from training.audioformer.masking import corrupt, mlm_mask

    device = args.device
    codec = load_codec("offline")
    autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=args.precision == "bf16")
    rows = []
    for name in args.presets:
        model = af.new_model(af.preset(name, codec_weights="offline", chunk_seconds=args.crop_seconds), codec).to(device)
        hear = hear_codec.HearModel(model, sample_rate=48000, precision=args.precision).to(device)
        audio = (torch.rand(4, int(args.seconds * 48000)) - 0.5).to(device)
        embed_s = timed(lambda: hear.timestamp_embeddings(audio), args.steps, device)
        wav = (torch.rand(args.batch_size, int(args.crop_seconds * 24000)) - 0.5).to(device)
        codec_s = timed(lambda: model.encode_codes(wav), args.steps, device)
        codes = model.encode_codes(wav)
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
        model.train()

        def step(with_codec: bool):
            tokens = af.codes_to_tokens(model.encode_codes(wav) if with_codec else codes)
            mask = mlm_mask(tokens, 0.25)
            with autocast:
                loss = mlm_loss(model(corrupt(tokens, mask), mask)["logits"], tokens, mask)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        train_s = timed(lambda: step(False), args.steps, device)
        train_codec_s = timed(lambda: step(True), args.steps, device)
        model.eval()
        rows.append((name, af.num_parameters(model, trainable_only=True) / 1e6,
                     4 * args.seconds / embed_s, args.batch_size * args.crop_seconds / codec_s,
                     args.batch_size / train_s, args.batch_size / train_codec_s))
        model = hear = opt = None  # frees them before the next preset (not `del`: step() refers to them)
    print(f"\nAudioFormer throughput on {describe_machine(device)}; {args.precision}; embedding: 4 x {args.seconds:g} s at 48 kHz; "
          f"training: batch {args.batch_size} x {args.crop_seconds:g} s, 4 codebook backbones\n")
    print("| preset | trainable M params | embed xRT | codec xRT | train samples/s | train+codec samples/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.2f} | {r[5]:.2f} |")


if __name__ == "__main__":
    main()
