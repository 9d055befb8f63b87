"""EnCLAP audio captioning: ``python -m training.caption preprocess|train|evaluate|predict|demo``.

  preprocess  audio + captions CSV (Clotho, AudioCaps or generic) -> feature cache (codes + CLAP)
  train       fine-tune EnCLAP on a training cache, select checkpoints on a validation cache
  evaluate    caption a cache and score it (METEOR, CIDEr-D, SPICE, SPIDEr)
  predict     caption audio files (or a cache) into a CSV; one file prints its caption
  demo        generate a synthetic captioned set and run all of the above with a tiny model

Run ``python -m training.caption <command> --help`` for every option; docs/captioning.md has recipes.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
from pathlib import Path

import torch
from tqdm import tqdm

from hear_codec import cli
from hear_codec.errors import UserError
from hear_codec.files import atomic_path, write_json, write_text

log = logging.getLogger("training.caption")


# --------------------------------------------------------------------------- preprocess

def add_featurizer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--codec", choices=("pretrained", "offline"), default="pretrained",
                   help="EnCodec weights: the published ones, or 'offline' random weights for tests/demos "
                        "(default: %(default)s)")
    p.add_argument("--clap", choices=("pretrained", "tiny-random", "none"), default="pretrained",
                   help="CLAP audio embedding: pretrained (--clap-model), a tiny random CLAP, or none "
                        "(zero vectors) (default: %(default)s)")
    p.add_argument("--clap-model", default="laion/clap-htsat-fused",
                   help="Hugging Face name or local folder of the pretrained CLAP (default: %(default)s)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="device to run on (default: %(default)s)")


def make_featurizer(args):
    from training.enclap.cache import AudioFeaturizer

    return AudioFeaturizer(codec=args.codec, clap=args.clap, clap_name=args.clap_model, device=args.device)


def cmd_preprocess(args) -> None:
    from training.enclap.cache import build_cache
    from training.enclap.data import read_dataset

    clips = read_dataset(args.dataset, args.csv, args.audio_dir)
    log.info("%d clips, %d captions from %s", len(clips), sum(len(c.captions) for c in clips), args.csv)
    build_cache(clips, args.out, make_featurizer(args), shard_size=args.shard_size, batch_size=args.batch_size,
                progress=not args.no_progress_bar)
    log.info("feature cache written to %s", args.out)


# --------------------------------------------------------------------------- train

def cmd_train(args) -> None:
    from training import engine
    from training.data.sampler import StepSampler
    from training.enclap.cache import FeatureCache
    from training.enclap.data import CaptionPairs, ClipReferences, EnClapCollator
    from training.enclap.module import CaptioningModule
    from training.enclap.text import tokenizer_to_json
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    out = Path(args.out)
    L.seed_everything(args.seed, verbose=False)  # the model's random parts are initialised below
    train_cache, val_cache = FeatureCache(args.train), FeatureCache(args.val)
    model, tokenizer = _starting_model(args, train_cache)
    model.config.mcm_loss_scale = args.mcm_weight
    module = CaptioningModule(
        model.config.to_dict(), tokenizer_to_json(tokenizer), lr=args.lr, weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps, schedule_timescale=args.schedule_timescale, num_beams=args.beams,
        max_caption_length=args.max_caption_length, seed=args.seed,
    )
    module.model = model  # the starting weights replace the module's random init

    mask_prob = args.mask_prob if args.mcm_weight > 0 else 0.0
    train_collate = EnClapCollator(module.model.config, tokenizer, mask_prob=mask_prob, mask_span=args.mask_span,
                                   random_crop=True)
    eval_collate = EnClapCollator(module.model.config, tokenizer)
    pairs = CaptionPairs(train_cache.clips, train_cache.features, fixed_draws=args.fixed_crops_and_masks,
                         seed=args.seed)
    if len(pairs) < args.batch_size:
        raise UserError(f"{args.train} has {len(pairs)} training captions, fewer than one batch ({args.batch_size})")
    # The data order, crops and masks are a function of (seed, step): resumed runs repeat them exactly
    # (the engine tells the sampler the resume step and the rank layout).
    sampler = StepSampler(len(pairs), args.batch_size, seed=args.seed)
    loader_kw = dict(num_workers=args.num_workers, persistent_workers=args.num_workers > 0)
    train_loader = torch.utils.data.DataLoader(pairs, batch_size=args.batch_size, sampler=sampler,
                                               collate_fn=train_collate, **loader_kw)
    val_loader = torch.utils.data.DataLoader(ClipReferences(val_cache.clips, val_cache.features),
                                             batch_size=args.eval_batch_size, collate_fn=eval_collate, **loader_kw)
    run = engine.EngineConfig.from_args(args)
    if args.epochs is not None:
        per_step = args.batch_size * run.accumulate_grad_batches * engine.world_size(run)
        run = dataclasses.replace(run, max_steps=args.epochs * max(1, len(pairs) // per_step))
    log.info("%d training pairs (%d clips), %d validation clips; %d optimiser steps",
             len(pairs), len(train_cache.clips), len(val_cache.clips), run.max_steps)
    best = ModelCheckpoint(dirpath=out, filename="best", monitor="val/selection", mode="max", save_top_k=1,
                           auto_insert_metric_name=False, enable_version_counter=False, save_last=False)
    trainer = engine.make_trainer(run, out, callbacks=[best], enable_checkpointing=True, sampler=sampler)
    engine.fit(trainer, module, run, out, train_dataloaders=train_loader, val_dataloaders=val_loader)
    if trainer.is_global_zero:
        log.info("best checkpoint: %s (val/selection %s); last: %s", best.best_model_path or "none yet",
                 None if best.best_model_score is None else round(float(best.best_model_score), 4), out / engine.LAST)


def _starting_model(args, cache):
    """(model, tokenizer) that training starts from: a trained EnCLAP (``--init``: our checkpoint or
    a published folder, with its own tokenizer) or a ``--model`` preset."""
    from training.enclap.model import BART_PRESETS, from_bart, new_model, tiny_config
    from training.enclap.module import load_captioner
    from training.enclap.text import build_word_tokenizer, load_bart_tokenizer

    if args.init is not None:
        start = load_captioner(args.init, tokenizer=args.tokenizer)
        log.info("starting from the trained EnCLAP %s", args.init)
        return start.model.train(), start.tokenizer
    preset = args.model or "bart-base"
    if preset == "tiny":  # a word vocabulary from the training captions
        tokenizer = build_word_tokenizer([c for clip in cache.clips for c in clip.captions])
        return new_model(tiny_config(len(tokenizer))), tokenizer
    tokenizer = load_bart_tokenizer(args.tokenizer or BART_PRESETS[preset])
    return from_bart(preset), tokenizer


# --------------------------------------------------------------------------- evaluate / predict

def caption_batches(module, loader, progress: bool = True):
    """Yield (clip ids, captions, batch) over a DataLoader of collated batches."""
    device = next(module.parameters()).device
    for batch in tqdm(loader, desc="captioning", unit="batch", disable=not progress):
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        yield batch["ids"], module.captions(batch), batch


def _load_module(args):
    from training.enclap.module import load_captioner

    module = load_captioner(args.checkpoint, tokenizer=args.tokenizer).to(args.device)
    module.hparams.num_beams = args.beams
    module.hparams.max_caption_length = args.max_caption_length
    return module


def _write_csv(path, rows: list[tuple[str, str]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "caption"])
        writer.writerows(rows)


def cmd_evaluate(args) -> None:
    from training.enclap.cache import FeatureCache
    from training.enclap.data import ClipReferences, EnClapCollator
    from training.enclap.metrics import evaluate_captions

    module = _load_module(args)
    cache = FeatureCache(args.cache)
    loader = torch.utils.data.DataLoader(ClipReferences(cache.clips, cache.features), batch_size=args.batch_size,
                                         collate_fn=EnClapCollator(module.model.config, module.tokenizer))
    preds, refs = {}, {}
    for ids, captions, batch in caption_batches(module, loader, not args.no_progress_bar):
        preds.update(zip(ids, captions))
        refs.update(zip(ids, batch["references"]))
    results, tokenizer = evaluate_captions(preds, refs, tuple(args.metrics))
    report = {"checkpoint": str(args.checkpoint), "cache": str(args.cache), "clips": len(preds),
              "tokenizer": tokenizer,
              "metrics": {m: {"value": r.value, "unavailable": r.unavailable} for m, r in results.items()}}
    for name, r in results.items():
        print(f"{name:8s} {r}")
    if args.out:
        _write_csv(Path(args.out) / "predictions.csv", sorted(preds.items()))
        write_json(Path(args.out) / "metrics.json", report)
        log.info("wrote %s/predictions.csv and metrics.json", args.out)


def cmd_predict(args) -> None:
    from hear_codec.audio import find_audio_files, read_audio
    from training.enclap.cache import FeatureCache
    from training.enclap.data import ClipReferences, EnClapCollator

    module = _load_module(args)
    collate = EnClapCollator(module.model.config, module.tokenizer)
    if args.cache:
        cache = FeatureCache(args.cache)
        items = ClipReferences(cache.clips, cache.features)
        loader = torch.utils.data.DataLoader(items, batch_size=args.batch_size,
                                             collate_fn=lambda b: collate([{k: v for k, v in it.items() if k != "references"} for it in b]))
    else:
        files = [Path(f) for f in args.audio]
        if args.audio_dir:
            files += find_audio_files(args.audio_dir)
        if not files:
            raise UserError("predict: give --audio FILE..., --audio-dir DIR or --cache DIR")
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise UserError(f"predict: audio file(s) not found: {missing[:5]}")
        featurizer = make_featurizer(args)
        chunks = [files[i : i + args.batch_size] for i in range(0, len(files), args.batch_size)]

        def featurized():
            for chunk in chunks:
                feats = featurizer([read_audio(f) for f in chunk])
                yield collate([{"id": str(f), "codes": c, "clap": e} for f, (c, e) in zip(chunk, feats)])

        loader = featurized()
    rows = []
    for ids, captions, _ in caption_batches(module, loader, not args.no_progress_bar):
        rows += list(zip(ids, captions))
    if args.out:
        _write_csv(args.out, rows)
        log.info("%d captions written to %s", len(rows), args.out)
    if len(rows) == 1 or not args.out:
        for clip_id, caption in rows:
            print(caption if len(rows) == 1 else f"{clip_id}\t{caption}")


# --------------------------------------------------------------------------- demo

def cmd_demo(args) -> None:
    """Synthetic set -> caches -> tiny model -> held-out CIDEr-D vs the best constant caption."""
    from training.enclap.cache import FeatureCache
    from training.enclap.metrics import evaluate_captions
    from training.builtin.captions import caption_class, make_synthetic_set

    out = Path(args.out)
    data = out / "data"
    csvs = make_synthetic_set(data, {"train": args.train_clips, "val": args.val_clips, "test": args.test_clips},
                              seed=args.seed)
    for split, path in csvs.items():
        cmd_preprocess(argparse.Namespace(dataset="csv", csv=path, audio_dir=data / "audio", out=out / f"cache-{split}",
                                          codec="offline", clap=args.clap, clap_model=None, device="cpu",
                                          shard_size=256, batch_size=16, no_progress_bar=args.no_progress_bar))
    train_args = build_parser().parse_args([
        "train", "--train", str(out / "cache-train"), "--val", str(out / "cache-val"), "--out", str(out / "run"),
        "--model", "tiny", "--max-steps", str(args.steps), "--batch-size", "32", "--lr", "1e-3",
        "--warmup-steps", "100", "--val-every", str(args.steps // 4), "--ckpt-every", str(args.steps // 4),
        "--log-every", "20", "--accelerator", "cpu", "--devices", "1", "--seed", str(args.seed),
        "--max-caption-length", "20", *(["--no-progress-bar"] if args.no_progress_bar else []),
    ])
    cmd_train(train_args)
    eval_args = build_parser().parse_args([
        "evaluate", "--checkpoint", str(out / "run" / "best.ckpt"), "--cache", str(out / "cache-test"),
        "--out", str(out / "eval"), "--metrics", "cider_d", "--device", "cpu", "--max-caption-length", "20",
        *(["--no-progress-bar"] if args.no_progress_bar else []),
    ])
    cmd_evaluate(eval_args)
    model_cider = json.loads((out / "eval" / "metrics.json").read_text())["metrics"]["cider_d"]["value"]

    # Baseline: the training caption that scores best on the *training* references, said for every test clip.
    train, test = FeatureCache(out / "cache-train"), FeatureCache(out / "cache-test")
    best_constant = best_constant_caption({c.id: c.captions for c in train.clips})
    test_refs = {c.id: c.captions for c in test.clips}
    base_cider = evaluate_captions({k: best_constant for k in test_refs}, test_refs, ("cider_d",))[0]["cider_d"].value
    # Class accuracy: does the caption name the right source and pattern (chance: 1/12)?
    with open(out / "eval" / "predictions.csv", newline="") as f:
        predicted = {row["file"]: caption_class(row["caption"]) for row in csv.DictReader(f)}
    truth = {c.id: caption_class(c.captions[0]) for c in test.clips}
    model_acc = sum(predicted[k] == truth[k] for k in truth) / len(truth)
    base_acc = sum(caption_class(best_constant) == truth[k] for k in truth) / len(truth)
    table = (
        f"| system ({len(test_refs)} held-out clips) | CIDEr-D | right sound and pattern |\n|---|---|---|\n"
        f"| constant caption \"{best_constant}\" (best on training references) | {base_cider:.3f} | {base_acc:.1%} |\n"
        f"| tiny EnCLAP, {args.steps} steps | {model_cider:.3f} | {model_acc:.1%} |\n"
    )
    write_text(out / "results.md", table)
    print(table)


def best_constant_caption(references: dict[str, list[str]], candidates: int = 50) -> str:
    """Of the ``candidates`` most frequent reference captions, the one with the highest CIDEr-D
    when it is the prediction for every clip."""
    from collections import Counter

    from training.enclap.metrics import cider_d_tokenized, simple_tokenize

    refs = {k: [simple_tokenize(c) for c in v] for k, v in references.items()}
    frequent = [c for c, _ in Counter(c for v in refs.values() for c in v).most_common(candidates)]
    return max(frequent, key=lambda cap: cider_d_tokenized(refs, {k: [cap] for k in refs}))


# --------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    from training import engine

    parser = argparse.ArgumentParser(prog="python -m training.caption", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("preprocess", help="compute the feature cache (EnCodec codes + CLAP) of one dataset split",
                       description="Read a captions CSV and its audio, compute EnCodec codes (12 kbps, 16 codebooks) "
                                   "and CLAP embeddings once, and store them with the captions in a sharded, "
                                   "resumable cache folder (rerun the same command to resume).")
    p.add_argument("--dataset", choices=("clotho", "audiocaps", "csv"), required=True,
                   help="CSV layout: clotho (file_name, caption_1..caption_5), audiocaps (youtube_id, start_time, "
                        "caption; one row per caption), csv (file, caption; repeated files collect captions)")
    p.add_argument("--csv", required=True, help="the captions CSV of the split")
    p.add_argument("--audio-dir", required=True, help="folder with the split's audio files")
    p.add_argument("--out", required=True, help="cache folder to write (or to resume)")
    add_featurizer_args(p)
    p.add_argument("--shard-size", type=cli.positive_int, default=256,
                   help="clips per shard file (default: %(default)s)")
    p.add_argument("--batch-size", type=cli.positive_int, default=8, help="clips per CLAP batch (default: %(default)s)")
    p.add_argument("--no-progress-bar", action="store_true", help="turn the progress bar off")
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("train", help="train EnCLAP on a feature cache",
                       description="Fine-tune EnCLAP (caption cross-entropy with label smoothing 0.2 + 0.7 x masked "
                                   "codec modelling) with AdamW and an inverse-square-root schedule. Every caption "
                                   "of a training clip is a training example. Writes OUT/best.ckpt (best "
                                   "val/selection = SPIDEr, or CIDEr-D where SPICE cannot run), OUT/last.ckpt and "
                                   "logs under OUT/logs.")
    p.add_argument("--train", required=True, help="training feature cache (from `preprocess`)")
    p.add_argument("--val", required=True, help="validation feature cache")
    p.add_argument("--out", required=True, help="run folder for checkpoints and logs")
    p.add_argument("--model", choices=("tiny", "bart-base", "bart-large"), default=None,
                   help="tiny = small random model with a word vocabulary from the training captions (tests, "
                        "demo); bart-base/bart-large start from the pretrained facebook/bart-* (default: bart-base, "
                        "unless --init is given)")
    p.add_argument("--init", default=None, metavar="CHECKPOINT",
                   help="start from a trained EnCLAP instead of a preset: OUT/best.ckpt of an earlier `train`, or a "
                        "published EnCLAP folder (config.json + pytorch_model.bin). The official Clotho models were "
                        "made this way, fine-tuned from the AudioCaps ones (see docs/captioning.md). A fresh "
                        "optimiser and schedule start at step 0; the checkpoint's tokenizer is kept")
    p.add_argument("--tokenizer", default=None,
                   help="tokenizer for BART presets or a published --init folder (default: the preset's own; "
                        "facebook/bart-base or -large for a published folder)")
    p.add_argument("--epochs", type=cli.positive_int, default=None,
                   help="train this many epochs over all (clip, caption) pairs; overrides --max-steps")
    p.add_argument("--batch-size", type=cli.positive_int, default=32,
                   help="training pairs per device per step (default: %(default)s)")
    p.add_argument("--eval-batch-size", type=cli.positive_int, default=32,
                   help="clips per validation batch (default: %(default)s)")
    p.add_argument("--lr", type=cli.non_negative_float, default=5e-5,
                   help="peak learning rate (paper: 6.5e-5 AudioCaps base ... 2.5e-5 Clotho large); 0 leaves the "
                        "weights where --init or --model put them (a check of the set-up) (default: %(default)s)")
    p.add_argument("--weight-decay", type=cli.non_negative_float, default=0.01,
                   help="AdamW weight decay, not applied to biases and LayerNorm (default: %(default)s)")
    p.add_argument("--warmup-steps", type=cli.non_negative_int, default=1000,
                   help="linear warm-up steps before the inverse-square-root decay (default: %(default)s)")
    p.add_argument("--schedule-timescale", type=cli.positive_int, default=None,
                   help="after warm-up the learning rate is lr / sqrt((step + timescale - warmup) / timescale) "
                        "(default: the warm-up steps, or 10000 without warm-up, as transformers' "
                        "get_inverse_sqrt_schedule; the official Clotho fine-tuning uses 0 warm-up steps and 1000)")
    p.add_argument("--mask-prob", type=cli.fraction, default=0.15,
                   help="MCM: expected share of codec frames masked per codebook (default: %(default)s)")
    p.add_argument("--mask-span", type=cli.positive_int, default=10,
                   help="MCM: frames per masked span (default: %(default)s)")
    p.add_argument("--mcm-weight", type=cli.non_negative_float, default=0.7,
                   help="weight of the MCM loss; 0 turns MCM off (default: %(default)s)")
    p.add_argument("--fixed-crops-and-masks", action="store_true",
                   help="draw each training pair's crop (clips over 1021 frames) and MCM masks once, the same in "
                        "every epoch, as the official preprocessing does; by default they are drawn anew each "
                        "time a pair is seen")
    p.add_argument("--beams", type=cli.positive_int, default=4,
                   help="beam size for validation captions (default: %(default)s)")
    p.add_argument("--max-caption-length", type=cli.positive_int, default=50,
                   help="longest generated caption in tokens, start token included (default: %(default)s)")
    p.add_argument("--num-workers", type=cli.non_negative_int, default=0,
                   help="DataLoader worker processes (default: %(default)s)")
    engine.add_engine_args(p, max_steps=10_000, val_every=500, ckpt_every=500, log_every=50)
    p.set_defaults(func=cmd_train, gradient_clip=1.0)

    for name, helptext in (("evaluate", "caption a feature cache and score it"),
                           ("predict", "caption audio files or a cache into a CSV")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--checkpoint", required=True,
                       help="OUT/best.ckpt from `train`, or a published EnCLAP folder (config.json + pytorch_model.bin)")
        p.add_argument("--tokenizer", default=None,
                       help="tokenizer for a published EnCLAP folder (default: facebook/bart-base or -large)")
        p.add_argument("--batch-size", type=cli.positive_int, default=32,
                       help="clips per beam-search batch (default: %(default)s)")
        p.add_argument("--beams", type=cli.positive_int, default=4, help="beam size (default: %(default)s)")
        p.add_argument("--max-caption-length", type=cli.positive_int, default=50,
                       help="longest caption in tokens, start token included (default: %(default)s)")
        p.add_argument("--no-progress-bar", action="store_true", help="turn the progress bar off")
        if name == "evaluate":
            p.add_argument("--cache", required=True, help="feature cache of the evaluation split")
            p.add_argument("--metrics", nargs="+", default=["meteor", "cider_d", "spice", "spider"],
                           choices=["meteor", "cider_d", "spice", "spider"], help="metrics to compute (default: all)")
            p.add_argument("--out", default=None, help="folder for predictions.csv and metrics.json")
            p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                           help="device (default: %(default)s)")
            p.set_defaults(func=cmd_evaluate)
        else:
            p.add_argument("--audio", nargs="*", default=[], help="audio file(s) to caption")
            p.add_argument("--audio-dir", default=None, help="caption every audio file under this folder")
            p.add_argument("--cache", default=None, help="caption the clips of a feature cache instead of audio")
            p.add_argument("--out", default=None, help="CSV to write (file,caption); without it captions are printed")
            add_featurizer_args(p)
            p.set_defaults(func=cmd_predict)

    p = sub.add_parser("demo", help="learning check on a generated captioned set with a tiny model",
                       description="Generate synthetic sounds with templated captions, build caches with the "
                                   "offline codec, train a tiny EnCLAP on CPU and compare its held-out CIDEr-D "
                                   "with the best constant caption. Writes OUT/results.md.")
    p.add_argument("--out", default="runs/caption_demo", help="output folder (default: %(default)s)")
    p.add_argument("--train-clips", type=cli.positive_int, default=240,
                   help="generated training clips (default: %(default)s)")
    p.add_argument("--val-clips", type=cli.positive_int, default=48,
                   help="generated validation clips, for checkpoint selection (default: %(default)s)")
    p.add_argument("--test-clips", type=cli.positive_int, default=96,
                   help="generated held-out test clips (default: %(default)s)")
    p.add_argument("--steps", type=cli.positive_int, default=400,
                   help="optimiser steps, batch 32 (default: %(default)s)")
    p.add_argument("--clap", choices=("tiny-random", "none"), default="none",
                   help="CLAP in the demo: none (codec tokens only) or a tiny random CLAP (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for the generated data and the training (default: %(default)s)")
    p.add_argument("--no-progress-bar", action="store_true", help="turn the progress bars off")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "init", None) is not None and args.model is not None:
        parser.error("give either --init (a trained EnCLAP to continue from) or --model (a preset), not both")
    args.func(args)


if __name__ == "__main__":
    cli.run(main)
