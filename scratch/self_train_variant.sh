cd /work/main
T=/tmp/i15/runs/demo
.venv/bin/python -m training.encodecmae.self_train --teacher $T/last.ckpt.hearcodec --out /tmp/s6/run-st --clusters 256 --max-steps 300 --no-progress-bar
.venv/bin/python - <<'PY'
import torch; torch.set_num_threads(1)
from training import transfer_check as TC, transfer_families as TF
res = TC.transfer_probes({"init": "/tmp/i15/runs/demo/init.ckpt.hearcodec", "trained": "/tmp/s6/run-st/last.ckpt.hearcodec"}, list(TF.FAMILIES), 24, 40, [2, 4, 8, 24], 10, log=lambda *a: None)
print(TC.transfer_table(res, [2, 4, 8, 24], 10, 24, 40))
print("SUMMARY st", " ".join(f"{f}:{r['trained'][2].mean()-r['init'][2].mean():+.3f}/{r['trained'][4].mean()-r['init'][4].mean():+.3f}" for f, r in res.items()))
PY
