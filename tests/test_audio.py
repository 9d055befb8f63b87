"""hear_codec.audio: reading any soundfile format, mixing down, resampling, segments, clear errors."""
import re

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

from hear_codec.audio import AUDIO_EXTENSIONS, AudioReadError, audio_info, find_audio_files, read_audio, stream_audio
from hear_codec.audio import _resample_torch, resample


def tone(samples, rate, channels=1, seed=0):
    """[samples] or [samples, channels] float32 in [-0.5, 0.5]: a 440 Hz tone plus noise."""
    t = np.arange(samples) / rate
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * 440 * t)[:, None] + 0.1 * rng.uniform(-1, 1, (samples, channels))
    return (x[:, 0] if channels == 1 else x).astype(np.float32)


def test_formats_channels_and_rates(tmp_path):
    stereo = tone(44100, 44100, channels=2)
    sf.write(tmp_path / "a.wav", stereo, 44100, subtype="FLOAT")
    sf.write(tmp_path / "b.flac", tone(16000, 16000), 16000)  # 16-bit PCM
    sf.write(tmp_path / "c.ogg", tone(48000, 48000), 48000)  # Vorbis, lossy
    wav, sr = read_audio(tmp_path / "a.wav")
    assert sr == 44100 and wav.dtype == torch.float32 and wav.shape == (44100,)
    assert torch.equal(wav, torch.from_numpy(stereo.mean(axis=1)))  # mixed down by the mean
    wav, sr = read_audio(tmp_path / "b.flac")
    assert sr == 16000 and (wav - torch.from_numpy(tone(16000, 16000))).abs().max() <= 1 / 32768
    wav, sr = read_audio(tmp_path / "c.ogg")
    assert sr == 48000 and wav.shape == (48000,)
    assert np.corrcoef(wav.numpy(), tone(48000, 48000))[0, 1] > 0.95
    info = audio_info(tmp_path / "a.wav")
    assert (info.frames, info.sample_rate, info.channels, info.seconds) == (44100, 44100, 2, 1.0)


def test_resampling_is_the_codec_resampler(tmp_path):
    sf.write(tmp_path / "a.wav", tone(22050 * 2 + 7, 22050), 22050, subtype="FLOAT")
    wav, sr = read_audio(tmp_path / "a.wav", sample_rate=24000)
    native, _ = read_audio(tmp_path / "a.wav")
    assert sr == 24000 and wav.dtype == torch.float32
    assert wav.shape[0] == audio_info(tmp_path / "a.wav").frames_at(24000) == 48008
    assert torch.equal(wav, resample(native.double(), 22050, 24000).float())


def test_segments(tmp_path):
    sf.write(tmp_path / "a.wav", tone(16000 * 3, 16000), 16000, subtype="FLOAT")
    whole, _ = read_audio(tmp_path / "a.wav")
    part, _ = read_audio(tmp_path / "a.wav", start=1.0, duration=0.5)
    assert torch.equal(part, whole[16000:24000])
    end, _ = read_audio(tmp_path / "a.wav", start=2.75, duration=1.0)  # shorter at the end of the file
    assert torch.equal(end, whole[44000:])
    resampled, sr = read_audio(tmp_path / "a.wav", 24000, start=1.0, duration=0.5)
    assert sr == 24000 and resampled.shape == (12000,)


def test_errors_name_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(range(200)))
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.0, np.nan, 0.1], dtype=np.float32), 16000, subtype="FLOAT")
    for path, reason in ((tmp_path / "missing.wav", "cannot read audio"), (corrupt, "cannot read audio"),
                         (empty, "no samples"), (nan, "NaN or Inf")):
        with pytest.raises(AudioReadError, match=reason) as error:
            read_audio(path)
        assert str(path) in str(error.value)
    for path in (tmp_path / "missing.wav", corrupt, empty):
        with pytest.raises(AudioReadError, match=str(path)):
            audio_info(path)
    assert issubclass(AudioReadError, ValueError)


def test_find_audio_files(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "folder.wav").mkdir()  # a folder is not a file, whatever its name
    for name in ("b.WAV", "sub/a.flac", "sub/deeper/c.ogg", "notes.txt", "sub/x.npy"):
        (tmp_path / name).write_bytes(b"")
    assert find_audio_files(tmp_path) == [tmp_path / "b.WAV", tmp_path / "sub/a.flac", tmp_path / "sub/deeper/c.ogg"]
    assert ".wav" in AUDIO_EXTENSIONS and ".flac" in AUDIO_EXTENSIONS and ".ogg" in AUDIO_EXTENSIONS


@pytest.mark.parametrize("orig_sr", [48000, 16000, 44100, 22050])
def test_resample_matches_scipy_polyphase(orig_sr, rng):
    x = torch.rand(2, orig_sr // 2, generator=rng, dtype=torch.float64) * 2 - 1
    ours = resample(x, orig_sr, 24000)
    from fractions import Fraction
    f = Fraction(24000, orig_sr)
    ref = resample_poly(x.numpy(), f.numerator, f.denominator, axis=-1)
    assert ours.shape == ref.shape and ours.dtype == x.dtype
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-10)
    # the torch path (used on GPUs) implements the same filter
    torch_path = _resample_torch(x, f.numerator, f.denominator)
    np.testing.assert_allclose(torch_path.numpy(), ref, atol=1e-10)


def test_resample_keeps_a_tone_and_removes_aliases():
    t = torch.arange(48000, dtype=torch.float64) / 48000
    tone = torch.sin(2 * torch.pi * 1000 * t) + torch.sin(2 * torch.pi * 15000 * t)  # 15 kHz > new Nyquist
    out = resample(tone[None], 48000, 24000)[0]
    spectrum = torch.fft.rfft(out[2400:-2400] * torch.hann_window(out.numel() - 4800, dtype=torch.float64)).abs()
    freqs = torch.fft.rfftfreq(out.numel() - 4800, 1 / 24000)
    assert abs(float(freqs[spectrum.argmax()]) - 1000) < 5
    alias = spectrum[(freqs > 8000) & (freqs < 10000)].max()  # 15 kHz would fold to 9 kHz
    assert alias < 10 ** (-50 / 20) * spectrum.max()  # Kaiser(5.0) design: about -57 dB here


@pytest.mark.parametrize("rate", [48000, 44100, 16000, 22050, 8000, 24000])
def test_blocks_resample_as_the_whole_file_does(tmp_path, rate):
    """Decoded, mixed down and resampled in blocks of any size, the samples are those of resampling
    the whole file at once (scipy's resample_poly): the filter's state crosses the block edges."""
    samples = tone(rate * 3 + 17, rate, channels=2, seed=rate)
    sf.write(tmp_path / "a.wav", samples, rate, subtype="FLOAT")
    whole = resample(torch.from_numpy(samples.mean(axis=1)).double(), rate, 24000).float().numpy()
    for block_frames in (1000, 4097, 2 ** 20):  # many edges, a few, one block
        stream = stream_audio(tmp_path / "a.wav", 24000, block_frames=block_frames)
        blocks = list(stream)
        assert stream.num_samples == len(whole) and stream.sample_rate == 24000
        assert len(blocks) >= min(3, len(samples) // block_frames) and all(b.dtype == np.float32 for b in blocks)
        np.testing.assert_allclose(np.concatenate(blocks), whole, rtol=0, atol=1e-6, err_msg=str(block_frames))
    segment = np.concatenate(list(stream_audio(tmp_path / "a.wav", 24000, start=0.7, duration=1.3, block_frames=999)))
    assert segment.shape == (31200,)
    np.testing.assert_allclose(segment, read_audio(tmp_path / "a.wav", 24000, start=0.7, duration=1.3)[0].numpy(),
                               rtol=0, atol=1e-6)


def test_a_rate_that_needs_a_giant_filter_is_a_clear_error(tmp_path):
    """Headers of 2,147,483,647 Hz and 1,000,003 Hz (no common factor with 24 kHz): refused before any
    filter is designed, not after allocating 320 GB or seconds and a gigabyte."""
    import time
    for rate in (2_147_483_647, 1_000_003):
        path = tmp_path / f"{rate}.wav"
        sf.write(path, np.zeros(16000, np.int16), rate)
        assert audio_info(path).sample_rate == rate
        start = time.perf_counter()
        with pytest.raises(AudioReadError, match=rf"{path}: resampling {rate} Hz to 24000 Hz needs a [\d,]+-tap filter"):
            read_audio(path, 24000)
        assert time.perf_counter() - start < 2  # on main: 8 s and 1.2 GB (1,000,003 Hz), or 320 GB asked for
        assert read_audio(path)[0].shape == (16000,)  # at its own rate it is read as it is
    with pytest.raises(ValueError, match="needs a 20,000,061-tap filter"):
        resample(torch.zeros(10), 1_000_003, 24000)


def test_samples_beyond_any_audio_range_are_a_clear_error(tmp_path):
    """Finite float samples of ±1e18 or ±3e38 overflow the model's float32 front end into NaN."""
    for peak in (1e18, 3e38):
        path = tmp_path / f"{peak:g}.wav"
        sf.write(path, np.array([0.0, peak, -peak, 0.1], dtype=np.float32), 16000, subtype="FLOAT")
        with pytest.raises(AudioReadError, match=re.escape(f"{path}: samples up to {peak:.3g}, beyond ±1e+12")):
            read_audio(path, 24000)
    sf.write(tmp_path / "loud.wav", np.array([0.0, 32767.0, -2.0 ** 31], dtype=np.float32), 16000, subtype="FLOAT")
    assert read_audio(tmp_path / "loud.wav")[0].abs().max() == 2.0 ** 31  # unscaled integer PCM still reads


def test_mixdown_is_the_channels_mean_bit_for_bit():
    """Stereo takes a faster path than ``mean(axis=1)``; it must give the same float32 numbers."""
    from hear_codec.audio import _mixdown

    rng = np.random.default_rng(0)
    for channels in (1, 2, 3, 6):
        data = (rng.standard_normal((4097, channels)) * 3).astype(np.float32)
        expected = data.mean(axis=1)
        got = _mixdown(data)
        assert got.dtype == np.float32
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), channels
