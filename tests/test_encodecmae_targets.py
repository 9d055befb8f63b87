"""What EnCodecMAE predicts (training/encodecmae/targets.py): EnCodec's codes with the official
weights, a teacher's k-means stream, both stacked."""
import pytest
import torch

from hear_codec import encodecmae as emae
from hear_codec.codec import load_codec
from training.encodecmae import targets as T

# The official loss weights, copied from habla-liaa/encodecmae configs/base/encodecmae_base.gin
# (quantizer_weights), independently of hear_codec.encodecmae.QUANTIZER_WEIGHTS.
OFFICIAL_QUANTIZER_WEIGHTS = (0.22407463, 0.1759858, 0.14499009, 0.12150037, 0.10315603, 0.08831368, 0.07608274,
                              0.06589669)


@pytest.fixture(scope="module")
def codec():
    return load_codec("offline")


def test_encodec_targets_weigh_the_codebooks_as_the_official_loss(codec):
    assert emae.QUANTIZER_WEIGHTS == OFFICIAL_QUANTIZER_WEIGHTS
    assert T.EncodecCodes(codec).weights == OFFICIAL_QUANTIZER_WEIGHTS
    assert T.EncodecCodes(codec, n_q=2).weights == OFFICIAL_QUANTIZER_WEIGHTS[:2]
    assert emae.EncodecMAEConfig().codec_stream_weights == OFFICIAL_QUANTIZER_WEIGHTS  # the paper's model
    with pytest.raises(ValueError, match="n_q must be in 1..8"):
        T.EncodecCodes(codec, n_q=9)


def test_encodec_targets_from_audio_from_ec_features_or_precomputed(codec):
    """The codes of a batch: its wav encoded (for the frames the features have), the ec front end's
    own features quantized (the same codes, one encoder pass), or the batch's precomputed codes."""
    gen = torch.Generator().manual_seed(0)
    wav = torch.randn(2, 24000, generator=gen) * 0.1
    source = T.EncodecCodes(codec)
    assert source.name == "encodec-offline" and source.vocab_size == 1024
    full = codec.encode_codes(wav, 8)  # [2, 8, 75]
    mel_frames = torch.zeros(2, 74, 256)
    assert torch.equal(source({"wav": wav}, mel_frames), full[..., :74])
    ec_features = codec.encode_features(wav)  # [2, 75, 128]: what the ec front end computes
    assert torch.equal(T.EncodecCodes(codec, from_features=True)({"wav": wav}, ec_features), full)
    given = torch.randint(0, 1024, (2, 8, 80), generator=gen)
    assert torch.equal(source({"wav": wav, "codes": given}, mel_frames), given[..., :74])


def test_nearest_centroid_matches_brute_force():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 7, 6, generator=gen)
    c = torch.randn(5, 6, generator=gen)
    expected = torch.cdist(x.reshape(-1, 6), c).argmin(1).view(2, 7)
    assert torch.equal(T.nearest_centroid(x, c), expected)


def test_teacher_kmeans_and_stacked_streams(teacher, codec):
    """v1 self-training: the EnCodec streams, then the k-means stream, weighted 1.0 as in the
    official self-training configs; the vocabularies must agree."""
    from hear_codec.checkpoint import load_checkpoint

    t = load_checkpoint(teacher)
    km = T.TeacherKMeans(t, torch.randn(1024, 64, generator=torch.Generator().manual_seed(2)))
    assert km.weights == (1.0,) and km.vocab_size == 1024 and km.name == "teacher-kmeans-1024"
    wav = torch.randn(2, 24000, generator=torch.Generator().manual_seed(3)) * 0.1
    features = t.input_features(wav)
    padding = torch.zeros(features.shape[:2], dtype=torch.bool)
    batch = {"wav": wav, "padding_mask": padding}
    stream = km(batch, features)
    assert stream.shape == (2, 1, features.shape[1])
    assert torch.equal(stream[:, 0], T.nearest_centroid(t.last_layer_x0(features, padding), km.centroids))
    both = T.Stacked(T.EncodecCodes(codec), km)
    assert both.weights == OFFICIAL_QUANTIZER_WEIGHTS + (1.0,) and both.name == "encodec-offline+teacher-kmeans-1024"
    codes = both(batch, features)
    assert codes.shape == (2, 9, features.shape[1])
    assert torch.equal(codes[:, :8], codec.encode_codes(wav, 8)[..., : features.shape[1]])
    assert torch.equal(codes[:, 8:], stream)
    with pytest.raises(ValueError, match="one vocabulary size"):
        T.Stacked(T.EncodecCodes(codec), T.TeacherKMeans(t, torch.randn(16, 64)))
