"""EnCodecMAE pretraining's command-line pieces: ``python -m training.pretrain [--model encodecmae]``.

``training/pretrain.py`` calls :func:`add_args` to build its parser and :func:`run` with the
parsed options; :func:`configs` is the one place where those options become the typed configs
(model, optimiser, data + codec, engine) that :func:`training.encodecmae.train.train` takes.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from hear_codec import cli
from hear_codec import encodecmae as emae
from training import data as D
from training import engine, spectral_targets
from training.encodecmae import self_train
from training.encodecmae.train import DEFAULTS, TrainConfig, add_train_args, train


def add_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("EnCodecMAE model and data")
    g.add_argument("--preset", default=None, choices=sorted(emae.PRESETS),
                   help="model size: mini (the built-in CPU run), tiny (tests and smoke runs), small/base/large "
                        f"(the paper's) (default: {DEFAULTS.note('preset')})")
    g.add_argument("--front-end", default="mel256", choices=["mel256", "ec"],
                   help="input features: mel256 (256-bin Kaldi fbank, v2 default) or ec (frozen EnCodec "
                        "encoder) (default: %(default)s)")
    g.add_argument("--mask-prop", type=cli.open_fraction, default=None,
                   help="share of each clip's frames that are masked, in spans of 15 frames (200 ms); the loss "
                        "weighs the masked frames 0.9 and the rest 0.1 (default: "
                        f"{DEFAULTS.note('mask_prop')}; 0.5 is the paper's, 0.7 gave the built-in run "
                        "representations that transfer better: docs/pretraining.md, \"An eighth pass\")")
    g.add_argument("--colour-db", type=cli.non_negative_float, default=None, metavar="DB",
                   help="random spectral colouring of the input while training: each clip's log-mel frames get "
                        "one smooth random EQ curve (2 cosines over the mel bins, a tilt and a bump, each up to +-DB "
                        "dB), its targets stay those of the clean clip; 0 = none, the paper's; mel256 front end "
                        f"only (default: {DEFAULTS.note('colour_db')}; on the built-in run it put held-out noise "
                        "events at 4 labels beyond the draws' std, which nothing else did, at some cost to "
                        "instruments: docs/pretraining.md, \"A twelfth pass\")")
    g.add_argument("--colour-until", type=cli.positive_fraction, default=None, metavar="SHARE",
                   help="with --colour-db: colour the input in the first SHARE of the run's steps (of --max-steps) "
                        "and train the rest on clean input; 1 = every step (default: "
                        f"{DEFAULTS.note('colour_until')}; the clean last quarter gave the built-in run more "
                        "held-out cells beyond the draws' std: docs/pretraining.md, \"A thirteenth pass\")")
    g.add_argument("--self-train-steps", type=cli.non_negative_int, default=0,
                   help="after pretraining, run self-training (training.encodecmae.self_train with its defaults, "
                        "v2) for this many steps into OUT/self_train; 0 = no (default: %(default)s)")
    add_train_args(g, lr_note="1e-4 with --data, the paper's; 1e-3 for the built-in run, which has minutes "
                              "to show that it learns")
    D.add_data_args(g, codec_use="the targets (and the ec front end's features)", defaults=DEFAULTS,
                    synthetic_clips=384, stand_in_targets=True)


def configs(args: argparse.Namespace) -> tuple:
    """(model config, optimiser, data + codec, engine) from the parsed options."""
    # The built-in default's colour is for log-mel frames; with the ec front end it defaults to none.
    DEFAULTS.fill(args, **(dict(colour_db=0.0) if args.front_end == "ec" else {}))
    if args.front_end == "ec" and args.colour_db:
        raise SystemExit("--colour-db colours log-mel frames, and the ec front end has none: "
                         "use --front-end mel256, or --colour-db 0")
    data = D.DataConfig.from_args(args)
    if data.codec == spectral_targets.NAME and args.front_end == "ec":
        raise SystemExit(f"--codec {spectral_targets.NAME} has no EnCodec encoder for the ec front end; "
                         "use --front-end mel256, or --codec offline / pretrained")
    # The head predicts EnCodec's 8 codebooks of 1024 codes (the config's defaults), or the stand-in's
    # streams of K codes each (its 8 bands, then their modulation).
    head = spectral_targets.model_fields() if data.codec == spectral_targets.NAME else {}
    model = emae.preset(args.preset, front_end=args.front_end, codec_weights=data.codec,
                        chunk_seconds=data.crop_seconds, mask_prop=args.mask_prop, **head)
    optim, run = TrainConfig.from_args(args), engine.EngineConfig.from_args(args)
    optim.check(run.max_steps)
    return model, optim, data, run


def run(args: argparse.Namespace) -> Path:
    """Pretrain as the options say (then self-train with ``--self-train-steps``); returns the
    exported hear_codec checkpoint of the last stage."""
    model, optim, data, run_cfg = configs(args)
    out_dir = Path(args.out)
    exported = train(model, optim, data, run_cfg, out_dir, metadata=dict(preset=args.preset),
                     colour_db=args.colour_db, colour_until=args.colour_until)
    if args.self_train_steps <= 0:
        return exported
    # A stage of pretraining: the same data, optimiser and engine options, self-training's own defaults.
    st_run = dataclasses.replace(run_cfg, max_steps=args.self_train_steps, resume="auto" if run_cfg.resume else None)
    return self_train.self_train(self_train.load_teacher(exported), exported, self_train.SelfTrainConfig(), optim,
                                 data, st_run, out_dir / "self_train")
