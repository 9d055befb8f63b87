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
are done. Clips of the same length run through the model together.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from . import cli
from .errors import UserError
from .files import write_bytes, write_json

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
    p.add_argument("--model-options", default="{}", metavar="JSON",
                   help="load_model options as heareval takes them, e.g. '{\"precision\": \"fp32\", "
                        "\"chunk_context\": 0.5}' (README lists them; sample_rate is not needed here)")
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
    options = parse_options(args.model_options, args.layer)
    config = {"format": INDEX_FORMAT, "model": None if args.model is None else str(Path(args.model).resolve()),
              "model_options": options, "outputs": sorted(args.outputs)}
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    try:
        model = load_model(args.model, **options).to(args.device)
    except (UserError, OSError, ValueError, TypeError) as e:  # a bad path, file or option, or weights not at hand
        raise UserError(f"cannot load the model: {e}") from e
    prepare_output_dir(out, config)
    suffixes = [s for name in config["outputs"] for s in OUTPUTS[name]]

    entries, unreadable = [], []
    for name, path in files:
        try:
            info = audio_info(path)
        except AudioReadError as e:
            unreadable.append({"name": name, "path": str(path), "error": str(e)})
            continue
        entries.append({"name": name, "path": str(path), "seconds": info.seconds, "sample_rate": info.sample_rate,
                        "channels": info.channels, "samples": info.frames_at(model.model.sample_rate)})
    batches = batches_by_length(entries, model.effective_batch_size(torch.device(args.device)),
                                model.model.chunk_samples)
    done = sum(is_done(out, e["name"], suffixes) for e in entries)
    print(f"{len(entries)} audio files ({done} already done), {len(unreadable)} unreadable; "
          f"model on {args.device} in {model.resolved_precision}", file=sys.stderr)
    with tqdm(total=len(entries), initial=done, unit="file", disable=args.no_progress or None) as progress:
        for batch in batches:
            todo = [e for e in batch if not is_done(out, e["name"], suffixes)]
            if not todo:
                continue
            # The whole batch runs even when some of it is done: the same batches as an
            # uninterrupted run compute the same numbers.
            clips = []
            for e in batch:
                try:
                    clips.append((e, read_audio(e["path"], model.model.sample_rate)[0]))
                except AudioReadError as error:  # a header that reads, data that does not
                    unreadable.append({"name": e["name"], "path": e["path"], "error": str(error)})
                    entries.remove(e)
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
    write_json(out / INDEX, {**config, "embedding_size": model.scene_embedding_size,
                             "resolved_precision": model.resolved_precision,
                             "files": entries, "unreadable": unreadable})
    for u in unreadable:
        print(f"unreadable: {u['error']}", file=sys.stderr)
    print(f"wrote embeddings of {len(entries)} files to {out} ({len(unreadable)} unreadable, listed in "
          f"{out / INDEX})", file=sys.stderr)
    return 0


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


def parse_options(text: str, layer: int | None) -> dict:
    options = cli.parse_model_options(text)
    if layer is not None:
        if "layer" in options:
            raise UserError("give the layer either with --layer or in --model-options, not both")
        options["layer"] = layer
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
        write_json(index, {**config, "files": None})
    for stale in out.rglob(".*.tmp"):  # left by a run killed while writing
        stale.unlink()


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


def is_done(out: Path, name: str, suffixes) -> bool:
    return all((out / f"{name}.{suffix}.npy").is_file() for suffix in suffixes)


def save_npy(path: Path, array: np.ndarray) -> None:
    """np.save to a temporary file beside ``path``, then rename: a reader never sees half a file."""
    write_bytes(path, lambda f: np.save(f, np.ascontiguousarray(array)))


if __name__ == "__main__":
    cli.run(main)
