"""Facts about the machine and the installed packages, for the benchmark tables' footers.

Shared by the subcommands of ``bench/run.py`` (harness.py, floors.py, memory_owners.py); standard
library only.
"""

from __future__ import annotations

import os
import platform
import resource
from importlib import metadata


def loadavg() -> str:
    with open("/proc/loadavg") as source:
        return " ".join(source.read().split()[:3])


def cpu_model() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_total() -> str:
    with open("/proc/meminfo") as meminfo:
        kilobytes = int(meminfo.readline().split()[1])
    return f"{kilobytes / 2**20:.0f} GiB"


def machine_line(load_before: str, load_after: str, elapsed: float) -> str:
    return (
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, {memory_total()}, "
        f"Linux {platform.release()}; load average before {load_before}, after {load_after}; "
        f"run took {elapsed:.0f} s."
    )


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def raise_file_limit() -> int:
    """Raise this process's RLIMIT_NOFILE to its hard limit; the servers and the load inherit it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard
