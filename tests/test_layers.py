"""Shared transformer blocks (hear_codec/layers.py): the ResiDual stack's streams, padding, positions.
Parity of the whole stack with the official code: test_parity_encodecmae.py."""
import torch

from hear_codec.layers import ResiDualTransformer, ScaledSinusoidalPosition, sinusoidal_table


def stack(seed=0):
    torch.manual_seed(seed)
    return ResiDualTransformer(dim=16, num_layers=3, num_heads=2, ff_dim=32).eval()


def test_the_first_layers_alone_equal_those_of_the_whole_stack():
    model, x = stack(), torch.randn(2, 7, 16)
    with torch.no_grad():
        out, x0_all, x1_all = model(x, return_layers=True)
        x0_first, _ = model.streams(x, num_layers=2)
    assert len(x0_all) == 3 and len(x0_first) == 2
    assert all(torch.equal(a, b) for a, b in zip(x0_first, x0_all))
    assert torch.allclose(out, x0_all[-1] + model.final_norm(x1_all))  # the final ResiDual combination


def test_padding_frames_do_not_reach_the_valid_ones():
    model, x = stack(), torch.randn(1, 9, 16)
    padded = torch.cat([x, 100 * torch.randn(1, 4, 16)], dim=1)
    padding = torch.arange(13)[None] >= 9
    with torch.no_grad():
        assert torch.allclose(model(x), model(padded, padding)[:, :9], atol=1e-5)


def test_positions_are_the_scaled_sinusoid_table():
    table = sinusoidal_table(5, 8)
    assert torch.allclose(table[0], torch.tensor([0.0, 1.0] * 4))  # sin 0, cos 0
    position = ScaledSinusoidalPosition(8)
    with torch.no_grad():
        position.scale.fill_(2.0)
    assert torch.allclose(position(torch.zeros(1, 5, 8)), 2 * table[None])
