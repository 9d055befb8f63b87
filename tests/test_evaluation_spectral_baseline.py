"""The parameter-free band-energy HEAR module (hear_codec/evaluation/spectral_baseline.py): its
shapes, timestamps, and that a tone lands in its band. Its scores in heareval's runs:
test_evaluation_predictions.py."""
import math

import pytest
import torch

from hear_codec.evaluation import spectral_baseline as sb


def test_shapes_and_timestamps_every_hop():
    model = sb.load_model(sample_rate=16000)
    emb, ts = sb.get_timestamp_embeddings(torch.zeros(2, 16000), model)
    assert emb.shape == (2, 1 + 16000 // model.hop_length, sb.N_BANDS) and emb.dtype == torch.float32
    assert torch.allclose(ts[0, :3], torch.tensor([0.0, 25.0, 50.0]))
    assert sb.get_scene_embeddings(torch.zeros(2, 16000), model).shape == (2, model.scene_embedding_size)
    with pytest.raises(ValueError, match="n_sounds, n_samples"):
        model(torch.zeros(16000))


def test_a_tone_is_loudest_in_the_band_that_holds_it():
    model = sb.load_model(sample_rate=16000)
    t = torch.arange(16000) / 16000
    low, high = (sb.get_scene_embeddings(torch.sin(2 * math.pi * f * t)[None], model)[0, :sb.N_BANDS].argmax()
                 for f in (300.0, 3000.0))
    assert low < high
    edges = torch.logspace(math.log10(sb.MIN_FREQ), math.log10(sb.MAX_FREQ), sb.N_BANDS + 1)
    assert edges[low] <= 300.0 < edges[low + 1] and edges[high] <= 3000.0 < edges[high + 1]
