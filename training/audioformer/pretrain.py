"""AudioFormer pretraining's command-line pieces: ``python -m training.pretrain --model audioformer``.

``training/pretrain.py`` calls :func:`add_args` to build its parser and :func:`run` with the
parsed options; :func:`configs` is the one place where those options become the typed configs
(model, optimiser, data + codec, engine) that :func:`training.audioformer.train.train` takes.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from hear_codec import audioformer as af
from hear_codec import cli
from training import data as D
from training import engine
from training.audioformer.train import DEFAULTS, TrainConfig, add_train_args, train


def add_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("AudioFormer model and data")
    g.add_argument("--preset", default="tiny", choices=sorted(af.PRESETS),
                   help="backbone size per codebook: tiny (built-in demo), small, base (RoFormer-base) "
                        "(default: %(default)s)")
    g.add_argument("--codebooks", type=int, default=4,
                   help="EnCodec codebooks modelled, one token sequence each (paper: 4) (default: %(default)s)")
    g.add_argument("--shared-backbone", action="store_true",
                   help="one RoFormer for all codebooks (codebook-offset vocabulary + a token type per "
                        "codebook) instead of one per codebook as in the paper")
    g.add_argument("--mask-prob", type=cli.open_fraction, default=0.25,
                   help="share of each sequence's code tokens chosen for the MLM loss, in (0, 1) (paper: 0.25) "
                        "(default: %(default)s)")
    add_train_args(g)
    D.add_data_args(g, codec_use="the tokens", defaults=DEFAULTS, synthetic_clips=160)


def configs(args: argparse.Namespace) -> tuple:
    """(model config, optimiser, data + codec, engine) from the parsed options."""
    DEFAULTS.fill(args)
    data = D.DataConfig.from_args(args)
    model = af.preset(args.preset, num_codebooks=args.codebooks, shared_backbone=args.shared_backbone,
                      mask_prob=args.mask_prob, chunk_seconds=data.crop_seconds, codec_weights=data.codec)
    optim, run = TrainConfig.from_args(args), engine.EngineConfig.from_args(args)
    optim.check(run.max_steps)
    return model, optim, data, run


def run(args: argparse.Namespace) -> Path:
    """MLM pretraining as the options say; returns the exported hear_codec checkpoint."""
    model, optim, data, run_cfg = configs(args)
    return train(model, optim, data, run_cfg, Path(args.out), metadata=dict(preset=args.preset))
