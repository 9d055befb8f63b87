"""hear_codec/seanet.py: the CPU forward of EnCodec's SEANet encoder equals encodec's own."""
import pytest
import torch

from hear_codec import codec as codec_lib
from hear_codec import seanet
from hear_codec.codec import encodec_forward as reference  # encodec's own forward


def small_encoder(causal: bool, residual_layers: int = 1, true_skip: bool = False) -> torch.nn.Module:
    """A small random SEANet (hop 8) with every kind of layer the 24 kHz one has."""
    encodec = codec_lib._import_encodec()
    torch.manual_seed(0)
    with codec_lib._quiet_weight_norm():
        return encodec.modules.SEANetEncoder(channels=1, dimension=16, n_filters=4, ratios=[4, 2],
                                             n_residual_layers=residual_layers, causal=causal,
                                             true_skip=true_skip).eval()


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("samples", [1, 3, 7, 20, 301, 4001])
@torch.no_grad()
def test_equals_encodecs_forward(causal, samples, rng):
    """Lengths shorter than the paddings (encodec's zero-then-reflect path), odd lengths (extra
    right padding), dilated residual layers, causal and centred padding."""
    encoder = small_encoder(causal, residual_layers=2)
    wav = torch.rand(3, samples, generator=rng) - 0.5
    ours, ref = seanet.encode(encoder, wav, micro_batch=2), reference(encoder, wav)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-5 * float(ref.abs().max()), rtol=0)


@torch.no_grad()
def test_identity_shortcut(rng):
    wav = torch.rand(2, 500, generator=rng) - 0.5
    encoder = small_encoder(causal=True, true_skip=True)
    torch.testing.assert_close(seanet.encode(encoder, wav, 1), reference(encoder, wav), atol=1e-6, rtol=0)


@torch.no_grad()
def test_the_24khz_encoder(rng):
    """The EnCodec 24 kHz encoder itself (random weights), through run_encoder, on 0.4 s."""
    encoder = codec_lib.build_encoder()
    wav = torch.rand(3, 9601, generator=rng) - 0.5
    ours, ref = codec_lib.run_encoder(encoder, wav), reference(encoder, wav)
    assert ours.shape == (3, 31, 128)
    torch.testing.assert_close(ours, ref, atol=1e-5 * float(ref.abs().max()), rtol=0)


@torch.no_grad()
def test_weights_loaded_after_a_forward_are_used(rng):
    """Weight norm recomputes each convolution's weight in a pre-forward hook, so ``conv.weight``
    is stale after a state dict is loaded: encode must compute it from weight_g / weight_v."""
    encoder = small_encoder(causal=True)
    wav = torch.rand(2, 300, generator=rng) - 0.5
    reference(encoder, wav)  # leaves conv.weight computed from the current weight_g / weight_v
    state = {k: v * 1.5 if k.endswith("weight_g") else v for k, v in encoder.state_dict().items()}
    encoder.load_state_dict(state)
    ours = seanet.encode(encoder, wav, 2)
    torch.testing.assert_close(ours, reference(encoder, wav), atol=1e-6, rtol=0)


@torch.no_grad()
def test_micro_batches_before_the_lstm_and_the_whole_batch_after(monkeypatch, rng):
    encoder = small_encoder(causal=True)
    seen = []
    run = seanet._run

    def spy(layers, x):
        seen.append((type(layers[0]).__name__, x.shape[0]))
        return run(layers, x)

    monkeypatch.setattr(seanet, "_run", spy)
    wav = torch.rand(5, 400, generator=rng) - 0.5
    ours = seanet.encode(encoder, wav, micro_batch=2)
    top = [(name, b) for name, b in seen if name in ("SConv1d", "SLSTM")]  # the encoder's two halves
    assert top == [("SConv1d", 2), ("SConv1d", 2), ("SConv1d", 1), ("SLSTM", 5)]
    torch.testing.assert_close(ours, reference(encoder, wav), atol=1e-6, rtol=0)
