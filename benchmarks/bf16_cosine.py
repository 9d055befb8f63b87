"""How close bf16 embeddings stay to fp32, for every layer a user can choose.

    python benchmarks/bf16_cosine.py                          # EnCodecMAE-base mel256 + ec, random weights
    python benchmarks/bf16_cosine.py --model CKPT

Each model embeds ``--clips`` clips of 4 s (chirps and noise) with every encoder layer, once in
fp32 and once as precision="bf16" runs it (autocast; front ends in fp32). Printed: per layer, the
mean and the smallest cosine between the two over all frames.
"""
from __future__ import annotations

import argparse

import torch


def main(argv=None):
    import hear_codec
    from hear_codec.codec import _synthetic_audio

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", nargs="+", help="checkpoints (default: random weights, --random)")
    p.add_argument("--random", nargs="+", default=["encodecmae-base-mel256", "encodecmae-base-ec"],
                   help="random_weights specs when no --model")
    p.add_argument("--clips", type=int, default=4, help="clips of 4 s")
    args = p.parse_args(argv)
    wav = _synthetic_audio(args.clips, 4 * 24000, torch.Generator().manual_seed(0))
    sources = [dict(model_file_path=m) for m in args.model] if args.model else [dict(random_weights=r)
                                                                                   for r in args.random]
    for source in sources:
        hear = hear_codec.load_model(**source, precision="bf16")
        with torch.no_grad():
            fp32 = hear.model.embed_layers(wav)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                bf16 = hear.model.embed_layers(wav)
        print(f"\n{next(iter(source.values()))}: cosine of bf16 vs fp32 embeddings, {args.clips} clips x 4 s\n")
        print("| layer | mean | min |")
        print("| ---: | ---: | ---: |")
        for i, (a, b) in enumerate(zip(fp32, bf16)):
            cos = torch.nn.functional.cosine_similarity(a, b.float(), dim=-1)
            print(f"| {i} | {cos.mean():.5f} | {cos.min():.5f} |")


if __name__ == "__main__":
    main()
