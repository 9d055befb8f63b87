import sys, numpy as np, torch
from training import transfer_check as TC, transfer_families as TF
from sklearn.linear_model import LogisticRegression
torch.set_num_threads(1)
run, fam = sys.argv[1], sys.argv[2]
nc = len(TF.FAMILIES[fam])
clips, labels = TF.make_task(fam, 64 * nc, TC.TASK_SEED, 2.0, 48000)
pool = np.arange(24 * nc); test = np.arange(len(pool), len(labels))
for name in ("init", "last"):
    x = TC.scene_embeddings(f"{run}/{name}.ckpt.hearcodec", list(clips))
    z = (x - x[pool].mean(0)) / (x[pool].std(0) + 1e-6)
    cent = np.stack([z[pool][labels[pool] == c].mean(0) for c in range(nc)])
    within = np.mean([((z[pool][labels[pool] == c] - cent[c]) ** 2).sum(1).mean() for c in range(nc)])
    d = ((cent[:, None] - cent[None]) ** 2).sum(2) / within
    print(name, "pairwise centroid dist^2 / within:\n", np.array2string(d, precision=2))
    # probes: standardised on the few labelled clips (the check) vs on the unlabelled pool
    for k in (2, 4):
        a, b = [], []
        for dd in range(10):
            rng = np.random.default_rng(dd)
            idx = np.concatenate([rng.permutation(pool[labels[pool] == c])[:k] for c in range(nc)])
            a.append(TC.linear_probe(x[idx], labels[idx], x[test], labels[test]))
            clf = LogisticRegression(max_iter=3000).fit(z[idx], labels[idx]); b.append(clf.score(z[test], labels[test]))
        print(f"  @{k}: few-label standardised {np.mean(a):.3f}  pool-standardised {np.mean(b):.3f}")
