"""The recommendation export: score customers, hold some out, choose offers, rank, deliver.

``export_recommendations`` reads the customers in chunks, scores each chunk with a
registered model (pandas engine, or Spark with ``export_spark.py``), and spills the
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
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .config import (
    ExperimentConfig,
    ModelConfig,
    TrackingConfig,
    check_config,
    load_config,
)
from .drift import DRIFT_THRESHOLD, DriftMonitor, drifted
from .errors import ArgumentError, ConfigError, DataError, Problem, UpliftWarning
from .models import uplift_column
from .optimize import assign_offers
from .policy import eligibility, net_values, policy_scores
from .tables import atomic_path, file_sha256, read_header, remove_stale_temps, table_format
from .training import churn_probabilities

DEFAULT_CHUNK_SIZE = 200_000
OUTPUT_BLOCK = 65_536  # rows per parquet row group, whatever the chunk size
ENGINES = ("pandas", "spark")
_HASH = "_hash"


def net_column(arm: str) -> str:
    """Scratch column of the offer's expected net value per customer."""
    return f"_net_{arm}"


def cost_column(arm: str) -> str:
    """Scratch column of the offer's expected cost per customer."""
    return f"_cost_{arm}"


def eligible_column(arm: str) -> str:
    """Scratch column: may the customer get the offer."""
    return f"_ok_{arm}"


@dataclass(frozen=True)
class ScoringPlan:
    """Everything a worker needs to score a chunk of customers (picklable, no mlflow)."""

    model: Any
    cfg: ExperimentConfig
    input_types: dict[str, str]
    holdout: float
    hash_key: str
    source: str
    conversions: dict[str, str] = field(default_factory=dict)

    @property
    def id_column(self) -> str:
        """The customer id column (``data.id``)."""
        return str(self.cfg.data.id)

    @property
    def value_column(self) -> str | None:
        """The monthly revenue column (``data.value``), if any."""
        return self.cfg.data.value

    @property
    def arms(self) -> list[str]:
        """Offer names in config order."""
        return self.cfg.arm_names

    def needed_columns(self) -> list[str]:
        """The input columns the export reads: id, features, value, eligibility filters."""
        columns = [self.id_column, *self.model.features]
        if self.value_column:
            columns.append(self.value_column)
        for arm in self.cfg.arms:
            columns.extend(arm.eligible or {})
        return list(dict.fromkeys(columns))

    def score(self, frame: pd.DataFrame, first_row: int | None = 0,
              monitor: DriftMonitor | None = None) -> pd.DataFrame:
        """Per customer: id, hash, holdout, churn risk, uplift, and per offer net/cost/eligible.

        ``frame`` holds the needed columns as read (text from CSV, typed from parquet);
        ``first_row`` is the position of its first row in the file (for error messages;
        None when unknown). ``monitor`` counts the rows for the drift guard.
        """

        def row(position: int) -> str:
            return "" if first_row is None else f" (row {first_row + position + 1})"

        frame = canonical_frame(frame, self)
        if monitor is not None:
            monitor.update(frame)
        ids = frame[self.id_column]
        blank = ids.isna() | ids.astype(str).str.strip().eq("")
        if blank.any():
            raise DataError(Problem(self.source, f"column {self.id_column!r}",
                                    f"missing id{row(_first(blank))}"))
        hashes = id_hashes(ids, self.hash_key)
        if len(frame):
            scores = self.model.predict(frame)
            p_control, p_arms = churn_probabilities(scores, self.arms)
            uplift = scores[[uplift_column(a) for a in self.arms]].to_numpy(dtype=float)
        else:  # the models refuse zero rows
            p_control, uplift = np.zeros(0), np.zeros((0, len(self.arms)))
            p_arms = uplift.copy()
        if self.value_column:
            value = frame[self.value_column].to_numpy(dtype=float)
            bad = ~np.isfinite(value) | (value < 0)
            if bad.any():
                raise DataError(Problem(
                    self.source, f"column {self.value_column!r}",
                    f"missing or negative revenue{row(int(np.argmax(bad)))}"))
        else:
            value = np.zeros(len(frame))
        net, cost = net_values(p_control, p_arms, value, self.cfg.arms,
                               self.cfg.value_horizon_months)
        allowed = eligibility(frame, self.cfg.arms)
        out = {self.id_column: ids.to_numpy(), _HASH: hashes,
               "holdout": hashes < holdout_threshold(self.holdout), "churn_risk": p_control}
        for a, arm in enumerate(self.arms):
            out[uplift_column(arm)] = uplift[:, a]
        for a, arm in enumerate(self.arms):
            out[net_column(arm)] = net[:, a]
            out[cost_column(arm)] = cost[:, a]
            out[eligible_column(arm)] = allowed[:, a]
        return pd.DataFrame(out)


@dataclass(frozen=True)
class ExportResult:
    """Where the file and manifest went, and what the manifest says."""

    path: Path
    manifest_path: Path
    manifest: dict[str, Any]
    drifted: list[tuple[str, float]] = field(default_factory=list)
    seconds: float = 0.0


# --------------------------------------------------------------------------- pieces


def _first(mask: pd.Series) -> int:
    return int(np.argmax(mask.to_numpy()))


def holdout_key(seed: int) -> str:
    """The 16-character hash key of the holdout draw, derived from the model's seed."""
    return hashlib.sha256(f"uplift-holdout:{seed}".encode()).hexdigest()[:16]


def id_hashes(ids: pd.Series, key: str) -> np.ndarray:
    """A keyed 64-bit hash (SipHash) of each id's text: the same id, the same hash, anywhere."""
    text = ids.astype(str).to_numpy(dtype=object)
    return pd.util.hash_array(text, hash_key=key, categorize=False)


def holdout_threshold(share: float) -> np.uint64:
    """Hashes below this value are held out: a ``share`` of uniformly spread hashes."""
    return np.uint64(min(int(share * 2.0**64), 2**64 - 1))


def resolve_out(out: str | os.PathLike[str], today: dt.date | None = None) -> Path:
    """``--out`` with ``{date}`` replaced by today's date (YYYY-MM-DD)."""
    day = (today or dt.date.today()).isoformat()
    return Path(str(out).replace("{date}", day))


# pandas' read_csv markers of a missing value: training read the data with them.
_MISSING_TEXT = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
                 "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a",
                 "nan", "null")


def plan_conversions(model: Any, cfg: ExperimentConfig, input_types: Mapping[str, str]
                     ) -> dict[str, str]:
    """How each needed column is converted, decided once from the model and the config.

    Per column, never per chunk, so a value converts the same whatever rows surround
    it: ``id``; ``text`` (categories, text); ``flag_text`` (a text column of True /
    False with blanks at training); ``flag``; ``category_int`` (integer category
    codes); ``number``.
    """
    categories = getattr(getattr(model.risk, "encoder_", None), "categories_", {})
    out: dict[str, str] = {str(cfg.data.id): "id"}
    for column in model.features:
        kind = input_types.get(column)
        if kind == "boolean":
            out[column] = "flag"
        elif kind == "string":
            known = {str(c) for c in categories.get(column, [])}
            out[column] = "flag_text" if known and known <= {"True", "False"} else "text"
        elif column in categories:
            out[column] = "category_int" if kind == "any" else "number"
        else:
            out[column] = "number"
    if cfg.data.value:
        out.setdefault(cfg.data.value, "number")
    for arm in cfg.arms:
        for column, rule in (arm.eligible or {}).items():
            listed = [*(rule.in_ or []), *(rule.not_in or [])]
            numeric = (rule.min is not None or rule.max is not None
                       or (listed and all(isinstance(v, (int, float)) and not
                                          isinstance(v, bool) for v in listed)))
            if column not in out or (numeric and out[column] == "text"):
                out[column] = "number" if numeric else "text"
    return out


def canonical_frame(frame: pd.DataFrame, plan: ScoringPlan) -> pd.DataFrame:
    """The needed columns converted to the types the model was trained on.

    CSV columns arrive as text and parquet columns typed; both engines pass through
    here, so the same values give the same scores. Text marking a missing value (as
    pandas reads it) becomes missing; each column converts by ``plan.conversions``,
    value by value.
    """
    out = {}
    for column in plan.needed_columns():
        series = frame[column].reset_index(drop=True)
        if _is_text(series):
            series = series.mask(series.isin(_MISSING_TEXT))
        kind = plan.conversions.get(column, "number")
        if kind == "id":
            out[column] = _text(series) if _is_text(series) else series
        elif kind == "text":
            out[column] = _text(series)
        elif kind == "flag":
            out[column] = _flags(series)
        elif kind == "flag_text":
            flags = _flags(series)
            out[column] = flags.where(flags.isna(), flags.astype(str))
        elif kind == "category_int":
            number = pd.to_numeric(series, errors="coerce")
            out[column] = number.where(number == np.floor(number)).astype("Int64")
        else:
            out[column] = pd.to_numeric(series, errors="coerce").astype(float)
    return pd.DataFrame(out)


def _is_text(series: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series))


def _text(series: pd.Series) -> pd.Series:
    values = series.astype(object)
    present = values.notna()
    return values.where(~present, values[present].astype(str)).where(present, np.nan)


def _flags(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series):
        return series.astype(object)
    text = series.astype(str).str.strip().str.lower()
    mapped = text.map({"true": True, "1": True, "1.0": True, "yes": True, "t": True,
                       "false": False, "0": False, "0.0": False, "no": False, "f": False})
    return mapped.where(series.notna(), np.nan).astype(object)


# --------------------------------------------------------------------------- reading


def read_chunks(path: Path, columns: Sequence[str], chunk_size: int) -> Iterator[pd.DataFrame]:
    """The needed columns of a CSV (as text) or parquet file, ``chunk_size`` rows at a time."""
    if table_format(path) == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as handle:
            for batch in handle.iter_batches(batch_size=chunk_size, columns=list(columns)):
                yield batch.to_pandas()
        return
    import pyarrow as pa
    import pyarrow.csv as pacsv

    # Arrow's reader: every field as text, a ragged row is an error (pandas would
    # silently drop the extra fields of a row when only some columns are read).
    reader = pacsv.open_csv(
        pa.input_stream(str(path)),  # .csv.gz decompressed by its extension
        read_options=pacsv.ReadOptions(block_size=min(1 << 24, max(1 << 16, 200 * chunk_size))),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            include_columns=list(columns), column_types=dict.fromkeys(columns, pa.string()),
            strings_can_be_null=True, null_values=[""]))
    pending: list[Any] = []
    rows = 0
    for batch in reader:
        pending.append(batch)
        rows += batch.num_rows
        if rows >= chunk_size:
            yield pa.Table.from_batches(pending).to_pandas()
            pending, rows = [], 0
    if pending:
        yield pa.Table.from_batches(pending).to_pandas()


def _readable(chunks: Iterator[pd.DataFrame], source: str) -> Iterator[pd.DataFrame]:
    """The chunks, with a malformed or unreadable table reported as bad input."""
    import pyarrow as pa

    try:
        yield from chunks
    except (ValueError, OSError, UnicodeDecodeError, pa.ArrowException) as exc:
        raise DataError(Problem(source, "", f"cannot read the table ({_first_line(exc)})")
                        ) from None


def score_pandas(path: Path, plan: ScoringPlan, chunk_size: int, monitor: DriftMonitor,
                 advance: Callable[[int], None]) -> Iterator[pd.DataFrame]:
    """Scored chunks in input order (pandas engine), counting features for the drift guard."""
    first = 0
    for chunk in _readable(read_chunks(path, plan.needed_columns(), chunk_size), plan.source):
        scored = plan.score(chunk, first, monitor)
        first += len(chunk)
        advance(len(chunk))
        yield scored


# --------------------------------------------------------------------------- deciding


class _Decisions:
    """Collects the scored chunks and chooses every customer's offer and rank."""

    def __init__(self, plan: ScoringPlan):
        self.plan = plan
        cfg = plan.cfg
        self.limited = cfg.policy.budget is not None or bool(cfg.policy.capacity)
        self.hashes: list[np.ndarray] = []
        self.holdout: list[np.ndarray] = []
        self.choice: list[np.ndarray] = []
        self.key: list[np.ndarray] = []
        self.offered_key: list[np.ndarray] = []
        self.score: list[np.ndarray] = []
        self.cost: list[np.ndarray] = []
        self.allowed: list[np.ndarray] = []
        self.min_score = 0.0

    def add(self, scored: pd.DataFrame) -> None:
        arms = self.plan.arms
        net = scored[[net_column(a) for a in arms]].to_numpy(dtype=float)
        cost = scored[[cost_column(a) for a in arms]].to_numpy(dtype=float)
        allowed = scored[[eligible_column(a) for a in arms]].to_numpy(dtype=bool)
        uplift = scored[[uplift_column(a) for a in arms]].to_numpy(dtype=float)
        score, self.min_score = policy_scores(net, uplift, self.plan.cfg)
        hold = scored["holdout"].to_numpy(dtype=bool)
        allowed = allowed & ~hold[:, None]
        self.hashes.append(scored[_HASH].to_numpy(dtype=np.uint64))
        self.holdout.append(hold)
        # What contacting a customer would be worth with their best open offer.
        self.key.append(np.where(allowed, score, -np.inf).max(axis=1, initial=-np.inf))
        if self.limited:
            self.score.append(score)
            self.cost.append(cost)
            self.allowed.append(allowed)
        else:
            choice = assign_offers(score, cost, eligible=allowed, min_score=self.min_score).choice
            self.choice.append(choice.astype(np.int16))
            self.offered_key.append(_picked(score, choice))

    def decide(self) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Every customer's offer index (-1: none) and rank, and the solve's summary."""
        summary: dict[str, Any] = {}
        hashes = np.concatenate(self.hashes) if self.hashes else np.zeros(0, np.uint64)
        duplicates = hashes.size - np.unique(hashes).size
        if duplicates:
            raise DataError(Problem(self.plan.source, f"column {self.plan.id_column!r}",
                                    f"duplicate ids ({duplicates} rows repeat an id)"))
        if self.limited:
            cfg = self.plan.cfg
            score = np.concatenate(self.score) if self.score else np.zeros((0, len(self.plan.arms)))
            cost = np.concatenate(self.cost) if self.cost else np.zeros_like(score)
            allowed = (np.concatenate(self.allowed) if self.allowed
                       else np.zeros(score.shape, dtype=bool))
            self.score, self.cost, self.allowed = [], [], []
            caps = [cfg.policy.capacity.get(a) for a in self.plan.arms]
            # Solved in id-hash order, so ties fall the same way whatever the file order.
            by_hash = np.argsort(hashes, kind="stable")
            result = assign_offers(score[by_hash], cost[by_hash], eligible=allowed[by_hash],
                                   budget=cfg.policy.budget, capacity=caps,
                                   min_score=self.min_score)
            choice = np.empty_like(result.choice)
            choice[by_hash] = result.choice
            offered_key = _picked(score, choice)
            summary = {"optimal": bool(result.optimal), "gap": float(result.gap)}
        else:
            choice = (np.concatenate(self.choice) if self.choice else np.zeros(0, np.int16))
            offered_key = (np.concatenate(self.offered_key) if self.offered_key
                           else np.zeros(0))
        offered = choice >= 0
        key = np.where(offered, offered_key, np.concatenate(self.key) if self.key else 0.0)
        key = np.where(np.isfinite(key), key, -np.inf)
        order = np.lexsort((hashes, -key, ~offered))
        rank = np.empty(order.size, dtype=np.int64)
        rank[order] = np.arange(1, order.size + 1)
        return choice, rank, summary


def _picked(matrix: np.ndarray, choice: np.ndarray) -> np.ndarray:
    out = np.zeros(choice.shape[0])
    rows = np.flatnonzero(choice >= 0)
    out[rows] = matrix[rows, choice[rows]]
    return out


# --------------------------------------------------------------------------- writing


def output_schema(plan: ScoringPlan, id_type: Any) -> Any:
    """The export's arrow schema in SPEC column order (the id keeps its input type)."""
    import pyarrow as pa

    return pa.schema([pa.field(plan.id_column, id_type), ("offer", pa.string()),
                      ("holdout", pa.bool_()), ("churn_risk", pa.float64()),
                      *((uplift_column(a), pa.float64()) for a in plan.arms),
                      ("net_value", pa.float64()), ("rank", pa.int64())])


class _Writer:
    """Writes output blocks to CSV (arrow's writer: strings quoted, true/false) or parquet.

    Parquet row groups hold ``OUTPUT_BLOCK`` rows whatever the chunk size, so the bytes
    depend only on the rows.
    """

    def __init__(self, path: Path, kind: str, schema: Any):
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        self.schema, self.kind = schema, kind
        self.pending: list[Any] = []
        self.pending_rows = 0
        if kind == "csv":
            self.writer = pacsv.CSVWriter(str(path), schema, write_options=pacsv.WriteOptions(
                quoting_style="needed"))
        else:
            self.writer = pq.ParquetWriter(str(path), schema, compression="snappy")

    def write(self, block: pd.DataFrame) -> None:
        import pyarrow as pa

        table = pa.table([pa.array(block[f.name].to_numpy(), type=f.type) for f in self.schema],
                         schema=self.schema)
        if self.kind == "csv":
            self.writer.write_table(table)
            return
        self.pending.append(table)
        self.pending_rows += table.num_rows
        while self.pending_rows >= OUTPUT_BLOCK:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        table = pa.concat_tables(self.pending)
        # One contiguous piece per column: page and dictionary choices then depend on
        # the rows alone, not on where the chunks happened to end.
        head = table.slice(0, OUTPUT_BLOCK).combine_chunks()
        self.writer.write_table(head, row_group_size=OUTPUT_BLOCK)
        rest = table.slice(head.num_rows)
        self.pending = [rest] if rest.num_rows else []
        self.pending_rows = rest.num_rows

    def close(self) -> None:
        while self.pending_rows:
            self._flush()
        self.writer.close()


class _Spill:
    """The scored chunks kept on disk between the two passes (parquet, lz4)."""

    def __init__(self, path: Path):
        self.path = path
        self.writer: Any = None
        self.rows = 0

    def write(self, scored: pd.DataFrame, arms: Sequence[str]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        keep = [scored.columns[0], "holdout", "churn_risk",
                *(uplift_column(a) for a in arms), *(net_column(a) for a in arms),
                *(cost_column(a) for a in arms)]
        table = pa.Table.from_pandas(scored[keep], preserve_index=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema, compression="lz4")
        self.writer.write_table(table)
        self.rows += len(scored)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def id_type(self) -> Any:
        """The arrow type of the id column (text when nothing was scored)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.writer is None:
            return pa.string()
        kind = pq.ParquetFile(self.path).schema_arrow.field(0).type
        return pa.string() if pa.types.is_large_string(kind) else kind

    def read(self, chunk_size: int) -> Iterator[pd.DataFrame]:
        import pyarrow.parquet as pq

        if self.writer is None:
            return
        with pq.ParquetFile(self.path) as handle:
            for batch in handle.iter_batches(batch_size=chunk_size):
                yield batch.to_pandas()


def _output_block(spilled: pd.DataFrame, plan: ScoringPlan, choice: np.ndarray,
                  rank: np.ndarray) -> pd.DataFrame:
    arms = plan.arms
    offer = np.asarray([*arms, plan.cfg.control], dtype=object)[
        np.where(choice >= 0, choice, len(arms))]
    net = spilled[[net_column(a) for a in arms]].to_numpy(dtype=float)
    block = pd.DataFrame({
        plan.id_column: spilled[plan.id_column].to_numpy(),
        "offer": offer,
        "holdout": spilled["holdout"].to_numpy(dtype=bool),
        "churn_risk": spilled["churn_risk"].to_numpy(dtype=float),
        **{uplift_column(a): spilled[uplift_column(a)].to_numpy(dtype=float) for a in arms},
        "net_value": _picked(net, choice),
        "rank": rank,
    })
    block["offer"] = block["offer"].astype(object)
    return block


# --------------------------------------------------------------------------- entry point


def _check_arguments(customers: str | os.PathLike[str], out: Path, holdout: float | None,
                     engine: str, chunk_size: int) -> Path:
    if holdout is not None and not (0 <= holdout < 1):
        raise ArgumentError(Problem(None, "--holdout",
                                    f"must be a share in [0, 1), got {holdout:g}"))
    if engine not in ENGINES:
        raise ArgumentError(Problem(None, "--engine", f"must be pandas or spark, got {engine!r}"))
    if chunk_size < 1:
        raise ArgumentError(Problem(None, "--chunk-size", f"must be >= 1, got {chunk_size}"))
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise ArgumentError(Problem(str(out), "--out", "must end in .csv or .parquet"))
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise ArgumentError(Problem(str(out), "--out", f"folder {str(folder)!r} does not exist"))
    try:  # the real test of writability (permissions, read-only or immutable folders)
        fd, probe = tempfile.mkstemp(prefix=".uplift-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError:
        raise ArgumentError(Problem(str(out), "--out",
                                    f"folder {str(folder)!r} is not writable")) from None
    if out.is_dir():
        raise ArgumentError(Problem(str(out), "--out", "is a folder"))
    source = Path(customers)
    if not source.is_file():
        raise DataError(Problem(str(customers), "--customers", "file not found"))
    if table_format(source) is None:
        raise DataError(Problem(str(customers), "--customers",
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
                                     f"{model_uri} (experiment.yaml)", None)
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
    from . import registry, tracking

    clock = time.perf_counter()
    step = on_step or (lambda _: None)
    advance = advance or (lambda _: None)
    target = resolve_out(out, today)
    source = _check_arguments(customers, target, holdout, engine, chunk_size)
    override = load_config(config) if config is not None else None
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
        raise DataError(Problem(str(customers), "", f"cannot read the table ({_first_line(exc)})")
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
    decisions = _Decisions(plan)
    manifest_path = Path(f"{target}.manifest.json")
    written: dict[str, str] = {}

    def replace_manifest(tmp: Path) -> None:
        written["sha256"] = file_sha256(tmp)  # the bytes about to become the target
        manifest_path.unlink(missing_ok=True)

    with tempfile.TemporaryDirectory(prefix="uplift-export-") as scratch:
        spill = _Spill(Path(scratch) / "scored.parquet")
        step(f"Scoring customers ({engine})")
        if engine == "spark":
            from .export_spark import score_spark

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
            writer = _Writer(tmp, kind, output_schema(plan, spill.id_type()))
            start = 0
            for spilled in spill.read(chunk_size):
                stop = start + len(spilled)
                block = _output_block(spilled, plan, choice[start:stop], rank[start:stop])
                writer.write(block)
                for offer, n in block["offer"].value_counts().items():
                    counts[str(offer)] = counts.get(str(offer), 0) + int(n)
                holdout_count += int(block["holdout"].sum())
                totals["expected_net_value"] += float(block["net_value"].sum())
                cost = spilled[[cost_column(a) for a in plan.arms]].to_numpy(dtype=float)
                totals["expected_cost"] += float(_picked(cost, choice[start:stop]).sum())
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

    The lock file lives in the system's temporary folder, named after the target's
    absolute path, so the delivery folder holds only deliveries.
    """
    import fcntl

    key = hashlib.sha256(str(target.resolve()).encode()).hexdigest()[:24]
    with open(Path(tempfile.gettempdir()) / f"uplift-export-{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _model_seed(config_text: str) -> int:
    """``model.seed`` of the config stored with the model (the holdout's key comes from it)."""
    import yaml

    raw = yaml.safe_load(config_text) or {}
    model = raw.get("model") if isinstance(raw, dict) else None
    seed = model.get("seed") if isinstance(model, dict) else None
    return int(seed) if isinstance(seed, int) else ModelConfig().seed


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
