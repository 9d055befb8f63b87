"""training/data/manifest.py: listing folders and manifests, probing, skipping and reporting bad
files, the validation split, the official length-proportional draws."""
import hashlib

from audio_files import make_folder
from training.data import manifest as M
from training.data.index import PathTable


def test_bad_files_are_skipped_counted_and_reported(tmp_path):
    folder = make_folder(tmp_path / "audio")
    rows = M.list_sources(folder)
    assert len(rows) == 5  # the .txt is not listed
    entries, skipped = M.probe_files(rows)
    assert sorted(e.path.split("/")[-1] for e in entries) == ["a48k_stereo.wav", "b16k.flac", "c24k.wav"]
    reasons = {p.split("/")[-1]: r for p, r in skipped}
    assert set(reasons) == {"corrupt.wav", "empty.wav"}
    assert reasons["corrupt.wav"].startswith("unreadable") and reasons["empty.wav"].startswith("empty")
    index, skipped, listed = M.index_sources(folder)
    assert listed == 5 and [p.split("/")[-1] for p in index.paths] == [e.path.split("/")[-1] for e in entries]
    M.write_report(tmp_path / "out", index, skipped)
    report = (tmp_path / "out" / "skipped_files.tsv").read_text()
    assert "corrupt.wav\tunreadable" in report and "empty.wav\tempty" in report
    # the index is a manifest with durations that lists only the readable files
    again, skipped_again = M.probe_files(M.list_sources(tmp_path / "out" / "data_index.tsv"))
    assert len(again) == 3 and not skipped_again
    assert sorted(round(e.seconds, 2) for e in again) == [1.0, 3.0, 5.0]


def test_manifest_relative_paths(tmp_path):
    folder = make_folder(tmp_path / "audio")
    (tmp_path / "list.txt").write_text("# comment\naudio/b16k.flac\n\naudio/sub/c24k.wav\t5.0\n")
    rows = M.list_sources(tmp_path / "list.txt")
    assert rows == [(str(folder / "b16k.flac"), None), (str(folder / "sub" / "c24k.wav"), 5.0)]


def test_split_is_stable_and_disjoint():
    paths = [f"/x/{i}.wav" for i in range(100)]
    train, val = M.split_train_val(paths, 0.05, 200)
    assert len(val) == 5 and len(train) == 95
    assert sorted(train.tolist() + val.tolist()) == list(range(100))
    train2, val2 = M.split_train_val(paths + ["/x/new.wav"], 0.05, 200)
    assert len(val2) == 5 and len(set(val.tolist()) - set(val2.tolist())) <= 1  # adding a file moves at most one
    # the same split from the paths' arrays (PathTable) as from a list
    assert M.split_train_val(PathTable.from_strings(paths), 0.05, 200)[1].tolist() == val.tolist()


def test_validation_files_are_chosen_by_a_hash_of_their_path_not_by_their_order():
    """Files of two folders: the held-out ones are those whose path hashes lowest (an independent
    ranking here), so both folders give validation files; by sorted path they would all be the
    first folder's."""
    paths = [f"/data/{folder}/{i:03d}.wav" for folder in ("a", "b") for i in range(100)]
    _, val = M.split_train_val(paths, 0.1, 200)
    by_hash = sorted(paths, key=lambda p: hashlib.md5(p.encode()).hexdigest())[:20]
    assert {paths[i] for i in val} == set(by_hash)
    assert {paths[i].split("/")[2] for i in val} == {"a", "b"}


def official_compensate_lengths(seconds, chunk_length=4.0):
    """habla-liaa/encodecmae tasks/data/__init__.py at 2dd6759 (compensate_lengths), per file:
    ``int(max(1, row['duration'] // chunk_length))`` indices per epoch (MAX_AUDIO_DURATION = 4)."""
    return int(max(1, seconds // chunk_length))


def test_draws_per_epoch_follow_the_official_rule_and_the_cap():
    for seconds in (0.5, 2, 3.99, 4, 7.9, 8, 40, 400, 9999):
        assert M.draws_per_epoch(seconds, 4.0) == official_compensate_lengths(seconds), seconds
    assert M.draws_per_epoch(12000, 4.0) == 2500  # capped at --max-file-seconds 10000
    assert M.draws_per_epoch(99999, 4.0, max_file_seconds=0) == 24999  # 0 = no cap
