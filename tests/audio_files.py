"""Audio files the data tests write: sine tones at several rates and channel counts, a corrupt file
and an empty one (tests/test_data_manifest.py, tests/test_data_crops.py)."""
import numpy as np
import soundfile as sf


def sine(freq, seconds, sr, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def dominant_hz(wav, sr=24000):
    spec = np.abs(np.fft.rfft(wav))
    return np.fft.rfftfreq(len(wav), 1 / sr)[spec.argmax()]


def make_folder(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    sf.write(tmp_path / "a48k_stereo.wav", sine(440, 3.0, 48000, channels=2), 48000)
    sf.write(tmp_path / "b16k.flac", sine(1000, 1.0, 16000), 16000)
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "sub" / "c24k.wav", sine(300, 5.0, 24000), 24000)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage that is not audio" * 10)
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 24000)
    (tmp_path / "notes.txt").write_text("not audio, not listed")
    return tmp_path
