"""What the benchmark scripts share: the repository and results folders, a timer, the machine in
one line, and publishing a report."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import time
from pathlib import Path

from shared_utils import files

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def timed(function, *args):
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> str:
    """Cores, CPU, Python, date and load: what a figure in ``results/`` was measured on."""
    return (f"{os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}, {cpu_model()}), Python "
            f"{platform.python_version()}, {datetime.date.today().isoformat()}; load average at end "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def publish(path: Path, lines: list[str]) -> None:
    """Write a report in one piece (an interrupted run leaves the previous one whole) and print it."""
    text = "\n".join(lines)
    files.write_text(path, text)
    print(text)
