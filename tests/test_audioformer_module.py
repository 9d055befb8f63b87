"""AudioFormer's MLM LightningModule (training/audioformer/module.py): audio batches to tokens, the
optimiser and its warm-up. Whole runs and exact resume: test_audioformer_pretrain.py."""
import pytest
import torch

from hear_codec import audioformer as af
from training.audioformer.module import AudioFormerMLM, batch_audio, tokens_for_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_model():
    return af.new_model(af.preset("tiny", codec_weights="offline"), "offline", seed=0).eval()


def test_batches_of_every_loader_shape_give_their_audio():
    wav, lengths = torch.zeros(2, 100), torch.tensor([100, 60])
    assert batch_audio(wav) == (wav, None)
    assert batch_audio((wav, lengths, "labels"))[1] is lengths
    assert batch_audio({"audio": wav})[0] is wav and batch_audio({"wav": wav, "lengths": lengths})[1] is lengths
    with pytest.raises(KeyError, match=r"no 'wav' or 'audio' entry \(keys: \['codes'\]\)"):
        batch_audio({"codes": wav})
    with pytest.raises(TypeError, match="of type str"):
        batch_audio("wav")


def test_tokens_from_precomputed_codes_or_from_audio_end_at_each_clip(tiny_model):
    codes = torch.randint(0, 1024, (2, 4, 10))
    tokens = tokens_for_batch(tiny_model, {"codes": codes, "frame_lengths": torch.tensor([10, 30])})
    assert torch.equal(tokens, af.codes_to_tokens(codes, torch.tensor([10, 10])))  # lengths capped at the codes
    wav = torch.randn(2, 24000) * 0.1
    from_audio = tokens_for_batch(tiny_model, (wav, torch.tensor([24000, 12000])))
    frames = tiny_model.num_frames(12000)
    assert from_audio.shape == (2, 4, tiny_model.num_frames(24000) + 2)
    assert (from_audio[1, :, frames + 1] == af.EOA).all() and (from_audio[1, :, frames + 2:] == af.PAD).all()
    assert torch.equal(from_audio[0, :, 1:-1], tiny_model.encode_codes(wav)[0])


def test_optimiser_skips_the_codec_decays_only_matrices_and_warms_up(tiny_model):
    module = AudioFormerMLM(tiny_model, lr=1e-3, weight_decay=0.01, warmup_steps=4)
    opt = module.configure_optimizers()
    decay, no_decay = opt["optimizer"].param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    codec = {id(p) for p in tiny_model.codec.parameters()}
    trained = [p for group in (decay, no_decay) for p in group["params"]]
    assert not codec & {id(p) for p in trained}
    # everything else that trains (RoFormer's sinusoidal position table is a frozen parameter)
    assert len(trained) == len([p for p in tiny_model.parameters() if p.requires_grad]) > 0
    lrs = []
    for _ in range(6):
        lrs.append(opt["optimizer"].param_groups[0]["lr"])
        opt["optimizer"].step()
        opt["lr_scheduler"]["scheduler"].step()
    assert lrs == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
