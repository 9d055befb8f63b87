"""The EnCodecMAE LightningModule (training/encodecmae/module.py): targets and features of a step."""
import torch

from hear_codec import encodecmae as emae
from training.encodecmae import masking
from training.encodecmae import module as encodecmae_module


def test_nearest_centroid_matches_brute_force():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 7, 6, generator=gen)
    c = torch.randn(5, 6, generator=gen)
    expected = torch.cdist(x.reshape(-1, 6), c).argmin(1).view(2, 7)
    assert torch.equal(encodecmae_module.nearest_centroid(x, c), expected)


def test_teacher_kmeans_targets_are_computed_in_fp32(teacher):
    """Under the step's bf16 autocast the teacher still runs in fp32, the precision its centroids
    were fitted in, so the targets are those of an fp32 teacher."""
    from hear_codec.checkpoint import load_checkpoint

    t = load_checkpoint(teacher)
    cfg = emae.EncodecMAEConfig.from_dict({**t.config.to_dict(), "num_codec_streams": 0, "num_kmeans_streams": 1,
                                           "vocab_size": 16})
    gen = torch.Generator().manual_seed(0)
    module = encodecmae_module.EncodecMAEModule(cfg, None, teacher=t, centroids=torch.randn(16, 64, generator=gen))
    wav = torch.randn(2, 24000, generator=gen) * 0.1
    frames = masking.frames_for("mel256", 24000)
    batch = {"wav": wav, "mask": torch.zeros(2, frames, dtype=torch.bool),
             "padding_mask": torch.zeros(2, frames, dtype=torch.bool)}
    dtypes = []
    hook = t.encoder.register_forward_hook(lambda m, i, out: dtypes.append(out[0].dtype))
    _, fp32_targets = module.targets_and_features(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, targets = module.targets_and_features(batch)
    hook.remove()
    assert dtypes == [torch.float32, torch.float32]
    assert torch.equal(targets, fp32_targets)
