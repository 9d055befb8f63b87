"""AudioFormer fine-tuning: ``python -m training.audioformer.finetune`` (FT1 and FT2 of Li et al., 2023).

    python -m training.audioformer.finetune --init runs/pretrain/last.ckpt.hearcodec \\
        --train train.csv --valid valid.csv [--test test.csv] --mode ft2 --out runs/ft

FT1: the clip embedding (mean over frames of the embedding backbone(s), as the HEAR scene
embedding) -> Linear -> multiclass cross-entropy or multilabel BCE. FT2 (MPC): the codebook-1
("anchor") backbone and the head train, the backbones of codebooks 2..n_q are frozen, and the
loss is ``alpha * task + (1 - alpha) * MPC`` (training/audioformer/mpc.py); the paper's two stages (alpha 0.8,
T 0.05, then alpha 0.97, T 0.03) are the default: ``--alpha/--temperature`` until
``--second-stage-step`` (default: half of ``--max-steps``), ``--second-alpha/--second-temperature``
after it.

The labels files' formats: ``training/audioformer/labels.py``.

Every clip is cut or padded to ``--clip-seconds`` and encoded once by the frozen codec (no
augmentation, so caching the codes changes nothing). Validation runs every ``--val-every``
batches; the best model on the validation metric (mAP for multilabel, accuracy for multiclass)
is written to ``OUT/best.hearcodec`` — an AudioFormer checkpoint with its classifier, which
``hear_codec.load_model`` reads like any other — and ``OUT/results.json`` gets the best model's
validation (and test) scores.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from hear_codec import audioformer as af
from hear_codec import cli
from hear_codec import codec as codec_lib
from hear_codec.checkpoint import load_checkpoint, save_checkpoint
from hear_codec.errors import UserError
from hear_codec.files import write_json
from training import engine
from training.audioformer.labels import (check_labels, encode_examples, read_labels_file, read_vocabulary,
                                         targets_for)
from training.audioformer.metrics import chance, score
from training.audioformer.module import BEST, FineTuner

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- model set-up

def prepare_model(args, num_classes: int) -> af.AudioFormer:
    """The starting AudioFormer (``--init`` checkpoint or a fresh ``--preset``) with a new classifier."""
    if args.init:
        start = load_checkpoint(args.init)
        if start.family != "audioformer":
            raise UserError(f"--init {args.init}: a {start.family} checkpoint, expected an AudioFormer one")
        config = af.AudioFormerConfig.from_dict(start.config.to_dict())
        codec, state = start.codec, start.state_dict()
    else:
        config = af.preset(args.preset, codec_weights=args.codec)
        codec = (codec_lib.load_codec("pretrained", path=args.codec_path) if args.codec == "pretrained"
                 else codec_lib.load_codec("offline"))
        state = None
    config.num_classes = num_classes
    if args.mode == "ft2":
        config.embedding = "anchor"  # FT2 classifies from the anchor backbone
    elif args.embedding:
        config.embedding = args.embedding
    model = af.new_model(config, codec, seed=args.seed)
    if state is not None:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}  # a new head for this task
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("classifier.") for k in missing):
            raise UserError(f"--init {args.init}: weights do not fit (missing {missing}, unexpected {unexpected})")
    return model


@torch.no_grad()
def evaluate(model: af.AudioFormer, codes, frames, targets, multilabel: bool, batch_size: int = 32) -> float:
    model.eval()
    logits = [model.classify(af.codes_to_tokens(codes[i:i + batch_size].long(), frames[i:i + batch_size]))
              for i in range(0, len(codes), batch_size)]
    return score(torch.cat(logits), targets, multilabel)


# ---------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.audioformer.finetune",
        description="Fine-tune an AudioFormer on labelled audio: FT1 (mean-pool + linear head) or FT2 "
                    "(FT1 on the codebook-1 backbone plus the multi-positive contrastive term against the frozen "
                    "codebook 2..n backbones). Writes OUT/best.hearcodec (best on validation) and OUT/results.json.")
    p.add_argument("--train", required=True, help="training labels: .csv (file,label), .json or .jsonl")
    p.add_argument("--valid", required=True, help="validation labels (chooses the best checkpoint); same formats")
    p.add_argument("--test", default=None, help="optional test labels, scored once with the best checkpoint")
    p.add_argument("--labels", default=None,
                   help="label vocabulary: one label per line or HEAR's labelvocabulary.csv "
                        "(default: the sorted labels of --train)")
    p.add_argument("--task", default="auto", choices=["auto", "multiclass", "multilabel"],
                   help="multiclass (softmax CE, accuracy) or multilabel (BCE, mAP); auto: multilabel if any row of "
                        "--train has more than one label (default: %(default)s)")
    p.add_argument("--mode", default="ft1", choices=["ft1", "ft2"],
                   help="ft1: mean-pool + linear head; ft2: ft1 on the anchor + MPC (default: %(default)s)")
    p.add_argument("--out", default="runs/finetune", help="output folder (default: %(default)s)")
    p.add_argument("--init", default=None,
                   help="AudioFormer hear_codec checkpoint to start from (e.g. runs/pretrain/last.ckpt.hearcodec); "
                        "without it a fresh --preset model is trained from scratch")
    p.add_argument("--preset", default="tiny", choices=sorted(af.PRESETS),
                   help="model size when there is no --init (default: %(default)s)")
    p.add_argument("--codec", default="pretrained", choices=["pretrained", "offline"],
                   help="codec weights when there is no --init; offline = random (demos/tests) (default: %(default)s)")
    p.add_argument("--codec-path", default=None, help="local copy of encodec_24khz-d7cc33bc.th")
    p.add_argument("--embedding", default=None, choices=["anchor", "concat"],
                   help="FT1 only: pool the codebook-1 backbone (anchor) or all backbones side by side (concat) "
                        "(default: what the checkpoint uses, anchor for fresh models)")
    p.add_argument("--clip-seconds", type=cli.positive_float, default=None,
                   help="clips are cut to their first CLIP_SECONDS or zero-padded (padding excluded from pooling) "
                        "(default: the model's chunk length)")
    p.add_argument("--batch-size", type=cli.positive_int, default=16, help="clips per batch (default: %(default)s)")
    p.add_argument("--lr", type=cli.positive_float, default=1e-4,
                   help="AdamW learning rate of the backbone (default: %(default)s)")
    p.add_argument("--head-lr", type=cli.positive_float, default=1e-3,
                   help="AdamW learning rate of the linear head (default: %(default)s)")
    p.add_argument("--weight-decay", type=cli.non_negative_float, default=0.01,
                   help="AdamW weight decay (default: %(default)s)")
    p.add_argument("--alpha", type=cli.closed_fraction, default=0.8,
                   help="FT2: loss = alpha * task + (1 - alpha) * MPC (paper: 0.8) (default: %(default)s)")
    p.add_argument("--temperature", type=cli.positive_float, default=0.05,
                   help="FT2: MPC temperature (paper: 0.05) (default: %(default)s)")
    p.add_argument("--second-stage-step", type=cli.non_negative_int, default=None,
                   help="FT2: from this optimiser step on use --second-alpha/--second-temperature (the paper's "
                        "second stage; it gives no step); 0 = one stage (default: half of --max-steps)")
    p.add_argument("--second-alpha", type=cli.closed_fraction, default=0.97,
                   help="FT2 second stage alpha (paper: 0.97) (default: %(default)s)")
    p.add_argument("--second-temperature", type=cli.positive_float, default=0.03,
                   help="FT2 second stage temperature (paper: 0.03) (default: %(default)s)")
    p.add_argument("--encode-batch-size", type=cli.positive_int, default=16,
                   help="clips per codec call when encoding the data once at start-up (default: %(default)s)")
    engine.add_engine_args(p, max_steps=2000, val_every=200, ckpt_every=200, log_every=10)
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = {"train": read_labels_file(args.train), "valid": read_labels_file(args.valid)}
    if args.test:
        splits["test"] = read_labels_file(args.test)
    vocabulary = (read_vocabulary(args.labels) if args.labels
                  else sorted({x for ex in splits["train"] for x in ex.labels}))
    multilabel = (args.task == "multilabel" or
                  (args.task == "auto" and any(len(ex.labels) > 1 for ex in splits["train"])))
    for name, examples in splits.items():
        check_labels(examples, vocabulary, getattr(args, name), multiclass=not multilabel)
    model = prepare_model(args, len(vocabulary))
    clip_seconds = args.clip_seconds or model.config.chunk_seconds
    if codec_lib.num_frames(round(clip_seconds * codec_lib.SAMPLE_RATE)) + 2 > model.config.max_positions:
        raise UserError(f"--clip-seconds {clip_seconds} is longer than the model's {model.config.max_positions} positions")
    data = {}
    for name, examples in splits.items():
        codes, frames = encode_examples(model, examples, clip_seconds, getattr(args, name), args.encode_batch_size)
        data[name] = (codes, frames, targets_for(examples, vocabulary, multilabel))
    metric = "mAP" if multilabel else "accuracy"
    if args.second_stage_step is None:
        args.second_stage_step = args.max_steps // 2
    metadata = dict(stage=f"finetune-{args.mode}", labels=vocabulary, task="multilabel" if multilabel else "multiclass",
                    metric=metric, init=str(args.init) if args.init else None, clip_seconds=clip_seconds)
    module = FineTuner(model, args.mode, multilabel, lr=args.lr, head_lr=args.head_lr,
                       weight_decay=args.weight_decay, alpha=args.alpha, temperature=args.temperature,
                       second_stage_step=args.second_stage_step, second_alpha=args.second_alpha,
                       second_temperature=args.second_temperature, out_dir=out_dir, metadata=metadata)
    gen = torch.Generator().manual_seed(args.seed)
    train_loader = DataLoader(TensorDataset(*data["train"]), batch_size=args.batch_size, shuffle=True, generator=gen,
                              drop_last=len(data["train"][0]) > args.batch_size)
    val_loader = DataLoader(TensorDataset(*data["valid"]), batch_size=max(args.batch_size, 32))
    run = engine.EngineConfig.from_args(args)
    trainer = engine.make_trainer(run, out_dir)
    engine.fit(trainer, module, run, out_dir, train_dataloaders=train_loader, val_dataloaders=val_loader)
    if not (out_dir / BEST).exists():  # no validation ran (e.g. --val-every 0): the last model is the best we have
        save_checkpoint(out_dir / BEST, module.model, dict(metadata, step=int(trainer.global_step)))
    best = load_checkpoint(out_dir / BEST)
    results = dict(mode=args.mode, task=metadata["task"], metric=metric, classes=len(vocabulary),
                   chance=chance(data["valid"][2], multilabel), best_step=best.metadata.get("step"),
                   checkpoint=str(out_dir / BEST))
    for name in ("valid", "test"):
        if name in data:
            results[f"{name}_{metric}"] = evaluate(best, *data[name], multilabel)
    write_json(out_dir / "results.json", results, indent=2)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    cli.run(main)
