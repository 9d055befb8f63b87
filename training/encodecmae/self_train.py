"""EnCodecMAE self-training: ``python -m training.encodecmae.self_train --teacher CKPT [options]``.

1. Features: the teacher's last encoder layer *before* the final ResiDual combination (the x0
   stream of the last layer, ``encoder(..., return_layers=True)``) on ``--segments`` random crops
   (default 10 000) of the training data, drawn as training draws them (length-proportional);
   ``--kmeans-frames`` frames (default 10 000) are drawn uniformly from all their valid frames,
   padding excluded, as the official code does.
2. k-means with k = ``--clusters`` (default 1024): scikit-learn's KMeans algorithm (the official
   one) in torch, fp32 (training/encodecmae/kmeans.py; on the GPU when there is one); centroids
   saved to ``OUT/kmeans_centroids.pt``.
3. Continued training (default 150 000 steps with --data) of a student initialised from the
   teacher, on the k-means stream computed on the fly by the frozen teacher + centroids: v2
   (default) predicts that stream alone (num_codec_streams=0, num_kmeans_streams=1); with
   ``--keep-codec-streams`` (v1) it predicts the 8 EnCodec streams plus the k-means stream.

The result, ``OUT/last.ckpt.hearcodec``, is an EncodecMAE with a different head size and loads in
``hear_codec.load_model`` like any other. It is also available as a stage of pretraining:
``python -m training.pretrain ... --self-train-steps N``.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from hear_codec import cli
from hear_codec import encodecmae as emae
from hear_codec.checkpoint import load_checkpoint
from hear_codec.errors import UserError
from hear_codec.files import atomic_torch_save
from training import engine
from training.builtin import recipes
from training.codec import CODEC_WEIGHTS, CodecConfig, add_codec_args
from training.data.crops import DataConfig, add_data_args, file_datasets
from training.encodecmae.kmeans import kmeans
from training.encodecmae.targets import EncodecCodes, Stacked, TeacherKMeans
from training.encodecmae.train import OptimizerConfig, add_optimizer_args, build_loaders, train

log = logging.getLogger(__name__)

CENTROIDS = "kmeans_centroids.pt"


@dataclass
class SelfTrainConfig:
    """What self-training adds to training (the options of :func:`add_self_train_args`)."""

    segments: int = 10_000  # random crops whose teacher features feed k-means
    kmeans_frames: int = 10_000  # frames drawn from them for k-means
    clusters: int = 1024  # k = the k-means stream's vocabulary
    kmeans_iters: int = 300
    kmeans_inits: int = 10
    keep_codec_streams: bool = False  # v1: also the 8 EnCodec streams
    feature_batch: int = 32  # crops per teacher forward pass while collecting features

    @classmethod
    def from_args(cls, args) -> "SelfTrainConfig":
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


@torch.no_grad()
def collect_features(teacher, loader, segments: int, frames: int, device, seed: int = 1234) -> torch.Tensor:
    """[min(frames, all valid frames), D]: teacher last-layer x0 features of frames drawn uniformly
    without replacement from all valid (non-padding) frames of the first ``segments`` crops of
    ``loader``, as the official ``create_st_dataset`` (which concatenates every frame of its
    segments, then draws ``kmeans_samples`` of them).

    Streaming, so memory stays at ``frames`` rows plus one batch: every frame gets a uniform random
    key and the ``frames`` smallest keys are kept (a uniform sample without replacement)."""
    gen = torch.Generator().manual_seed(seed)
    kept, kept_keys, seen = None, None, 0
    for batch in loader:
        take = min(len(batch["wav"]), segments - seen)
        wav = batch["wav"][:take].to(device)
        padding = batch["padding_mask"][:take].to(device)
        features = teacher.input_features(wav)[:, : padding.shape[1]]
        hidden = teacher.last_layer_x0(features, padding).float().cpu()
        valid = hidden[~padding.cpu()]  # [valid frames of the batch, D]
        keys = torch.rand(len(valid), generator=gen)
        pool = valid if kept is None else torch.cat([kept, valid])
        pool_keys = keys if kept_keys is None else torch.cat([kept_keys, keys])
        if len(pool) > frames:
            keep = torch.topk(pool_keys, frames, largest=False).indices
            pool, pool_keys = pool[keep], pool_keys[keep]
        kept, kept_keys = pool, pool_keys
        seen += take
        if seen >= segments:
            break
    if kept is None or not len(kept):
        raise ValueError("no valid frames in the self-training segments")
    return kept


def student_config(teacher: emae.EncodecMAEConfig, st: SelfTrainConfig) -> emae.EncodecMAEConfig:
    """The teacher's config with the k-means stream: alone (v2, vocabulary k) or after the codec
    streams (v1, one head size for every stream, so k must equal the codec vocabulary)."""
    if st.keep_codec_streams and st.clusters != teacher.vocab_size:
        raise UserError(f"--keep-codec-streams: --clusters {st.clusters} must equal the codec vocabulary "
                         f"({teacher.vocab_size}), one head size serves every stream")
    return emae.EncodecMAEConfig.from_dict({
        **teacher.to_dict(),
        "num_codec_streams": teacher.num_codec_streams if st.keep_codec_streams else 0,
        "num_kmeans_streams": 1,
        "vocab_size": teacher.vocab_size if st.keep_codec_streams else st.clusters,
    })


def fit_centroids(teacher: emae.EncodecMAE, st: SelfTrainConfig, train_set, data: DataConfig, device,
                  seed: int) -> tuple:
    """k-means on the teacher's features of crops of ``train_set`` (steps 1 and 2 above):
    (centroids [k, D], summary dict)."""
    loader, _, _ = build_loaders(train_set, None, dataclasses.replace(data, batch_size=st.feature_batch),
                                 teacher.config)
    segments = st.segments
    if getattr(train_set, "fixed_clips", False):  # no random crops: more segments than clips would repeat them
        segments = min(segments, len(train_set))
    teacher.to(device)
    x = collect_features(teacher, loader, segments, st.kmeans_frames, device)
    teacher.cpu()
    log.info("k-means on %d frames of dim %d (k=%d)", x.shape[0], x.shape[1], st.clusters)
    result = kmeans(x.to(device), st.clusters, iters=st.kmeans_iters, n_init=st.kmeans_inits, seed=seed)
    summary = {"frames": int(x.shape[0]), "inertia": result["inertia"], "iterations": result["iterations"]}
    return result["centroids"].cpu(), summary


def load_teacher(path) -> emae.EncodecMAE:
    """The pretrained EncodecMAE at ``path``, read once (its metadata is on ``.metadata``)."""
    teacher = load_checkpoint(path)
    if teacher.family != "encodecmae":
        raise UserError(f"--teacher {path}: expected an EnCodecMAE checkpoint, got {teacher.family}")
    return teacher


def self_train(teacher: emae.EncodecMAE, teacher_path, st: SelfTrainConfig, optim: OptimizerConfig, data: DataConfig,
               datasets: tuple, run: engine.EngineConfig, out_dir, *, pretraining_targets=None) -> Path:
    """Self-train a student of ``teacher`` (:func:`load_teacher` of ``teacher_path``, which the
    metadata records) on ``datasets`` (train_set, val_set or None, metadata); returns the
    student's exported hear_codec checkpoint. v1 (``st.keep_codec_streams``) also predicts
    ``pretraining_targets``, the teacher's own (a target source, training/encodecmae/targets.py)."""
    out_dir = Path(out_dir)
    config = student_config(teacher.config, st)
    out_dir.mkdir(parents=True, exist_ok=True)
    centroids_path = out_dir / CENTROIDS
    if centroids_path.exists():  # a resumed run keeps its targets
        centroids = torch.load(centroids_path, map_location="cpu", weights_only=True)["centroids"]
        log.info("using the centroids in %s", centroids_path)
    else:
        t0 = time.time()
        device = torch.device("cuda" if engine.on_gpu(run) else "cpu")
        centroids, summary = fit_centroids(teacher, st, datasets[0], data, device, run.seed)
        atomic_torch_save({"centroids": centroids, "teacher": str(teacher_path), **summary,
                           "layer": "last encoder layer, x0 stream (before the final ResiDual combination)"},
                          centroids_path)
        log.info("k-means: inertia %.4f after %d iterations, %.0f s", summary["inertia"], summary["iterations"],
                 time.time() - t0)
    init = dict(teacher.state_dict())
    if st.keep_codec_streams:  # v1: keep the teacher's codec head rows; the k-means rows start fresh
        n = teacher.config.num_codec_streams * teacher.config.vocab_size
        fresh = emae.new_model(config).head
        for name in ("weight", "bias"):
            p = getattr(fresh, name).detach().clone()
            p[:n] = init[f"head.{name}"][:n]
            init[f"head.{name}"] = p
    targets = TeacherKMeans(teacher, centroids)
    if st.keep_codec_streams:
        if pretraining_targets is None:
            raise ValueError("v1 self-training predicts the teacher's own targets too: give pretraining_targets")
        targets = Stacked(pretraining_targets, targets)
    # The ec front end is the teacher's frozen EnCodec encoder (a copy: the student's is its own module).
    encoder = copy.deepcopy(teacher.front_end.encoder) if config.front_end == "ec" else None
    return train(config, optim, data, datasets, run, out_dir, targets=targets, codec_encoder=encoder, init_state=init,
                 metadata=dict(preset=teacher.metadata.get("preset"), trained_by="training.encodecmae.self_train",
                               teacher=str(teacher_path), variant="v1" if st.keep_codec_streams else "v2",
                               clusters=st.clusters))


# ---------------------------------------------------------------- command line

BUILTIN = recipes.SelfTrainBuiltin()


def add_self_train_args(parser: argparse.ArgumentParser) -> None:
    """The options of :class:`SelfTrainConfig`."""
    d = SelfTrainConfig()
    g = parser.add_argument_group("self-training")
    g.add_argument("--segments", type=cli.positive_int, default=d.segments,
                   help="random crops whose teacher features feed k-means (default: %(default)s)")
    g.add_argument("--kmeans-frames", type=cli.positive_int, default=d.kmeans_frames,
                   help="frames drawn uniformly from all valid frames of those crops for k-means (default: %(default)s)")
    g.add_argument("--clusters", type=cli.positive_int, default=d.clusters,
                   help="k of k-means = vocabulary of the k-means stream (default: %(default)s)")
    g.add_argument("--kmeans-iters", type=cli.positive_int, default=d.kmeans_iters,
                   help="at most this many Lloyd iterations per seeding (scikit-learn's max_iter) (default: %(default)s)")
    g.add_argument("--kmeans-inits", type=cli.positive_int, default=d.kmeans_inits,
                   help="k-means++ seedings; the lowest inertia wins (scikit-learn 1.3's n_init, the official setting) "
                        "(default: %(default)s)")
    g.add_argument("--keep-codec-streams", action="store_true",
                   help="v1 variant: also keep predicting the teacher's own targets, the 8 EnCodec streams (default: "
                        "v2, k-means stream only)")
    g.add_argument("--feature-batch", type=cli.positive_int, default=d.feature_batch,
                   help="crops per teacher forward pass while collecting features (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.encodecmae.self_train",
        description="EnCodecMAE self-training: k-means on a teacher's last-layer features, then continued "
                    "training on the k-means stream. Data options as in training.pretrain; the model's shape "
                    "comes from the teacher. Without --data: the built-in recipe (training/builtin/recipes.py).")
    parser.add_argument("--teacher", required=True,
                        help="the pretrained model: a hear_codec checkpoint (e.g. runs/pretrain/last.ckpt.hearcodec)")
    parser.add_argument("--out", default="runs/self_train",
                        help="output folder (as training.pretrain, plus kmeans_centroids.pt) (default: %(default)s)")
    g = parser.add_argument_group("optimiser and data")
    add_optimizer_args(g)
    add_data_args(g, crop_seconds=None, batch_size=128, crop_note="the teacher's chunk length")
    add_codec_args(g, use="the teacher's targets in v1", default=None, default_note="the teacher's")
    recipes.add_corpus_args(parser, clips=384)
    add_self_train_args(parser)
    engine.add_engine_args(parser, max_steps=150_000, val_every=10_000, ckpt_every=10_000, log_every=10)
    return parser


def configs(args: argparse.Namespace, teacher: emae.EncodecMAE) -> tuple:
    """(self-training, optimiser, data, engine) from the parsed options; the crop length defaults
    to the teacher's."""
    if args.crop_seconds is None:
        args.crop_seconds = teacher.config.chunk_seconds
    optim, run = OptimizerConfig.from_args(args), engine.EngineConfig.from_args(args)
    optim.check(run.max_steps)
    return SelfTrainConfig.from_args(args), optim, DataConfig.from_args(args), run


def teacher_targets(args: argparse.Namespace, teacher: emae.EncodecMAE):
    """What the teacher was pretrained to predict (v1 keeps predicting it): the codes of its EnCodec
    (``--codec``, default the teacher's), or the built-in run's stand-in, fitted again."""
    weights = args.codec or teacher.config.codec_weights
    if weights in CODEC_WEIGHTS:
        codec = CodecConfig(weights, args.codec_path).load()
        return EncodecCodes(codec, teacher.config.num_codec_streams, from_features=teacher.config.front_end == "ec")
    if args.data:  # "none" (or "mel-kmeans", written before): the stand-in, which only the built-in corpus has
        raise SystemExit(f"--teacher {args.teacher} predicted the built-in run's stand-in targets, which are fitted "
                         "on the built-in corpus; with --data, --keep-codec-streams needs an EnCodec teacher")
    return recipes.stand_in_targets(args.synthetic_clips, args.crop_seconds, args.seed)


def main(argv=None) -> Path:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = recipes.parse_args(build_parser(), argv, BUILTIN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.time()
    teacher = load_teacher(args.teacher)
    st, optim, data, run = configs(args, teacher)
    out_dir = Path(args.out)
    with engine.run_lock(out_dir):  # from the start: the k-means targets and data reports go into OUT too
        targets = teacher_targets(args, teacher) if st.keep_codec_streams else None
        if data.sources:
            datasets = file_datasets(data, out_dir)
        else:  # v1's codec streams are computed once for the built-in corpus's fixed clips
            codec = CodecConfig(args.codec or teacher.config.codec_weights)
            datasets = (recipes.corpus_datasets(args, data.crop_seconds, out_dir, codec) if targets is None else
                        recipes.corpus_datasets(args, data.crop_seconds, out_dir, codec, targets.encode, targets.name,
                                                teacher.config.num_codec_streams))
        path = self_train(teacher, args.teacher, st, optim, data, datasets, run, out_dir, pretraining_targets=targets)
    print(f"wrote {path} in {time.time() - t0:.0f} s")
    return path


if __name__ == "__main__":
    cli.run(main)
