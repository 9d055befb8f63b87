"""Pretraining CLI: ``python -m training.pretrain [--model NAME] [options]``.

With ``--data DIR_OR_MANIFEST ...`` it is the paper's setting for the family (``--preset
small|base|large``; docs/pretraining.md has single-GPU, multi-GPU and multi-node commands), and
every default in ``--help`` is the paper's. Without ``--data`` it runs the family's built-in
recipe (training/builtin/recipes.py): the mini EnCodecMAE trains in a few minutes on a CPU, on
a corpus generated in code, and writes ``runs/pretrain/last.ckpt.hearcodec``, which
``hear-validator hear_codec --model runs/pretrain/last.ckpt.hearcodec`` accepts.

Model registry
--------------
:data:`MODELS` maps ``--model NAME`` to the family's command-line pieces,
``training/<family>/pretrain.py``, each of which provides:

* ``add_args(parser)``: its own options (argument groups, the shared data options included),
  with the paper's defaults;
* ``ENGINE_DEFAULTS``: its paper defaults of the engine's step counts;
* ``BUILTIN``: its built-in recipe, the defaults without ``--data``;
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
from training.builtin import recipes
from training.encodecmae import pretrain as encodecmae

MODELS = {"encodecmae": encodecmae, "audioformer": audioformer}
DEFAULT_MODEL = "encodecmae"


def build_parser(name: str = DEFAULT_MODEL) -> argparse.ArgumentParser:
    family = MODELS[name]
    parser = argparse.ArgumentParser(
        prog="python -m training.pretrain",
        description="Pretrain a hear_codec model with the shared Lightning engine; the defaults below are the "
                    f"paper's. Without --data: the family's built-in recipe ({type(family.BUILTIN).__name__}, "
                    "training/builtin/recipes.py), minutes on a CPU on a corpus generated in code.",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(MODELS),
                        help="model family to train (default: %(default)s)")
    parser.add_argument("--out", default="runs/pretrain",
                        help="output folder: last.ckpt (resumable), last.ckpt.hearcodec (for hear_codec), logs/, "
                             "loss_curve.png, data reports (default: %(default)s)")
    family.add_args(parser)
    engine.add_engine_args(parser, **family.ENGINE_DEFAULTS, log_every=10)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    # Each family has its own options, so --model is read first (an unknown one falls through to the
    # full parser's choices, which names the valid ones).
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model", default=DEFAULT_MODEL)
    known, _ = pre.parse_known_args(argv)
    family = MODELS.get(known.model, MODELS[DEFAULT_MODEL])
    args = recipes.parse_args(build_parser(known.model if known.model in MODELS else DEFAULT_MODEL), argv,
                              family.BUILTIN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.time()
    with engine.run_lock(args.out):  # from the start: the data reports and caches go into OUT too
        path = MODELS[args.model].run(args)
    print(f"wrote {path} in {time.time() - t0:.0f} s")
    return path


if __name__ == "__main__":
    cli.run(main)
