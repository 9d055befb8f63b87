"""AudioFormer's MLM masking (training/audioformer/masking.py): which code tokens are chosen, BERT's corruption."""
import torch

from hear_codec import audioformer as af
from training.audioformer.masking import corrupt, mlm_mask


def test_mlm_mask_rate_and_never_on_special_tokens(rng):
    codes = torch.randint(0, 1024, (64, 4, 300), generator=rng)
    lengths = torch.randint(1, 301, (64,), generator=rng)
    tokens = af.codes_to_tokens(codes, lengths)
    mask = mlm_mask(tokens, 0.25, rng)
    assert not (mask & ~af.is_code(tokens)).any()  # never BOA, EOA or PAD
    n_codes = af.is_code(tokens).sum(-1)
    expected = (n_codes.double() * 0.25).round().clamp(min=1)
    assert torch.equal(mask.sum(-1).double(), expected)  # exact per sequence
    rate = mask.sum() / af.is_code(tokens).sum()
    assert abs(float(rate) - 0.25) < 0.01
    # positions are spread uniformly: every code position is chosen about 25 % of the time
    many = mlm_mask(af.codes_to_tokens(torch.zeros(4000, 1, 20, dtype=torch.long)), 0.25, rng)
    per_position = many[:, 0, 1:21].float().mean(0)
    assert (per_position - 0.25).abs().max() < 0.04


def test_corruption_only_touches_chosen_positions(rng):
    tokens = af.codes_to_tokens(torch.randint(0, 1024, (32, 4, 200), generator=rng))
    mask = mlm_mask(tokens, 0.25, rng)
    inputs = corrupt(tokens, mask, rng)
    assert torch.equal(inputs[~mask], tokens[~mask])
    chosen = inputs[mask]
    share_mask = float((chosen == af.MASK).float().mean())
    assert 0.75 < share_mask < 0.85
    assert ((chosen == af.MASK) | (chosen < af.CODEBOOK_SIZE)).all()
