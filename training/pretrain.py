"""Pretraining CLI: ``python -m training.pretrain [--model NAME] [options]``.

With no arguments it trains the built-in default (tiny EnCodecMAE, synthetic corpus generated
in code, offline codec) in a few minutes on a CPU and writes ``runs/pretrain/last.ckpt.hearcodec``,
which ``hear-validator hear_codec --model runs/pretrain/last.ckpt.hearcodec`` accepts. With
``--preset small|base|large --data DIR_OR_MANIFEST`` it is the paper's setting (see
docs/pretraining.md for single-GPU and multi-GPU/multi-node commands).

Model registry
--------------
``--model NAME`` imports ``training.NAME_module``, which must provide:

* ``add_args(parser)``: its own options (an argument group);
* ``train(args) -> Path``: build data and a LightningModule, run them with
  ``training.engine`` (``make_trainer`` + ``fit``), return the exported checkpoint;
* optionally ``ENGINE_DEFAULTS``: a dict of keyword defaults for
  ``engine.add_engine_args`` (max_steps, val_every, ckpt_every, log_every). ``None`` means the
  module fills the value in ``train`` itself, and ``ENGINE_DEFAULT_NOTES`` ({dest: text}) says
  in --help what it will be.

So adding ``--model audioformer`` is a matter of writing ``training/audioformer_module.py``;
nothing here changes. ``--model encodecmae`` (the default) is ``training/encodecmae_module.py``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time

from training import engine

DEFAULT_MODEL = "encodecmae"


def model_module(name: str):
    if not name.replace("_", "").isalnum():
        raise SystemExit(f"--model: invalid name {name!r}")
    try:
        return importlib.import_module(f"training.{name}_module")
    except ModuleNotFoundError as e:
        if e.name == f"training.{name}_module":
            raise SystemExit(f"--model {name}: there is no training/{name}_module.py") from e
        raise


def build_parser(name: str = DEFAULT_MODEL) -> argparse.ArgumentParser:
    module = model_module(name)
    parser = argparse.ArgumentParser(
        prog="python -m training.pretrain",
        description="Pretrain a hear_codec model with the shared Lightning engine. Without arguments: the "
                    "built-in tiny EnCodecMAE on a synthetic corpus with the offline codec (minutes on a CPU). "
                    "Options whose default says 'with --data' take the paper's setting when --data is given.",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="model family to train: imports training.<model>_module (default: %(default)s)")
    parser.add_argument("--out", default="runs/pretrain",
                        help="output folder: last.ckpt (resumable), last.ckpt.hearcodec (for hear_codec), logs/, "
                             "loss_curve.png, data reports (default: %(default)s)")
    module.add_args(parser)
    engine.add_engine_args(parser, **getattr(module, "ENGINE_DEFAULTS", {}),
                           notes=getattr(module, "ENGINE_DEFAULT_NOTES", None))
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model", default=DEFAULT_MODEL)
    known, _ = pre.parse_known_args(argv)
    parser = build_parser(known.model)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.time()
    path = model_module(args.model).train(args)
    print(f"wrote {path} in {time.time() - t0:.0f} s")
    return path


if __name__ == "__main__":
    main()
