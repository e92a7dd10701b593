"""The machine a number was measured on: timings are only comparable on the same one, so every
results.json and every benchmark table names it the same way."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """``platform.processor()`` says only ``x86_64`` on Linux; the CPU's marketing name is in /proc."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict[str, Any]:
    """Recorded in results.json next to every metric."""
    import torch  # deferred: start-up speed

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def label(description: dict[str, Any] | None = None, *, device: str = "cpu") -> str:
    """One short phrase for tables: the GPU's name when the machine had one, else the CPU and its cores.

    ``description`` is a stored :func:`describe` (older results.json files lack ``cpu_model``); a stored
    one cannot tell whether the GPU or the CPU ran a given retriever (BM25 runs on the CPU anywhere).
    Without one, this machine is described, and ``device`` says which of the two ran the measurement.
    """
    if description is None:
        description = describe()
        if not device.startswith("cuda"):
            description["gpu"] = None
    if description.get("gpu"):
        return str(description["gpu"])
    name = description.get("cpu_model") or description.get("processor") or "?"
    return f"CPU ({name}, {description.get('cpu_count', '?')} cores)"
