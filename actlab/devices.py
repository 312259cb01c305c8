"""Device choice: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when present)."""

from __future__ import annotations

import os

import torch


class DeviceError(RuntimeError):
    """A device that this machine does not have."""


def resolve_device(name: str) -> torch.device:
    """The torch.device for a config's ``device``; raises DeviceError for CUDA on a machine without it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device '{name}' asked for, but this PyTorch sees no CUDA GPU "
                f"(torch {torch.__version__}, built with CUDA: {torch.version.cuda or 'no'}); "
                "use --device cpu or --device auto"
            )
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device '{name}' asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device(name)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def available_cores() -> int:
    """CPUs this process may run on (affinity and containers included, where the OS tells)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
