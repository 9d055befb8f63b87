"""README.md's examples run.

README's conventions, which this test relies on: shell commands in ```bash blocks, one command per
line (a trailing backslash continues it; ``#`` starts a comment; ``.venv/bin/`` prefixes allowed);
Python in ```python blocks.

* Every ```python block runs, in README's order in one process, in a temporary folder, offline
  (HF_HUB_OFFLINE=1) with a Hugging Face cache that holds a tiny random model in the published
  EnCodecMAE format under every published name; the files it names (checkpoints, audio) are
  generated first.
* Every ``python -m MODULE ...``, ``torchrun ... -m MODULE ...`` and console-script line
  (``hear-validator``) of a ```bash block has its options parsed by the module's own argparse
  definition, without running it: ``argparse.ArgumentParser.parse_args`` parses, then stops the
  command before any work. A renamed or misspelt option fails with argparse's own message.
  Commands that run offline in seconds (:data:`RUN_FOR_REAL`) then run for real, on generated
  inputs and tiny models.
* ``make`` lines must name targets of the Makefile; ``pip install`` lines' ``-r`` files and
  extras must exist.

Each failure names the README line.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hub_cache import fake_hub, offline_env, tiny_v2_file

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# Commands that run offline in seconds on a tiny model and generated audio: run for real.
RUN_FOR_REAL = {"hear_codec.embed", "hear_codec.published", "hear_codec.convert"}
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
MODEL_SUFFIXES = (".hearcodec", ".ckpt", ".pt")


@dataclass
class Block:
    lang: str
    lines: list = field(default_factory=list)  # (README line number, text)


def code_blocks(path: Path = README) -> list[Block]:
    blocks, current = [], None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = re.match(r"^\s*```\s*([\w+-]*)", line)
        if current is None and fence:
            current = Block(fence.group(1).lower())
        elif current is not None and line.strip().startswith("```"):
            blocks.append(current)
            current = None
        elif current is not None:
            current.lines.append((number, line))
    return blocks


@dataclass
class Command:
    line: int      # README line where the command starts
    text: str      # as written (continuations joined)
    argv: list     # words after shell parsing, comments dropped

    def __str__(self):
        return f"README.md:{self.line}: {self.text.strip()}"


def shell_commands(path: Path = README) -> list[Command]:
    """The commands of every ```bash/```sh block: continuation lines joined, split at ``&&`` and ``;``."""
    found = []
    for block in code_blocks(path):
        if block.lang not in ("bash", "sh", "shell", "console"):
            continue
        pending, start = "", None
        for number, text in block.lines:
            if start is None:
                start = number
            pending += text
            if pending.rstrip().endswith("\\"):
                pending = pending.rstrip()[:-1] + " "
                continue
            words = shlex.split(pending, comments=True)
            command = []
            for word in words + [";"]:
                if word in ("&&", ";", "||"):
                    if command:
                        found.append(Command(start, pending, command))
                    command = []
                else:
                    command.append(word)
            pending, start = "", None
    return found


WRAPPERS = {"srun", "time", "/usr/bin/time", "env", "nohup"}


def program(argv: list) -> tuple[str, list]:
    """(program, its arguments) with environment assignments, wrappers (srun, time) and a
    ``.venv/bin/`` prefix dropped; shell variables become a placeholder value."""
    argv = [re.sub(r"\$\{?\w+\}?", "1", word) for word in argv]
    while argv and (re.match(r"^\w+=", argv[0]) or argv[0] in WRAPPERS):
        wrapper = argv.pop(0)
        while wrapper in WRAPPERS and argv and argv[0].startswith("-"):
            argv.pop(0)  # the wrapper's own options (srun --ntasks=..., time -v)
    if not argv:
        return "", []
    name = argv[0]
    for prefix in (".venv/bin/", "./.venv/bin/"):
        name = name[len(prefix):] if name.startswith(prefix) else name
    return name, argv[1:]


@dataclass
class Check:
    """One thing to parse: ``python -m module args`` or a console script's ``entry args``."""
    command: Command
    kind: str          # "module" | "script"
    target: str        # module name, or console script name
    args: list


def checks(command: Command) -> list[Check]:
    name, args = program(command.argv)
    if name in ("python", "python3") and args[:1] == ["-m"] and len(args) > 1:
        return [Check(command, "module", args[1], args[2:])]
    if name == "torchrun":
        at = next((i for i, a in enumerate(args) if a in ("-m", "--module")), None)
        if at is None or at + 1 >= len(args):
            return [Check(command, "script", "torchrun", args)]
        return [Check(command, "script", "torchrun", args[:at + 2]),
                Check(command, "module", args[at + 1], args[at + 2:])]
    if name in ("hear-validator",):
        return [Check(command, "script", name, args)]
    return []


def table_commands(path: Path = README) -> list[Command]:
    """The commands written as inline code in README's tables (the training recipes): every
    `` `python ...` `` / `` `make ...` `` span of a table row, one command each."""
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.lstrip().startswith("|"):
            continue
        for span in re.findall(r"`([^`]+)`", line):
            if re.match(r"(python3?|make|hear-validator|\.venv/bin/\S+) ", span):
                found.append(Command(number, span, shlex.split(span)))
    return found


def readme_commands() -> list[Command]:
    return shell_commands() + table_commands()


def command_id(command: Command) -> str:
    name, args = program(command.argv)
    return f"line{command.line}-{' '.join([name, *args[:2]])}"[:80]


# ---- parsing options without running (in one subprocess for all, so that no command's imports
# or global settings leak into the test process) ----
DRIVER = textwrap.dedent(r'''
    import argparse, contextlib, importlib, importlib.metadata, io, json, runpy, sys, warnings

    class Parsed(BaseException):
        pass

    original = argparse.ArgumentParser.parse_args
    original_init = argparse.ArgumentParser.__init__

    def no_abbreviations(self, *args, **kwargs):  # README spells every option out
        kwargs["allow_abbrev"] = False
        original_init(self, *args, **kwargs)

    argparse.ArgumentParser.__init__ = no_abbreviations

    def parse_then_stop(self, args=None, namespace=None):
        raise Parsed(original(self, args, namespace))

    argparse.ArgumentParser.parse_args = parse_then_stop
    warnings.simplefilter("ignore")
    results = []
    for kind, target, args in json.load(sys.stdin):
        err = io.StringIO()
        result = {"ok": False}
        try:
            if kind == "module":
                spec = importlib.util.find_spec(target)
                if spec is None or spec.origin is None:
                    raise ModuleNotFoundError(f"no module named {target!r}")
                if "argparse" not in open(spec.origin, encoding="utf-8").read():
                    raise RuntimeError(f"{target} does not parse its options with argparse here: "
                                       "its options cannot be checked without running it")
                sys.argv = [spec.origin, *args]
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    runpy.run_module(target, run_name="__main__", alter_sys=True)
            else:
                (entry,) = importlib.metadata.entry_points(group="console_scripts", name=target)
                function = entry.load()
                sys.argv = [target, *args]
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    function()
            result["error"] = "it ran to its end without parsing options with argparse"
        except Parsed as parsed:
            namespace = vars(parsed.args[0])
            result = {"ok": True, "namespace": {k: v if isinstance(v, (str, int, float, bool, type(None)))
                                                else [str(x) for x in v] if isinstance(v, (list, tuple))
                                                else str(v) for k, v in namespace.items()}}
        except SystemExit as e:
            result["error"] = f"exit status {e.code}: {err.getvalue().strip()[-2000:]}"
        except BaseException as e:
            result["error"] = f"{type(e).__name__}: {e} {err.getvalue().strip()[-2000:]}"
        results.append(result)
    sys.stdout.write("\n@@RESULTS@@" + json.dumps(results))
''')


def parse_all(items: list[Check], cwd: Path) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps([[c.kind, c.target, c.args] for c in items]),
                         capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert "@@RESULTS@@" in out.stdout, f"the option checker failed:\n{out.stderr[-3000:]}"
    return json.loads(out.stdout.split("@@RESULTS@@")[-1])


# The checker's own test cases (test_a_renamed_option_fails_with_argparse_s_message), parsed in
# the same subprocess as README's commands.
SELF_CHECKS = [Command(-1, "", argv) for argv in (
    ["python", "-m", "hear_codec.evaluate", "CKPT", "--tasks-dir", "t", "--out", "o"],
    ["python", "-m", "hear_codec.evaluate", "CKPT", "--tasks-dir", "t", "--grids", "fast"],
    ["python", "-m", "training.pretrain", "--preset", "enormous"],
    ["python", "-m", "hear_codec.embed", "a.wav"],
    ["python", "-m", "hear_codec.evaluate", "CKPT", "--tasks-d", "t"],
)]


@pytest.fixture(scope="module")
def parsed(tmp_path_factory):
    """{(README line, kind, target): result} for every option check of README's commands, and
    {("self", i): result} for :data:`SELF_CHECKS`."""
    items = [c for command in readme_commands() for c in checks(command)]
    own = [c for command in SELF_CHECKS for c in checks(command)]
    results = parse_all(items + own, tmp_path_factory.mktemp("readme-parse"))
    found = {(c.command.line, c.kind, c.target): r for c, r in zip(items, results)}
    found.update({("self", i): r for i, r in enumerate(results[len(items):])})
    return found


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A Hugging Face cache holding a tiny model under every published name."""
    from hear_codec import published
    return fake_hub(tmp_path_factory.mktemp("readme-hub"), *published.PUBLISHED)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    import hear_codec
    from hear_codec.checkpoint import save_checkpoint
    model = hear_codec.load_model(random_weights="encodecmae-tiny-mel256", seed=0).model
    return save_checkpoint(tmp_path_factory.mktemp("readme-ckpt") / "tiny.hearcodec", model, {"note": "random weights"})


def write_audio(path: Path, seconds: float = 1.5, rate: int = 48000):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    sf.write(path, (0.1 * rng.standard_normal((int(seconds * rate), 2))).astype(np.float32), rate)


def make_input(path: Path, tiny_checkpoint: Path, folder_of_audio: bool) -> bool:
    """Create what a README example reads at ``path`` (relative to the example's cwd), if absent:
    audio by suffix, a tiny model by suffix, a folder of audio. False if its kind is unknown."""
    if path.exists():
        return True
    if path.suffix.lower() in AUDIO_SUFFIXES:
        write_audio(path)
    elif path.suffix in (".hearcodec", ".ckpt"):
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny_checkpoint, path)
    elif path.suffix == ".pt":
        path.parent.mkdir(parents=True, exist_ok=True)
        tiny_v2_file(path)
    elif folder_of_audio and not path.suffix:
        write_audio(path / "a.wav")
        write_audio(path / "sub" / "b.flac", seconds=0.7, rate=16000)
    else:
        return False
    return True


# ---- the tests ----
def test_readme_has_examples():
    assert [b for b in code_blocks() if b.lang == "python"], "README.md has no ```python block"
    assert readme_commands(), "README.md has no ```bash commands"


def test_python_blocks_run(tmp_path, hub, tiny_checkpoint):
    """Every ```python block, in order, in one process: offline, the published names in a fake
    hub cache, the files the blocks name generated beforehand."""
    blocks = [b for b in code_blocks() if b.lang == "python"]
    work = tmp_path / "work"
    work.mkdir()
    for block in blocks:
        code = "\n".join(text for _, text in block.lines)
        for literal in re.findall(r"[\"']([^\"'\s]+\.(?:hearcodec|ckpt|pt|wav|flac|ogg|mp3))[\"']", code):
            make_input(work / literal, tiny_checkpoint, folder_of_audio=False)
    script = ["import sys"]
    for block in blocks:
        first = block.lines[0][0]
        code = "\n" * (first - 1) + "\n".join(text for _, text in block.lines)
        script.append(f"print('README block at line {first}', file=sys.stderr)")
        script.append(f"exec(compile({code!r}, 'README.md', 'exec'), globals())")
    env = offline_env(tmp_path, HF_HUB_CACHE=str(hub), HEAR_CODEC_CACHE_DIR=str(tmp_path / "cache"),
                      CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, "-c", "\n".join(script)], cwd=work, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, (f"a README ```python block failed (the traceback names its README.md line):\n"
                                 f"{out.stderr[-4000:]}")


@pytest.mark.parametrize("command", readme_commands(), ids=command_id)
def test_command(command, parsed, hub, tiny_checkpoint, tmp_path):
    name, args = program(command.argv)
    if name == "make":
        targets = set(re.findall(r"^(\w[\w.-]*):", (REPO / "Makefile").read_text(), re.M))
        wanted = [a for a in args if not a.startswith("-") and "=" not in a]
        missing = [t for t in wanted if t not in targets]
        assert not missing, f"{command}\n  make has no target {missing} (Makefile targets: {sorted(targets)})"
        return
    if name in ("pip", "pip3") or (name in ("python", "python3") and args[:2] == ["-m", "pip"]):
        check_pip(command, args)
        return
    items = checks(command)
    if not items:
        pytest.skip(f"{command}: not a command this test knows how to check")
    for item in items:
        result = parsed[(command.line, item.kind, item.target)]
        assert result["ok"], (f"{command}\n  {item.target}'s options do not parse: {result['error']}")
    module = items[-1]
    if module.kind == "module" and module.target in RUN_FOR_REAL:
        run_for_real(command, module, parsed[(command.line, module.kind, module.target)]["namespace"],
                     hub, tiny_checkpoint, tmp_path)


def check_pip(command: Command, args: list):
    import configparser
    extras = configparser.ConfigParser()
    extras.read(REPO / "setup.cfg")
    known = set(extras["options.extras_require"]) if extras.has_section("options.extras_require") else set()
    for i, word in enumerate(args):
        if word in ("-r", "--requirement"):
            assert (REPO / args[i + 1]).is_file(), f"{command}\n  no file {args[i + 1]}"
        local = re.match(r"^\.(?:\[([\w,\s-]+)\])?$", word)
        if local and local.group(1):
            missing = {e.strip() for e in local.group(1).split(",")} - known
            assert not missing, f"{command}\n  setup.cfg has no extra {sorted(missing)} (extras: {sorted(known)})"


def run_for_real(command: Command, module: Check, namespace: dict, hub: Path, tiny_checkpoint: Path, tmp_path: Path):
    """Run the command offline in a temporary folder, its inputs generated first."""
    work = tmp_path / "work"
    work.mkdir()
    inputs = []
    if module.target == "hear_codec.embed":
        inputs = [(p, True) for p in namespace["paths"]] + ([(namespace["model"], False)] if namespace["model"] else [])
    elif module.target == "hear_codec.convert":
        inputs = [(a, False) for a in module.args[:1]]
    for path, folder in inputs:
        if not make_input(work / path, tiny_checkpoint, folder):
            pytest.skip(f"{command}: options checked; cannot make an input like {path!r} to run it")
    env = offline_env(tmp_path, HF_HUB_CACHE=str(hub), HEAR_CODEC_CACHE_DIR=str(tmp_path / "cache"),
                      CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, "-m", module.target, *module.args], cwd=work, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{command}\n  exit status {out.returncode}:\n{out.stderr[-3000:]}"
    if module.target == "hear_codec.embed":
        index = json.loads((work / namespace["out"] / "index.json").read_text())
        assert index["files"] and not index["unreadable"], index


# ---- the test's own parsing, on a README written for it ----
def test_parsing_of_readme_conventions(tmp_path):
    page = tmp_path / "README.md"
    page.write_text(textwrap.dedent("""\
        ```bash
        make demo    # a comment
        .venv/bin/python -m hear_codec.embed a/ b.flac --model m.ckpt \\
            --out out/ --layer -1   # continued
        torchrun --nnodes 2 --node-rank $NODE_RANK -m training.pretrain --preset large
        OMP_NUM_THREADS=1 srun --ntasks=2 python -m training.caption demo --out x && echo done
        ```
        ```python
        print(1)
        ```
        """))
    commands = shell_commands(page)
    assert [(c.line, program(c.argv)) for c in commands] == [
        (2, ("make", ["demo"])),
        (3, ("python", ["-m", "hear_codec.embed", "a/", "b.flac", "--model", "m.ckpt", "--out", "out/",
                        "--layer", "-1"])),
        (5, ("torchrun", ["--nnodes", "2", "--node-rank", "1", "-m", "training.pretrain", "--preset", "large"])),
        (6, ("python", ["-m", "training.caption", "demo", "--out", "x"])),
        (6, ("echo", ["done"])),
    ]
    kinds = [[(c.kind, c.target, c.args) for c in checks(x)] for x in commands]
    assert kinds[2] == [("script", "torchrun", ["--nnodes", "2", "--node-rank", "1", "-m", "training.pretrain"]),
                        ("module", "training.pretrain", ["--preset", "large"])]
    assert [b.lang for b in code_blocks(page)] == ["bash", "python"]


def test_a_renamed_option_fails_with_argparse_s_message(parsed):
    """The check is argparse's own: a wrong option, a wrong choice, a missing argument and an
    abbreviated option fail; the right ones parse, and nothing runs (:data:`SELF_CHECKS`)."""
    results = [parsed[("self", i)] for i in range(len(SELF_CHECKS))]
    assert results[0]["ok"] and results[0]["namespace"]["tasks_dir"] == "t", results[0]
    assert not results[1]["ok"] and "unrecognized arguments: --grids fast" in results[1]["error"], results[1]
    assert not results[2]["ok"] and "invalid choice: 'enormous'" in results[2]["error"], results[2]
    assert not results[3]["ok"] and "--out" in results[3]["error"], results[3]
    assert not results[4]["ok"] and "required: --tasks-dir" in results[4]["error"], results[4]
