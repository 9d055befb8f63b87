"""Train/test mismatch? Scene embeddings from the encoder seeing all frames vs a random half (as in training)."""
import sys, numpy as np, torch, hear_codec
from hear_codec.audio import resample
from training import transfer_check as TC, transfer_families as TF
torch.set_num_threads(1)
run = sys.argv[1]
for fam in sys.argv[2:]:
    nc = len(TF.FAMILIES[fam])
    clips, labels = TF.make_task(fam, 64 * nc, TC.TASK_SEED, 2.0, 48000)
    pool = np.arange(24 * nc); test = np.arange(len(pool), len(labels))
    for name in ("init", "last"):
        m = hear_codec.load_model(f"{run}/{name}.ckpt.hearcodec", sample_rate=48000).model.eval()
        embs = {"all frames": [], "half visible x4": []}
        with torch.no_grad():
            for s in range(0, len(clips), 64):
                w = resample(torch.from_numpy(clips[s:s+64]), 48000, 24000).float()
                embs["all frames"].append(m.embed_layers(w)[-1].mean(1).numpy())
                acc = 0
                for r in range(4):
                    g = torch.Generator().manual_seed(r)
                    t = m.num_frames(w.shape[1])
                    mask = torch.rand(w.shape[0], t, generator=g) < 0.5
                    out = m(w, mask=mask)
                    e = out["encoder_out"].masked_fill(out["visible_padding_mask"][..., None], 0).sum(1) / (~out["visible_padding_mask"]).sum(1, keepdim=True)
                    acc = acc + e
                embs["half visible x4"].append((acc / 4).numpy())
        row = []
        for k, v in embs.items():
            x = np.concatenate(v)
            row.append(f"{k} " + "/".join(f"{TC.stratified_probe_draws(x, labels, pool, test, b, 10).mean():.3f}" for b in (2, 4)))
        print(fam, name, " | ".join(row), flush=True)
