"""training/data/index.py: strings in one byte blob, the index's segments, and why: a forked
DataLoader worker shares the index instead of copying it."""
import gc
import multiprocessing

import numpy as np

from training.data import crops as D
from training.data.index import AudioIndex, PathTable


def test_path_table_round_trips_strings_and_joins():
    names = ["/a/b.wav", "", "/données/é.flac", "rel/x.wav"]
    table = PathTable.from_strings(names)
    assert len(table) == 4 and list(table) == names and table[2] == "/données/é.flac"
    assert table.encoded()[2] == "/données/é.flac".encode()
    joined = PathTable.concat([table, PathTable.from_strings(["/z.wav"])])
    assert list(joined) == names + ["/z.wav"]
    # a table whose blob holds more than its strings (a manifest's bytes): only the ranges count
    blob = np.frombuffer(b"xx/one\t/two\n", dtype=np.uint8)
    assert list(PathTable(blob, [2, 7], [6, 11])) == ["/one", "/two"]


def test_concatenated_indices_keep_each_items_segments_and_folder():
    a = AudioIndex.of_files(["/raw/a.wav"], [3.0])
    b = AudioIndex(PathTable.from_strings(["/src/b.flac", "/src/c.flac"]), np.array([2.0, 1.0]),
                   np.array([48000, 24000]), np.array([0, 2, 3]), PathTable.from_strings(["b0.wav", "b1.wav", "c0.wav"]),
                   np.array([0, 24000, 0]), np.array([24000, 24000, 24000]), np.array([0, 0], dtype=np.int32),
                   ("/prepared",))
    both = AudioIndex.concat([a, b, b])
    assert list(both.paths) == ["/raw/a.wav", "/src/b.flac", "/src/c.flac", "/src/b.flac", "/src/c.flac"]
    assert both.frames.tolist() == [-1, 48000, 24000, 48000, 24000]
    assert both.seg_first.tolist() == [0, 0, 2, 3, 5, 6] and both.root.tolist() == [-1, 0, 0, 1, 1]
    assert both.segment_path(4, 5) == "/prepared/c0.wav" and both.roots == ("/prepared", "/prepared")


def _child_growth(crops, queue):
    """In a forked child: touch every file's path and length, and run the garbage collector
    (which walks every tracked Python object), then report the private memory it made, in MB."""
    def private():
        with open("/proc/self/smaps_rollup") as f:
            return sum(int(line.split()[1]) for line in f if line.startswith(("Private_Dirty", "Private_Clean"))) / 1024
    before = private()
    for i in range(len(crops)):
        crops.path(i), crops.seconds(i)
    gc.collect()
    queue.put(private() - before)


def worker_growth(crops) -> float:
    gc.collect()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_growth, args=(crops, queue))
    child.start()
    growth = queue.get(timeout=120)
    child.join()
    return growth


def test_a_forked_worker_shares_the_index_pages(tmp_path):
    """pytorch/pytorch#13246: Python objects inherited by a DataLoader worker are copied into it
    page by page as their reference counts change. 200 000 files held as arrays: a worker that
    touches each of them and collects garbage copies no more than it does for 10 files (held as
    objects, the index is about 40 MB, copied into every worker)."""
    def crops(n):
        paths = [f"/data/audioset/unbalanced/{i:08d}_Yabcdefghijk.flac" for i in range(n)]
        return D.AudioCrops(AudioIndex.of_files(paths, np.full(n, 10.0)), 4.0)
    small, large = crops(10), crops(200_000)
    growth = worker_growth(large) - worker_growth(small)
    assert growth < 8, f"{growth:.0f} MB more copied into the worker for 200 000 files than for 10"


def test_the_datasets_hold_numpy_arrays_not_an_object_per_file():
    crops = D.AudioCrops(AudioIndex.of_files([f"/x/{i}.wav" for i in range(1000)], np.full(1000, 5.0)), 4.0)

    def leaves(obj, path="crops"):
        if isinstance(obj, (D.AudioCrops, AudioIndex, PathTable)):
            for name, value in vars(obj).items():
                yield from leaves(value, f"{path}.{name}")
        else:
            yield path, obj

    found = dict(leaves(crops))
    bulky = {k: type(v).__name__ for k, v in found.items()
             if not isinstance(v, (np.ndarray, int, float, str)) and not (isinstance(v, tuple) and len(v) <= 1)}
    assert bulky == {}
    assert found["crops.draws_per_epoch"].dtype == np.int64 and found["crops.index.paths.blob"].dtype == np.uint8
