"""Wall time of ``uplift run`` next to the summed fit time of its models, and the registry cost.

For each size, the demo config on that many simulated customers runs as the real
command (``python -m uplift run``, a fresh process) twice on one sqlite store: the
first run creates the store (MLflow's schema migrations), the second is the usual
monthly case. Wall time is measured from outside. The fit seconds come from the run's own
``timings.json`` artifact: every model fit of the run (the churn-risk model, each
candidate learner on the training rows, the selected learner and the risk model
refitted on all rows). "log model" is the pyfunc logging inside the run; "register"
registers the same logged model once more, in this process, under a scratch name,
which is the operation the run performs after it has finished. "report" is the time the
report took to draw, in a child process while the run logs to MLflow; "wait" is how much
of it the run still waited for once its logging was done. The last four columns split
the rest of the time outside the fits and that wait: "read" is reading, checking
and analyzing the data, "choose" the modeling step's work besides fitting (selection,
estimates, scoring the training rows with the deployed model), "logging" logging to the
run (the model included), and "start" everything outside the run's clocks (the
interpreter and imports, opening the MLflow store and starting the run, registering,
exiting). The package's modules are compiled to bytecode first, as an installed
package's are. Goals: run <= 1.5x
the fits, log model + register <= 1 s, and 1M customers (``--customers 1000000``;
``model.folds: auto`` fits them on one split) through the run in 10 minutes on 2 cores.
Run by hand:

    python benchmarks/bench_run.py [--customers 50000 200000 1000000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "experiments" / "demo.yaml"
LARGE, LARGE_SECONDS = 1_000_000, 600.0  # the largest test a monthly run must fit in


def one_run(customers: int, folder: Path, period: str) -> dict[str, float]:
    """Run the command once; return wall, fits, log and register seconds."""
    from mlflow import MlflowClient

    from uplift import registry, tracking

    mapping = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    mapping["data"]["simulate"]["customers"] = customers
    config = folder / "bench.yaml"
    config.write_text(yaml.safe_dump(mapping, sort_keys=False), encoding="utf-8")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "uplift", "--quiet", "run", str(config),
                           "--tracking-uri", uri, "--period", period], cwd=folder, env=env,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"uplift run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    run_id = done.stdout.strip().splitlines()[-1].removeprefix("run_id: ")
    client = MlflowClient(uri)
    timings = json.loads(Path(client.download_artifacts(run_id, "timings.json",
                                                        str(folder))).read_text())
    version = client.search_model_versions(f"run_id = '{run_id}'")[0]
    registrar = tracking.open_client(uri)
    clock = time.perf_counter()
    registry.register(registrar, version.source, "bench-register", run_id)
    register = time.perf_counter() - clock
    return {"wall": wall, "fits": sum(timings["fit_seconds"].values()),
            "log_model": timings["log_model"], "register": register,
            "report": timings["report"], "report_wait": timings["report_wait"],
            "models": timings["models"],
            "prepare": timings["prepare"], "tracking": timings["tracking"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--repeats", type=int, default=1)
    opts = parser.parse_args()
    # The package's bytecode, as an installed package has it: an editable checkout under a
    # shell with PYTHONDONTWRITEBYTECODE set would otherwise compile it in every run.
    compileall.compile_dir(ROOT / "uplift", quiet=1)
    # Warm the registry imports once, so the first measured registration is not an import.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keeps the table clean
    import mlflow.pyfunc  # noqa: F401

    header = (f"{'customers':>10} {'store':>8} {'run s':>8} {'fits s':>8} {'run/fits':>9} "
              f"{'models s':>9} {'report s':>9} {'wait s':>7} {'log s':>7} {'register s':>11} "
              f"{'log+reg':>8} "
              f"{'read s':>7} {'choose s':>9} {'logging s':>10} {'start s':>8}")
    print(header)
    print("-" * len(header))
    for customers in opts.customers:
        runs: dict[str, list[dict[str, float]]] = {"new": [], "existing": []}
        for _ in range(opts.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                runs["new"].append(one_run(customers, Path(tmp), "2026-09"))
                runs["existing"].append(one_run(customers, Path(tmp), "2026-10"))
        for store, results in runs.items():
            for r in results:
                r["choose"] = r["models"] - r["fits"]  # selection, estimates, deployed scoring
                r["start"] = (r["wall"] - r["prepare"] - r["models"] - r["report_wait"]
                              - r["tracking"])  # interpreter, imports, MLflow store, exit
            med = {key: statistics.median(r[key] for r in results) for key in results[0]}
            ratio = statistics.median(r["wall"] / r["fits"] for r in results)
            log_reg = statistics.median(r["log_model"] + r["register"] for r in results)
            print(f"{customers:>10,} {store:>8} {med['wall']:>8.1f} {med['fits']:>8.1f} "
                  f"{ratio:>8.2f}x {med['models']:>9.1f} {med['report']:>9.1f} "
                  f"{med['report_wait']:>7.1f} "
                  f"{med['log_model']:>7.2f} {med['register']:>11.3f} {log_reg:>8.2f} "
                  f"{med['prepare']:>7.1f} {med['choose']:>9.1f} {med['tracking']:>10.1f} "
                  f"{med['start']:>8.1f}", flush=True)
    print(f"\ngoals: run <= 1.5x fits; log model + register <= 1 s; a run on "
          f"{LARGE:,} customers or more within {LARGE_SECONDS:.0f} s")


if __name__ == "__main__":
    main()
