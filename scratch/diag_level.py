"""Is absolute level the trained model's nuisance? Probe at 4 labels with clips as made vs all at one level."""
import sys, numpy as np, torch
from training import transfer_check as TC, transfer_families as TF
torch.set_num_threads(2)
run = sys.argv[1]
for fam in sys.argv[2:]:
    nc = len(TF.FAMILIES[fam])
    clips, labels = TF.make_task(fam, 64 * nc, TC.TASK_SEED, 2.0, 48000)
    fixed = clips / np.abs(clips).max(1, keepdims=True) * 0.4
    pool = np.arange(24 * nc); test = np.arange(len(pool), len(labels))
    for name in ("init", "last"):
        row = []
        for tag, c in (("as made", clips), ("one level", fixed)):
            x = TC.scene_embeddings(f"{run}/{name}.ckpt.hearcodec", list(c.astype(np.float32)))
            for k in (2, 4):
                sc = TC.stratified_probe_draws(x, labels, pool, test, k, 10)
                row.append(f"{tag}@{k} {sc.mean():.3f}")
        print(run.split('/')[-1], fam, name, " | ".join(row), flush=True)
