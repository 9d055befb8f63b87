"""Does pretraining transfer? Linear probes on held-out sound families, trained model vs its init.

``python -m training.builtin.learning_check --run OUT --transfer`` runs this after the in-corpus
checks (``OUT/transfer_check.md``, ``.json``, ``.png``). ``python -m training.builtin.transfer_check
RUN [RUN ...]`` summarises the checks of several runs, e.g. seeds of one configuration
(:func:`summarise_runs`): one run's verdict depends on its seed.

For each family of :mod:`training.builtin.transfer_families` (kinds of sound the built-in corpus never
has), HEAR scene embeddings (``hear_codec.get_scene_embeddings``, 48 kHz input, mean over
frames) of ``pool + test`` clips per class are computed for three representations:

* ``trained``: the run's ``last.ckpt.hearcodec``;
* ``init``: the same model before its first step (``init.ckpt.hearcodec``) -- what pretraining
  must beat;
* ``log-mel``: the model's own input features without any model (256-bin Kaldi log-mel at
  24 kHz, mean over frames) -- what any representation should beat.

A logistic-regression probe (standardised features) is fitted on ``k`` labelled clips per class,
drawn ``draws`` times from the pool (the same draws for every representation), and scored on the
test clips. Learned representations show first with few labels, so the budgets start at 1-2
clips per class.

Where a family is lost, :func:`class_separation` says which distinctions: for each pair of
classes, how far apart their centroids are relative to the spread inside a class (pool clips, no
labels needed for the scaling). The table ends with the pairs the trained model holds closer
together than its init did (e.g. the pitch registers below 300 Hz).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import hear_codec
from hear_codec import cli
from hear_codec.files import write_json, write_text
from hear_codec.audio import resample
from hear_codec.codec import SAMPLE_RATE
from hear_codec.fbank import KaldiFbank
from training.builtin import transfer_families as TF

TASK_SEED = 515  # the held-out clips' seed (families are disjoint in kind; the seed only picks clips)
PROBE_SAMPLE_RATE = 48_000
REPRESENTATIONS = ("log-mel", "init", "trained")
CLOSER = 0.8  # a pair is "held closer" when trained separation < CLOSER x init separation ...
CONFUSABLE = 2.0  # ... and below this: pairs further apart are rarely confused (e.g. impacts / wind: 10-15)


def add_args(parser) -> None:
    """The transfer check's options (``python -m training.builtin.learning_check --transfer ...``)."""
    g = parser.add_argument_group("transfer check (--transfer)")
    g.add_argument("--transfer", action="store_true",
                   help="also run the transfer check: linear probes on held-out sound families the built-in corpus "
                        "never has (training/builtin/transfer_families.py), trained vs init vs log-mel")
    g.add_argument("--transfer-families", nargs="+", default=list(TF.FAMILIES), choices=list(TF.FAMILIES),
                   metavar="FAMILY", help=f"held-out families to probe (default: all: {' '.join(TF.FAMILIES)})")
    g.add_argument("--transfer-budgets", type=int, nargs="+", default=[2, 4, 8, 24],
                   help="labelled clips per class to fit the probes on; the largest may be the whole pool "
                        "(default: 2 4 8 24)")
    g.add_argument("--transfer-pool", type=int, default=24,
                   help="clips per class the labelled ones are drawn from (default: %(default)s)")
    g.add_argument("--transfer-test", type=int, default=40,
                   help="other clips per class the probes are scored on (default: %(default)s)")
    g.add_argument("--transfer-draws", type=int, default=10,
                   help="random labelled sets per budget below the pool (default: %(default)s)")


def check_args(parser, args) -> None:
    if args.transfer and (min(args.transfer_budgets) < 1 or max(args.transfer_budgets) > args.transfer_pool
                          or args.transfer_test < 1 or args.transfer_draws < 1):
        parser.error("--transfer-budgets must lie in 1..--transfer-pool, --transfer-test and --transfer-draws "
                     "must be at least 1")


def run_check(run: Path, checkpoints: dict, args, log=print) -> dict:
    """The transfer check of a run's ``checkpoints`` {"init": path, "trained": path}: prints the
    table and writes ``OUT/transfer_check.md`` (and ``.json``, ``.png``). Returns the results."""
    budgets = sorted(args.transfer_budgets)
    results = transfer_probes(checkpoints, args.transfer_families, args.transfer_pool, args.transfer_test,
                              budgets, args.transfer_draws, log=log)
    table = transfer_table(results, budgets, args.transfer_draws, args.transfer_pool, args.transfer_test)
    log(table)
    run = Path(run)
    write_text(run / "transfer_check.md", table + "\n")
    write_results(run, results)
    plot_transfer(run / "transfer_check.png", results, budgets)
    return results


def log_mel_embeddings(clips: np.ndarray, sample_rate: int = PROBE_SAMPLE_RATE, batch: int = 64) -> np.ndarray:
    """Mean-pooled 256-bin Kaldi log-mel at 24 kHz (the mel256 front end's input): [n, 256]."""
    fbank = KaldiFbank()
    out = []
    for start in range(0, len(clips), batch):
        wav = resample(torch.from_numpy(clips[start:start + batch]), sample_rate, SAMPLE_RATE)
        out.append(fbank(wav.float()).mean(dim=1).numpy())
    return np.concatenate(out)


def scene_embeddings(path, clips: list, batch: int = 32, layer: int = -1) -> np.ndarray:
    """HEAR scene embeddings [clips, dim] of the checkpoint at ``path`` for 48 kHz ``clips``."""
    model = hear_codec.load_model(path, sample_rate=48000, layer=layer)
    out = []
    for start in range(0, len(clips), batch):
        wav = torch.from_numpy(np.stack(clips[start:start + batch]))
        out.append(hear_codec.get_scene_embeddings(wav, model).numpy())
    return np.concatenate(out)


def linear_probe(train_x, train_y, test_x, test_y) -> float:
    """Test accuracy of a standardised logistic regression fitted on the training embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0))
    clf.fit(train_x, train_y)
    return float(clf.score(test_x, test_y))


def probe_draws(x: np.ndarray, y: np.ndarray, pool: np.ndarray, test: np.ndarray, n: int, draws: int,
                stratified: bool = True) -> np.ndarray:
    """Test accuracy, on the clips ``test`` (indices into ``x`` [clips, dim] and ``y`` [clips]), of
    linear probes fitted on ``draws`` random labelled sets drawn from the clips ``pool``: [draws],
    or [1] when a set is the whole pool. Draw ``d`` is seeded by ``d``, so every representation
    is probed on the same sets.

    ``stratified``: ``n`` clips of each class (the transfer check); else ``n`` clips in all,
    drawn again until every class is among them (the learning check's label budgets)."""
    classes = np.unique(y[pool])
    by_class = [pool[y[pool] == c] for c in classes]
    if stratified:
        smallest = min(len(members) for members in by_class)
        if n > smallest:
            raise ValueError(f"{n} labelled clips per class, but the pool holds {smallest} of some class")
        whole = n == smallest
    else:
        if n < len(classes):
            raise ValueError(f"{n} labelled clips cannot hold all {len(classes)} classes")
        whole = n >= len(pool)
    scores = []
    for d in range(1 if whole else draws):
        rng = np.random.default_rng(d)
        if stratified:
            idx = np.concatenate([rng.permutation(members)[:n] for members in by_class])
        else:
            for _ in range(10_000):
                idx = pool[rng.permutation(len(pool))[:n]]
                if len(set(y[idx])) == len(classes):
                    break
            else:
                raise ValueError(f"no draw of {n} of {len(pool)} clips held every class")
        scores.append(linear_probe(x[idx], y[idx], x[test], y[test]))
    return np.array(scores)


def transfer_probes(checkpoints: dict, families, pool_per_class: int, test_per_class: int, budgets,
                    draws: int, layer: int = -1, seconds: float = 2.0, log=print) -> dict:
    """{family: {representation: {budget: scores [draws]}}} for ``checkpoints`` {name: path}
    (plus the log-mel baseline), each family's chance level under ``"chance"`` and its
    :func:`class_separation` over the pool clips under ``"separation"`` ({representation: [c, c]})."""
    results = {}
    for family in families:
        n_classes = len(TF.FAMILIES[family])
        per_class = pool_per_class + test_per_class
        clips, labels = TF.make_task(family, per_class * n_classes, TASK_SEED, seconds, PROBE_SAMPLE_RATE)
        # make_task cycles the labels, so the first pool_per_class * n_classes clips are the pool.
        pool = np.arange(pool_per_class * n_classes)
        test = np.arange(len(pool), len(labels))
        embeddings = {"log-mel": log_mel_embeddings(clips)}
        for name, path in checkpoints.items():
            embeddings[name] = scene_embeddings(path, list(clips), layer=layer)
        results[family] = {name: {k: probe_draws(x, labels, pool, test, k, draws) for k in budgets}
                           for name, x in embeddings.items()}
        results[family]["chance"] = 1.0 / n_classes
        results[family]["separation"] = {name: class_separation(x[pool], labels[pool]) for name, x in embeddings.items()}
        log(f"transfer: {family} done")
    return results


def class_separation(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """How far apart the classes are: [classes, classes], entry (i, j) the squared distance between
    the centroids of classes i and j over the mean squared distance of a clip to its own class's
    centroid, after standardising each feature over all of ``x``.

    x: [clips, dim] embeddings; labels: [clips] ints 0..classes-1. A nearest-centroid reading of
    a linear probe with few labels: pairs with small values are the ones it confuses."""
    z = (x - x.mean(0)) / (x.std(0) + 1e-8)
    classes = np.unique(labels)
    centroids = np.stack([z[labels == c].mean(0) for c in classes])
    within = np.mean([((z[labels == c] - centroids[i]) ** 2).sum(1).mean() for i, c in enumerate(classes)])
    return ((centroids[:, None] - centroids[None]) ** 2).sum(-1) / within


def closer_pairs(results: dict) -> list:
    """The confusable class pairs the trained model holds closer than its init (trained separation
    below ``CLOSER`` x init and below ``CONFUSABLE``): [(family, class a, class b, init separation,
    trained separation)], from each family's ``"separation"`` (:func:`transfer_probes`)."""
    out = []
    for family, reps in results.items():
        if "separation" not in reps:
            continue
        init, trained = (np.asarray(reps["separation"][n]) for n in ("init", "trained"))
        names = TF.FAMILIES[family]
        for i in range(len(init)):
            for j in range(i + 1, len(init)):
                if trained[i, j] < CLOSER * init[i, j] and trained[i, j] < CONFUSABLE:
                    out.append((family, names[i], names[j], float(init[i, j]), float(trained[i, j])))
    return out


def verdict(init: np.ndarray, trained: np.ndarray) -> str:
    """Whether the trained model beats its init by more than the draws' spread (the larger std)."""
    gap = trained.mean() - init.mean()
    spread = max(init.std(), trained.std())
    if len(init) < 2:
        return "better" if gap > 0 else "not better"
    if gap > spread:
        return "better (> std)"
    if gap > 0:
        return "better, within std"
    return "**not better**"


def transfer_table(results: dict, budgets, draws: int, pool_per_class: int, test_per_class: int) -> str:
    fmt = lambda v: f"{v.mean():.3f} ± {v.std():.3f}" if len(v) > 1 else f"{v.mean():.3f}"
    lines = [
        f"Transfer: linear probes on scene embeddings of held-out sound families (training/builtin/transfer_families.py, "
        f"never in the training corpus), fitted on k labelled clips per class (mean ± std over {draws} draws; "
        f"k = {pool_per_class} is the whole pool, one fit), scored on {test_per_class} other clips per class:",
        "",
        "| family (classes, chance) | labels per class | log-mel | model at init | trained | trained - init | |",
        "|---|---|---|---|---|---|---|",
    ]
    for family, reps in results.items():
        name = f"{family} ({len(TF.FAMILIES[family])}, {reps['chance']:.2f})"
        for k in budgets:
            a, b, m = reps["init"][k], reps["trained"][k], reps["log-mel"][k]
            lines.append(f"| {name} | {k} | {fmt(m)} | {fmt(a)} | {fmt(b)} | {b.mean() - a.mean():+.3f} | "
                         f"{verdict(a, b)} |")
    pairs = closer_pairs(results)
    lines += ["", f"Class pairs the trained model holds closer together than its init (separation: squared "
              f"distance of the class centroids over the within-class spread, pool clips; listed when "
              f"trained < {CLOSER} x init and < {CONFUSABLE}): " + ("none." if not pairs else "")]
    lines += [f"- {family}: {a} / {b}: {s0:.2f} at init, {s1:.2f} trained" for family, a, b, s0, s1 in pairs]
    return "\n".join(lines)


def plot_transfer(path, results: dict, budgets) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    families = list(results)
    cols = min(3, len(families))
    rows = -(-len(families) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    styles = {"log-mel": ("^:", "log-mel (no model)"), "init": ("o--", "model at init"), "trained": ("s-", "trained")}
    for ax, family in zip(axes.flat, families):
        for name, (style, label) in styles.items():
            mean = [results[family][name][k].mean() for k in budgets]
            std = [results[family][name][k].std() for k in budgets]
            ax.errorbar(budgets, mean, yerr=std, fmt=style, capsize=3, label=label)
        ax.axhline(results[family]["chance"], color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xticks(budgets, [str(k) for k in budgets])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_title(family)
        ax.set_xlabel("labelled clips per class")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(families):]:
        ax.axis("off")
    axes[0][0].set_ylabel("test accuracy")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(run, results: dict) -> None:
    """``results`` (:func:`transfer_probes`) as ``run/transfer_check.json``; :func:`read_results` reads it."""
    def encode(name, value):
        if name == "chance":
            return value
        if name == "separation":
            return {rep: np.asarray(m).tolist() for rep, m in value.items()}
        return {str(k): np.asarray(v).tolist() for k, v in value.items()}

    write_json(Path(run) / "transfer_check.json",
               {family: {name: encode(name, value) for name, value in reps.items()} for family, reps in results.items()})


def read_results(run) -> dict:
    """A run's transfer check as written by :func:`run_check`: {family: {representation: {budget:
    scores [draws]}, "chance": float, "separation": {representation: [c, c]}}} (checks written
    before the separation existed have none)."""
    path = Path(run) / "transfer_check.json"
    if not Path(run).is_dir():
        raise FileNotFoundError(f"run folder not found: {run}")
    if not path.is_file():
        raise FileNotFoundError(f"{run} has no transfer_check.json: run "
                                f"python -m training.builtin.learning_check --run {run} --transfer first")
    try:
        raw = json.loads(path.read_text())

        def decode(name, value):
            if name == "chance":
                return value
            if name == "separation":
                return {rep: np.asarray(m, dtype=float) for rep, m in value.items()}
            return {int(k): np.asarray(v, dtype=float) for k, v in value.items()}

        results = {family: {name: decode(name, value) for name, value in reps.items()} for family, reps in raw.items()}
        for family, reps in results.items():
            if not {"init", "trained"} <= set(reps):
                raise ValueError(f"{family} has no init or trained scores")
            if any(v.size == 0 or not np.isfinite(v).all() for name in ("init", "trained") for v in reps[name].values()):
                raise ValueError(f"{family} has an empty or non-finite score list")
    except (ValueError, AttributeError, TypeError) as e:  # JSONDecodeError is a ValueError
        raise cli.UserError(f"{path} is damaged or not a transfer check's results ({e})") from None
    return results


def summarise_runs(results: dict) -> str:
    """A markdown table over several runs' transfer checks ({run name: :func:`read_results`}): per
    family and budget, each run's trained - init (``*`` where its verdict is "better (> std)"),
    the mean +- std of the gaps over the runs, and how many runs beat their init beyond the draws'
    spread. Families and budgets are those every run has."""
    names = list(results)
    families = [f for f in next(iter(results.values())) if all(f in r for r in results.values())]
    if not families:
        raise cli.UserError("the runs' transfer checks have no held-out family in common")
    lines = [f"Transfer checks of {len(names)} runs ({', '.join(names)}): trained - init per run "
             "(* = better than init by more than the draws' std), mean ± std over the runs:", "",
             "| family | labels per class | trained - init per run | mean ± std | runs better (> std) |",
             "|---|---|---|---|---|"]
    for family in families:
        budgets = sorted(set.intersection(*(set(r[family]["init"]) for r in results.values())))
        for k in budgets:
            pairs = [(r[family]["init"][k], r[family]["trained"][k]) for r in results.values()]
            gaps = np.array([b.mean() - a.mean() for a, b in pairs])
            beyond = [verdict(a, b) == "better (> std)" for a, b in pairs]
            marks = ", ".join(f"{g:+.3f}{'*' if ok else ''}" for g, ok in zip(gaps, beyond))
            # the whole pool is one fit: no draws, so no spread to beat
            count = f"{sum(beyond)} of {len(gaps)}" if all(len(a) > 1 for a, _ in pairs) else "n/a (one fit)"
            spread = f"{gaps.mean():+.3f} ± {gaps.std():.3f}" if len(gaps) > 1 else f"{gaps.mean():+.3f}"
            lines.append(f"| {family} | {k} | {marks} | {spread} | {count} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m training.builtin.transfer_check",
        description="Summarise the transfer checks of several runs (e.g. seeds of the built-in default, each "
                    "checked with python -m training.builtin.learning_check --run RUN --transfer): each run's "
                    "trained - init per held-out family and label budget, the mean and std over the runs.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders holding transfer_check.json")
    args = p.parse_args(argv)
    print(summarise_runs({str(run): read_results(run) for run in args.runs}))


if __name__ == "__main__":
    cli.run(main)
