"""The built-in run's training step on a CPU: where its time goes, and what the head's size costs.

    python benchmarks/builtin_step.py                    # tiny and mini, heads of 1024 and 64 codes
    python benchmarks/builtin_step.py --presets mini --vocab 64 --steps 20

``python -m training.pretrain`` without ``--data`` trains on the stand-in targets
(training/builtin/targets.py), 64 codes per codebook, on batches of 16 clips of 2 s. Until
2026-12-05 its head still predicted 1024 codes per codebook, as for EnCodec: the head's matmul and
the cross-entropy over 8 x 1024 logits per frame then made most of the step. For each preset and
head size this prints, per step (median of ``--steps`` after a warm-up):

  * ``front end``: the 256-bin log-mel of the batch (every step computes it; fp32);
  * ``step``: forward, loss, backward and AdamW with the features and targets at hand;
  * ``× real-time``: seconds of training audio per second of front end + step (16 x 2 s per step);
  * ``GFLOP/s`` and ``% ceiling``: the step's analytic model FLOPs (benchmarks/train_throughput.py's
    ``train_flops``: matmuls and attention, forward + backward) per second, and that as a share of
    the fp32 matmul rate this machine reaches on one large matmul, measured in the same run;
  * ``peak MB``: the process's peak resident memory after the measurement (it only grows, so read
    the rows in order).
"""
from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hear_codec import encodecmae as emae  # noqa: E402
from hear_codec.codec import SAMPLE_RATE  # noqa: E402
from training.builtin import recipes  # noqa: E402
from training.builtin import targets as stand_in  # noqa: E402
from training.builtin.corpus import SyntheticCorpus  # noqa: E402
from training.encodecmae.losses import encodecmae_loss  # noqa: E402
from training.encodecmae.masking import MaskingCollate, Seeded  # noqa: E402
from machine import describe_machine, matmul_ceilings  # noqa: E402  (benchmarks/machine.py)
from train_throughput import timed, train_flops  # noqa: E402

BUILTIN = recipes.EncodecMAEBuiltin()  # the built-in run's options
BATCH, SECONDS = BUILTIN.batch_size, BUILTIN.crop_seconds
WARMUP, CPU = 2, torch.device("cpu")


def bench(preset: str, vocab: int, mask_prop: float, batch: dict, codes: torch.Tensor, steps: int) -> dict:
    torch.manual_seed(0)
    # A 64-way head is the stand-in's, in its 9 streams (8 bands + modulation); otherwise EnCodec's 8 codebooks.
    head = stand_in.model_fields() if vocab == stand_in.CLUSTERS else dict(vocab_size=vocab)
    cfg = emae.preset(preset, codec_weights="none", chunk_seconds=SECONDS, mask_prop=mask_prop, **head)
    codes = codes[:, :cfg.num_codec_streams]
    model = emae.new_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05)
    weights = torch.tensor(cfg.codec_stream_weights)
    t = batch["mask"].shape[1]
    with torch.no_grad():
        features = model.input_features(batch["wav"])[:, :t]

    def front_end():
        with torch.no_grad():
            model.input_features(batch["wav"])

    def step():
        out = model(None, batch["mask"], batch["padding_mask"], features=features, max_visible=batch["max_visible"])
        loss = encodecmae_loss(out["logits"], codes, batch["mask"], batch["padding_mask"], weights)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return dict(front_end=timed(front_end, steps, WARMUP, CPU), step=timed(step, steps, WARMUP, CPU),
                flops=train_flops(cfg, t, BATCH, model.front_end.input_dim),
                params=sum(p.numel() for p in model.parameters()),
                peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["tiny", "mini"], choices=sorted(emae.PRESETS),
                   help="model sizes (default: tiny mini; mini is the built-in run's)")
    p.add_argument("--vocab", nargs="+", type=int, default=[1024, 64],
                   help="codes per codebook the head predicts (default: 1024 64: EnCodec's, in 8 streams, and "
                        "the stand-in's, in its 9)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per row (default: %(default)s)")
    p.add_argument("--mask-prop", type=float, default=BUILTIN.mask_prop,
                   help="share of the frames masked; the encoder runs on the rest (default: %(default)s, the "
                        "built-in run's; the paper's is 0.5)")
    args = p.parse_args(argv)
    if args.steps < 1 or min(args.vocab) < 1:
        p.error(f"--steps and --vocab must be whole numbers >= 1, got --steps {args.steps} --vocab {args.vocab}")
    if not 0 < args.mask_prop < 1:
        p.error(f"--mask-prop must lie in (0, 1), got {args.mask_prop}")

    print(f"device: {describe_machine('cpu')}; batch {BATCH} x {SECONDS:g} s (the built-in run's), "
          f"{100 * args.mask_prop:g} % of the frames masked, fp32")
    ceiling = matmul_ceilings("cpu")
    print(f"fp32 matmul ceiling {ceiling['fp32']:.0f} GFLOP/s, bf16 {ceiling['bf16']:.0f} GFLOP/s "
          f"(one [4800, 768] x [768, 4096] matmul, measured now)")
    corpus = Seeded(SyntheticCorpus(BATCH, SECONDS, seed=0))
    batch = MaskingCollate("mel256", int(SECONDS * SAMPLE_RATE), args.mask_prop)([corpus[(i, i)] for i in range(BATCH)])
    t = batch["mask"].shape[1]
    codes = torch.randint(0, min(args.vocab), (BATCH, stand_in.STREAMS, t))  # the cost does not depend on the codes
    header = (f"{'preset':7} {'params':>7} {'head':>5} {'front end ms':>12} {'step ms':>8} {'x real-time':>11} "
              f"{'GFLOP/s':>8} {'% ceiling':>9} {'peak MB':>8}")
    print(header)
    print("-" * len(header))
    for preset in args.presets:
        for vocab in args.vocab:
            r = bench(preset, vocab, args.mask_prop, batch, codes, args.steps)
            total = r["front_end"] + r["step"]
            rate = r["flops"] / r["step"] / 1e9
            print(f"{preset:7} {r['params'] / 1e6:6.2f}M {vocab:5d} {1e3 * r['front_end']:12.1f} {1e3 * r['step']:8.1f} "
                  f"{BATCH * SECONDS / total:11.0f} {rate:8.1f} {100 * rate / ceiling['fp32']:8.1f}% "
                  f"{r['peak_mb']:8.0f}")


if __name__ == "__main__":
    main()
