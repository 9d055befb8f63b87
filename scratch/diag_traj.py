"""Transfer gaps (trained - init at 2 / 4 labels) of a run's periodic checkpoints."""
import sys, glob, numpy as np, torch
from pathlib import Path
from hear_codec.checkpoint import load_checkpoint, save_checkpoint
from training import transfer_check as TC, transfer_families as TF
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
run = Path(sys.argv[1]); steps = [int(s) for s in sys.argv[3].split(",")] if len(sys.argv) > 3 else None
out = run / "exports"; out.mkdir(exist_ok=True)
ckpts = {"init": run / "init.ckpt.hearcodec"}
for f in sorted(glob.glob(str(run / "checkpoints/step-*.ckpt"))):
    step = int(Path(f).stem.split("-")[1])
    if steps and step not in steps: continue
    dst = out / f"step-{step}.ckpt.hearcodec"
    if not dst.exists():
        model = load_checkpoint(ckpts["init"])
        sd = torch.load(f, map_location="cpu", weights_only=False)["state_dict"]
        model.load_state_dict({k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")})
        save_checkpoint(dst, model)
    ckpts[f"s{step}"] = dst
res = TC.transfer_probes(ckpts, list(TF.FAMILIES), 24, 40, [2, 4], 10, log=lambda *a: None)
print("family | " + " | ".join(k for k in ckpts if k != "init"))
for fam, r in res.items():
    cells = []
    for k in ckpts:
        if k == "init": continue
        c = []
        for b in (2, 4):
            g = r[k][b].mean() - r["init"][b].mean(); s = max(r[k][b].std(), r["init"][b].std())
            c.append(f"{g:+.3f}{'*' if g > s else ''}")
        cells.append("/".join(c))
    print(fam, "|", " | ".join(cells), flush=True)
