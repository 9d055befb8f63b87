"""AudioFormer pretraining's command-line pieces: ``python -m training.pretrain --model audioformer``.

``training/pretrain.py`` calls :func:`add_args` to build its parser (the paper's defaults),
takes :data:`BUILTIN` as the defaults when ``--data`` is absent, and calls :func:`run` with the
parsed options; :func:`configs` is the one place where those options become the typed configs
(model, optimiser, data, engine, codec) that :func:`training.audioformer.train.train` takes.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from hear_codec import audioformer as af
from hear_codec import cli
from training import engine
from training.audioformer.train import OptimizerConfig, add_optimizer_args, train
from training.builtin import recipes
from training.codec import CodecConfig, add_codec_args
from training.data.crops import DataConfig, add_data_args, file_datasets

BUILTIN = recipes.AudioFormerBuiltin()
ENGINE_DEFAULTS = dict(max_steps=400_000, val_every=10_000, ckpt_every=10_000)


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
    add_optimizer_args(g)
    add_data_args(g, crop_seconds=10.0, batch_size=64)
    add_codec_args(g, use="the tokens")
    recipes.add_corpus_args(parser, clips=160)


def configs(args: argparse.Namespace) -> tuple:
    """(model config, optimiser, data, engine, codec) from the parsed options."""
    data = DataConfig.from_args(args)
    codec = CodecConfig.from_args(args)
    model = af.preset(args.preset, num_codebooks=args.codebooks, shared_backbone=args.shared_backbone,
                      mask_prob=args.mask_prob, chunk_seconds=data.crop_seconds, codec_weights=codec.weights)
    optim, run = OptimizerConfig.from_args(args), engine.EngineConfig.from_args(args)
    optim.check(run.max_steps)
    return model, optim, data, run, codec


def run(args: argparse.Namespace) -> Path:
    """MLM pretraining as the options say; returns the exported hear_codec checkpoint."""
    model, optim, data, run_cfg, codec_cfg = configs(args)
    out_dir = Path(args.out)
    codec = codec_cfg.load()
    datasets = (file_datasets(data, out_dir) if data.sources else
                recipes.corpus_datasets(args, data.crop_seconds, out_dir, codec_cfg, name=codec.weights,
                                        encode=lambda wav: codec.encode_codes(wav, model.num_codebooks),
                                        n_q=model.num_codebooks))
    return train(model, optim, data, datasets, run_cfg, out_dir, codec=codec, metadata=dict(preset=args.preset))
