"""Embeddings for folders of audio: ``python -m hear_codec.embed PATH... --model CKPT --out DIR``.

For each audio file (any format soundfile reads, any rate and channel count: mixed down to mono
and resampled to the model's 24 kHz) it writes, under DIR, at the file's name (its path below the
folder given, or its file name):

    NAME.scene_embedding.npy       [D] float32, as get_scene_embeddings
    NAME.timestamp_embeddings.npy  [T, D] float32, as get_timestamp_embeddings
    NAME.timestamps.npy            [T] float32: each frame's centre in milliseconds

and DIR/index.json: the model and options, and every file with its name, duration, frames and
status, unreadable files with the reason. Every file is written to a temporary name and renamed,
so a killed run leaves only complete files; running the same command again skips the files that
are done (all their outputs present, with a whole .npy of the right shape) and redoes the rest.
Clips of the same length run through the model together. A file longer than one batch of
chunks is streamed: decoded, resampled and embedded block by block, its timestamp embeddings
written to their .npy as they are computed, so memory does not grow with its length.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from . import cli
from .errors import DiskFullError, PublishedWeightsUnavailable, UserError
from .files import atomic_path, stale_temporaries, write_bytes, write_json

INDEX = "index.json"
INDEX_FORMAT = "hear_codec.embed/1"
OUTPUTS = {  # --outputs choice -> the files it writes, by suffix
    "scene": ("scene_embedding",),
    "timestamp": ("timestamp_embeddings", "timestamps"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hear_codec.embed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: python -m hear_codec.embed recordings/ extra.flac --model runs/demo/last.ckpt.hearcodec "
               "--out embeddings/ --layer -1")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="audio files, or folders searched recursively for files with an audio suffix "
                        "(.wav .flac .ogg .mp3 ...; see hear_codec.audio.AUDIO_EXTENSIONS)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (created); rerunning with the same DIR resumes, skipping files already done")
    p.add_argument("--model", metavar="CKPT",
                   help="a hear_codec checkpoint or a published EnCodecMAE file/folder (default: the published "
                        "model hear_codec.load_model() downloads)")
    p.add_argument("--published", metavar="NAME",
                   help="a published EnCodecMAE model by name (python -m hear_codec.published lists them), "
                        "downloaded into the Hugging Face cache on first use, as load_model(published=NAME)")
    p.add_argument("--model-options", default="{}", metavar="JSON",
                   help="load_model options as heareval takes them, e.g. '{\"precision\": \"fp32\", "
                        "\"chunk_context\": 0.5}' (docs/embedding.md lists them; sample_rate is not needed here)")
    p.add_argument("--layer", type=int, metavar="N",
                   help="encoder layer to embed with (default -1, the last); same as \"layer\" in --model-options")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device to run the model on (default: cuda if available, else cpu)")
    p.add_argument("--outputs", nargs="+", choices=sorted(OUTPUTS), default=sorted(OUTPUTS),
                   help="which embeddings to write (default: both)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it is off anyway when stderr is not a terminal)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    from tqdm import tqdm

    from . import load_model
    from .audio import AudioReadError, audio_info, read_audio

    out = Path(args.out)
    files = list_inputs(args.paths)
    options = parse_options(args.model_options, args.layer, args.published)
    if args.model is not None and "published" in options:
        raise UserError("give either --model or --published, not both")
    config = {"format": INDEX_FORMAT, "model": None if args.model is None else str(Path(args.model).resolve()),
              "model_options": options, "outputs": sorted(args.outputs)}
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    try:
        model = load_model(args.model, **options).to(args.device)
    except PublishedWeightsUnavailable:  # says itself what it could not download
        raise
    except (UserError, OSError, ValueError, TypeError) as e:  # a bad path, file or option
        raise UserError(f"cannot load the model: {e}") from e
    prepare_output_dir(out, config)
    suffixes = [s for name in config["outputs"] for s in OUTPUTS[name]]
    dim = model.scene_embedding_size

    entries, unreadable = [], []
    for name, path in files:
        try:
            info = audio_info(path)
        except AudioReadError as e:
            unreadable.append({"name": name, "path": str(path), "error": str(e)})
            continue
        entries.append({"name": name, "path": str(path), "seconds": info.seconds, "sample_rate": info.sample_rate,
                        "channels": info.channels, "samples": info.frames_at(model.model.sample_rate)})
    chunks_per_call = model.effective_batch_size(torch.device(args.device))
    longest_batched = chunks_per_call * model.model.chunk_samples  # longer files are streamed, one by one
    streamed = {e["name"] for e in entries if e["samples"] > longest_batched}
    batches = batches_by_length([e for e in entries if e["name"] not in streamed], chunks_per_call,
                                model.model.chunk_samples)
    batches += [[e] for e in sorted(entries, key=lambda e: (e["samples"], e["name"])) if e["name"] in streamed]
    done = 0
    for e in entries:
        problems = output_problems(out, e["name"], suffixes, dim)
        done += not problems
        for path, problem in problems.items():
            if problem != "missing":
                print(f"damaged output {path} ({problem}): embedding {e['name']} again", file=sys.stderr)
    print(f"{len(entries)} audio files ({done} already done), {len(unreadable)} unreadable; "
          f"model on {args.device} in {model.resolved_precision}", file=sys.stderr)

    def failed(e, error):
        unreadable.append({"name": e["name"], "path": e["path"], "error": str(error)})
        entries.remove(e)

    with tqdm(total=len(entries), initial=done, unit="file", disable=args.no_progress or None) as progress:
        for batch in batches:
            todo = [e for e in batch if not is_done(out, e["name"], suffixes, dim)]
            if not todo:
                continue
            if batch[0]["name"] in streamed:
                try:
                    embed_streamed(model, batch[0], out, config["outputs"])
                except AudioReadError as error:  # a header that reads, data that does not
                    failed(batch[0], error)
                progress.update(1)
                continue
            # The whole batch runs even when some of it is done: the same batches as an
            # uninterrupted run compute the same numbers.
            clips = []
            for e in batch:
                try:
                    clips.append((e, read_audio(e["path"], model.model.sample_rate)[0]))
                except AudioReadError as error:  # a header that reads, data that does not
                    failed(e, error)
                    progress.update(1 if e in todo else 0)
            for same_length in group_by_length(clips):
                results = embed_clips(model, [wav for _, wav in same_length], config["outputs"])
                for (e, _), result in zip(same_length, results):
                    if e in todo:
                        for suffix in suffixes:
                            save_npy(out / f"{e['name']}.{suffix}.npy", result[suffix])
                        progress.update(1)
    if "timestamp" in config["outputs"]:
        for e in entries:  # read back from what was written, by this run or an earlier one
            e["frames"] = int(np.load(out / f"{e['name']}.timestamps.npy", mmap_mode="r").shape[0])
    unreadable.sort(key=lambda u: u["name"])
    with writing(out / INDEX):
        write_json(out / INDEX, {**config, "embedding_size": dim, "resolved_precision": str(model.resolved_precision),
                                 "files": entries, "unreadable": unreadable})
    for u in unreadable:
        print(f"unreadable: {u['error']}", file=sys.stderr)
    print(f"wrote embeddings of {len(entries)} files to {out} ({len(unreadable)} unreadable, listed in "
          f"{out / INDEX})", file=sys.stderr)
    return 0


def embed_streamed(model, entry: dict, out: Path, outputs) -> None:
    """Embed one long file block by block (hear_codec.audio.stream_audio, HearModel.embed_stream),
    writing its timestamp embeddings to their .npy as they are computed."""
    from .api import StreamLengthError
    from .audio import AudioReadError, stream_audio

    rate, name = model.model.sample_rate, entry["name"]
    num_samples = stream_audio(entry["path"], rate).num_samples
    try:
        result = _embed_streamed(model, entry, out, outputs, num_samples)
    except StreamLengthError:  # a compressed file whose header misstates its length: count, then again
        num_samples = sum(len(block) for block in stream_audio(entry["path"], rate))
        try:
            result = _embed_streamed(model, entry, out, outputs, num_samples)
        except StreamLengthError as e:
            raise AudioReadError(f"{entry['path']}: two decodings gave different lengths ({e})") from e
    if "scene" in outputs:
        save_npy(out / f"{name}.scene_embedding.npy", result["scene"].numpy())
    if "timestamp" in outputs:
        save_npy(out / f"{name}.timestamps.npy", result["timestamps_ms"].numpy())


def _embed_streamed(model, entry, out, outputs, num_samples) -> dict:
    from .audio import stream_audio

    blocks = stream_audio(entry["path"], model.model.sample_rate)
    if "timestamp" not in outputs:
        return model.embed_stream(blocks, num_samples, timestamps=False)
    frames = model.model.num_frames(max(num_samples, model.model.min_samples))
    path = out / f"{entry['name']}.timestamp_embeddings.npy"
    with writing(path), atomic_path(path) as tmp, open(tmp, "wb") as f:
        writer = NpyRows(f, frames, model.scene_embedding_size)
        result = model.embed_stream(blocks, num_samples, scene="scene" in outputs, write_frames=writer.write)
        writer.close()
    return result


class NpyRows:
    """A [rows, dim] float32 .npy written row block by row block into the binary file ``f``:
    the header first, then the rows as they come; close() checks that all of them came."""

    def __init__(self, f, rows: int, dim: int):
        self.f, self.rows, self.dim, self.written = f, rows, dim, 0
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                                                 "fortran_order": False, "shape": (rows, dim)})

    def write(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != self.dim or self.written + len(block) > self.rows:
            raise ValueError(f"rows {tuple(block.shape)} after {self.written} do not fit [{self.rows}, {self.dim}]")
        self.f.write(block.data)
        self.written += len(block)

    def close(self) -> None:
        if self.written != self.rows:
            raise ValueError(f"{self.written} rows written of {self.rows}")


@contextlib.contextmanager
def writing(path: Path):
    """Turn a failed write of ``path`` (a full disk, a lost mount) into one line naming it; the
    temporary file is gone by then (hear_codec.files.atomic_path) and the files written before
    are whole, so the same command resumes."""
    try:
        yield
    except DiskFullError as e:  # already one line naming the file (hear_codec.files.atomic_path)
        raise UserError(f"{e}. The files written before it are complete: once there is room, run the same "
                        "command again to resume") from e
    except OSError as e:
        reason = f"{e.strerror} ({e.filename or path})" if e.strerror else str(e)
        raise UserError(f"cannot write {path}: {reason}. The files written before it are complete: once "
                        "there is room, run the same command again to resume") from e


def list_inputs(paths) -> list:
    """[(name, path)] for every audio file given or found below a folder given, in a stable order.
    Names are paths relative to the folder given (a file given directly: its file name)."""
    from .audio import find_audio_files

    named, seen = {}, set()
    for arg in paths:
        root = Path(arg)
        if root.is_dir():
            found = [(p.relative_to(root).as_posix(), p) for p in find_audio_files(root)]
        elif root.is_file():
            found = [(root.name, root)]
        else:
            raise UserError(f"{arg}: no such file or folder")
        for name, path in found:
            if path.resolve() in seen:
                continue
            if name in named:
                raise UserError(f"{path} and {named[name]} would both be written as {name!r}; "
                                 "give their common parent folder instead")
            named[name] = path
            seen.add(path.resolve())
    if not named:
        raise UserError(f"no audio files in {' '.join(map(str, paths))}")
    return list(named.items())


def parse_options(text: str, layer: int | None, published: str | None = None) -> dict:
    options = cli.parse_model_options(text)
    for key, value, option in (("layer", layer, "--layer"), ("published", published, "--published")):
        if value is not None:
            if key in options:
                raise UserError(f"give the {key} either with {option} or in --model-options, not both")
            options[key] = value
    options.pop("sample_rate", None)  # files are resampled to the model's rate directly
    return options


def prepare_output_dir(out: Path, config: dict) -> None:
    """Create ``out``; a folder that holds a run with another model or options is refused."""
    out.mkdir(parents=True, exist_ok=True)
    index = out / INDEX
    if index.exists():
        try:
            previous = json.loads(index.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"{index} is unreadable ({e}); remove it or choose another --out") from e
        mine = {k: previous.get(k) for k in config}
        if mine != config:
            raise UserError(f"{out} holds embeddings of another run ({json.dumps(mine)}); "
                             f"this run is {json.dumps(config)}. Choose another --out, or delete {out}")
    else:  # recorded now, so that a killed run is resumed only with the same model and options
        with writing(index):
            write_json(index, {**config, "files": None})
    for stale in stale_temporaries(out):  # left by a run killed while writing; never a live writer's
        stale.unlink(missing_ok=True)


def batches_by_length(entries, chunks_per_call: int, chunk_samples: int) -> list:
    """Entries sorted by length (then name), cut into batches of clips of one length that hold
    about ``chunks_per_call`` chunks of ``chunk_samples`` (at least one clip)."""
    batches = []
    for e in sorted(entries, key=lambda e: (e["samples"], e["name"])):
        size = max(1, chunks_per_call // -(-e["samples"] // chunk_samples))
        if batches and batches[-1][0]["samples"] == e["samples"] and len(batches[-1]) < size:
            batches[-1].append(e)
        else:
            batches.append([e])
    return batches


def group_by_length(clips) -> list:
    """[(entry, wav)] -> lists of equal decoded length (a header can misstate a compressed file's length)."""
    groups = {}
    for entry, wav in clips:
        groups.setdefault(wav.shape[0], []).append((entry, wav))
    return list(groups.values())


def embed_clips(model, wavs, outputs) -> list:
    """Equal-length clips at 24 kHz -> one dict of numpy arrays per clip, keyed by output suffix."""
    from .api import to_device

    wav = to_device(torch.stack(wavs), model.device)
    result = model.embed(wav, scene="scene" in outputs, timestamps="timestamp" in outputs)
    result = {k: v.cpu().numpy() for k, v in result.items()}
    per_clip = []
    for i in range(len(wavs)):
        arrays = {}
        if "scene" in result:
            arrays["scene_embedding"] = result["scene"][i]
        if "timestamp" in result:
            arrays["timestamp_embeddings"] = result["timestamp"][i]
            arrays["timestamps"] = result["timestamps_ms"][i]
        per_clip.append(arrays)
    return per_clip


def is_done(out: Path, name: str, suffixes, dim: int) -> bool:
    """Whether every output of ``name`` is there, a whole .npy of the expected shape."""
    return not output_problems(out, name, suffixes, dim)


def output_problems(out: Path, name: str, suffixes, dim: int) -> dict:
    """{path: what is wrong} for the outputs of ``name`` that are missing ("missing"), truncated,
    empty, not float32 or of another shape than [D], [T] and [T, D] with one T: read from each
    .npy's header and size, not its data."""
    problems, frames = {}, {}
    for suffix in suffixes:
        path = out / f"{name}.{suffix}.npy"
        if not path.is_file():
            problems[path] = "missing"
            continue
        problem, shape = npy_problem(path)
        if problem is None:
            want = {"scene_embedding": ["D"], "timestamps": ["T"], "timestamp_embeddings": ["T", "D"]}[suffix]
            if len(shape) != len(want) or (want[-1] == "D" and shape[-1] != dim):
                problem = f"shape {list(shape)}, expected [{', '.join(want)}] with D = {dim}"
            elif want[0] == "T":
                frames[path] = shape[0]
        if problem is not None:
            problems[path] = problem
    if len(set(frames.values())) > 1:
        problems.update({path: f"{t} frames, another output of {name} has {set(frames.values()) - {t}}"
                         for path, t in frames.items()})
    return problems


def npy_problem(path: Path) -> tuple:
    """(None, shape) for a whole float32 .npy, else (what is wrong, None): read from its header and
    its size, without reading the data."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0) else
                      np.lib.format.read_array_header_2_0)(f)
            shape, _, dtype = header
            size = path.stat().st_size
            expected = f.tell() + math.prod(shape) * dtype.itemsize
    except (OSError, ValueError) as e:  # empty, truncated header, not an .npy
        return f"unreadable .npy: {e}", None
    if dtype != np.float32:
        return f"dtype {dtype}, expected float32", None
    if size != expected:
        return f"{size} bytes, expected {expected}: truncated", None
    return None, shape


def save_npy(path: Path, array: np.ndarray) -> None:
    """np.save to a temporary file beside ``path``, then rename: a reader never sees half a file."""
    with writing(path):
        write_bytes(path, lambda f: np.save(f, np.ascontiguousarray(array)))


if __name__ == "__main__":
    cli.run(main)
