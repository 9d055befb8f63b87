"""``precision="auto"``: bf16 where this machine runs the model's matmuls clearly faster in it.

CPU flags do not say which precision is faster: a CPU with AVX-512 BF16 may run bf16 matmuls at
half its fp32 rate, one with AMX at twice, an AVX2 one emulates them several times slower. So
on a CPU the choice is measured, once per machine:

1. the model's own matmuls are found by running it once on one frame of audio (the shapes of
   every ``nn.Linear`` call and how often each runs per forward);
2. each shape is timed on MEASURE_ROWS rows (a 4 s chunk has 300 frames), in fp32 and in bf16
   autocast (what :class:`hear_codec.api.HearModel` runs, weight casts included), in
   alternating rounds; each shape's time is its fastest call (the first one also generates the
   kernel), so a neighbour's burst slows one call, not the result; a chunk's time is the sum
   over shapes of time x calls. After MIN_ROUNDS it stops once one precision is more than
   CLEAR_RATIO times as fast or MAX_MEASURE_SECONDS have passed, else after ROUNDS rounds;
3. bf16 is chosen only if it is at least :data:`BF16_MIN_SPEEDUP` times faster: a smaller gain
   is within what a busy machine's timings move by, and bf16 costs a little accuracy (cosine
   0.9999 to fp32 per frame, docs/embedding.md). On a busy machine (1-minute load above its
   cores) the timings are skewed, fp32's many-threaded kernels the most: bf16 then needs
   CLEAR_RATIO, and the decision holds for this process only, it is not cached;
4. the decision is cached in ``<cache>/precision/<key>.json`` (``$HEAR_CODEC_CACHE_DIR``, default
   ``~/.cache/hear_codec``), the key being the CPU model and capability, the torch version, the
   number of torch threads and the shapes: a later load, in any process, reads it instead of
   measuring. Files are written whole (hear_codec.files), so processes that measure at once
   each write a whole file and the last one stays.

On CUDA the rule stays: bf16 where the device runs it natively (Ampere and later). Elsewhere
(MPS, ...) fp32. ``HEAR_CODEC_MEASURE_PRECISION=0`` skips the measurement: "auto" is then fp32
on a CPU. What was chosen and why is :class:`Precision`, ``model.resolved_precision``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from pathlib import Path

import torch
from torch import nn

from .files import write_json

BF16_MIN_SPEEDUP = 1.2  # bf16 must be at least this much faster than fp32 to be chosen
MAX_MEASURE_SECONDS = 0.5  # rounds stop once the measurement has taken this long (after MIN_ROUNDS)
MIN_ROUNDS, ROUNDS = 3, 6  # alternating rounds of every shape in each precision
CLEAR_RATIO = 2.0  # after MIN_ROUNDS, a ratio beyond this (either way) ends the measurement
MEASURE_ROWS = 64  # rows timed per matmul (a 4 s chunk has 300 frames): enough for the kernels' blocking
CACHE_FORMAT = 1
MEASURE_ENV = "HEAR_CODEC_MEASURE_PRECISION"

log = logging.getLogger(__name__)
_DECIDED: dict = {}  # cache key -> Precision: a second model in the same process reads no file


class Precision(str):
    """"fp32" or "bf16" (it compares, prints and serialises as that string), with ``source``,
    how it was decided ("given", "measured", "cached", "cuda rule", "not measured"), and
    ``reason``, one line that says why."""

    def __new__(cls, value: str, source: str, reason: str):
        obj = super().__new__(cls, value)
        obj.source, obj.reason = source, reason
        return obj

    def __reduce__(self):
        return Precision, (str(self), self.source, self.reason)


def resolve(precision: str, model: nn.Module, device, num_layers: int | None = None) -> Precision:
    """``precision`` ("auto", "fp32" or "bf16") for ``model`` on ``device``: explicit choices
    stay; "auto" is measured on a CPU (or read from the cache), the CUDA rule on a GPU."""
    device = torch.device(device)
    if precision != "auto":
        return Precision(precision, "given", f"{precision}, as asked")
    if device.type == "cuda":
        native = has_native_cuda_bf16(device)
        return Precision("bf16" if native else "fp32", "cuda rule",
                         f"{'bf16' if native else 'fp32'}: this GPU {'runs' if native else 'does not run'} bf16 "
                         "natively (CUDA rule)")
    if device.type != "cpu":
        return Precision("fp32", "not measured", f"fp32: no bf16 measurement on {device.type}")
    if os.environ.get(MEASURE_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return Precision("fp32", "not measured", f"fp32: {MEASURE_ENV}={os.environ[MEASURE_ENV]} skips the measurement")
    shapes = matmul_shapes(model, num_layers)
    if not shapes:
        return Precision("fp32", "not measured", "fp32: the model runs no matmul that bf16 could speed up")
    rows = min(model.num_frames(model.chunk_samples), MEASURE_ROWS)
    key = cache_key(shapes, rows)
    known = json.dumps(key, sort_keys=True)
    if known not in _DECIDED:
        decided = read_cached(key)
        if decided is None:
            load = busy()  # before measuring: our own threads would count
            times = measure(shapes, rows)
            if load is None:
                decided = decide(times["fp32"], times["bf16"], "measured", f"now, in {times['seconds']:.2f} s")
                write_cached(key, decided, times)
            else:
                decided = decide(times["fp32"], times["bf16"], "measured",
                                 f"now, in {times['seconds']:.2f} s, on a busy machine ({load}): not cached",
                                 min_speedup=CLEAR_RATIO)
        _DECIDED[known] = decided
    return _DECIDED[known]


def decide(fp32_seconds: float, bf16_seconds: float, source: str, when: str,
           min_speedup: float = BF16_MIN_SPEEDUP) -> Precision:
    """bf16 if it took at most 1 / ``min_speedup`` of fp32's time, else fp32, with the reason."""
    speedup = fp32_seconds / bf16_seconds if bf16_seconds > 0 else float("inf") if fp32_seconds > 0 else 1.0
    choice = "bf16" if speedup >= min_speedup else "fp32"
    return Precision(choice, source, (
        f"{choice}: bf16 ran the model's matmuls at {speedup:.2f}x the speed of fp32 on this CPU "
        f"(fp32 {1e3 * fp32_seconds:.1f} ms, bf16 {1e3 * bf16_seconds:.1f} ms for {MEASURE_ROWS} frames; bf16 needs "
        f">= {min_speedup:g}x), {source} {when}"))


def busy() -> str | None:
    """"load X on N cores" when the machine's 1-minute load is above its cores, else None. Timings
    taken then are skewed (a parallel matmul waits for a thread the neighbours hold, so fp32's
    many-threaded kernels can look several times slower than they are)."""
    try:
        load = os.getloadavg()[0]
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    except OSError:
        return None
    return f"load {load:.1f} on {cores} cores" if cores and load > cores else None


def has_native_cuda_bf16(device) -> bool:
    """Whether a CUDA device runs bf16 natively (emulated bf16 on pre-Ampere GPUs does not count)."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch < 2.4 has no including_emulation (and counts no emulation)
        return torch.cuda.is_bf16_supported()


# ---------------------------------------------------------------- measuring

@torch.no_grad()
def matmul_shapes(model: nn.Module, num_layers: int | None = None) -> tuple:
    """((in_features, out_features, calls per forward), ...) of every nn.Linear that the model's
    ``embed_layers`` runs, found by running it once on its shortest input (one frame)."""
    calls = {}

    def count(module, inputs, output):
        shape = (module.in_features, module.out_features)
        calls[shape] = calls.get(shape, 0) + 1

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        device = next(model.parameters()).device
        model.embed_layers(torch.zeros(1, model.min_samples, device=device), num_layers=num_layers)
    finally:
        for hook in hooks:
            hook.remove()
    return tuple(sorted((k, n, c) for (k, n), c in calls.items()))


def measure(shapes, rows: int) -> dict:
    """{"fp32": s, "bf16": s, "seconds": s, "rounds": n}: the time of ``rows`` frames through every
    matmul of one forward (each shape as often as it runs), each shape's fastest of alternating
    rounds; on the CPU, in this process's threads. "seconds": what measuring took."""
    timer = _timer
    generator = torch.Generator().manual_seed(0)
    operands = [(torch.randn(rows, k, generator=generator), torch.randn(n, k, generator=generator))
                for k, n, _ in shapes]
    calls = [c for _, _, c in shapes]
    best = {"fp32": [float("inf")] * len(shapes), "bf16": [float("inf")] * len(shapes)}

    def one_round() -> None:  # each shape in fp32 then bf16, call by call: both meet the same neighbours
        for i, (x, w) in enumerate(operands):
            for name in ("fp32", "bf16"):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "bf16"):
                    start = timer()
                    _matmul(x, w)
                    best[name][i] = min(best[name][i], timer() - start)

    def total(name: str) -> float:
        return sum(t * c for t, c in zip(best[name], calls))

    started = timer()
    for done in range(1, ROUNDS + 1):  # the first call of a shape also generates its kernel: the minimum drops it
        one_round()
        ratio = total("fp32") / max(total("bf16"), 1e-12)
        if done >= MIN_ROUNDS and (not 1 / CLEAR_RATIO < ratio < CLEAR_RATIO or timer() - started > MAX_MEASURE_SECONDS):
            break
    return {"fp32": total("fp32"), "bf16": total("bf16"), "seconds": timer() - started, "rounds": done}


_timer = time.perf_counter  # (tests replace these two to fake timings)
_matmul = nn.functional.linear


# ---------------------------------------------------------------- the cache

def cache_dir() -> Path:
    """``$HEAR_CODEC_CACHE_DIR``, else ``$XDG_CACHE_HOME/hear_codec``, else ``~/.cache/hear_codec``."""
    env = os.environ.get("HEAR_CODEC_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "hear_codec"


def machine() -> dict:
    """What a decision depends on besides the shapes: the CPU, torch and its threads."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def cache_key(shapes, rows: int) -> dict:
    return {"format": CACHE_FORMAT, **machine(), "rows": rows, "shapes": [list(s) for s in shapes]}


def _cache_file(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / "precision" / f"{digest}.json"


def read_cached(key: dict) -> Precision | None:
    """The decision stored for ``key``, or None (none stored, or a file that does not read)."""
    path = _cache_file(key)
    try:
        stored = json.loads(path.read_text())
        if stored["key"] != key or stored["choice"] not in ("fp32", "bf16"):
            return None
        return decide(stored["fp32_seconds"], stored["bf16_seconds"], "cached", f"in {path} ({stored['measured_at']})")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError) as e:
        log.warning("ignoring the precision cache %s (%s): measuring again", path, e)
        return None


def write_cached(key: dict, decided: Precision, times: dict) -> None:
    """Store a decision; a cache that cannot be written only costs a measurement next time."""
    path = _cache_file(key)
    try:
        write_json(path, {"key": key, "choice": str(decided), "fp32_seconds": times["fp32"],
                          "bf16_seconds": times["bf16"], "measuring_seconds": times["seconds"],
                          "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    except OSError as e:
        log.warning("could not write the precision cache %s (%s)", path, e)
