"""The built-in run's log-mel k-means stand-in for EnCodec's targets (training/builtin/targets.py)."""
import numpy as np
import pytest
import torch

from hear_codec import encodecmae as emae
from training import pretrain
from training.builtin import recipes
from training.builtin import targets as S

SR = 24_000


def tones(freqs, seconds=1.0, delay=0):
    t = (np.arange(int(seconds * SR)) - delay) / SR
    return torch.tensor(np.stack([0.3 * np.sin(2 * np.pi * f * t) for f in freqs]), dtype=torch.float32)


def mel(wav):
    return S.MelFrontEnd(emae.EncodecMAEConfig.mel_mean, emae.EncodecMAEConfig.mel_std)(wav)


@pytest.fixture(scope="module")
def stand_in():
    frames = mel(tones([110 * 2 ** (i / 4) for i in range(24)]))  # [24, T, 256]
    return S.MelBandKMeans.fit(frames.reshape(-1, 256), S.modulation_features(frames).reshape(-1, 24), bands=8,
                               clusters=16, seed=0)


def test_codes_have_the_codec_layout_and_the_name_hashes_the_centroids(stand_in):
    codes = stand_in.encode_codes(tones([300, 500]))
    assert codes.shape == (2, 9, 1 + (SR - 637) // 318) and codes.dtype == torch.int64
    assert 0 <= int(codes.min()) and int(codes.max()) < 16
    # the bands first, from the lowest, then the modulation stream: any prefix is the same codes
    assert torch.equal(stand_in.encode_codes(tones([300, 500]), n_q=3), codes[:, :3])
    assert torch.equal(stand_in.encode_codes(tones([300, 500]), n_q=8), codes[:, :8])
    assert stand_in.name.startswith("mel-kmeans-16x8-mod16-")
    parts = (stand_in.centroids, stand_in.modulation_centroids, stand_in.modulation_mean, stand_in.modulation_std)
    for i in range(4):  # cached targets of other centroids (or another standardisation) are not reused
        other = S.MelBandKMeans(*[p + 1e-3 if j == i else p for j, p in enumerate(parts)])
        assert other.name != stand_in.name
    with pytest.raises(ValueError, match="n_q must be in 1..9"):
        stand_in.encode_codes(tones([300]), n_q=10)
    with pytest.raises(ValueError, match="modulation centroids must be"):
        S.MelBandKMeans(stand_in.centroids, stand_in.modulation_centroids[:, :8], *parts[2:])


def test_fit_is_deterministic_and_caps_clusters_at_the_frames():
    frames, modulation = torch.randn(40, 256), torch.randn(40, 24)
    a = S.MelBandKMeans.fit(frames, modulation, bands=8, clusters=8, seed=1)
    b = S.MelBandKMeans.fit(frames, modulation, bands=8, clusters=8, seed=1)
    assert torch.equal(a.centroids, b.centroids) and torch.equal(a.modulation_centroids, b.modulation_centroids)
    capped = S.MelBandKMeans.fit(frames, modulation, bands=8, clusters=64)
    assert capped.centroids.shape == (8, 40, 32) and capped.modulation_centroids.shape == (40, 24)
    # the statistics are standardised before k-means: three kinds of number on different scales
    assert torch.allclose(a.modulation_mean, modulation.mean(0)) and torch.allclose(a.modulation_std, modulation.std(0) + 1e-4)
    with pytest.raises(ValueError, match=r"modulation statistics must be \[N, 24\]"):
        S.MelBandKMeans.fit(frames, modulation[:39], bands=8)


def test_modulation_features_of_a_ramp_and_of_a_flicker_are_as_computed_by_hand():
    """[B, T, 256] -> [B, T, 24]: per band of 32 bins, mean |change|, std and slope per half window."""
    half = S.MODULATION_WINDOW // 2
    t = torch.arange(40, dtype=torch.float32)
    frames = torch.zeros(1, 40, 256)
    frames[0, :, :32] = 0.1 * t[:, None]  # band 0: a steady rise of 0.1 per frame
    frames[0, :, 96:128] = (-1.0) ** t[:, None]  # band 3: flickers by 2 every frame, around a constant level
    stats = S.modulation_features(frames)[0]  # [40, 24]
    assert stats.shape == (40, 24)
    mid = slice(half + 1, 40 - half)  # frames whose window lies inside the clip (the first frame counts no change)
    change, spread, slope = stats[mid, :8], stats[mid, 8:16], stats[mid, 16:]
    offsets = torch.arange(-half, half + 1, dtype=torch.float32)
    assert torch.allclose(change[:, 0], torch.tensor(0.1)) and torch.allclose(change[:, 3], torch.tensor(2.0))
    assert torch.allclose(spread[:, 0], 0.1 * offsets.std(), atol=1e-5)
    assert torch.allclose(slope[:, 0], torch.tensor(0.1 * half), atol=1e-5)  # level per half window
    assert torch.allclose(spread[:, 3], ((-1.0) ** offsets).std(), atol=1e-5)
    assert slope[:, 3].abs().max() < 1e-5  # a flicker has no trend
    assert stats[mid][:, [1, 2, 4, 5, 6, 7, 9, 10, 12, 13, 14, 15]].abs().max() == 0  # silent bands: nothing moves
    # past the ends the first and last frames repeat: the first frame's window holds `half` copies of it
    first = 0.1 * offsets.clamp(min=0)
    assert torch.allclose(stats[0, 16], (first * offsets).sum() / offsets.square().sum() * half)
    assert torch.allclose(stats[-1, 16], stats[0, 16])  # and the last frame's `half` copies of the last
    with pytest.raises(ValueError, match="window must be an odd"):
        S.modulation_features(frames, window=4)
    with pytest.raises(ValueError, match="frames must be"):
        S.modulation_features(frames[0])


def test_modulation_tells_a_pulsed_noise_from_a_steady_one_and_a_dulling_note_from_a_held_one():
    """What the band codes cannot say: the same noise pulsed at 20 Hz or steady, the same tone
    dulling or held, have about the same spectrum in a frame, not the same modulation statistics;
    and those of a steady sound are the same in every frame, wherever a pulse falls."""
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    noise = rng.standard_normal(len(t)) * 0.1
    pulse = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * 20 * t))
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    wavs = torch.tensor(np.stack([noise, noise * pulse * np.sqrt(2), tone, tone * np.exp(-8 * t)]), dtype=torch.float32)
    stats = S.modulation_features(mel(wavs))  # [4, T, 24]
    change = stats[:, 10:-10, :8].mean(-1)  # [4, T']: mean over the bands, away from the ends
    assert change[1].min() > 3 * change[0].max()  # pulsed against steady noise, in every frame
    slope = stats[:, 10:40, 16 + 1]  # band 1 (the 440 Hz tone's), the first 0.5 s
    assert slope[3].max() < -0.08 and slope[2].abs().max() < 0.01  # dulling against held, in every frame
    steady = stats[2, 10:-10]
    # a held tone: about the same statistics in every frame (next to what a pulse moves)
    assert (steady - steady.mean(0)).abs().max() < 0.1 * change[1].mean()


def test_codes_follow_the_spectrum_not_the_waveform_phase(stand_in):
    """The point of the stand-in: the codes of a tone at any pitch (here off the 75 Hz grid) are
    the same when it starts a few samples later, unlike the offline codec's (tests/test_builtin_corpus.py)."""
    freqs = [437.0, 1230.0, 173.0]
    codes = stand_in.encode_codes(tones(freqs))[..., 2:-2]
    shifted = stand_in.encode_codes(tones(freqs, delay=5))[..., 2:-2]
    assert (codes == shifted).float().mean() > 0.95
    # ...and they do tell the pitches apart (the low bands resolve the partial)
    assert not torch.equal(codes[0, :3], codes[1, :3]) and not torch.equal(codes[0, :3], codes[2, :3])


def test_it_is_a_target_source_with_precomputed_codes_or_its_own(stand_in):
    """The interface of training/encodecmae/targets.py: a name, one weight per stream, the codes of
    a batch for the frames of its features (its precomputed ``codes`` when it has them)."""
    assert stand_in.weights == S.STREAM_WEIGHTS and len(stand_in.weights) == stand_in.num_streams == S.STREAMS
    assert stand_in.vocab_size == 16
    wav = tones([300, 500])
    features = torch.zeros(2, 40, 256)
    assert torch.equal(stand_in({"wav": wav}, features), stand_in.encode(wav)[..., :40])
    codes = torch.randint(0, 16, (2, 9, 50))
    assert torch.equal(stand_in({"wav": wav, "codes": codes}, features), codes[..., :40])


def test_the_built_in_default_fits_the_stand_in_on_its_corpus():
    stand_in = recipes.stand_in_targets(4, 1.0, seed=3)
    assert isinstance(stand_in, S.MelBandKMeans) and stand_in.centroids.shape[0] == S.BANDS
    assert stand_in.num_streams == S.STREAMS == 9 and len(S.STREAM_WEIGHTS) == S.STREAMS
    assert stand_in.name == recipes.stand_in_targets(4, 1.0, seed=3).name  # same corpus and seed: same targets (resume)


def test_stand_in_is_refused_where_it_cannot_serve(tmp_path):
    with pytest.raises(SystemExit, match="fitted on the built-in corpus"):
        pretrain.main(["--out", str(tmp_path / "data"), "--data", str(tmp_path), "--targets", S.NAME])
    with pytest.raises(SystemExit, match="no EnCodec encoder for the ec front end"):
        pretrain.main(["--out", str(tmp_path / "run"), "--targets", S.NAME, "--front-end", "ec", "--max-steps", "1"])
    with pytest.raises(SystemExit, match="no EnCodec encoder for the ec front end"):  # the former spelling
        pretrain.main(["--out", str(tmp_path / "run"), "--codec", S.NAME, "--front-end", "ec", "--max-steps", "1"])
    with pytest.raises(SystemExit) as exit_info:  # AudioFormer's input is the codec itself
        pretrain.main(["--model", "audioformer", "--out", str(tmp_path / "af"), "--codec", S.NAME])
    assert exit_info.value.code == 2


def test_the_stand_in_says_so_when_the_published_weights_are_there(tmp_path, monkeypatch, caplog):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "encodec_24khz-d7cc33bc.th").write_bytes(b"")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with caplog.at_level("INFO", logger="training.builtin.recipes"):
        recipes.stand_in_targets(4, 1.0, seed=0)
    assert "stand-in for EnCodec's codes" in caplog.text
    assert "published EnCodec weights are on this machine" in caplog.text and "--targets encodec" in caplog.text
