"""One description of the machine for every benchmark table (figures mean nothing without it)."""
from __future__ import annotations

import os
import platform

import torch


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
