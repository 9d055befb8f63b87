"""One description of the machine for every benchmark table (figures mean nothing without it)."""
from __future__ import annotations

import os
import platform
import time

import torch

# The shape of EnCodecMAE-base's feed-forward matmul over a batch of 16 chunks of 300 frames.
CEILING_SHAPE = (4800, 768, 4096)


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


def matmul_ceiling(dtype: torch.dtype, device="cpu", shape=CEILING_SHAPE, repeats: int = 5) -> float:
    """GFLOP/s of one [m, k] x [k, n] matmul in ``dtype`` (best of ``repeats``, after a warm-up):
    what the kernels reach on this machine, the ceiling a model's GFLOP/s is measured against."""
    m, k, n = shape
    device = torch.device(device)
    a = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)
    best = float("inf")
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first call is the warm-up
            best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e9


def matmul_ceilings(device="cpu") -> dict:
    """{"fp32": GFLOP/s, "bf16": GFLOP/s} measured now, in this process."""
    return {"fp32": matmul_ceiling(torch.float32, device), "bf16": matmul_ceiling(torch.bfloat16, device)}


def describe_ceilings(ceilings: dict) -> str:
    m, k, n = CEILING_SHAPE
    return (f"matmul ceiling ([{m}, {k}] x [{k}, {n}], measured in this run): "
            + ", ".join(f"{name} {value:.0f} GFLOP/s" for name, value in ceilings.items()))
