"""Running AudioFormer MLM pretraining (training/audioformer/train.py): the collate and the optimiser
options. Whole runs through the CLI: test_audioformer_pretrain.py."""
import argparse

import torch

from hear_codec import codec as codec_lib
from training.audioformer.train import Collate, OptimizerConfig, add_optimizer_args


def item(length, crop=24000, codes=None):
    wav = torch.zeros(crop)
    wav[:length] = 1.0
    out = {"wav": wav, "length": length, "ok": length > 0}
    if codes is not None:
        out["codes"] = codes
    return out


def test_collate_counts_valid_frames_and_cuts_codes_to_the_crop():
    collate = Collate(24000)
    frames = codec_lib.num_frames(24000)
    batch = collate([item(24000), item(12000), item(100)])
    assert batch["wav"].shape == (3, 24000) and batch["ok"].tolist() == [True, True, True]
    assert batch["frame_lengths"].tolist() == [frames, codec_lib.num_frames(12000), codec_lib.num_frames(100)]
    assert "codes" not in batch
    codes = torch.arange(4 * (frames + 3)).view(4, frames + 3)  # precomputed for a slightly longer clip
    batch = collate([item(24000, codes=codes), item(24000, codes=codes)])
    assert batch["codes"].shape == (2, 4, frames) and batch["codes"].dtype == torch.long
    assert torch.equal(batch["codes"][0], codes[:, :frames])


def test_optimiser_options():
    parser = argparse.ArgumentParser()
    add_optimizer_args(parser)
    args = parser.parse_args(["--lr", "3e-4", "--warmup-steps", "5", "--betas", "0.8", "0.9"])
    assert OptimizerConfig.from_args(args) == OptimizerConfig(lr=3e-4, warmup_steps=5, betas=(0.8, 0.9),
                                                              weight_decay=0.01)
    defaults = OptimizerConfig.from_args(parser.parse_args([]))  # the paper's: lr 1e-4, 10 k warm-up steps
    assert defaults == OptimizerConfig(lr=1e-4, warmup_steps=10_000, betas=(0.9, 0.98), weight_decay=0.01)
