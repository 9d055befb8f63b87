"""Does AudioFormer learn? MLM on the built-in corpus, then FT1 / FT2 on a generated labelled task.

    python benchmarks/audioformer_learning.py [--out runs/audioformer-learning] [--mlm-steps 300]
        [--ft-steps 300] [--corpus-clips 64] [--ft-train 60]

1. ``python -m training.pretrain --model audioformer`` with its built-in defaults (tiny preset,
   synthetic corpus, offline codec), then the exported model's masked-token accuracy on the
   validation corpus (fixed 25 % masks) against two baselines: the unigram baseline (each
   codebook's most frequent training code) and "copy the nearest visible left neighbour" (codes
   repeat across adjacent 13.3 ms frames, so a model that only learned that would not be
   learning much).
2. ``python -m training.audioformer.finetune`` FT1 and FT2 from that checkpoint on a generated task
   (training/builtin/labelled_task.py: ``write_synthetic_task``, four balanced classes: hum, whistle, hiss,
   clicks), validation accuracy against chance.

Prints a markdown table; docs/audioformer.md quotes it with the command that made it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch


def masked_accuracy(model, tokens, mask, scored=None, batch_size=16):
    """Accuracy on the ``scored`` positions (default: all masked ones) with ``mask`` corrupted."""
    from training.audioformer.masking import corrupt

    scored = mask if scored is None else scored
    gen = torch.Generator().manual_seed(1)
    correct = torch.zeros(tokens.shape[1])
    with torch.no_grad():
        for i in range(0, len(tokens), batch_size):
            t, m, s = tokens[i:i + batch_size], mask[i:i + batch_size], scored[i:i + batch_size]
            logits = model(corrupt(t, m, gen), m)["logits"]
            for c, lg in enumerate(logits):
                hit = lg.argmax(-1) == t[:, c][m[:, c]]
                correct[c] += (hit & s[:, c][m[:, c]]).sum().float()
    return correct / scored.sum(dim=(0, 2)).float()


def left_neighbour_accuracy(tokens, mask, scored=None):
    """Predict each masked code by the nearest unmasked code to its left (BOA: no guess)."""
    scored = mask if scored is None else scored
    from hear_codec import audioformer as af

    correct = torch.zeros(tokens.shape[1])
    for c in range(tokens.shape[1]):
        t, m = tokens[:, c], mask[:, c]
        visible = af.is_code(t) & ~m
        pos = torch.arange(t.shape[1]).expand_as(t)
        last_visible = torch.cummax(torch.where(visible, pos, torch.zeros_like(pos)), dim=1).values
        guess = torch.gather(t, 1, last_visible)
        correct[c] = ((guess == t) & scored[:, c] & (last_visible > 0)).sum().float()
    return correct / scored.sum(dim=(0, 2)).float()


def corpus_tokens(out_dir: Path, name: str, clips: int, offset: int, seconds: float, seed: int):
    from hear_codec import audioformer as af
    from hear_codec import codec as codec_lib
    from training.builtin.corpus import SyntheticCorpus

    codes = torch.load(out_dir / "cache" / f"codes-{name}.pt", weights_only=True)["codes"].long()
    corpus = SyntheticCorpus(clips, seconds, seed=seed, offset=offset, sounds="grid")  # the offline codec's words
    frames = torch.tensor([codec_lib.num_frames(corpus[i]["length"]) for i in range(clips)])
    return af.codes_to_tokens(codes, frames.clamp(max=codes.shape[-1]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/audioformer-learning", help="output folder")
    p.add_argument("--mlm-steps", type=int, default=600, help="MLM optimiser steps (default: 600)")
    p.add_argument("--ft-steps", type=int, default=300, help="fine-tuning optimiser steps (default: 300)")
    p.add_argument("--corpus-clips", type=int, default=64,
                   help="clips of the built-in 2 s corpus for MLM training (default: 64)")
    p.add_argument("--corpus-val-clips", type=int, default=16, help="validation clips of that corpus (default: 16)")
    p.add_argument("--ft-train", type=int, default=80, help="labelled training clips (default: 80)")
    p.add_argument("--ft-valid", type=int, default=40, help="labelled validation clips (default: 40)")
    p.add_argument("--ft-test", type=int, default=40, help="labelled test clips (default: 40)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 is much faster on a crowded machine)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from hear_codec.checkpoint import load_checkpoint
    from training import pretrain
    from training.audioformer import finetune
    from training.builtin import labelled_task
    from training.audioformer.losses import unigram_accuracy
    from training.audioformer.masking import mlm_mask

    out = Path(args.out)
    t0 = time.time()
    mlm_dir = out / "mlm"
    # --resume auto: a second call with more --mlm-steps continues the same run
    pretrain.main(["--model", "audioformer", "--out", str(mlm_dir), "--max-steps", str(args.mlm_steps),
                   "--synthetic-clips", str(args.corpus_clips), "--synthetic-val-clips", str(args.corpus_val_clips),
                   "--no-progress-bar", "--seed", "0", "--resume", "auto"])
    mlm_minutes = (time.time() - t0) / 60
    model = load_checkpoint(mlm_dir / "last.ckpt.hearcodec").eval()
    from hear_codec import audioformer as af

    untrained = af.new_model(af.AudioFormerConfig.from_dict(model.config.to_dict()), model.codec, seed=123).eval()
    train_tokens = corpus_tokens(mlm_dir, "train", args.corpus_clips, 0, 2.0, 0)
    val_tokens = corpus_tokens(mlm_dir, "val", args.corpus_val_clips, args.corpus_clips, 2.0, 0)
    mask = mlm_mask(val_tokens, 0.25, torch.Generator().manual_seed(0))
    # Tokens whose code is not its codebook's most frequent one: the unigram baseline scores 0 there.
    modes = torch.stack([torch.bincount(train_tokens[:, c][af.is_code(train_tokens[:, c])], minlength=af.CODEBOOK_SIZE)
                         .argmax() for c in range(val_tokens.shape[1])])
    rare = mask & (val_tokens != modes[None, :, None])
    rows = [("MLM masked-token accuracy, trained tiny model", masked_accuracy(model, val_tokens, mask)),
            ("same, untrained model", masked_accuracy(untrained, val_tokens, mask)),
            ("unigram baseline (most frequent training code)", unigram_accuracy(train_tokens, val_tokens, mask)),
            ("copy nearest visible left neighbour", left_neighbour_accuracy(val_tokens, mask)),
            ("trained model, masked tokens other than the most frequent code", masked_accuracy(model, val_tokens, mask, rare)),
            ("copy left neighbour, same tokens", left_neighbour_accuracy(val_tokens, mask, rare))]

    task = labelled_task.write_synthetic_task(out / "task", train=args.ft_train, valid=args.ft_valid,
                                          test=args.ft_test, seconds=1.0, seed=7)
    ft_rows = []
    for mode in ("ft1", "ft2"):
        t1 = time.time()
        r = finetune.main(["--train", str(task["train"]), "--valid", str(task["valid"]), "--test", str(task["test"]),
                           "--init", str(mlm_dir / "last.ckpt.hearcodec"), "--mode", mode,
                           "--out", str(out / mode), "--max-steps", str(args.ft_steps), "--val-every", "25",
                           "--ckpt-every", "100", "--lr", "3e-4", "--head-lr", "3e-3", "--batch-size", "16",
                           "--no-progress-bar"])
        ft_rows.append((mode, r, (time.time() - t1) / 60))

    print(f"\nAudioFormer learning check on {platform.node()} ({os.cpu_count()} cores, torch {torch.__version__}); "
          f"MLM {args.mlm_steps} steps in {mlm_minutes:.1f} min\n")
    print("| measure (validation) | cb1 | cb2 | cb3 | cb4 | mean |")
    print("|---|---|---|---|---|---|")
    for name, acc in rows:
        print(f"| {name} | " + " | ".join(f"{a:.3f}" for a in acc.tolist()) + f" | {acc.mean():.3f} |")
    print(f"\n| fine-tuning ({len(labelled_task.TASK_CLASSES)} generated classes, {args.ft_train} train / {args.ft_valid} "
          f"valid / {args.ft_test} test clips of 1 s) | test accuracy | valid accuracy (selects the step) | "
          "chance | best step | minutes |")
    print("|---|---|---|---|---|---|")
    for mode, r, minutes in ft_rows:
        print(f"| {mode.upper()} from the MLM checkpoint, {args.ft_steps} steps | {r['test_accuracy']:.3f} | "
              f"{r['valid_accuracy']:.3f} | {r['chance']:.3f} | {r['best_step']} | {minutes:.1f} |")
    summary = dict(mlm={name: acc.tolist() for name, acc in rows}, finetune={m: r for m, r, _ in ft_rows})
    (out / "learning.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
