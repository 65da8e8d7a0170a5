"""Export throughput against the raw LightGBM scoring floor, peak memory, and Spark vs pandas.

Setup (not timed): the demo config trained on 50k simulated customers with the
S-learner (its base models are LightGBM boosters, so the floor below is the whole
model's arithmetic), logged, registered and promoted in a scratch store; a fresh
simulated customer base written to parquet. ``--learners s gam`` registers the
default model instead (the average of the S-learner and the additive model), to see
what the default costs per customer; the floor then leaves the additive half out.

1. Throughput, 1M customers: ``export_recommendations`` end to end (model load,
   reading, scoring, holdout, offers, ranks, the atomic write, hashing, manifest)
   as rows per second, next to the floor: the same rows scored by the same
   process with only the LightGBM ``Booster.predict`` calls timed (every call the
   model makes; feature encoding and everything else excluded). Goal >= 0.8x.
2. Memory: peak RSS of ``uplift export`` on 10M customers with ``--chunk-size
   500000`` in a fresh process (``ru_maxrss`` of the child). Goal <= 3 GB.
3. Spark: the same 1M export with ``--engine spark`` on ``local[2]`` next to pandas
   (the Spark session's start-up included).

Run by hand:

    python benchmarks/bench_export.py [--rows 1000000] [--memory-rows 10000000]
        [--repeats 3] [--skip-memory] [--skip-spark] [--learners s gam]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def setup(folder: Path, learners: list[str]) -> str:
    """Train, log, register and promote the benchmark model; return the store URI."""
    import mlflow

    from uplift import registry, tracking
    from uplift.config import load_config
    from uplift.data import load_dataset
    from uplift.training import train_models

    mapping = yaml.safe_load((ROOT / "experiments" / "demo.yaml").read_text())
    mapping["model"] = {**mapping.get("model", {}), "learners": learners,
                        "ensemble": len(learners) > 1}
    config = folder / "bench.yaml"
    config.write_text(yaml.safe_dump(mapping, sort_keys=False))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    cfg = load_config(config)
    dataset = load_dataset(cfg)
    model = train_models(dataset, cfg).model
    client = tracking.open_client(uri)
    experiment = client.create_experiment("bench-export",
                                          artifact_location=(folder / "art").as_uri())
    with tracking.use_store(uri):
        with mlflow.start_run(experiment_id=experiment) as run:
            info = registry.log_model(model, dataset, config.read_text())
        registry.register(client, info.model_uri, cfg.tracking.registered_model,
                          run.info.run_id)
    registry.promote(client, cfg.tracking.registered_model)
    return uri


def write_customers(path: Path, rows: int, seed: int, piece: int = 1_000_000) -> None:
    """Simulated customers (no test columns), written piece by piece with unique ids."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from uplift.simulate import simulate_customers

    writer = None
    for index, start in enumerate(range(0, rows, piece)):
        n = min(piece, rows - start)
        frame = simulate_customers(n, seed + index).customers.drop(columns=["arm", "churned"])
        frame["customer_id"] = [f"P{index:03d}-{i:07d}" for i in range(n)]
        table = pa.Table.from_pandas(frame, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def booster_floor(uri: str, path: Path, chunk: int) -> float:
    """Seconds spent in LightGBM's Booster.predict when the model scores every row."""
    import lightgbm
    import pyarrow.parquet as pq

    from uplift import registry

    model = registry.load_model(None, "retention-uplift", uri).model
    spent = [0.0]
    original = lightgbm.basic.Booster.predict

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    frames = [b.to_pandas() for b in pq.ParquetFile(path).iter_batches(batch_size=chunk)]
    lightgbm.basic.Booster.predict = timed
    try:
        for frame in frames:
            model.predict(frame)
    finally:
        lightgbm.basic.Booster.predict = original
    return spent[0]


def export_seconds(uri: str, path: Path, out: Path, **kwargs: object) -> float:
    from uplift.export import export_recommendations

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_recommendations(path, out, tracking_uri=uri, **kwargs)
    return time.perf_counter() - start


def peak_rss_gb(uri: str, path: Path, out: Path, chunk: int) -> tuple[float, float]:
    """Peak RSS (GB) and wall seconds of ``uplift export`` in a fresh process."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "uplift", "--quiet", "export", "--customers",
                    str(path), "--out", str(out), "--chunk-size", str(chunk)], env=env,
                   check=True)
    seconds = time.perf_counter() - start
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--memory-rows", type=int, default=10_000_000)
    parser.add_argument("--chunk-size", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-spark", action="store_true")
    parser.add_argument("--learners", nargs="+", default=["s"],
                        help="the model's learners (default s; 's gam' registers the "
                        "default ensemble, whose additive half the floor does not count)")
    opts = parser.parse_args()
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"setting up: training and registering the model ({' + '.join(opts.learners)})"
              " ...", flush=True)
        uri = setup(folder, opts.learners)
        customers = folder / "customers.parquet"
        write_customers(customers, opts.rows, seed=101)

        floors, exports, exports_csv = [], [], []
        for _ in range(opts.repeats):
            floors.append(booster_floor(uri, customers, opts.chunk_size))
            exports.append(export_seconds(uri, customers, folder / "recs.parquet",
                                          chunk_size=opts.chunk_size))
            exports_csv.append(export_seconds(uri, customers, folder / "recs.csv",
                                              chunk_size=opts.chunk_size))
        floor, parquet, csv = (statistics.median(x) for x in (floors, exports, exports_csv))
        n = opts.rows
        print(f"\nthroughput, {n:,} customers, chunk {opts.chunk_size:,}, "
              f"median of {opts.repeats}")
        print(f"{'':34} {'seconds':>9} {'rows/s':>12} {'vs floor':>9}")
        print(f"{'LightGBM boosters alone (floor)':34} {floor:>9.2f} {n / floor:>12,.0f} "
              f"{1.0:>8.2f}x")
        print(f"{'export to parquet (end to end)':34} {parquet:>9.2f} {n / parquet:>12,.0f} "
              f"{floor / parquet:>8.2f}x")
        print(f"{'export to csv (end to end)':34} {csv:>9.2f} {n / csv:>12,.0f} "
              f"{floor / csv:>8.2f}x")
        print("goal: export >= 0.8x the floor", flush=True)

        if not opts.skip_spark:
            spark = export_seconds(uri, customers, folder / "spark.parquet", engine="spark",
                                   spark_master="local[2]")
            print(f"\nspark local[2], {n:,} customers: {spark:.1f} s "
                  f"(pandas {parquet:.1f} s, ratio {spark / parquet:.2f}x)", flush=True)

        if not opts.skip_memory:
            big = folder / "big.parquet"
            write_customers(big, opts.memory_rows, seed=202)
            rss, seconds = peak_rss_gb(uri, big, folder / "big.csv", 500_000)
            print(f"\nmemory, {opts.memory_rows:,} customers, --chunk-size 500,000: peak RSS "
                  f"{rss:.2f} GB in {seconds:.0f} s ({opts.memory_rows / seconds:,.0f} rows/s)"
                  "\ngoal: <= 3 GB")


if __name__ == "__main__":
    main()
