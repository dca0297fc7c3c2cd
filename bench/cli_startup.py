"""Start-up time and memory of the ``nnforge`` command line: the commands that need no model
(``--help``, ``--version``, ``backends``) against the eager import they used to pay for
(``import nnforge.model``, which loads TVM and onnx).

    .venv/bin/python bench/cli_startup.py [--runs 7]

Each command runs in a fresh interpreter; the figures are the median wall time and the median CPU
time (user + system: what a loaded shared machine does not inflate) over the runs, and the child's
peak resident memory.  The target (issue 15) is ``--help`` under 0.3 s.  The test that keeps
it there checks what gets imported (tests/test_cli_startup.py), not the time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "nnforge --help": ["-m", "nnforge", "--help"],
    "nnforge --version": ["-m", "nnforge", "--version"],
    "nnforge backends": ["-m", "nnforge", "backends"],
    "import nnforge.model (eager, TVM)": ["-c", "import nnforge.model"],
}


def measure(args: list[str], runs: int) -> tuple[float, float, float]:
    """(median wall seconds, median CPU seconds, peak RSS in MB) of ``python args`` over ``runs``
    fresh processes."""
    times, cpu, peak = [], [], 0.0
    for _ in range(runs):
        start = time.perf_counter()
        pid = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid
        _, status, usage = os.wait4(pid, 0)
        times.append(time.perf_counter() - start)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(args)} failed (exit {os.waitstatus_to_exitcode(status)})")
        cpu.append(usage.ru_utime + usage.ru_stime)
        peak = max(peak, usage.ru_maxrss / 1024)  # Linux: KiB
    return statistics.median(times), statistics.median(cpu), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    measure(COMMANDS["nnforge --help"], 1)  # warm the file cache and the bytecode
    results = {name: measure(args, runs) for name, args in COMMANDS.items()}
    eager = results["import nnforge.model (eager, TVM)"][0]
    print(f"{'command':36} {'wall s':>8} {'CPU s':>7} {'peak MB':>8} {'vs eager':>9}")
    for name, (seconds, cpu, mb) in results.items():
        print(f"{name:36} {seconds:8.3f} {cpu:7.3f} {mb:8.0f} {eager / seconds:8.1f}x")
    help_s, help_cpu = results["nnforge --help"][:2]
    print(f"--help: {help_s:.3f} s wall, {help_cpu:.3f} s CPU ({'under' if help_s < 0.3 else 'over'} the 0.3 s "
          f"target in wall time; {os.getloadavg()[0]:.1f} load average)")


if __name__ == "__main__":
    main()
