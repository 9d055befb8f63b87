"""EnCodecMAE self-training: ``python -m training.self_train --teacher CKPT [options]``.

1. Features: the teacher's last encoder layer *before* the final ResiDual combination (the x0
   stream of the last layer, ``encoder(..., return_layers=True)``) on ``--segments`` random crops
   (default 10 000) of the training data, drawn as training draws them (length-proportional);
   ``--kmeans-frames`` frames (default 10 000) are drawn uniformly from all their valid frames,
   padding excluded, as the official code does.
2. k-means with k = ``--clusters`` (default 1024): scikit-learn's KMeans algorithm (the official
   one) in torch, fp32 (training/kmeans.py; on the GPU when there is one); centroids saved to
   ``OUT/kmeans_centroids.pt``.
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
import logging
import sys
import time
from pathlib import Path

import torch

from hear_codec.checkpoint import atomic_torch_save, load_checkpoint, read_checkpoint
from training import encodecmae_module as M
from training import engine
from training.kmeans import kmeans

log = logging.getLogger(__name__)

SELF_TRAIN_DEFAULTS_DATA = dict(max_steps=150_000)
SELF_TRAIN_DEFAULTS_SYNTHETIC = dict(max_steps=100)


def add_self_train_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("self-training")
    g.add_argument("--segments", type=int, default=10_000,
                   help="random crops whose teacher features feed k-means (default: %(default)s)")
    g.add_argument("--kmeans-frames", type=int, default=10_000,
                   help="frames drawn from those crops for k-means (default: %(default)s)")
    g.add_argument("--clusters", type=int, default=1024,
                   help="k of k-means = vocabulary of the k-means stream (default: %(default)s)")
    g.add_argument("--kmeans-iters", type=int, default=300,
                   help="at most this many Lloyd iterations per seeding (scikit-learn's max_iter) (default: %(default)s)")
    g.add_argument("--kmeans-inits", type=int, default=10,
                   help="k-means++ seedings; the lowest inertia wins (scikit-learn 1.3's n_init, the official setting) "
                        "(default: %(default)s)")
    g.add_argument("--keep-codec-streams", action="store_true",
                   help="v1 variant: also keep predicting the 8 EnCodec streams (default: v2, k-means stream only)")
    g.add_argument("--feature-batch", type=int, default=32,
                   help="crops per teacher forward pass while collecting features (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.self_train",
        description="EnCodecMAE self-training: k-means on a teacher's last-layer features, then continued "
                    "training on the k-means stream. Data options as in training.pretrain; the model's shape "
                    "comes from the teacher.")
    parser.add_argument("--teacher", required=True,
                        help="the pretrained model: a hear_codec checkpoint (e.g. runs/pretrain/last.ckpt.hearcodec)")
    parser.add_argument("--out", default="runs/self_train",
                        help="output folder (as training.pretrain, plus kmeans_centroids.pt) (default: %(default)s)")
    M.add_args(parser, model_shape=False)
    add_self_train_args(parser)
    engine.add_engine_args(parser, **M.ENGINE_DEFAULTS, notes=dict(
        M.ENGINE_DEFAULT_NOTES, max_steps="100 built-in, 150000 with --data"))
    return parser


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
        hidden = M.last_layer_x0(teacher, features, padding).float().cpu()
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


def run(args, teacher_path: str | Path | None = None) -> Path:
    teacher_path = Path(teacher_path or args.teacher)
    payload = read_checkpoint(teacher_path)
    if payload["family"] != "encodecmae":
        raise SystemExit(f"--teacher {teacher_path}: expected an EnCodecMAE checkpoint, got {payload['family']}")
    teacher = load_checkpoint(teacher_path)
    tcfg = teacher.config
    if args.codec is None:  # the codec the teacher was trained with
        args.codec = tcfg.codec_weights
    overrides = SELF_TRAIN_DEFAULTS_DATA if args.data else SELF_TRAIN_DEFAULTS_SYNTHETIC
    if args.crop_seconds is None:
        args.crop_seconds = tcfg.chunk_seconds
    M.resolve_defaults(args, **overrides)
    args.preset, args.front_end = payload["metadata"].get("preset"), tcfg.front_end
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if engine.on_gpu(args) else "cpu")

    centroids_path = out_dir / "kmeans_centroids.pt"
    if centroids_path.exists():  # a resumed run keeps its targets
        stored = torch.load(centroids_path, map_location="cpu", weights_only=True)
        centroids = stored["centroids"]
        log.info("using the centroids in %s", centroids_path)
    else:
        t0 = time.time()
        cfg_codes = M.emae.EncodecMAEConfig.from_dict({**tcfg.to_dict(), "num_codec_streams": 0,
                                                       "num_kmeans_streams": 1})
        feature_args = argparse.Namespace(**{**vars(args), "batch_size": args.feature_batch, "num_workers": args.num_workers})
        loader, _, _, _ = M.build_data(feature_args, out_dir, cfg_codes, None)
        segments = args.segments
        if not args.data:  # fixed clips, no random crops: more segments than clips would repeat them
            segments = min(segments, len(loader.dataset))
        teacher.to(device)
        x = collect_features(teacher, loader, segments, args.kmeans_frames, device)
        teacher.cpu()
        log.info("k-means on %d frames of dim %d (k=%d)", x.shape[0], x.shape[1], args.clusters)
        result = kmeans(x.to(device), args.clusters, iters=args.kmeans_iters, n_init=args.kmeans_inits, seed=args.seed)
        centroids = result["centroids"].cpu()
        atomic_torch_save({"centroids": centroids, "teacher": str(teacher_path), "frames": int(x.shape[0]),
                           "inertia": result["inertia"], "iterations": result["iterations"],
                           "layer": "last encoder layer, x0 stream (before the final ResiDual combination)"},
                          centroids_path)
        log.info("k-means: inertia %.4f after %d iterations, %.0f s", result["inertia"], result["iterations"],
                 time.time() - t0)

    student_cfg = M.emae.EncodecMAEConfig.from_dict({
        **tcfg.to_dict(),
        "num_codec_streams": tcfg.num_codec_streams if args.keep_codec_streams else 0,
        "num_kmeans_streams": 1,
        # v2 predicts the k-means stream alone: its vocabulary is k. v1 shares one head size.
        "vocab_size": tcfg.vocab_size if args.keep_codec_streams else args.clusters,
    })
    if args.clusters != student_cfg.vocab_size:
        raise SystemExit(f"--keep-codec-streams: --clusters {args.clusters} must equal the codec vocabulary "
                         f"({student_cfg.vocab_size}), one head size serves every stream")
    init = {k: v for k, v in teacher.state_dict().items()}
    if args.keep_codec_streams:  # v1: keep the teacher's codec head rows; the k-means rows start fresh
        n = tcfg.num_codec_streams * tcfg.vocab_size
        fresh = M.emae.EncodecMAE(student_cfg).head
        for name in ("weight", "bias"):
            p = getattr(fresh, name).detach().clone()
            p[:n] = init[f"head.{name}"][:n]
            init[f"head.{name}"] = p
    return M.train(args, config=student_cfg, init_state=init,
                   module_kwargs=dict(teacher=teacher, centroids=centroids),
                   metadata=dict(trained_by="training.self_train", teacher=str(teacher_path),
                                 variant="v1" if args.keep_codec_streams else "v2", clusters=args.clusters))


def main(argv=None):
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.time()
    path = run(args)
    print(f"wrote {path} in {time.time() - t0:.0f} s")
    return path


if __name__ == "__main__":
    main()
