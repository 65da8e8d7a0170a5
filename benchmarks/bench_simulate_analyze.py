"""Time `uplift simulate` and `uplift analyze` at scale, and check simulate is byte-identical.

Runs the real CLI in subprocesses (as a user would), several repeats side by side,
and prints a table of medians. Run by hand:

    python benchmarks/bench_simulate_analyze.py [--customers 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """\
name: bench
period: "2026-10"
data:
  path: customers.parquet
  value: monthly_revenue
control: control
arms:
  - {name: discount_20, kind: discount, cost: {revenue_share: 0.2, months: 3}}
  - {name: free_upgrade, kind: free_upgrade, cost: {fixed: 6.0}}
  - {name: webinar, kind: webinar, cost: {fixed: 1.5}}
allocation: {control: 0.4, discount_20: 0.2, free_upgrade: 0.2, webinar: 0.2}
"""


def run(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "uplift", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "config.yaml").write_text(CONFIG)
        rows: dict[str, list[float]] = {"simulate (parquet)": [], "simulate (csv)": [],
                                        "analyze --format json": [], "startup (uplift --help)": []}
        digests: dict[str, set[str]] = {"parquet": set(), "csv": set()}
        for i in range(opts.repeats):
            for kind in ("parquet", "csv"):
                out = work / f"run{i}.{kind}"
                rows[f"simulate ({kind})"].append(run(
                    ["simulate", "--customers", str(opts.customers), "--seed", str(opts.seed),
                     "--out", str(out), "--quiet"], work))
                digests[kind].add(sha256(out))
            (work / "customers.parquet").unlink(missing_ok=True)
            (work / f"run{i}.parquet").rename(work / "customers.parquet")
            rows["analyze --format json"].append(run(["analyze", "config.yaml", "--format",
                                                      "json"], work))
            rows["startup (uplift --help)"].append(run(["--help"], work))

    startup = statistics.median(rows["startup (uplift --help)"])
    print(f"customers: {opts.customers:,}   repeats: {opts.repeats}   "
          f"python {sys.version.split()[0]}")
    print(f"{'step':<26}{'median s':>10}{'min s':>10}{'max s':>10}{'x startup':>11}")
    for name, times in rows.items():
        median = statistics.median(times)
        print(f"{name:<26}{median:>10.2f}{min(times):>10.2f}{max(times):>10.2f}"
              f"{median / startup:>11.1f}")
    for kind, found in digests.items():
        verdict = "byte-identical" if len(found) == 1 else f"DIFFERENT ({len(found)} digests)"
        print(f"simulate {kind} across {opts.repeats} runs with seed {opts.seed}: {verdict}")
    if any(len(found) != 1 for found in digests.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
