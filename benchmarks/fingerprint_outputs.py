"""Fingerprints of what the CLI delivers, to show that a refactoring changed none of it.

Runs the real commands in fresh processes on a scratch folder: ``uplift run`` on three
configs (the demo's economics; a budget, capacities and selection by policy value; the
churn-reduction objective with a capacity), then ``uplift export`` of next month's
customers from each registered model (CSV and parquet, pandas engine; one with a
``--config`` that overrides the economics; one on Spark). It writes one JSON file with
every logged metric, param and tag of each parent and child run, and the sha256 and
manifest (run-specific fields removed) of every export. Compare two such files, made
before and after a change, with ``--compare``:

    python benchmarks/fingerprint_outputs.py --out /tmp/before.json
    python benchmarks/fingerprint_outputs.py --out /tmp/after.json --compare /tmp/before.json
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "experiments" / "demo.yaml"
_VOLATILE_MANIFEST = ("created_at", "tracking_uri", "input", "run_id", "uplift_version")


def configs(customers: int) -> dict[str, dict[str, Any]]:
    """The three configs the runs use, by name."""
    base = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    base["data"]["simulate"]["customers"] = customers
    base["model"]["learners"] = ["s", "t", "uplift_forest"]
    demo = copy.deepcopy(base)
    limited = copy.deepcopy(base)
    limited["name"] = "fingerprint-limited"
    limited["tracking"]["registered_model"] = "fingerprint-limited"
    limited["policy"].update(budget=2500.0, capacity={"webinar": 400, "free_upgrade": 600})
    limited["model"].update(select_by="policy_value", learners=["t", "x"])
    reduction = copy.deepcopy(base)
    reduction["name"] = "fingerprint-reduction"
    reduction["tracking"]["registered_model"] = "fingerprint-reduction"
    reduction["policy"].update(objective="churn_reduction", capacity={"discount_20": 500})
    reduction["model"].update(learners=["s", "dr"], ensemble=False)
    return {"demo": demo, "limited": limited, "reduction": reduction}


def uplift(folder: Path, *args: str) -> str:
    """Run the CLI in a fresh process; its stdout, or exit with its stderr."""
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    done = subprocess.run([sys.executable, "-m", "uplift", "--quiet", *args], cwd=folder,
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"uplift {' '.join(args)} failed ({done.returncode}):\n"
                         f"{done.stderr[-3000:]}")
    return done.stdout


def run_record(client: Any, run_id: str) -> dict[str, Any]:
    """Metrics, params and tags of a run and of each of its child runs (by run name)."""
    run = client.get_run(run_id)

    def describe(r: Any) -> dict[str, Any]:
        tags = {k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.")}
        metrics = {k: v for k, v in r.data.metrics.items() if k != "fit_seconds"}  # a timing
        return {"metrics": dict(sorted(metrics.items())),
                "params": dict(sorted(r.data.params.items())), "tags": dict(sorted(tags.items()))}

    children = client.search_runs([run.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    folder = Path(tempfile.mkdtemp())
    all_metrics = json.loads(Path(client.download_artifacts(
        run_id, "metrics/all_metrics.json", str(folder))).read_text())
    return {"run": describe(run), "all_metrics": all_metrics,
            "children": {c.info.run_name: describe(c) for c in sorted(
                children, key=lambda c: c.info.run_name)}}


def export_record(path: Path) -> dict[str, Any]:
    manifest = json.loads(Path(f"{path}.manifest.json").read_text())
    for key in _VOLATILE_MANIFEST:
        manifest.pop(key, None)
    if manifest.get("economics_from") not in (None, "model"):  # a config in a scratch folder
        manifest["economics_from"] = Path(manifest["economics_from"]).name
    return {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "manifest": manifest}


def fingerprint(customers: int, spark: bool) -> dict[str, Any]:
    from mlflow import MlflowClient

    out: dict[str, Any] = {"runs": {}, "exports": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        uplift(folder, "simulate", "--customers", str(customers), "--seed", "11",
               "--period", "2026-11", "--out", "next.csv")
        uplift(folder, "simulate", "--customers", str(customers), "--seed", "11",
               "--period", "2026-11", "--out", "next.parquet")
        client = MlflowClient(uri)
        for name, mapping in configs(customers).items():
            config = folder / f"{name}.yaml"
            config.write_text(yaml.safe_dump(mapping, sort_keys=False), encoding="utf-8")
            stdout = uplift(folder, "run", str(config), "--tracking-uri", uri)
            run_id = stdout.strip().splitlines()[-1].removeprefix("run_id: ")
            out["runs"][name] = run_record(client, run_id)
            uplift(folder, "promote", "--config", str(config), "--tracking-uri", uri)
            model = f"models:/{mapping['tracking']['registered_model']}@champion"
            for suffix in ("csv", "parquet"):
                target = folder / f"{name}.{suffix}"
                uplift(folder, "export", "--customers", f"next.{suffix}", "--out", target.name,
                       "--model", model, "--tracking-uri", uri)
                out["exports"][f"{name}.{suffix}"] = export_record(target)
        override = copy.deepcopy(configs(customers)["demo"])
        override["policy"].update(budget=1500.0, capacity={"discount_20": 300}, holdout=0.1)
        config = folder / "override.yaml"
        config.write_text(yaml.safe_dump(override, sort_keys=False), encoding="utf-8")
        uplift(folder, "export", "--customers", "next.csv", "--out", "override.csv",
               "--model", "models:/retention-uplift@champion", "--config", str(config),
               "--tracking-uri", uri)
        out["exports"]["override.csv"] = export_record(folder / "override.csv")
        if spark:
            uplift(folder, "export", "--customers", "next.parquet", "--out", "spark.csv",
                   "--model", "models:/fingerprint-limited@champion", "--engine", "spark",
                   "--spark-master", "local[2]", "--tracking-uri", uri)
            out["exports"]["spark.csv"] = export_record(folder / "spark.csv")
    return out


def differences(before: Any, after: Any, where: str = "") -> list[str]:
    """Every path at which two fingerprints differ."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in sorted(set(before) | set(after)):
            if key not in before or key not in after:
                out.append(f"{where}.{key}: only in {'after' if key in after else 'before'}")
            else:
                out += differences(before[key], after[key], f"{where}.{key}")
        return out
    return [] if before == after else [f"{where}: {before!r} -> {after!r}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=12_000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--compare", type=Path, default=None)
    parser.add_argument("--no-spark", action="store_true")
    args = parser.parse_args()
    result = fingerprint(args.customers, spark=not args.no_spark)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    n_metrics = sum(len(r["all_metrics"]) for r in result["runs"].values())
    print(f"{len(result['runs'])} runs ({n_metrics} metrics), {len(result['exports'])} exports "
          f"-> {args.out}")
    if args.compare is not None:
        found = differences(json.loads(args.compare.read_text()), result)
        for line in found:
            print(line)
        print(f"{len(found)} differences from {args.compare}")
        raise SystemExit(1 if found else 0)


if __name__ == "__main__":
    main()
