"""The export's scoring on Spark: the same scored rows as the pandas engine, in parallel.

Imported only for ``--engine spark``. The customers file is read by Spark (CSV as
text, parquet typed, exactly as the pandas engine reads it), numbered in file order,
and scored partition by partition with ``mapInPandas`` running the same
``ScoringPlan.score`` as the pandas engine, the model shipped to the workers with
the task. The drift guard's bin counts are summed across the cluster. The scored rows
come back to the driver in file order (a few numbers per customer), where the one
global offer assignment, ranking and the atomic write happen as for pandas, so the
file is the same row for row.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ..drift import DriftMonitor, bin_counts
from ..errors import DataError, Problem, first_line
from ..models import uplift_column
from ..tables import table_format
from .scoring import (
    HASH_COLUMN,
    ScoringPlan,
    canonical_frame,
    cost_column,
    eligible_column,
    net_column,
    score_column,
)

_ROW = "_row"
_ERROR = re.compile(r"uplift\.errors\.DataError: (.+)")


def _session(master: str | None) -> object:
    # Workers must run this interpreter (with this environment's packages).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas",
                            category=FutureWarning)
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master(master or "local[*]").appName("uplift-export")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.sql.session.timeZone", "UTC")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    return session


def _schema(plan: ScoringPlan, id_type: str) -> str:
    fields = [f"`{_ROW}` long", f"`{plan.id_column}` {id_type}", f"`{HASH_COLUMN}` long",
              "`holdout` boolean", "`churn_risk` double"]
    fields += [f"`{uplift_column(a)}` double" for a in plan.arms]
    for arm in plan.arms:
        fields += [f"`{score_column(arm)}` double", f"`{net_column(arm)}` double",
                   f"`{cost_column(arm)}` double", f"`{eligible_column(arm)}` boolean"]
    return ", ".join(fields)


def score_spark(path: Path, plan: ScoringPlan, chunk_size: int, monitor: DriftMonitor,
                master: str | None, advance: Callable[[int], None]) -> Iterator[pd.DataFrame]:
    """Scored rows in file order, ``chunk_size`` at a time, computed on Spark."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F

    spark = _session(master)
    columns = plan.needed_columns()
    try:
        if table_format(path) == "parquet":
            frame = spark.read.parquet(str(path))
        else:
            # As pandas reads it: quoted fields may hold line breaks; a malformed row
            # is an error, not a row of nulls.
            frame = spark.read.csv(str(path), header=True, inferSchema=False, encoding="UTF-8",
                                   escape='"', multiLine=True, mode="FAILFAST")
            first = frame.columns[0]
            if first.startswith("\ufeff"):  # a UTF-8 byte-order mark, as pandas drops it
                frame = frame.withColumnRenamed(first, first[1:])
        frame = frame.select(*[F.col(f"`{c}`") for c in columns]).withColumn(
            _ROW, F.monotonically_increasing_id())
        if table_format(path) != "parquet":  # one partition per CSV file: spread the scoring
            frame = frame.repartition(spark.sparkContext.defaultParallelism * 2)
    except (Py4JJavaError, PySparkException) as exc:
        raise DataError(Problem(plan.source, "", f"cannot read the table ({first_line(exc)})")
                        ) from None
    id_type = "string" if str(frame.schema[plan.id_column].dataType) == "StringType()" \
        else frame.schema[plan.id_column].dataType.simpleString()

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            scored = plan.score(batch[columns], first_row=None)
            # Spark has no unsigned 64-bit type: the hash travels as a signed long.
            scored[HASH_COLUMN] = scored[HASH_COLUMN].to_numpy(np.uint64).view(np.int64)
            scored.insert(0, _ROW, batch[_ROW].to_numpy())
            yield scored

    profile = monitor.profile

    def count(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            canonical = canonical_frame(batch[columns], plan)
            rows = []
            for name, entry in profile.items():
                for index, n in enumerate(bin_counts(entry, canonical[name])):
                    rows.append((name, index, float(n)))
            yield pd.DataFrame(rows, columns=["feature", "bin", "n"])

    try:
        scored = frame.mapInPandas(score, _schema(plan, id_type)).toPandas()
        counts = (frame.mapInPandas(count, "feature string, bin int, n double")
                  .groupBy("feature", "bin").sum("n").toPandas())
    except (Py4JJavaError, PySparkException) as exc:
        found = _ERROR.search(str(exc))
        if found:
            raise DataError(Problem(None, "", found.group(1).strip())) from None
        if "Malformed" in str(exc) or "malformed" in str(exc):
            raise DataError(Problem(plan.source, "", "cannot read the table (a malformed "
                                    "CSV record)")) from None
        raise
    for name, part in counts.groupby("feature"):
        totals = np.zeros(len(profile[name]["shares"]))
        totals[part["bin"].to_numpy(int)] = part["sum(n)"].to_numpy(float)
        monitor.counts_[name] += totals
    scored = scored.sort_values(_ROW, kind="stable").drop(columns=_ROW).reset_index(drop=True)
    scored[HASH_COLUMN] = scored[HASH_COLUMN].to_numpy(np.int64).view(np.uint64)
    for start in range(0, len(scored), chunk_size):
        part = scored.iloc[start:start + chunk_size].reset_index(drop=True)
        advance(len(part))
        yield part

