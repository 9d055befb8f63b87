"""What context at a chunk cut buys: chunked embeddings against one forward over the whole clip.

    python benchmarks/chunk_context.py                                  # EnCodecMAE-base, random weights
    python benchmarks/chunk_context.py --model runs/pretrain/last.ckpt.hearcodec

Clips of 8 to 12 s (chirps and noise, hear_codec.codec's synthetic audio) are embedded by the
HEAR wrapper with ``chunk_context`` 0, 0.25 and 0.5 s, and by one forward of the whole clip
through the model (no chunks: every frame sees the whole clip). For each frame, the cosine
between the two is binned by the frame's distance from the nearest cut (a chunk boundary of its
plan). A last table gives the scene embedding (the mean over frames) and the compute of each
plan in chunk-seconds per audio-second, for these clips and for long ones.
"""
from __future__ import annotations

import argparse

import torch

BINS = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, float("inf"))  # seconds from the nearest cut
CONTEXTS = (0.0, 0.25, 0.5)


def clips(n: int, seed: int = 0) -> list:
    """``n`` clips at 24 kHz with lengths spread evenly over [8, 12] s: [[S_i]]."""
    from hear_codec.codec import _synthetic_audio

    gen = torch.Generator().manual_seed(seed)
    lengths = [8.0 + 4.0 * i / max(1, n - 1) for i in range(n)]
    return [_synthetic_audio(1, int(s * 24000), gen)[0] for s in lengths]


def distance_to_cut(plan, hop: int) -> torch.Tensor:
    """[T] seconds from each frame to the nearest cut of ``plan`` (inf for a one-chunk plan)."""
    frames = torch.arange(plan.total_frames, dtype=torch.float64)
    cuts = torch.tensor([c.own_from for c in plan.chunks[1:]], dtype=torch.float64)
    if not len(cuts):
        return torch.full_like(frames, float("inf"))
    # a cut lies between frames cut - 1 and cut: both are half a hop from it
    return ((frames[:, None] + 0.5 - cuts[None, :]).abs().min(dim=1).values * hop / 24000)


def main(argv=None):
    import hear_codec

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="checkpoint (default: random weights, --random)")
    p.add_argument("--random", default="encodecmae-base-mel256", help="random_weights spec when no --model")
    p.add_argument("--clips", type=int, default=8, help="clips of 8..12 s")
    p.add_argument("--layer", type=int, default=-1, help="layer to compare")
    args = p.parse_args(argv)

    source = dict(random_weights=args.random) if args.model is None else dict(model_file_path=args.model)
    inner = hear_codec.load_model(**source).model
    models = {c: hear_codec.HearModel(inner, precision="fp32", layer=args.layer, chunk_context=c) for c in CONTEXTS}
    n_layers = inner.num_embedding_layers
    sums = {c: torch.zeros(len(BINS) - 1, dtype=torch.float64) for c in CONTEXTS}
    mins = {c: torch.ones(len(BINS) - 1, dtype=torch.float64) for c in CONTEXTS}
    counts = {c: torch.zeros(len(BINS) - 1, dtype=torch.float64) for c in CONTEXTS}
    scene = {c: [] for c in CONTEXTS}
    ratio = {c: [] for c in CONTEXTS}
    for wav in clips(args.clips):
        with torch.no_grad():
            whole = inner.embed_layers(wav[None], num_layers=args.layer % n_layers + 1)[-1][0]  # [T, D]
        for c, model in models.items():
            out = model.embed(wav[None], scene=False)["timestamp"][0]
            plan = model.chunk_plan(wav.shape[0])
            cos = torch.nn.functional.cosine_similarity(out, whole, dim=-1).double()
            bins = torch.bucketize(distance_to_cut(plan, inner.frame_hop), torch.tensor(BINS[1:-1]), right=True)
            sums[c].index_add_(0, bins, cos)
            counts[c].index_add_(0, bins, torch.ones_like(cos))
            for b in bins.unique():
                mins[c][b] = min(float(mins[c][b]), float(cos[bins == b].min()))
            scene[c].append(float(torch.nn.functional.cosine_similarity(out.mean(0), whole.mean(0), dim=0)))
            ratio[c].append(sum(e - s for s, e in model.chunk_samples(plan, wav.shape[0])) / wav.shape[0])

    name = args.model or f"{args.random} (random weights)"
    print(f"{name}, layer {args.layer}, {args.clips} clips of 8-12 s; cosine of chunked vs one whole-clip forward, "
          "mean (min) per frame\n")
    labels = [f"{lo:g}-{hi:g} s" if hi != float("inf") else f">= {lo:g} s" for lo, hi in zip(BINS, BINS[1:])]
    print("| distance from the cut | " + " | ".join(f"context {c:g} s" for c in CONTEXTS) + " |")
    print("| --- |" + " ---: |" * len(CONTEXTS))
    for b, label in enumerate(labels):
        cells = [f"{sums[c][b] / counts[c][b]:.4f} ({mins[c][b]:.3f})" if counts[c][b] else "-" for c in CONTEXTS]
        print(f"| {label} | " + " | ".join(cells) + " |")
    long_ratio = {c: models[c].chunk_plan(20 * 60 * 24000).compute_ratio for c in CONTEXTS}
    print("\n| | " + " | ".join(f"context {c:g} s" for c in CONTEXTS) + " |")
    print("| --- |" + " ---: |" * len(CONTEXTS))
    print("| scene embedding cosine, mean (min) | " + " | ".join(
        f"{sum(scene[c]) / len(scene[c]):.5f} ({min(scene[c]):.5f})" for c in CONTEXTS) + " |")
    print("| chunk-s per audio-s, these clips (max) | " + " | ".join(f"{max(ratio[c]):.3f}" for c in CONTEXTS) + " |")
    print("| chunk-s per audio-s, 20 min | " + " | ".join(f"{long_ratio[c]:.3f}" for c in CONTEXTS) + " |")


if __name__ == "__main__":
    main()
