"""The recommendation export: score customers, hold some out, choose offers, rank, deliver.

``export_recommendations`` reads the customers in chunks, scores each chunk with a
registered model (pandas engine, or Spark in ``spark.py``), and spills the
scores to a scratch file. Offers are then chosen once over the whole exported
population: without a budget or capacity each customer's best offer (chunk by chunk),
with one the optimal assignment of SPEC section 3 over every customer not held out.
A second pass writes the file in input order to a temporary file beside the target,
fsyncs it and renames it into place; the manifest follows the same way. A manifest
left from an earlier export is removed just before the new file appears, so a manifest
always describes the file beside it.

Determinism: a customer's holdout is a keyed hash of their id (the key derives from
the model's seed), their scores do not depend on the other rows, and ranks order
customers by value with the id hash breaking ties. So a rerun gives the same file
byte for byte, and shuffling the input changes no customer's holdout, offer or rank.

Memory: one chunk of rows at a time, plus per customer the id hash, the holdout flag
and a ranking key, and under a budget or capacity the score and cost of each offer
(SPEC section 5).

The package: ``scoring`` (a chunk of rows -> scores, through the policy's offer
valuation; the global choice of offers and ranks), ``io`` (chunked reading, the spill,
the writer), ``spark`` (the same scoring on pyspark, imported only for ``--engine
spark``), and here the orchestration with its lock and manifest. The modules below
never import this one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import __version__
from ..config import ExperimentConfig, ModelConfig, TrackingConfig, check_config, load_config
from ..drift import DRIFT_THRESHOLD, DriftMonitor, drifted
from ..errors import (
    ArgumentError,
    ArgumentProblem,
    ConfigError,
    DataError,
    Problem,
    UpliftWarning,
    first_line,
)
from ..policy import picked
from ..tables import atomic_path, file_sha256, read_header, remove_stale_temps, table_format
from .io import Spill, Writer, output_block, output_schema, resolve_out, score_pandas
from .scoring import (
    Decisions,
    ScoringPlan,
    cost_column,
    holdout_key,
    plan_conversions,
)

__all__ = ["DEFAULT_CHUNK_SIZE", "ENGINES", "ExportResult", "export_recommendations",
           "resolve_out"]

DEFAULT_CHUNK_SIZE = 200_000
ENGINES = ("pandas", "spark")


@dataclass(frozen=True)
class ExportResult:
    """Where the file and manifest went, and what the manifest says."""

    path: Path
    manifest_path: Path
    manifest: dict[str, Any]
    drifted: list[tuple[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def _check_arguments(customers: str | os.PathLike[str], out: Path, holdout: float | None,
                     engine: str, chunk_size: int) -> Path:
    if holdout is not None and not (0 <= holdout < 1):
        raise ArgumentError(ArgumentProblem(None, "holdout",
                                            f"must be a share in [0, 1), got {holdout:g}"))
    if engine not in ENGINES:
        raise ArgumentError(ArgumentProblem(None, "engine",
                                            f"must be pandas or spark, got {engine!r}"))
    if chunk_size < 1:
        raise ArgumentError(ArgumentProblem(None, "chunk_size", f"must be >= 1, got {chunk_size}"))
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise ArgumentError(ArgumentProblem(str(out), "out", "must end in .csv or .parquet"))
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise ArgumentError(ArgumentProblem(str(out), "out",
                                            f"folder {str(folder)!r} does not exist"))
    try:  # the real test of writability (permissions, read-only or immutable folders)
        fd, probe = tempfile.mkstemp(prefix=".uplift-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError:
        raise ArgumentError(ArgumentProblem(str(out), "out",
                                            f"folder {str(folder)!r} is not writable")) from None
    if out.is_dir():
        raise ArgumentError(ArgumentProblem(str(out), "out", "is a folder"))
    source = Path(customers)
    if not source.is_file():
        raise DataError(ArgumentProblem(str(customers), "customers", "file not found"))
    if table_format(source) is None:
        raise DataError(ArgumentProblem(str(customers), "customers",
                                        "must be a .csv, .csv.gz or .parquet file"))
    return source


def economics_config(config_text: str, model_uri: str, arms: Sequence[str],
                     override: ExperimentConfig | None) -> ExperimentConfig:
    """The config whose economics, eligibility and limits apply: ``override`` or the model's."""
    import yaml

    if override is not None:
        if sorted(override.arm_names) != sorted(arms):
            raise ConfigError(Problem(override.source, "arms",
                                      f"the model predicts {', '.join(arms)}; the config has "
                                      f"{', '.join(override.arm_names)}"))
        cfg = override
    else:
        cfg, problems = check_config(yaml.safe_load(config_text),
                                     f"{model_uri} (experiment.yaml)", None, data_file=False)
        if cfg is None:
            raise ConfigError(problems)
    if cfg.data.id is None:
        raise ConfigError(Problem(cfg.source, "data.id",
                                  "the export needs a customer id column (data.id)"))
    return cfg


def export_recommendations(
    customers: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model_uri: str | None = None,
    config: str | os.PathLike[str] | None = None,
    holdout: float | None = None,
    engine: str = "pandas",
    spark_master: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    tracking_uri: str | None = None,
    today: dt.date | None = None,
    on_step: Callable[[str], None] | None = None,
    advance: Callable[[int], None] | None = None,
) -> ExportResult:
    """Score ``customers`` with a registered model and write one recommendation per customer.

    Args:
        customers: The customer table (.csv, .csv.gz or .parquet) with the id, the model's
            feature columns, the revenue column and the columns eligibility filters use.
        out: The file to write (.csv or .parquet); ``{date}`` becomes today's date.
        model_uri: An MLflow model URI; default ``models:/<registered_model>@champion``.
        config: A config whose economics, eligibility, budget and capacity replace the
            model's own (and whose tracking settings locate the store).
        holdout: Share of customers held out with no offer; default ``policy.holdout``.
        engine: ``pandas`` (chunked, one process) or ``spark``.
        spark_master: Spark master URL (``local[*]`` by default).
        chunk_size: Rows scored at a time (pandas engine).
        tracking_uri: MLflow store (else env ``MLFLOW_TRACKING_URI``, else the config's,
            else the default ``sqlite:///mlruns/mlflow.db``).
        today: The date ``{date}`` stands for (default: today).
        on_step: Called with a short description as each step starts.
        advance: Called with the number of customers just scored.

    Returns:
        The file, its manifest and the features that drifted.
    """
    from .. import registry, tracking

    clock = time.perf_counter()
    step = on_step or (lambda _: None)
    advance = advance or (lambda _: None)
    target = resolve_out(out, today)
    source = _check_arguments(customers, target, holdout, engine, chunk_size)
    # Scoring needs the economics and limits, not the table the model was trained on.
    override = load_config(config, data_file=False) if config is not None else None
    uri = tracking.resolve_tracking_uri(tracking_uri, override)
    name = (override.tracking.registered_model if override is not None
            else TrackingConfig().registered_model)
    step("Loading the model")
    loaded = registry.load_model(model_uri, name, uri)
    cfg = economics_config(loaded.config_text, loaded.uri, loaded.model.arms, override)
    share = cfg.policy.holdout if holdout is None else holdout
    plan = ScoringPlan(model=loaded.model, cfg=cfg, input_types=loaded.input_types,
                       holdout=share, hash_key=holdout_key(_model_seed(loaded.config_text)),
                       source=str(customers),
                       conversions=plan_conversions(loaded.model, cfg, loaded.input_types))
    try:
        header = read_header(source)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise DataError(Problem(str(customers), "", f"cannot read the table ({first_line(exc)})")
                        ) from None
    for column in plan.needed_columns():
        if column not in header:
            role = ("the customer id (data.id)" if column == plan.id_column else
                    "a model feature" if column in plan.model.features else
                    "the revenue column (data.value)" if column == plan.value_column else
                    "an eligibility filter")
            raise DataError(Problem(str(customers), f"column {column!r}", f"not found ({role})"))

    with _exclusive(target):
        return _export_locked(source, target, plan, loaded, cfg, override, uri, engine,
                              spark_master, chunk_size, step, advance, clock)


def _export_locked(source: Path, target: Path, plan: ScoringPlan, loaded: Any,
                   cfg: ExperimentConfig, override: ExperimentConfig | None, uri: str,
                   engine: str, spark_master: str | None, chunk_size: int,
                   step: Callable[[str], None], advance: Callable[[int], None],
                   clock: float) -> ExportResult:
    """Score, decide, write and describe, while holding the target's lock."""
    remove_stale_temps(target)
    input_sha256 = file_sha256(source)  # what is about to be read
    monitor = DriftMonitor(loaded.profile)
    decisions = Decisions(plan)
    manifest_path = Path(f"{target}.manifest.json")
    written: dict[str, str] = {}

    def replace_manifest(tmp: Path) -> None:
        written["sha256"] = file_sha256(tmp)  # the bytes about to become the target
        manifest_path.unlink(missing_ok=True)

    with tempfile.TemporaryDirectory(prefix="uplift-export-") as scratch:
        spill = Spill(Path(scratch) / "scored.parquet")
        step(f"Scoring customers ({engine})")
        if engine == "spark":
            from .spark import score_spark

            chunks: Iterable[pd.DataFrame] = score_spark(source, plan, chunk_size, monitor,
                                                         spark_master, advance)
        else:
            chunks = score_pandas(source, plan, chunk_size, monitor, advance)
        for scored in chunks:
            decisions.add(scored)
            spill.write(scored, plan.arms)
        spill.close()
        step("Choosing offers")
        choice, rank, solve = decisions.decide()

        step(f"Writing {target}")
        kind = str(table_format(target))
        counts = dict.fromkeys([cfg.control, *plan.arms], 0)
        totals = {"expected_cost": 0.0, "expected_net_value": 0.0}
        holdout_count = 0
        with atomic_path(target, before_replace=replace_manifest) as tmp:
            writer = Writer(tmp, kind, output_schema(plan, spill.id_type()))
            start = 0
            for spilled in spill.read(chunk_size):
                stop = start + len(spilled)
                block = output_block(spilled, plan, choice[start:stop], rank[start:stop])
                writer.write(block)
                for offer, n in block["offer"].value_counts().items():
                    counts[str(offer)] = counts.get(str(offer), 0) + int(n)
                holdout_count += int(block["holdout"].sum())
                totals["expected_net_value"] += float(block["net_value"].sum())
                cost = spilled[[cost_column(a) for a in plan.arms]].to_numpy(dtype=float)
                totals["expected_cost"] += float(picked(cost, choice[start:stop]).sum())
                start = stop
            writer.close()

    psi = monitor.psi()
    worst = drifted(psi)
    if worst:
        names = ", ".join(f"{k} ({v:.2f})" for k, v in worst[:5])
        warnings.warn(f"{plan.source}: the customers differ from the model's training rows "
                      f"(population stability index above {DRIFT_THRESHOLD:g}): {names}",
                      UpliftWarning, stacklevel=3)
    manifest = {
        "output": target.name,
        "format": kind,
        "rows": int(rank.size),
        "offers": counts,
        "holdout": holdout_count,
        "holdout_share": plan.holdout,
        "model_uri": loaded.uri,
        "model_name": loaded.name,
        "model_version": loaded.version,
        "run_id": loaded.run_id,
        "tracking_uri": uri,
        "economics_from": cfg.source if override is not None else "model",
        "objective": cfg.policy.objective,
        "value_column": plan.value_column,
        "budget": cfg.policy.budget,
        "capacity": dict(cfg.policy.capacity),
        **totals,
        **({"assignment": solve} if solve else {}),
        "input": plan.source,
        "input_sha256": input_sha256,
        "output_sha256": written["sha256"],
        "engine": engine,
        "psi": {k: round(v, 6) for k, v in psi.items()},
        "drifted_features": [k for k, _ in worst],
        "uplift_version": __version__,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    with atomic_path(manifest_path) as tmp_manifest:
        tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return ExportResult(path=target, manifest_path=manifest_path, manifest=manifest,
                        drifted=worst, seconds=time.perf_counter() - clock)


@contextlib.contextmanager
def _exclusive(target: Path) -> Iterator[None]:
    """Hold a lock on ``target`` so that two exports to one file take turns.

    The lock is a dot-file beside the target (``.<name>.lock``), in a folder only those
    who may replace the target write to, so nobody else can take it first. It is
    removed on release; a waiter that locked a file removed meanwhile opens it anew.
    """
    import fcntl

    path = target.parent / f".{target.name}.lock"
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    while True:
        fd = os.open(path, flags, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            current = os.stat(path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)  # released and removed by its holder meanwhile: try again
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _model_seed(config_text: str) -> int:
    """``model.seed`` of the config stored with the model (the holdout's key comes from it)."""
    import yaml

    raw = yaml.safe_load(config_text) or {}
    model = raw.get("model") if isinstance(raw, dict) else None
    seed = model.get("seed") if isinstance(model, dict) else None
    return int(seed) if isinstance(seed, int) else ModelConfig().seed
