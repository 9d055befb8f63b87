"""The EnCodecMAE LightningModule (training/encodecmae/module.py): targets and features of a step."""
import pytest
import torch

from hear_codec import encodecmae as emae
from training.encodecmae import masking
from training.encodecmae import module as encodecmae_module
from training.encodecmae.targets import TeacherKMeans


def test_teacher_kmeans_targets_are_computed_in_fp32(teacher):
    """Under the step's bf16 autocast the teacher still runs in fp32, the precision its centroids
    were fitted in, so the targets are those of an fp32 teacher."""
    from hear_codec.checkpoint import load_checkpoint

    t = load_checkpoint(teacher)
    cfg = emae.EncodecMAEConfig.from_dict({**t.config.to_dict(), "num_codec_streams": 0, "num_kmeans_streams": 1,
                                           "vocab_size": 16})
    gen = torch.Generator().manual_seed(0)
    module = encodecmae_module.EncodecMAEModule(cfg, TeacherKMeans(t, torch.randn(16, 64, generator=gen)))
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
    # the frozen teacher stays in eval mode when the module trains
    module.train()
    assert not t.training and module.model.training


def test_targets_that_do_not_fit_the_head_are_refused(teacher):
    from hear_codec.checkpoint import load_checkpoint

    t = load_checkpoint(teacher)
    cfg = emae.EncodecMAEConfig.from_dict({**t.config.to_dict(), "num_codec_streams": 0, "num_kmeans_streams": 1,
                                           "vocab_size": 16})
    with pytest.raises(ValueError, match="predicts 1 streams of 16 codes, the targets .* are 1 of 32"):
        encodecmae_module.EncodecMAEModule(cfg, TeacherKMeans(t, torch.randn(32, 64)))
