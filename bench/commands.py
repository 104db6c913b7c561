"""Read commands as whole processes: `python bench/commands.py [RUNS]` (default 20).

A fresh embedded database (its own data directory) with one 1,000-message campaign; each command runs a few
times to warm up, then RUNS times, hyperfine-style, and the script prints wall p50, min and p90 per command,
with `python -c pass` and `dispara --help` as floors measured in the same run. CPU is the process's user +
system time: on a loaded machine it moves less than the wall time does. Bytecode is cached in the temporary
directory as an installed dispara has it, even under PYTHONDONTWRITEBYTECODE=1 (set on the project's machine,
where the checkout would otherwise be compiled from source in every process); `--no-bytecode-cache` measures
that way instead.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ingest import write_inputs

WARMUP = 3


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], env: dict[str, str], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds (user + system) of each run of `command`."""
    walls, cpus = [], []
    for i in range(WARMUP + runs):
        cpu, started = _cpu(), time.perf_counter()
        proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            sys.exit(f"{' '.join(command)} failed ({proc.returncode}): {proc.stderr.strip()}")
        if i >= WARMUP:
            walls.append(wall)
            cpus.append(_cpu() - cpu)
    return walls, cpus


def main() -> None:
    args = [arg for arg in sys.argv[1:] if arg != "--no-bytecode-cache"]
    runs = int(args[0]) if args else 20
    cached = "--no-bytecode-cache" not in sys.argv
    with tempfile.TemporaryDirectory(prefix="dispara-bench-") as tmp:
        folder = Path(tmp)
        campaign = write_inputs(folder, 1000)
        env = dict(os.environ, DISPARA_DATA_DIR=str(folder / "data"))
        env.pop("DATABASE_URL", None)
        if cached:  # the warm-up runs write it, outside the checkout
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
        dispara = [sys.executable, "-m", "dispara"]
        subprocess.run(
            [*dispara, "campaign", "send", str(campaign), "--yes"], env=env, check=True, capture_output=True
        )
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "dispara --help": [*dispara, "--help"],
            "dispara db url": [*dispara, "db", "url"],
            "dispara campaign list": [*dispara, "campaign", "list"],
            "dispara status bench-ingest": [*dispara, "status", "bench-ingest"],
        }
        try:
            for label, command in commands.items():
                walls, cpus = timed(command, env, runs)
                walls.sort()
                p50, p90, cpu = (
                    statistics.median(walls),
                    walls[int(0.9 * (len(walls) - 1))],
                    statistics.median(cpus),
                )
                print(
                    f"{label:28} wall p50 {p50 * 1000:5.0f} ms  min {walls[0] * 1000:5.0f}"
                    f"  p90 {p90 * 1000:5.0f}   CPU p50 {cpu * 1000:5.0f} ms"
                )
        finally:
            subprocess.run([*dispara, "db", "stop"], env=env, check=False, capture_output=True)
    bytecode = "cached" if cached else "compiled from source in every process"
    print(f"{runs} runs each after {WARMUP} warm-up runs, bytecode {bytecode}; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
