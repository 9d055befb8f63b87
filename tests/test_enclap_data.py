"""EnCLAP data (training/enclap/data.py): Clotho / AudioCaps / generic CSV readers on generated
miniature files, span masks. The collator with a model's layout: test_enclap_model.py; the feature
cache: test_enclap_cache.py."""
import pytest
import torch

from conftest import write_csv, write_noise_wav
from training.enclap.data import (CaptionPairs, ClipReferences, read_audiocaps, read_caption_csv, read_clotho,
                                  span_mask)


def test_clotho_reader(tmp_path):
    for name in ("a.wav", "b c.wav"):
        write_noise_wav(tmp_path / name)
    header = ["file_name"] + [f"caption_{i}" for i in range(1, 6)]
    path = write_csv(tmp_path / "clotho_captions_development.csv", header,
                     [["a.wav", *[f"a caption {i}" for i in range(5)]], ["b c.wav", *[f"b, caption {i}" for i in range(5)]]])
    clips = read_clotho(path, tmp_path)
    assert [c.id for c in clips] == ["a.wav", "b c.wav"]
    assert clips[1].captions == [f"b, caption {i}" for i in range(5)]
    assert len(CaptionPairs(clips, {}).items) == 10  # every caption is a training example
    refs = ClipReferences(clips, {"a.wav": ("codes", "clap"), "b c.wav": ("codes", "clap")})
    assert refs[1]["references"] == clips[1].captions

    with pytest.raises(ValueError, match="caption_5"):
        read_clotho(write_csv(tmp_path / "bad.csv", header[:-1], [["a.wav", "x", "y", "z", "w"]]), tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        read_clotho(write_csv(tmp_path / "missing.csv", header, [["missing.wav", *"abcde"]]), tmp_path)
    with pytest.raises(ValueError, match="no rows"):
        read_clotho(write_csv(tmp_path / "empty.csv", header, []), tmp_path)


def test_audiocaps_reader_groups_captions_and_finds_file_names(tmp_path):
    write_noise_wav(tmp_path / "Yabc123.wav")  # one downloader's naming
    write_noise_wav(tmp_path / "xyz_30.wav")  # another one's: <id>_<start>
    path = write_csv(tmp_path / "train.csv", ["audiocap_id", "youtube_id", "start_time", "caption"], [
        [1, "abc123", 0, "A dog barks"], [2, "xyz", 30, "Wind blows"], [3, "abc123", 0, "A dog is barking"],
    ])
    clips = {c.id: c for c in read_audiocaps(path, tmp_path)}
    assert clips["abc123"].captions == ["A dog barks", "A dog is barking"]
    assert clips["abc123"].path.name == "Yabc123.wav" and clips["xyz"].path.name == "xyz_30.wav"
    with pytest.raises(ValueError, match="youtube_id"):
        read_audiocaps(write_csv(tmp_path / "bad.csv", ["id", "caption"], [[1, "x"]]), tmp_path)


def test_generic_csv_reader(tmp_path):
    write_noise_wav(tmp_path / "x.wav")
    path = write_csv(tmp_path / "c.csv", ["file", "caption"], [["x.wav", "one"], ["x.wav", "two"]])
    (clip,) = read_caption_csv(path, tmp_path)
    assert clip.captions == ["one", "two"]


def _runs(row: torch.Tensor) -> torch.Tensor:
    """Lengths of the runs of True in a 1-d bool tensor."""
    edges = torch.diff(torch.cat([torch.tensor([0]), row.int(), torch.tensor([0])]))
    return (edges == -1).nonzero().flatten() - (edges == 1).nonzero().flatten()


def test_span_masks_rate_spans_and_independent_positions():
    g = torch.Generator().manual_seed(0)
    masks = torch.stack([span_mask(750, 16, prob=0.15, span=10, generator=g) for _ in range(64)])  # [64, 750, 16]
    assert masks.shape == (64, 750, 16)
    # 15 % of frames in spans of 10; overlapping spans bring the covered share a little below 15 %
    assert 0.12 < masks.float().mean().item() < 0.15
    runs = torch.cat([_runs(masks[i, :, k]) for i in range(4) for k in range(16)])
    assert len(runs) > 0 and (runs >= 10).all()  # masked runs are whole spans (or overlaps of them)
    assert not torch.equal(masks[:, :, 0], masks[:, :, 1])  # each codebook draws its own positions


def test_span_count_is_drawn_once_per_clip_as_officially():
    # prob * frames / span = 0.5: floor(0.5 + u) spans, 0 or 1. The official code draws u once per
    # clip, so a clip's 16 codebooks are all masked or all clean; a u per codebook would mix them.
    g = torch.Generator().manual_seed(1)
    masked_codebooks = [int(span_mask(20, 16, prob=0.25, span=10, generator=g).any(0).sum()) for _ in range(200)]
    assert set(masked_codebooks) == {0, 16}
    # and the span count caps as officially: never more spans than fit
    assert span_mask(12, 16, prob=1.0, span=10, generator=g).sum(0).eq(10).all()  # floor(1.2 + u) -> 1
    assert span_mask(4, 2, prob=1.0, span=10, generator=g).all()  # shorter than a span: one span of the clip
