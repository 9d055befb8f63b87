"""Are a codec's targets a function of the spectrum, or of waveform phase? (issue 15's likely cause)

    python benchmarks/target_phase_check.py [--clips 80]

For the built-in corpus (in both sound vocabularies) and each held-out family of the transfer check (training/builtin/transfer_families.py),
``clips`` clips at 24 kHz, and the targets of stream q0 from the offline (random-weight) EnCodec and
from the log-mel k-means stand-in (training/builtin/targets.py, fitted on the built-in corpus):

* **1-NN mel -> q0**: a nearest-neighbour map from a frame's 256-bin log-mel to its q0 code, fitted
  on the frames of the first half of the clips, scored on the other half (frames above the 30th
  energy percentile); beside it the majority code's accuracy. A target a model can learn from a
  spectrogram scores well above the majority code.
* **q0 equal after a shift of d samples**: the same audio started d samples later (d = 1, 5, 40,
  160; the codec hop is 320); the fraction of frames (above the 30th energy percentile) whose q0
  code is unchanged, and the cosine similarity of their log-mel frames after 160 samples (the
  spectrum barely moves).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from hear_codec.codec import SAMPLE_RATE, load_codec
from hear_codec.fbank import KaldiFbank
from training.builtin import corpus as D
from training.builtin import targets as stand_in
from training.builtin.transfer_families import FAMILIES, make_task

SHIFTS = (1, 5, 40, 160)


def q0_and_mel(codec, wavs: torch.Tensor) -> tuple:
    """q0 codes [N, T] and log-mel [N, T, 256] on the same frames (the shorter grid)."""
    codes = torch.cat([codec.encode_codes(wavs[i:i + 8], 1)[:, 0] for i in range(0, len(wavs), 8)])
    mel = KaldiFbank()(wavs)
    t = min(codes.shape[-1], mel.shape[1])
    return codes[:, :t].numpy(), mel[:, :t].numpy()


def nearest_neighbour_accuracy(codes: np.ndarray, mel: np.ndarray, valid: np.ndarray, rng) -> tuple:
    """(1-NN accuracy, majority-code accuracy) of mel frame -> code, first half fitted, second scored."""
    half = len(codes) // 2
    fit_x, fit_y = mel[:half][valid[:half]], codes[:half][valid[:half]]
    test_x, test_y = mel[half:][valid[half:]], codes[half:][valid[half:]]
    pick = rng.permutation(len(test_x))[:3000]
    test_x, test_y = test_x[pick], test_y[pick]
    dist = (test_x ** 2).sum(1)[:, None] - 2 * test_x @ fit_x.T + (fit_x ** 2).sum(1)[None]
    values, counts = np.unique(fit_y, return_counts=True)
    return float((fit_y[dist.argmin(1)] == test_y).mean()), float((test_y == values[counts.argmax()]).mean())


def shift_agreement(codec, wavs: np.ndarray, shift: int) -> tuple:
    """(fraction of q0 codes unchanged, mean log-mel cosine) when the audio starts ``shift`` samples later."""
    span, at = 40 * 320, 2000
    a = torch.from_numpy(wavs[:, at:at + span])
    b = torch.from_numpy(wavs[:, at - shift:at - shift + span])
    ca, cb = codec.encode_codes(a, 1)[:, 0], codec.encode_codes(b, 1)[:, 0]
    t = min(ca.shape[-1], cb.shape[-1])
    ma, mb = KaldiFbank()(a), KaldiFbank()(b)
    cos = (ma * mb).sum(-1) / (ma.norm(dim=-1) * mb.norm(dim=-1))
    t = min(t, ma.shape[1])
    energy = ma[:, :t].max(-1).values
    valid = (energy > energy.quantile(0.3))[:, 2:-2]  # as for the 1-NN: near-silent frames say nothing
    same = (ca[:, :t] == cb[:, :t])[:, 2:-2]
    return float(same[valid].float().mean()), float(cos.mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=80, help="clips per set (default: %(default)s)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    sets = {}
    for sounds in D.SOUNDS:  # the grid words (the offline codec's) and the spectral ones (the stand-in's)
        sets[f"built-in corpus, {sounds} words"] = np.stack([
            np.pad(w, (0, 2 * SAMPLE_RATE - len(w)))
            for w, _ in (D.corpus_clip(i, 2.0, 5, sounds=sounds) for i in range(args.clips))])
    for family in FAMILIES:
        sets[family] = make_task(family, args.clips, 3, sr=SAMPLE_RATE)[0]
    codecs = {"offline EnCodec": load_codec("offline"),  # the stand-in as the default run fits it
              "stand-in": stand_in.fit_on_corpus(D.SyntheticCorpus(400, 2.0, seed=0, sounds="spectral"))}
    print("| set | targets | 1-NN mel -> q0 | majority q0 | q0 unchanged after a shift of "
          + " / ".join(map(str, SHIFTS)) + " samples | log-mel cosine after 160 |")
    print("|---|---|---|---|---|---|")
    for name, wavs in sets.items():
        for codec_name, codec in codecs.items():
            codes, mel = q0_and_mel(codec, torch.from_numpy(wavs))
            energy = mel.max(-1)
            valid = energy > np.percentile(energy, 30)  # near-silent frames say nothing
            nn_acc, majority = nearest_neighbour_accuracy(codes, mel, valid, np.random.default_rng(0))
            shifted = [shift_agreement(codec, wavs[:24], d) for d in SHIFTS]
            print(f"| {name} | {codec_name} | {nn_acc:.3f} | {majority:.3f} | "
                  + " / ".join(f"{s[0]:.2f}" for s in shifted) + f" | {shifted[-1][1]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
