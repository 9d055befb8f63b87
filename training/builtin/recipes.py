"""The built-in runs as named recipes: what ``python -m training.pretrain`` (and self-training)
train when ``--data`` is absent, in minutes on a CPU, with nothing to download.

A recipe is a small typed object whose fields are option values; a CLI takes them as its
defaults when ``--data`` is absent (:func:`parse_args`), so an option given on the command line
still wins and ``--help`` shows the paper's defaults. Its other pieces are the datasets and targets
such a run needs, built here so that the paper path (``training/data/``, each family's module
and ``train.py``) never sees them:

* :class:`EncodecMAEBuiltin`: the mini EnCodecMAE on the built-in corpus (``corpus.py``), predicting
  the log-mel k-means stand-in for EnCodec's codes (``targets.py``), its input coloured at random
  for the first three quarters of the steps (``colouring.py``); ``make demo`` runs it, and
  ``python -m training.builtin.learning_check --run OUT --transfer`` checks what it learnt.
* :class:`SelfTrainBuiltin`: 100 steps of self-training on the same corpus.
* :class:`AudioFormerBuiltin`: the tiny AudioFormer on the corpus's frame-grid sounds, whose
  random-weight EnCodec codes (``--codec offline``) are its tokens.

Why these values: docs/experiments/ (the built-in default's history).
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from hear_codec import cli
from hear_codec.codec import PRETRAINED_CHECKPOINT
from training.builtin import colouring, corpus, targets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodecMAEBuiltin:
    """``python -m training.pretrain`` without ``--data``: about 4 minutes on 2 CPU cores.

    The stand-in targets (the offline EnCodec's codes follow waveform phase and do not transfer);
    70 % of each clip's frames masked, not the paper's half (its representations transfer better
    to the held-out sound families, and its step is cheaper); a random colour on the input for the
    first three quarters of the steps (the paper has no augmentation)."""

    preset: str = "mini"
    targets: str = targets.NAME
    max_steps: int = 2400
    val_every: int = 400
    ckpt_every: int = 400
    batch_size: int = 16
    crop_seconds: float = 2.0
    lr: float = 1e-3
    mask_prop: float = 0.7
    colour_db: float = 6.0
    colour_until: float = 0.75

    def defaults(self, args: argparse.Namespace) -> dict:
        """The option defaults it sets. An EnCodec named with ``--codec`` makes the targets, as it
        does with ``--data``; the colour is for log-mel frames, so none with the ec front end."""
        values = asdict(self)
        if args.codec is not None:
            del values["targets"]
        if args.front_end == "ec":
            values["colour_db"] = 0.0
        return values


@dataclass(frozen=True)
class SelfTrainBuiltin:
    """``python -m training.encodecmae.self_train --teacher T`` without ``--data``: 100 steps on the
    built-in corpus (the crop length and targets are the teacher's, as with ``--data``)."""

    max_steps: int = 100
    val_every: int = 400
    ckpt_every: int = 400
    batch_size: int = 16
    lr: float = 1e-3

    def defaults(self, args: argparse.Namespace) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AudioFormerBuiltin:
    """``python -m training.pretrain --model audioformer`` without ``--data``: the tiny AudioFormer,
    300 steps on the corpus's frame-grid sounds, tokens from the offline (random-weight) EnCodec."""

    max_steps: int = 300
    val_every: int = 100
    ckpt_every: int = 100
    batch_size: int = 16
    crop_seconds: float = 2.0
    codec: str = "offline"
    lr: float = 1e-3
    warmup_steps: int = 30

    def defaults(self, args: argparse.Namespace) -> dict:
        return asdict(self)


def parse_args(parser: argparse.ArgumentParser, argv, recipe) -> argparse.Namespace:
    """``parser.parse_args(argv)``; without ``--data``, with ``recipe``'s values as the defaults
    (options on the command line still win)."""
    args = parser.parse_args(argv)
    if args.data is None:
        parser.set_defaults(**recipe.defaults(args))
        args = parser.parse_args(argv)
    return args


# ---------------------------------------------------------------- the options only built-in runs use

def add_corpus_args(parser: argparse.ArgumentParser, *, clips: int, colour: bool = False) -> None:
    """The built-in corpus's options (and, with ``colour``, the input colouring's) in one group."""
    g = parser.add_argument_group("the built-in run (without --data; training/builtin/recipes.py)")
    g.add_argument("--synthetic-clips", type=cli.positive_int, default=clips,
                   help="training clips of the built-in corpus (default: %(default)s)")
    g.add_argument("--synthetic-val-clips", type=cli.non_negative_int, default=32,
                   help="validation clips of the built-in corpus (default: %(default)s)")
    if colour:
        g.add_argument("--colour-db", type=cli.non_negative_float, default=0.0, metavar="DB",
                       help="random spectral colouring of the input while training: each clip's log-mel frames get "
                            "one smooth random EQ curve (2 cosines over the mel bins, a tilt and a bump, each up to "
                            "+-DB dB), its targets stay those of the clean clip; 0 = none, the paper's; mel256 front "
                            "end only (default: %(default)s)")
        g.add_argument("--colour-until", type=cli.positive_fraction, default=1.0, metavar="SHARE",
                       help="with --colour-db: colour the input in the first SHARE of the run's steps (of "
                            "--max-steps) and train the rest on clean input; 1 = every step (default: %(default)s)")


# ---------------------------------------------------------------- the pieces of a built-in run

def corpus_datasets(args: argparse.Namespace, seconds: float, out_dir, codec, encode=None, name: str = "",
                    n_q: int = 0) -> tuple:
    """(train_set, val_set, metadata) of the built-in corpus for a run with these options
    (``--synthetic-clips``, ``--synthetic-val-clips``, ``--seed``), in the sound vocabulary that
    suits its ``codec`` (a CodecConfig, or None), with every clip's targets (``encode``: wav
    [B, S] -> codes [B, n_q, T], called ``name``) computed once; see :func:`corpus.corpus_datasets`."""
    sounds = corpus.corpus_sounds(codec.weights if codec else None)
    return corpus.corpus_datasets(args.synthetic_clips, args.synthetic_val_clips, seconds, args.seed, sounds,
                                  out_dir, encode=encode, targets_name=name, n_q=n_q)


def stand_in_targets(clips: int, seconds: float, seed: int) -> targets.MelBandKMeans:
    """The stand-in for EnCodec's targets, fitted on the corpus's first training clips."""
    log.info("targets: %s, a stand-in for EnCodec's codes (k-means of log-mel bands and of their modulation; "
             "training/builtin/targets.py), not the paper's; --targets encodec gives EnCodec's", targets.NAME)
    published = Path(torch.hub.get_dir()) / "checkpoints" / PRETRAINED_CHECKPOINT
    if published.is_file():
        log.warning("the published EnCodec weights are on this machine (%s), but --targets %s was chosen: "
                    "--targets encodec trains on the paper's targets", published, targets.NAME)
    fit_corpus = corpus.SyntheticCorpus(clips, seconds, seed=seed, offset=0, sounds="spectral")
    return targets.fit_on_corpus(fit_corpus, targets.BANDS, seed=seed)


def input_colouring(colour: colouring.ColourConfig, mel_std: float):
    """The colouring as the module's input augmentation, or None for no colour."""
    return colouring.Colouring(colour, mel_std) if colour.depth_db else None
