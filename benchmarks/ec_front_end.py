"""The EnCodec encoder's share of an ec embedding, and what our CPU forward of it buys.

    python benchmarks/ec_front_end.py              # EnCodecMAE-base ec, random weights, 16 x 4 s chunks
    python benchmarks/ec_front_end.py --compile    # also torch.compile encodec's forward (inductor)

Times (best of ``--repeats`` calls, taken in turns so that a noisy neighbour hits every variant
alike, after a warm-up) on one batch of ``--chunks`` 4 s chunks, the batch the HEAR wrapper runs on
a CPU by default:
  - the whole embedding (front end + every transformer layer), fp32 and with the transformer in
    bf16 (what precision="auto" runs on a CPU with native bf16), and the EnCodec encoder's share;
  - the encoder three ways: encodec's own forward one chunk per call (what the official
    EnCodecMAE wrapper runs: one forward per 4 s chunk), encodec's forward on the whole batch, and
    hear_codec.seanet.encode (what run_encoder runs on CPU) with several micro-batch sizes;
  - with --compile: encodec's forward under torch.compile (compile time, then steady state).
"""
from __future__ import annotations

import argparse
import time

import torch
from machine import describe_ceilings, describe_machine, matmul_ceilings  # noqa: E402  (benchmarks/machine.py)


def best_times(candidates: dict, repeats: int) -> dict:
    """{name: best seconds}: every candidate warmed up, then called ``repeats`` times in turns."""
    for fn in candidates.values():
        fn()
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main(argv=None):
    import hear_codec
    from hear_codec import codec, seanet
    from hear_codec.codec import _synthetic_audio

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, default=16, help="4 s chunks per batch")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (the best is kept)")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile of encodec's forward")
    args = p.parse_args(argv)

    model = hear_codec.load_model(random_weights="encodecmae-base-ec", precision="fp32").model
    encoder = model.front_end.encoder
    wav = _synthetic_audio(args.chunks, 4 * 24000, torch.Generator().manual_seed(0))
    audio_s = 4 * args.chunks
    print(f"machine: {describe_machine('cpu')}")
    print(describe_ceilings({"now": matmul_ceilings("cpu")}))
    print(f"EnCodecMAE-base ec, random weights, {args.chunks} chunks x 4 s; best of {args.repeats} calls\n")

    def bf16_embedding():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model.embed_layers(wav)

    with torch.no_grad():
        reference = codec.encodec_forward(encoder, wav)
        whole = best_times({"front end": lambda: codec.run_encoder(encoder, wav),
                            "fp32": lambda: model.embed_layers(wav), "bf16": bf16_embedding}, args.repeats)
        print("| whole embedding | seconds | EnCodec encoder (run_encoder) | share |")
        print("| --- | ---: | ---: | ---: |")
        for name, label in (("fp32", "fp32"), ("bf16", "transformer in bf16")):
            print(f"| {label} | {whole[name]:.2f} | {whole['front end']:.2f} | "
                  f"{100 * whole['front end'] / whole[name]:.0f} % |")

        variants = {"encodec's forward, one chunk per call (official)":
                    lambda: torch.cat([codec.encodec_forward(encoder, c[None]) for c in wav]),
                    "encodec's forward, the whole batch": lambda: codec.encodec_forward(encoder, wav)}
        for step in sorted({1, 2, 4, args.chunks}):
            variants[f"seanet.encode, micro-batches of {step}"] = (lambda step=step: seanet.encode(encoder, wav, step))
        times = best_times(variants, args.repeats)
        official = times["encodec's forward, one chunk per call (official)"]
        print(f"\n| encoder on {args.chunks} x 4 s | seconds | x real-time | vs official | max diff. from encodec |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, fn in variants.items():
            diff = float((fn() - reference).abs().max())
            print(f"| {name} | {times[name]:.2f} | {audio_s / times[name]:.0f} | {official / times[name]:.2f}x | "
                  f"{diff:.1g} |")
        print(f"(run_encoder uses micro-batches of {codec.CPU_CONV_MICRO_BATCH}; max |feature| "
              f"{float(reference.abs().max()):.2g})")

        if args.compile:
            compiled = torch.compile(encoder)
            start = time.perf_counter()
            out = compiled(wav.unsqueeze(1))
            compile_s = time.perf_counter() - start
            times = best_times({"compiled": lambda: compiled(wav.unsqueeze(1)),
                                "seanet": lambda: codec.run_encoder(encoder, wav)}, args.repeats)
            diff = float((out.transpose(1, 2) - reference).abs().max())
            print(f"\ntorch.compile(encodec's forward), whole batch: first call (compiling) {compile_s:.1f} s, "
                  f"then {times['compiled']:.2f} s per batch against {times['seanet']:.2f} s for run_encoder; "
                  f"max |difference| {diff:.2g}")


if __name__ == "__main__":
    main()
