"""Running EnCodecMAE training (training/encodecmae/train.py): the data loaders, and the initial
weights a second stage starts from. Whole runs through the CLI: test_pretrain.py."""
import pytest
import torch

from hear_codec import encodecmae as emae
from hear_codec.checkpoint import load_checkpoint
from hear_codec.codec import load_codec
from training import engine
from training.builtin.corpus import corpus_datasets
from training.data.crops import DataConfig
from training.data.sampler import StepSampler
from training.encodecmae.masking import frames_for
from training.encodecmae.targets import EncodecCodes
from training.encodecmae.train import OptimizerConfig, build_loaders, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def data_config(**overrides):
    return DataConfig(**{**dict(sources=None, crop_seconds=1.0, batch_size=4, num_workers=0), **overrides})


def clips(out_dir):
    """8 training and 2 validation clips of the built-in corpus, no precomputed targets."""
    return corpus_datasets(8, 2, 1.0, seed=0, sounds="grid", out_dir=out_dir)


def test_loaders_give_masked_batches_in_step_order(tmp_path):
    config = emae.preset("tiny", chunk_seconds=1.0, num_codec_streams=0, num_kmeans_streams=1)  # no codec needed
    train_set, val_set, meta = clips(tmp_path)
    train_loader, val_loader, sampler = build_loaders(train_set, val_set, data_config(), config)
    batch = next(iter(train_loader))
    frames = frames_for("mel256", 24000)
    assert batch["wav"].shape == (4, 24000) and batch["mask"].shape == batch["padding_mask"].shape == (4, frames)
    assert not (batch["mask"] & batch["padding_mask"]).any()
    assert isinstance(sampler, StepSampler) and sampler.batch_size == 4
    assert len(val_loader.dataset) == 2 and meta == dict(data="synthetic", corpus_sounds="grid", train_clips=8, val_clips=2)
    again = next(iter(build_loaders(*clips(tmp_path)[:2], data_config(), config)[0]))
    assert torch.equal(again["wav"], batch["wav"]) and torch.equal(again["mask"], batch["mask"])  # seeded


def test_loaders_mask_the_configs_share_of_each_clips_frames(tmp_path):
    """Exactly floor(L x mask_prop) of a clip's L valid frames are masked: the paper's half, or the
    built-in run's 70 % (training.pretrain's --mask-prop)."""
    for prop in (0.5, 0.7):
        config = emae.preset("tiny", chunk_seconds=1.0, num_codec_streams=0, num_kmeans_streams=1, mask_prop=prop)
        batch = next(iter(build_loaders(*clips(tmp_path)[:2], data_config(), config)[0]))
        valid = (~batch["padding_mask"]).sum(1)
        assert torch.equal(batch["mask"].sum(1), (valid.double() * prop).floor().long())


def test_initial_weights_fill_every_tensor_of_the_same_shape(tmp_path):
    """``init_state`` (a second stage: the teacher's weights) initialises every tensor it has in the
    same shape; a tensor of another shape (the new head) keeps its fresh initialisation."""
    config = emae.preset("tiny", chunk_seconds=1.0, codec_weights="offline")
    torch.manual_seed(1)
    start = emae.EncodecMAE(emae.preset("tiny", chunk_seconds=1.0, num_codec_streams=0, num_kmeans_streams=1,
                                        vocab_size=16)).state_dict()
    run = engine.EngineConfig(max_steps=1, val_every=0, ckpt_every=0, log_every=1, progress_bar=False,
                              accelerator="cpu", devices=1)
    path = train(config, OptimizerConfig(lr=0.0, weight_decay=0.0), data_config(), clips(tmp_path), run, tmp_path,
                 targets=EncodecCodes(load_codec("offline")), init_state=start)
    trained = load_checkpoint(path).state_dict()  # lr 0: the weights the run started from
    same_shape = [k for k in trained if start[k].shape == trained[k].shape]
    assert "encoder.layers.0.attention.wq.weight" in same_shape and "head.weight" not in same_shape
    assert all(torch.equal(trained[k], start[k]) for k in same_shape)
    torch.manual_seed(run.seed)
    fresh = emae.EncodecMAE(config).state_dict()  # the module's own initialisation, seeded by the run
    assert torch.equal(trained["head.weight"], fresh["head.weight"]) and trained["head.weight"].shape == (8 * 1024, 64)
    assert not torch.equal(trained["encoder.layers.0.attention.wq.weight"], fresh["encoder.layers.0.attention.wq.weight"])
