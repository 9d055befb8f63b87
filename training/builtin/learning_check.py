"""Is learning real? Two checks on a run of the built-in default (``python -m training.pretrain``).

    python -m training.builtin.learning_check --run runs/pretrain

1. Masked-frame accuracy per codebook on the run's held-out validation clips (never trained on),
   for the trained model, the same model at initialisation (``OUT/init.ckpt.hearcodec``, saved
   before the first step) and the majority-code baseline (each codebook's most frequent code in
   the training targets). Several mask draws per clip; exactly the masking used in training.
2. Linear probes on HEAR scene embeddings (``hear_codec.get_scene_embeddings``, 48 kHz input) for a
   held-out synthetic classification task: the corpus generator with a different seed (clips
   never seen in training), its six sound classes as labels, logistic regression fitted on
   ``n`` labelled clips (several random draws of them) and scored on 240 other clips, for
   ``n`` from 2 per class up to 360 -- trained model vs initialisation. Learned representations
   show up first as label efficiency: with a few labels per class the trained model's
   embeddings are far ahead; with hundreds, a random projection of the mel spectrogram (the
   model at initialisation) catches up on this easy task.

With ``--transfer``, 3. the transfer check (training/builtin/transfer_check.py): linear probes on held-out
sound families that the built-in corpus never has (training/builtin/transfer_families.py), trained model vs
init vs plain log-mel, at a few labels per class, mean +- std over draws.

Prints markdown tables and writes them to ``OUT/learning_check.md`` (and ``.json``, and the probe
curve as ``OUT/learning_check.png``; the transfer check's as ``OUT/transfer_check.{md,json,png}``).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from hear_codec import cli
from hear_codec.files import write_json, write_text
from hear_codec.checkpoint import load_checkpoint
from training.builtin import corpus as C
from training.builtin import transfer_check
from training.builtin.transfer_check import probe_draws, scene_embeddings
from training.data.sampler import mix_seed
from training.encodecmae.masking import MaskingCollate
from training.encodecmae.module import INIT_EXPORT_NAME
from training.engine import EXPORT

PROBE_SEED = 20231  # a corpus seed that no training run uses by default


@torch.no_grad()
def masked_accuracy(model, dataset: C.SyntheticCorpus, codes: torch.Tensor, draws: int, batch: int = 16) -> np.ndarray:
    """Per-codebook accuracy over masked valid frames: [n_codebooks]."""
    cfg = model.config
    collate = MaskingCollate(cfg.front_end, dataset.crop_samples, cfg.mask_prop, cfg.mask_gap)
    correct = torch.zeros(cfg.num_codec_streams)
    total = 0
    for draw in range(draws):
        for start in range(0, len(dataset), batch):
            idx = range(start, min(len(dataset), start + batch))
            b = collate([dict(dataset[i], seed=mix_seed(i, draw, 11)) for i in idx])
            t = b["mask"].shape[1]
            feats = model.input_features(b["wav"])[:, :t]
            logits = model(None, b["mask"], b["padding_mask"], features=feats)["logits"]
            pred = logits[..., : cfg.num_codec_streams, :].argmax(-1).transpose(1, 2)  # [B, S, T]
            target = codes[list(idx)].long()[..., :t]
            m = b["mask"] & ~b["padding_mask"]
            correct += ((pred == target) & m[:, None, :]).sum(dim=(0, 2)).float()
            total += int(m.sum())
    return (correct / max(total, 1)).numpy()


def majority_accuracy(train_codes: torch.Tensor, dataset: C.SyntheticCorpus, codes: torch.Tensor,
                      front_end: str) -> np.ndarray:
    """Accuracy of always predicting each codebook's most frequent training code, on valid frames."""
    majority = torch.mode(train_codes.long().transpose(0, 1).reshape(train_codes.shape[1], -1), dim=1).values
    collate = MaskingCollate(front_end, dataset.crop_samples)
    b = collate([dict(dataset[i], seed=i) for i in range(len(dataset))])
    t = b["mask"].shape[1]
    valid = ~b["padding_mask"]
    hits = (codes.long()[..., :t] == majority[None, :, None]) & valid[:, None, :]
    return (hits.sum(dim=(0, 2)).float() / valid.sum()).numpy()


def cached_codes(run: Path, split: str, dataset: C.SyntheticCorpus, codec_weights: str, n_q: int) -> torch.Tensor:
    """The codec targets the run cached for ``split`` [N, n_q, T], if they are of this corpus."""
    path = run / "cache" / f"codes-{split}.pt"
    if not path.is_file():
        raise SystemExit(f"{path} not found: the run's cached codec targets are gone; "
                         f"`python -m training.pretrain --out {run} --resume` rebuilds them")
    stored = torch.load(path, map_location="cpu", weights_only=True)
    if stored.get("key") != C.codes_cache_key(dataset, codec_weights, n_q):
        raise SystemExit(f"{path} holds codes of another corpus (key {stored.get('key')!r}): the run was made "
                         f"with another version of the built-in corpus; train it again to check it")
    return stored["codes"]


def plot_probe(path: Path, sizes: list, probe: dict, layer: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, style, label in (("init", "o--", "model at init"), ("trained", "s-", "trained")):
        mean = [np.mean(probe[f"{name}@{layer}"][n]) for n in sizes]
        std = [np.std(probe[f"{name}@{layer}"][n]) for n in sizes]
        ax.errorbar(sizes, mean, yerr=std, fmt=style, capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("labelled training clips")
    ax.set_ylabel("test accuracy (6 classes)")
    ax.set_title(f"Linear probe on scene embeddings (layer {layer})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m training.builtin.learning_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="runs/pretrain",
                   help="output folder of a built-in-corpus pretraining run (default: %(default)s)")
    p.add_argument("--draws", type=int, default=4, help="mask draws per validation clip (default: %(default)s)")
    p.add_argument("--probe-sizes", type=int, nargs="+", default=[12, 30, 60, 120, 360],
                   help="numbers of labelled clips to fit probes on; the largest is the pool the others are "
                        "drawn from (default: 12 30 60 120 360)")
    p.add_argument("--probe-draws", type=int, default=10,
                   help="random labelled sets per size below the pool (default: %(default)s)")
    p.add_argument("--probe-test", type=int, default=240, help="clips to score the probes on (default: %(default)s)")
    p.add_argument("--layers", type=int, nargs="+", default=[-1],
                   help="encoder layers to probe (hear_codec's layer option; -1 = the HEAR default, the last) "
                        "(default: -1)")
    transfer_check.add_args(p)
    args = p.parse_args(argv)
    transfer_check.check_args(p, args)
    if min(args.probe_sizes) < len(C.SYNTH_CLASSES) or args.probe_test < 1 or args.probe_draws < 1:
        p.error(f"--probe-sizes must each be at least {len(C.SYNTH_CLASSES)} (one clip per class), "
                "--probe-test and --probe-draws at least 1")
    run = Path(args.run)
    t0 = time.time()
    trained_path, init_path = run / EXPORT, run / INIT_EXPORT_NAME
    for path in (trained_path, init_path):
        if not path.is_file():
            raise SystemExit(f"{path} not found: --run must be the OUT folder of `python -m training.pretrain`")
    trained = load_checkpoint(trained_path)
    meta = trained.metadata
    if meta.get("data") != "synthetic":
        raise SystemExit(f"{run} was not trained on the built-in corpus; this check needs its held-out clips")
    init = load_checkpoint(init_path)
    cfg = trained.config
    seconds, seed = cfg.chunk_seconds, int(meta.get("seed", 0))
    sounds = meta.get("corpus_sounds", "grid")  # runs from before the spectral vocabulary trained on the grid one
    train = C.SyntheticCorpus(meta["train_clips"], seconds, seed=seed, offset=0, sounds=sounds)
    val = C.SyntheticCorpus(meta["val_clips"], seconds, seed=seed, offset=meta["train_clips"], sounds=sounds)
    targets = meta.get("targets", meta.get("codec"))  # the stand-in's name carries its centroids' hash
    train_codes = cached_codes(run, "train", train, targets, cfg.num_codec_streams)
    val_codes = cached_codes(run, "val", val, targets, cfg.num_codec_streams)

    acc = {
        "majority": majority_accuracy(train_codes, val, val_codes, cfg.front_end),
        "init": masked_accuracy(init, val, val_codes, args.draws),
        "trained": masked_accuracy(trained, val, val_codes, args.draws),
    }

    sizes = sorted(args.probe_sizes)
    pool = sizes[-1]
    n = pool + args.probe_test
    clips, labels = zip(*[C.corpus_clip(i, seconds, PROBE_SEED, sr=48000, sounds=sounds) for i in range(n)])
    clips = [np.pad(c, (0, int(seconds * 48000) - len(c))) for c in clips]
    y = np.array(labels)
    probe = {}
    for layer in args.layers:
        for name, path in (("init", init_path), ("trained", trained_path)):
            x = scene_embeddings(path, clips, layer=layer)
            probe[f"{name}@{layer}"] = {size: probe_draws(x, y, np.arange(pool), np.arange(pool, n), size,
                                                          args.probe_draws, stratified=False) for size in sizes}
    majority_class = float(np.mean(y[pool:] == np.bincount(y[:pool]).argmax()))

    lines = [
        f"Run: `{run}` (step {meta.get('step')}, preset {meta.get('preset')}, front end {cfg.front_end}, "
        f"targets {targets}); {len(val)} held-out clips x {args.draws} mask draws.",
        "",
        "| codebook | majority code | model at init | trained |",
        "|---|---|---|---|",
    ]
    for q in range(len(acc["trained"])):
        lines.append(f"| q{q} | {acc['majority'][q]:.3f} | {acc['init'][q]:.3f} | {acc['trained'][q]:.3f} |")
    lines.append(f"| mean | {acc['majority'].mean():.3f} | {acc['init'].mean():.3f} | {acc['trained'].mean():.3f} |")
    fmt = lambda v: f"{v.mean():.3f} ± {v.std():.3f}" if len(v) > 1 else f"{v.mean():.3f}"
    lines += [
        "",
        f"Linear probes on scene embeddings, {len(set(y))} synthetic sound classes "
        f"({', '.join(C.SYNTH_CLASSES)}), fitted on n labelled clips (mean ± std over {args.probe_draws} random "
        f"draws of them from a pool of {pool}), scored on {args.probe_test} other clips; corpus seed {PROBE_SEED}, "
        f"never trained on; majority class {majority_class:.3f}:",
        "",
        "| layer | labelled clips | model at init | trained | trained - init |",
        "|---|---|---|---|---|",
    ]
    for layer in args.layers:
        label = f"{layer} (HEAR default)" if layer == -1 else str(layer)
        for size in sizes:
            a, b = probe[f"init@{layer}"][size], probe[f"trained@{layer}"][size]
            lines.append(f"| {label} | {size} | {fmt(a)} | {fmt(b)} | {b.mean() - a.mean():+.3f} |")
    table = "\n".join(lines)
    print(table)
    plot_probe(run / "learning_check.png", sizes, probe, args.layers[-1])
    write_text(run / "learning_check.md", table + "\n")
    write_json(run / "learning_check.json",
                     {"masked_accuracy": {k: v.tolist() for k, v in acc.items()},
                      "probe": {k: {str(n): v.tolist() for n, v in d.items()} for k, d in probe.items()},
                      "probe_majority_class": majority_class, "step": meta.get("step")})
    if args.transfer:
        print()
        transfer_check.run_check(run, {"init": init_path, "trained": trained_path}, args)
    print(f"\n({time.time() - t0:.0f} s)")
    return acc, probe


if __name__ == "__main__":
    cli.run(main)
