"""Scratch experiment runner (issue 15, sessions 6 and 7; removed in the next commit, kept in history):

    python scratch/transfer_variants.py VARIANT[+VARIANT...] OUT [training.pretrain options, e.g. --seed 1]

runs the built-in default's training.pretrain with the variant's change patched in, then the transfer
check on all six held-out families (OUT/summary.json). Variants: default, wide, notes, rq, lowbands,
lognoise, mix, quietbg (docs/pretraining.md, "Seeds, and a third pass"); lowrich, k64, texture (session 7,
"A fourth pass": "low" there is lowrich+notes+lognoise). THREADS=1 by default.
"""
import sys, time, json, argparse
import numpy as np, torch
torch.set_num_threads(int(__import__("os").environ.get("THREADS", "1")))
variant, out, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
from training import data as D, spectral_targets as ST
from hear_codec import encodecmae as E

for v in variant.split("+"):
    if v == "default":
        pass
    elif v == "wide":  # dim 128
        E.PRESETS["tiny"] = dict(dim=128, num_layers=2, num_heads=4, ff_dim=512, decoder_layers=1, decoder_heads=4, decoder_ff_dim=512)
    elif v == "notes":  # dense note pitches outside the held-out registers (+-1.5 st, 1 st margin)
        from training.transfer_families import REGISTER_CENTRES
        cands = 60 * 2 ** (np.arange(0, 60, 0.5) / 12)
        ok = [f for f in cands if all(abs(12 * np.log2(f / c)) > 2.5 for c in REGISTER_CENTRES) and f < 1700]
        D.NOTE_HZ = tuple(float(f) for f in ok)
        print("NOTE_HZ", len(ok), [round(f) for f in ok])
    elif v == "lowrich":  # more sound below 350 Hz: low tones and AM/FM carriers outside the registers
        from training.transfer_families import REGISTER_CENTRES
        far = lambda f: all(abs(12 * np.log2(f / c)) > 2.5 for c in REGISTER_CENTRES)
        low = [float(f) for f in 55 * 2 ** (np.arange(0, 30, 0.5) / 12) if far(f) and f < 350]
        D.TONE_HZ = tuple(D.TONE_HZ) + tuple(low)
        D.CARRIER_HZ = tuple(D.CARRIER_HZ) + tuple(low[::3])
        print("low pitches", [round(f) for f in low], "carriers", D.CARRIER_HZ)
    elif v == "k64":  # 64 centroids per band instead of 256
        _orig_fit = ST.fit_on_corpus
        ST.fit_on_corpus = lambda dataset, bands=8, seed=0, **kw: _orig_fit(dataset, bands, seed=seed, clusters=64)
    elif v == "texture":  # stream 7: k-means of each band's level fluctuation over +-4 frames (texture statistics)
        from training.encodecmae.kmeans import kmeans, assign
        W = 4
        def mod_feats(frames):  # [B, T, 256] -> [B, T, 16]
            e = frames.reshape(*frames.shape[:2], 8, 32).mean(-1).transpose(1, 2)  # [B, 8, T]
            win = torch.nn.functional.pad(e, (W, W), mode="replicate").unfold(2, 2 * W + 1, 1)  # [B, 8, T, 9]
            return torch.cat([win.std(-1), (win[..., 1:] - win[..., :-1]).abs().mean(-1)], 1).transpose(1, 2)
        def fit_on_corpus(dataset, bands=8, seed=0, clips=ST.FIT_CLIPS, **kw):
            fe = E.MelFrontEnd(E.EncodecMAEConfig.mel_mean, E.EncodecMAEConfig.mel_std)
            frames, mods = [], []
            for i in range(min(clips, len(dataset))):
                item = dataset[i]; valid = fe.num_frames(int(item["length"]))
                f = fe(item["wav"][None]); frames.append(f[0, :valid]); mods.append(mod_feats(f)[0, :valid])
            frames, mods = torch.cat(frames), torch.cat(mods)
            idx = torch.randperm(len(frames), generator=torch.Generator().manual_seed(seed))[:ST.FIT_FRAMES]
            frames, mods = frames[idx], mods[idx]
            mu, sd = mods.mean(0), mods.std(0) + 1e-5
            books = [kmeans(frames[:, 32 * q:32 * (q + 1)].contiguous(), 256, iters=30, seed=seed + q)["centroids"] for q in range(6)]
            books.append(kmeans(frames[:, 192:].contiguous(), 256, iters=30, seed=seed + 6)["centroids"])
            books.append(kmeans(((mods - mu) / sd).contiguous(), 256, iters=30, seed=seed + 7)["centroids"])
            m = ST.MelBandKMeans(torch.zeros(8, 256, 32)); m.books = books; m.mod_norm = (mu, sd)
            m.register_buffer("centroids", torch.cat([b.flatten() for b in books]))
            print("texture targets fitted", flush=True)
            return m
        ST.fit_on_corpus = fit_on_corpus
        def encode_codes(self, wav, n_q=8):
            frames = self.front_end(wav.float()); b, t, _ = frames.shape
            mu, sd = self.mod_norm
            parts = [frames[..., 32 * q:32 * (q + 1)] for q in range(6)] + [frames[..., 192:], (mod_feats(frames) - mu) / sd]
            codes = [assign(parts[q].reshape(b * t, -1).contiguous(), self.books[q])[0] for q in range(n_q)]
            return torch.stack(codes).view(n_q, b, t).transpose(0, 1)
        ST.MelBandKMeans.encode_codes = torch.no_grad()(encode_codes)
        ST.MelBandKMeans.weights = property(lambda self: "mel-texture-" + str(abs(hash(self.centroids.sum().item())))[:8])
    elif v == "rq":  # per-band random-projection quantiser (BEST-RQ style), not fitted to the corpus
        def fit(cls, frames, bands, clusters=ST.CLUSTERS, iters=0, seed=0, max_frames=0):
            g = torch.Generator().manual_seed(1234 + seed)
            split = frames.float().reshape(len(frames), bands, -1)
            mu = split.mean(0); sd = split.std(0) + 1e-5
            proj = torch.randn(bands, split.shape[2], 16, generator=g)
            book = torch.nn.functional.normalize(torch.randn(bands, clusters, 16, generator=g), dim=-1)
            m = cls(torch.zeros(bands, clusters, split.shape[2]))
            m.rq = (mu, sd, proj, book)
            return m
        ST.MelBandKMeans.fit = classmethod(fit)
        def encode_codes(self, wav, n_q=8):
            mu, sd, proj, book = self.rq
            frames = self.front_end(wav.float()); b, t, _ = frames.shape
            x = ((frames.reshape(b * t, mu.shape[0], -1) - mu) / sd)  # [BT, bands, d]
            z = torch.nn.functional.normalize(torch.einsum("nbd,bdk->nbk", x, proj), dim=-1)
            codes = torch.einsum("nbk,bck->nbc", z, book).argmax(-1)  # [BT, bands]
            return codes[:, :n_q].T.reshape(n_q, b, t).transpose(0, 1).contiguous()
        ST.MelBandKMeans.encode_codes = torch.no_grad()(encode_codes)
        ST.MelBandKMeans.weights = property(lambda self: "mel-rq-" + str(hash(self.rq[2].sum().item()))[:8])
    elif v == "lowbands":  # unequal bands: finer codebooks at low frequencies
        WIDTHS = [12, 12, 16, 20, 28, 40, 56, 72]
        EDGES = np.cumsum([0] + WIDTHS)
        def fit(cls, frames, bands, clusters=ST.CLUSTERS, iters=ST.FIT_ITERS, seed=0, max_frames=ST.FIT_FRAMES):
            from training.encodecmae.kmeans import kmeans
            gen = torch.Generator().manual_seed(seed)
            if frames.shape[0] > max_frames:
                frames = frames[torch.randperm(frames.shape[0], generator=gen)[:max_frames]]
            books = [kmeans(frames[:, EDGES[q]:EDGES[q + 1]].float().contiguous(), clusters, iters=iters, seed=seed + q)["centroids"] for q in range(8)]
            m = cls(torch.zeros(8, clusters, 32)); m.books = books
            m.register_buffer("centroids", torch.cat([b.flatten() for b in books]))
            return m
        ST.MelBandKMeans.fit = classmethod(fit)
        def encode_codes(self, wav, n_q=8):
            from training.encodecmae.kmeans import assign
            frames = self.front_end(wav.float()); b, t, _ = frames.shape
            f = frames.reshape(b * t, -1)
            codes = [assign(f[:, EDGES[q]:EDGES[q + 1]].contiguous(), self.books[q])[0] for q in range(n_q)]
            return torch.stack(codes).view(n_q, b, t).transpose(0, 1)
        ST.MelBandKMeans.encode_codes = torch.no_grad()(encode_codes)
        ST.MelBandKMeans.weights = property(lambda self: "mel-lowbands-" + str(abs(hash(self.centroids.sum().item())))[:8])
    elif v == "lognoise":  # noise-burst band edges log-uniform (low bands as often as high ones)
        _orig_event = D._event
        def _event(kind, rng, t, tt, sr):
            if kind != "noise_burst":
                return _orig_event(kind, rng, t, tt, sr)
            x = rng.standard_normal(len(tt))
            lo, hi = sorted(np.exp(rng.uniform(np.log(60), np.log(sr / 2 * 0.8), size=2)))
            spec = np.fft.rfft(x); f = np.fft.rfftfreq(len(tt), 1 / sr)
            spec[(f < lo) | (f > hi)] = 0
            x = np.fft.irfft(spec, len(tt))
            return x / (np.abs(x).max() + 1e-8)
        D._event = _event
    elif v == "mix":  # half the clips: a second corpus clip of another index added at 0-12 dB below
        _orig_clip = D.corpus_clip
        def corpus_clip(index, seconds=2.0, seed=0, sr=D.SAMPLE_RATE, min_fraction=1.0):
            wav, label = _orig_clip(index, seconds, seed, sr, min_fraction)
            rng = np.random.default_rng([index, seed, 99])
            if rng.random() < 0.5:
                other, _ = _orig_clip(index + 1_000_003, seconds, seed, sr, 1.0)
                gain = 10 ** (-rng.uniform(0, 12) / 20)
                wav = np.clip(wav + gain * other[: len(wav)], -1, 1).astype(np.float32)
            return wav, label
        D.corpus_clip = corpus_clip
    elif v == "quietbg":  # the corpus's brown-noise floor 20 dB lower (it fills the lowest mel band)
        import inspect
        src = inspect.getsource(D.corpus_clip)
        assert "(noise - noise.mean()) * 0.05" in src
        exec(src.replace("(noise - noise.mean()) * 0.05", "(noise - noise.mean()) * 0.005"), D.__dict__)
    else:
        raise SystemExit(f"unknown variant {v}")

from training import pretrain
t0 = time.time()
if "--skip-train" not in rest:
    pretrain.main(["--out", out, "--no-progress-bar"] + rest)
print(f"pretrain wall {time.time() - t0:.0f} s", flush=True)
from training import transfer_check as TC, transfer_families as TF
t0 = time.time()
res = TC.transfer_probes({"init": f"{out}/init.ckpt.hearcodec", "trained": f"{out}/last.ckpt.hearcodec"},
                         list(TF.FAMILIES), 24, 40, [2, 4, 8, 24], 10, log=lambda *a: None)
print(TC.transfer_table(res, [2, 4, 8, 24], 10, 24, 40))
summ = {f: {k: [float(r["init"][k].mean()), float(r["init"][k].std()), float(r["trained"][k].mean()), float(r["trained"][k].std())]
            for k in (2, 4)} for f, r in res.items()}
json.dump(summ, open(f"{out}/summary.json", "w"))
print("SUMMARY", variant, " ".join(f"{f}:{v[2][2]-v[2][0]:+.3f}/{v[4][2]-v[4][0]:+.3f}{'*' if v[4][2]-v[4][0] > max(v[4][1], v[4][3]) else ''}" for f, v in summ.items()))
print(f"transfer wall {time.time() - t0:.0f} s")
