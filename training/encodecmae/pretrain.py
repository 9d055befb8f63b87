"""EnCodecMAE pretraining's command-line pieces: ``python -m training.pretrain [--model encodecmae]``.

``training/pretrain.py`` calls :func:`add_args` to build its parser (the paper's defaults),
takes :data:`BUILTIN` as the defaults when ``--data`` is absent, and calls :func:`run` with the
parsed options; :func:`configs` is the one place where those options become the typed configs
(model, optimiser, data, engine, codec, colour) that :func:`training.encodecmae.train.train` takes.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from hear_codec import cli
from hear_codec import encodecmae as emae
from training import engine
from training.builtin import recipes
from training.builtin import targets as stand_in
from training.builtin.colouring import ColourConfig
from training.codec import CodecConfig, add_codec_args
from training.data.crops import DataConfig, add_data_args, file_datasets
from training.encodecmae import self_train
from training.encodecmae.targets import EncodecCodes
from training.encodecmae.train import OptimizerConfig, add_optimizer_args, train

BUILTIN = recipes.EncodecMAEBuiltin()
ENGINE_DEFAULTS = dict(max_steps=500_000, val_every=10_000, ckpt_every=10_000)  # the paper's 500 k steps
TARGETS = ("encodec", stand_in.NAME)


def add_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("EnCodecMAE model, targets and data")
    g.add_argument("--preset", default="tiny", choices=sorted(emae.PRESETS),
                   help="model size: small/base/large (the paper's), mini (the built-in run), tiny (tests and smoke "
                        "runs) (default: %(default)s)")
    g.add_argument("--front-end", default="mel256", choices=["mel256", "ec"],
                   help="input features: mel256 (256-bin Kaldi fbank, v2 default) or ec (frozen EnCodec "
                        "encoder) (default: %(default)s)")
    g.add_argument("--targets", default="encodec", choices=TARGETS,
                   help="what the masked frames are predicted as: encodec (the 8 codebooks of the --codec EnCodec at "
                        f"6 kbps, the paper's) or {stand_in.NAME} (the built-in run's stand-in: k-means of log-mel "
                        "bands and of how they move, 9 streams of 64 codes, fitted on the built-in corpus; mel256 "
                        "front end only) (default: %(default)s)")
    g.add_argument("--mask-prop", type=cli.open_fraction, default=0.5,
                   help="share of each clip's frames that are masked, in spans of 15 frames (200 ms); the loss "
                        "weighs the masked frames 0.9 and the rest 0.1 (default: %(default)s, the paper's)")
    g.add_argument("--self-train-steps", type=cli.non_negative_int, default=0,
                   help="after pretraining, run self-training (training.encodecmae.self_train with its defaults, "
                        "v2) for this many steps into OUT/self_train; 0 = no (default: %(default)s)")
    add_optimizer_args(g)
    add_data_args(g, crop_seconds=4.0, batch_size=128)
    add_codec_args(g, use="the targets (and the ec front end's features)", default=None, default_note="pretrained",
                   extra_choices=[stand_in.NAME],
                   extra_help=f"; {stand_in.NAME} is the former spelling of --targets {stand_in.NAME}")
    recipes.add_corpus_args(parser, clips=384, colour=True)


def configs(args: argparse.Namespace) -> tuple:
    """(model config, optimiser, data, engine, codec or None, colour) from the parsed options."""
    if args.codec == stand_in.NAME:  # the former spelling of --targets mel-kmeans
        args.targets, args.codec = stand_in.NAME, None
    args.codec = args.codec or "pretrained"
    if args.front_end == "ec" and args.colour_db:
        raise SystemExit("--colour-db colours log-mel frames, and the ec front end has none: "
                         "use --front-end mel256, or --colour-db 0")
    if args.targets == stand_in.NAME:
        if args.front_end == "ec":
            raise SystemExit(f"--targets {stand_in.NAME} has no EnCodec encoder for the ec front end; "
                             "use --front-end mel256, or --targets encodec")
        if args.data:
            raise SystemExit(f"--targets {stand_in.NAME}: the stand-in targets are fitted on the built-in corpus; "
                             "with --data use --targets encodec (the paper's)")
    data = DataConfig.from_args(args)
    codec = CodecConfig.from_args(args) if args.targets == "encodec" or args.front_end == "ec" else None
    # The head predicts EnCodec's 8 codebooks of 1024 codes (the config's defaults), or the stand-in's
    # streams of K codes each (its 8 bands, then their modulation).
    head = stand_in.model_fields() if args.targets == stand_in.NAME else {}
    model = emae.preset(args.preset, front_end=args.front_end, codec_weights=codec.weights if codec else "none",
                        chunk_seconds=data.crop_seconds, mask_prop=args.mask_prop, **head)
    optim, run = OptimizerConfig.from_args(args), engine.EngineConfig.from_args(args)
    optim.check(run.max_steps)
    return model, optim, data, run, codec, ColourConfig.from_args(args)


def run(args: argparse.Namespace) -> Path:
    """Pretrain as the options say (then self-train with ``--self-train-steps``); returns the
    exported hear_codec checkpoint of the last stage."""
    model, optim, data, run_cfg, codec_cfg, colour = configs(args)
    out_dir = Path(args.out)
    codec = codec_cfg.load() if codec_cfg else None
    if args.targets == stand_in.NAME:
        targets = recipes.stand_in_targets(args.synthetic_clips, data.crop_seconds, data.seed)
    else:
        targets = EncodecCodes(codec, model.num_codec_streams, from_features=model.front_end == "ec")
    datasets = (file_datasets(data, out_dir) if data.sources else
                recipes.corpus_datasets(args, data.crop_seconds, out_dir, codec_cfg, targets.encode, targets.name,
                                        model.num_streams))
    exported = train(model, optim, data, datasets, run_cfg, out_dir, targets=targets,
                     codec_encoder=codec.encoder if model.front_end == "ec" else None,
                     augment=recipes.input_colouring(colour, model.mel_std),
                     metadata=dict(preset=args.preset, codec=codec_cfg.weights if codec_cfg else None))
    if args.self_train_steps <= 0:
        return exported
    # A stage of pretraining: the same data, optimiser and engine options, self-training's own defaults.
    st_run = dataclasses.replace(run_cfg, max_steps=args.self_train_steps, resume="auto" if run_cfg.resume else None)
    teacher = self_train.load_teacher(exported)
    return self_train.self_train(teacher, exported, self_train.SelfTrainConfig(), optim, data, datasets, st_run,
                                 out_dir / "self_train")
