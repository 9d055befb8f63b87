"""One description of the machine for every benchmark table (figures mean nothing without it)."""
from __future__ import annotations

import os
import platform
import time

import torch

# On a CPU: the shape of EnCodecMAE-base's feed-forward matmul over a batch of 16 chunks of 300 frames.
CEILING_SHAPE = (4800, 768, 4096)
# On a GPU: a problem large enough (1.1 TFLOP a call) for its matrix units to reach their rate.
GPU_CEILING_SHAPE = (8192, 8192, 8192)


def ceiling_shape(device) -> tuple:
    """The [m, k] x [k, n] matmul whose rate is ``device``'s ceiling."""
    return GPU_CEILING_SHAPE if torch.device(device).type == "cuda" else CEILING_SHAPE


def describe_machine(device) -> str:
    """GPU name, or CPU model, cores, torch threads and current load average (a shared machine is slower)."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (f"CPU {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads{load} "
            f"(torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()})")


def matmul_ceiling(dtype: torch.dtype, device="cpu", shape=None, seconds: float = 2.0) -> float:
    """GFLOP/s of one [m, k] x [k, n] matmul in ``dtype`` (``shape``, default :func:`ceiling_shape`):
    the best of the calls made in ``seconds`` after a warm-up of the same length (clock ramp-up,
    first-touch page faults); what the kernels reach on this machine, the ceiling a model's
    GFLOP/s is measured against."""
    device = torch.device(device)
    m, k, n = shape or ceiling_shape(device)
    a = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)

    def timed() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(2):  # a warm-up, then the measurement
        best, spent = float("inf"), 0.0
        while spent < seconds:
            took = timed()
            best, spent = min(best, took), spent + took
    return 2 * m * k * n / best / 1e9


def matmul_ceilings(device="cpu", shape=None, seconds: float = 2.0) -> dict:
    """{"fp32": GFLOP/s, "bf16": GFLOP/s} measured now, in this process."""
    return {name: matmul_ceiling(dtype, device, shape, seconds)
            for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}


def describe_ceilings(measurements: dict, shape=CEILING_SHAPE) -> str:
    """{label: {"fp32": GFLOP/s, "bf16": GFLOP/s}} -> one line."""
    m, k, n = shape
    return (f"matmul ceiling, [{m}, {k}] x [{k}, {n}], measured in this run: " + "; ".join(
        f"{label} " + ", ".join(f"{name} {value:.0f}" for name, value in values.items())
        for label, values in measurements.items()) + " GFLOP/s")
