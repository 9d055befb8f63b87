"""Pretraining CLI: ``python -m training.pretrain [--model NAME] [options]``.

With no arguments it trains the built-in default (tiny EnCodecMAE, synthetic corpus generated
in code, the log-mel k-means stand-in for EnCodec's targets: training/spectral_targets.py) in a
few minutes on a CPU and writes ``runs/pretrain/last.ckpt.hearcodec``,
which ``hear-validator hear_codec --model runs/pretrain/last.ckpt.hearcodec`` accepts. With
``--preset small|base|large --data DIR_OR_MANIFEST`` it is the paper's setting (see
docs/pretraining.md for single-GPU and multi-GPU/multi-node commands).

Model registry
--------------
:data:`MODELS` maps ``--model NAME`` to the family's command-line pieces,
``training/<family>/pretrain.py``, each of which provides:

* ``add_args(parser)``: its own options (an argument group, the shared data options included);
* ``DEFAULTS`` (a ``training.data.DataDependentDefaults``): the defaults that depend on --data,
  the engine's :data:`DATA_DEPENDENT_ENGINE_OPTIONS` among them (--help says what they will be);
* ``run(args) -> Path``: turn the options into typed configs (its ``configs(args)``), train with
  ``training/<family>/train.py``, return the exported checkpoint.

A new family is a ``training/<family>/`` package with those files and one line here.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from hear_codec import cli
from training import engine
from training.audioformer import pretrain as audioformer
from training.encodecmae import pretrain as encodecmae

MODELS = {"encodecmae": encodecmae, "audioformer": audioformer}
DEFAULT_MODEL = "encodecmae"
# Engine options left None by the parser: each family's DEFAULTS fills them once --data is known.
DATA_DEPENDENT_ENGINE_OPTIONS = ("max_steps", "val_every", "ckpt_every")


def build_parser(name: str = DEFAULT_MODEL) -> argparse.ArgumentParser:
    family = MODELS[name]
    parser = argparse.ArgumentParser(
        prog="python -m training.pretrain",
        description="Pretrain a hear_codec model with the shared Lightning engine. Without arguments: the "
                    "built-in tiny EnCodecMAE on a synthetic corpus with stand-in targets (log-mel k-means, not "
                    "EnCodec; minutes on a CPU). "
                    "Options whose default says 'with --data' take the paper's setting when --data is given.",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(MODELS),
                        help="model family to train (default: %(default)s)")
    parser.add_argument("--out", default="runs/pretrain",
                        help="output folder: last.ckpt (resumable), last.ckpt.hearcodec (for hear_codec), logs/, "
                             "loss_curve.png, data reports (default: %(default)s)")
    family.add_args(parser)
    engine.add_engine_args(parser, **dict.fromkeys(DATA_DEPENDENT_ENGINE_OPTIONS), log_every=10,
                           notes={name: family.DEFAULTS.note(name) for name in DATA_DEPENDENT_ENGINE_OPTIONS})
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model", default=DEFAULT_MODEL)
    known, _ = pre.parse_known_args(argv)
    # An unknown --model falls through to the full parser's choices, which names the valid ones.
    parser = build_parser(known.model if known.model in MODELS else DEFAULT_MODEL)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.time()
    path = MODELS[args.model].run(args)
    print(f"wrote {path} in {time.time() - t0:.0f} s")
    return path


if __name__ == "__main__":
    cli.run(main)
