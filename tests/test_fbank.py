"""The torch Kaldi fbank against the official mel front end's output (torchaudio.compliance.kaldi.fbank)."""
import pytest
import torch

from conftest import ENCODECMAE_FIXTURES, assert_log_mel_close, require_fixture
from hear_codec.fbank import KaldiFbank, num_fbank_frames


def test_matches_official_mel_features():
    ref = torch.load(require_fixture(ENCODECMAE_FIXTURES / "mel_small.pt"), weights_only=True)
    ours = (KaldiFbank()(ref["waveform"]) + 6.12) / 4.82
    assert_log_mel_close(ours, ref["input_features"])
    # and the unnormalised features the official processor stored for the 4 s training clips
    train = ref["train_batch"]
    ours = (KaldiFbank()(train["wav"].float()) + 6.12) / 4.82
    assert_log_mel_close(ours, train["wav_features"])


def test_frame_count_is_snip_edges():
    fb = KaldiFbank()
    with pytest.raises(ValueError, match="shorter than one fbank frame"):
        fb(torch.zeros(1, 636))
    for n in (637, 955, 956, 48000, 96000):
        assert fb(torch.zeros(1, n) + 0.01).shape[1] == num_fbank_frames(n, 637, 318) == fb.num_frames(n)
    assert num_fbank_frames(48000, 637, 318) == 149 and num_fbank_frames(96000, 637, 318) == 300


def test_batched_equals_one_at_a_time(rng):
    wav = torch.rand(3, 8000, generator=rng) * 2 - 1
    fb = KaldiFbank()
    batched = fb(wav)
    single = torch.cat([fb(w[None]) for w in wav])
    assert torch.allclose(batched, single, atol=1e-5)
