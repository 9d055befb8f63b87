"""The EnCodec encoder's share of an ec embedding, and what its CPU batching and torch.compile buy.

    python benchmarks/ec_front_end.py              # EnCodecMAE-base ec, random weights, 16 x 4 s chunks
    python benchmarks/ec_front_end.py --compile    # also torch.compile the encoder (inductor)

Times (best of ``--repeats`` after a warm-up) on one batch of ``--chunks`` 4 s chunks, the batch
the HEAR wrapper runs on a CPU by default:
  - the whole embedding (front end + every transformer layer), fp32 and with the transformer in
    bf16 (what precision="auto" runs on a CPU with native bf16), and the EnCodec encoder's share;
  - the encoder run as hear_codec.codec.run_encoder does (convolutions in micro-batches of
    CPU_CONV_MICRO_BATCH, the LSTM on the whole batch), against the whole batch in one call and
    other micro-batch sizes;
  - with --compile: the encoder under torch.compile (compile time, then steady state).
"""
from __future__ import annotations

import argparse
import time

import torch
from machine import describe_ceilings, describe_machine, matmul_ceilings  # noqa: E402  (benchmarks/machine.py)


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None):
    import hear_codec
    from hear_codec import codec
    from hear_codec.codec import _synthetic_audio

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, default=16, help="4 s chunks per batch")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (the best is kept)")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile of the encoder")
    args = p.parse_args(argv)

    model = hear_codec.load_model(random_weights="encodecmae-base-ec", precision="fp32").model
    encoder = model.front_end.encoder
    wav = _synthetic_audio(args.chunks, 4 * 24000, torch.Generator().manual_seed(0))
    print(f"machine: {describe_machine('cpu')}")
    print(describe_ceilings({"now": matmul_ceilings("cpu")}))
    print(f"EnCodecMAE-base ec, random weights, {args.chunks} chunks x 4 s; best of {args.repeats} calls\n")

    with torch.no_grad():
        front = best_time(lambda: codec.run_encoder(encoder, wav), args.repeats)
        fp32 = best_time(lambda: model.embed_layers(wav), args.repeats)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = best_time(lambda: model.embed_layers(wav), args.repeats)
    print("| whole embedding | seconds | EnCodec encoder (run_encoder) | share |")
    print("| --- | ---: | ---: | ---: |")
    for name, total in (("fp32", fp32), ("transformer in bf16", bf16)):
        print(f"| {name} | {total:.2f} | {front:.2f} | {100 * front / total:.0f} % |")

    layers = encoder.model
    split = next(i for i, layer in enumerate(layers) if type(layer).__name__ == "SLSTM")
    convolutions, rest = layers[:split], layers[split:]
    x = wav.unsqueeze(1)
    with torch.no_grad():
        reference = codec.run_encoder(encoder, wav)

    def convs_in(step):
        return torch.cat([convolutions(x[i:i + step]) for i in range(0, len(x), step)])

    print("\n| encoder, CPU batching | convolutions | LSTM and last conv | total | max diff. from run_encoder |")
    print("| --- | ---: | ---: | ---: | --- |")
    with torch.no_grad():
        hidden = convs_in(args.chunks)
        for step in sorted({1, 2, 4, args.chunks}):
            conv_s = best_time(lambda: convs_in(step), args.repeats)
            lstm_whole = best_time(lambda: rest(hidden), args.repeats)
            lstm_step = best_time(lambda: torch.cat([rest(hidden[i:i + step]) for i in range(0, len(x), step)]),
                                  args.repeats)
            diff = float((rest(convs_in(step)).transpose(1, 2) - reference).abs().max())
            label = "whole batch" if step == args.chunks else f"micro-batches of {step}"
            print(f"| convolutions in {label}, LSTM on the whole batch | {conv_s:.2f} | {lstm_whole:.2f} | "
                  f"{conv_s + lstm_whole:.2f} | {diff:.1g} |")
            if step != args.chunks:
                print(f"| both in {label} | {conv_s:.2f} | {lstm_step:.2f} | {conv_s + lstm_step:.2f} | |")

    if args.compile:
        compiled = torch.compile(encoder)
        with torch.no_grad():
            start = time.perf_counter()
            out = compiled(x)
            compile_s = time.perf_counter() - start
            steady = best_time(lambda: compiled(x), args.repeats)
        diff = float((out.transpose(1, 2) - reference).abs().max())
        print(f"\ntorch.compile(encoder), whole batch: first call (compiling) {compile_s:.1f} s, then {steady:.2f} s "
              f"per batch against {front:.2f} s for run_encoder; max |difference| {diff:.2g}")


if __name__ == "__main__":
    main()
