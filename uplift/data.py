"""The customer table of a test: read it, check it against the config, and hold it as a Dataset.

Checks collect every problem (``collect_data_problems``) so ``uplift validate``
can list them all; ``load_dataset`` raises the first as a ``DataError``. Each
problem names the file and the column, and where a value is at fault, the value
and the row (rows count from 1 after the header).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import ExperimentConfig, SimulateConfig, display_path
from .errors import DataError, Problem, did_you_mean, first_line
from .tables import file_sha256, frame_sha256, read_table

_TRUE = frozenset({"1", "1.0", "true", "yes", "y", "t"})
_FALSE = frozenset({"0", "0.0", "false", "no", "n", "f"})
SIMULATED_ID = "customer_id"
_PROBE = 50  # distinct values tried before a text column is judged not numeric


@dataclass(frozen=True)
class Dataset:
    """A validated customer table with the roles of its columns.

    Attributes:
        frame: The rows, with numeric-looking text columns converted to numbers.
        source: The file as the user named it, or a description of simulated data.
        id_column: Column holding the customer id.
        treatment_column: Column holding the group each customer was randomized to.
        outcome_column: Column holding the observed outcome as written in the file.
        value_column: Column of monthly revenue, if configured.
        features: Feature columns for the models.
        categorical: The subset of ``features`` treated as categories.
        control: Name of the no-offer group.
        arms: Offer names, in config order.
        churned: 1 = churned, 0 = stayed, per row (``outcome_event`` applied).
        sha256: Content fingerprint (file bytes, or frame content when simulated).
        notes: Caveats found while loading (e.g. dropped all-missing columns).
    """

    frame: pd.DataFrame
    source: str
    id_column: str
    treatment_column: str
    outcome_column: str
    value_column: str | None
    features: tuple[str, ...]
    categorical: tuple[str, ...]
    control: str
    arms: tuple[str, ...]
    churned: np.ndarray
    sha256: str
    notes: tuple[str, ...] = field(default=())

    @property
    def treatment(self) -> np.ndarray:
        """The group name of every row, as strings."""
        return self.frame[self.treatment_column].astype(str).to_numpy()

    @property
    def n_rows(self) -> int:
        """Number of customers."""
        return len(self.frame)

    def group_counts(self) -> pd.Series:
        """Customers per group, control first then arms."""
        counts = pd.Series(self.treatment).value_counts()
        return counts.reindex([self.control, *self.arms], fill_value=0)


def load_dataset(cfg: ExperimentConfig) -> Dataset:
    """Read the config's data and check it; raise ``DataError`` on the first problem."""
    dataset, problems = collect_data_problems(cfg)
    if problems or dataset is None:
        raise DataError(problems or [Problem(None, "data", "no data")])
    return dataset


def collect_data_problems(cfg: ExperimentConfig) -> tuple[Dataset | None, list[Problem]]:
    """Read the config's data and return the Dataset (if clean) and every problem found."""
    if cfg.data.simulate is not None:
        frame, source, sha = _simulated_frame(cfg, cfg.data.simulate)
    else:
        path = Path(cfg.data.path or "")
        source = display_path(path)
        text = tuple(c for c in (cfg.data.id, cfg.data.treatment) if c)
        try:
            frame = read_table(path, text_columns=text)
        except Exception as exc:  # noqa: BLE001 - any reader failure is the file's fault
            return None, [Problem(source, "", f"cannot read the table ({first_line(exc)})")]
        sha = file_sha256(path)
    return check_frame(frame, cfg, source, sha256=sha)


def check_frame(
    frame: pd.DataFrame, cfg: ExperimentConfig, source: str, sha256: str | None = None
) -> tuple[Dataset | None, list[Problem]]:
    """Check a table against the config; return a Dataset when no problem was found.

    Args:
        frame: The table as read.
        cfg: The experiment config naming the columns and groups.
        source: How to name the table in problems (the file as the user gave it).
        sha256: Fingerprint of the source; computed from the content when omitted.
    """
    problems: list[Problem] = []
    data = cfg.data

    def add(where: str, message: str) -> None:
        problems.append(Problem(source, where, message))

    columns = [str(c) for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    if len(frame) == 0:
        add("", "the table has no rows")
        return None, problems
    dup_cols = sorted({c for c in columns if columns.count(c) > 1})
    if dup_cols:
        add(f"column {dup_cols[0]!r}", "appears more than once in the header")
        return None, problems

    roles = {"id": data.id, "treatment": data.treatment, "outcome": data.outcome,
             "value": data.value}
    missing_role = False
    for role, column in roles.items():
        if column is not None and column not in columns:
            hint = did_you_mean(column, columns)
            if role == "treatment" and not hint:
                hint = (": the table must come from a randomized test, with the group each "
                        "customer was assigned to (control or an offer) in a column that "
                        "data.treatment names")
            add(f"column {column!r}", f"not found (data.{role}){hint}")
            missing_role = True
    if data.id is None:
        frame = frame.assign(**{_row_id_name(columns): np.arange(1, len(frame) + 1)})
    id_column = data.id or _row_id_name(columns)

    reserved = {id_column, data.treatment, data.outcome}
    if data.features == "auto":
        features = [c for c in frame.columns if c not in reserved]
    else:
        features = []
        for i, column in enumerate(data.features):
            if column not in columns:
                add(f"column {column!r}",
                    f"not found (data.features[{i}]){did_you_mean(column, columns)}")
            else:
                features.append(column)
    for i, column in enumerate(data.categorical or []):
        if column not in columns:
            add(f"column {column!r}",
                f"not found (data.categorical[{i}]){did_you_mean(column, columns)}")
    cuped = cfg.analysis.cuped
    if cuped.enabled:
        listed = cuped.covariates if isinstance(cuped.covariates, list) else []
        for key, names in (("covariates", listed), ("exclude", cuped.exclude)):
            for i, column in enumerate(names):
                if column not in columns:
                    add(f"column {column!r}", f"not found (analysis.cuped.{key}[{i}])"
                        f"{did_you_mean(column, columns)}")
    for arm in cfg.arms:
        for column, rule in (arm.eligible or {}).items():
            if column not in columns:
                add(f"column {column!r}",
                    f"not found (arms[{arm.name}].eligible){did_you_mean(column, columns)}")
            elif (rule.min is not None or rule.max is not None) and not _numeric(frame[column]):
                add(f"column {column!r}",
                    f"arms[{arm.name}].eligible uses min/max but the column is not numeric")
    if missing_role:
        return None, problems

    # ids
    if data.id is not None:
        ids = frame[id_column]
        blank = _blank(ids)
        if blank.any():
            add(f"column {id_column!r}", f"missing id {_rows(blank)}")
        dup = ids[~blank].duplicated(keep=False)
        if dup.any():
            first = ids[~blank][dup].iloc[0]
            add(f"column {id_column!r}",
                f"duplicate id {first!r} ({int(dup.sum())} rows share an id)")

    # treatment
    groups = cfg.groups
    treatment = frame[data.treatment]
    blank = _blank(treatment)
    if blank.any():
        add(f"column {data.treatment!r}", f"missing group {_rows(blank)}")
    as_text = treatment.astype(str).str.strip()
    frame[data.treatment] = as_text.where(~blank, None)
    unknown = ~blank & ~as_text.isin(groups)
    if unknown.any():
        bad = as_text[unknown]
        value = bad.iloc[0]
        others = bad.nunique() - 1
        more = f" and {others} other unknown value{'s' if others > 1 else ''}" if others else ""
        add(f"column {data.treatment!r}",
            f"value {value!r} is not the control or an arm{did_you_mean(value, groups)} "
            f"({_rows(unknown)}){more}")

    # outcome
    churned, outcome_problem = _parse_outcome(frame[data.outcome], frame[id_column],
                                              data.id is not None)
    if outcome_problem:
        add(f"column {data.outcome!r}", outcome_problem)
    elif data.outcome_event == "retention":
        churned = 1 - churned

    # every group present with both outcomes
    if not blank.any() and not unknown.any() and churned is not None:
        counts = pd.crosstab(as_text, churned).reindex(index=groups, columns=[0, 1], fill_value=0)
        for group in groups:
            n_stay, n_churn = (int(v) for v in counts.loc[group])
            if n_stay + n_churn == 0:
                add(f"column {data.treatment!r}", f"group {group!r} has no rows")
            elif n_churn == 0 or n_stay == 0:
                missing = "churned" if n_churn == 0 else "retained"
                add(f"column {data.outcome!r}",
                    f"group {group!r} has no {missing} customers; effects cannot be estimated")

    # value
    if data.value is not None:
        values = _to_number(frame[data.value])
        if values is None:
            first = _first_non_numeric(frame[data.value])
            add(f"column {data.value!r}", f"must be numeric, found {first!r}")
        else:
            miss = values.isna()
            if miss.any():
                add(f"column {data.value!r}", f"missing value {_rows(miss)}")
            neg = values < 0
            if neg.any():
                add(f"column {data.value!r}",
                    f"negative value {values[neg].iloc[0]:g} ({_rows(neg)})")
            frame[data.value] = values

    # features
    notes: list[str] = []
    kept: list[str] = []
    for column in features:
        number = _to_number(frame[column]) if not _numeric(frame[column]) else None
        if number is not None:
            frame[column] = number
        if frame[column].isna().all():
            if data.features == "auto":
                notes.append(f"column {column!r} is empty in every row and was left out")
                continue
            add(f"column {column!r}", "is empty in every row; remove it from data.features")
        kept.append(column)
    listed = set(data.categorical or [])
    categorical = [c for c in kept if c in listed or not _numeric(frame[c])]

    if problems:
        return None, problems
    return Dataset(
        frame=frame,
        source=source,
        id_column=id_column,
        treatment_column=data.treatment,
        outcome_column=data.outcome,
        value_column=data.value,
        features=tuple(kept),
        categorical=tuple(categorical),
        control=cfg.control,
        arms=tuple(cfg.arm_names),
        churned=np.asarray(churned, dtype=np.int8),
        sha256=sha256 or frame_sha256(frame),
        notes=tuple(notes),
    ), []


# --------------------------------------------------------------------------- helpers


def _simulated_frame(cfg: ExperimentConfig, sim: SimulateConfig) -> tuple[pd.DataFrame, str, str]:
    """Simulated customers renamed to the config's column names."""
    from .simulate import simulate_customers

    result = simulate_customers(
        sim.customers, sim.seed, period=cfg.period,
        arms=[(a.name, a.kind) for a in cfg.arms], allocation=cfg.allocation, control=cfg.control,
    )
    frame = result.customers
    renames = {SIMULATED_ID: cfg.data.id or SIMULATED_ID, "arm": cfg.data.treatment,
               "churned": cfg.data.outcome}
    if cfg.data.value:
        renames["monthly_revenue"] = cfg.data.value
    frame = frame.rename(columns=renames)
    if cfg.data.outcome_event == "retention":
        frame[cfg.data.outcome] = 1 - frame[cfg.data.outcome]
    source = f"simulated data (customers={sim.customers}, seed={sim.seed})"
    return frame, source, frame_sha256(frame)


def _row_id_name(columns: Sequence[str]) -> str:
    name = "row"
    while name in columns:
        name = f"_{name}"
    return name


def _blank(series: pd.Series) -> pd.Series:
    """True where a value is missing or only whitespace."""
    blank = series.isna()
    if not _numeric(series):
        blank |= series.astype(str).str.strip().eq("")
    return blank


def _rows(mask: pd.Series) -> str:
    """``row 17`` or ``row 17 and 3 more`` for the rows where ``mask`` holds (1-based)."""
    positions = np.flatnonzero(mask.to_numpy())
    text = f"row {positions[0] + 1}"
    if len(positions) > 1:
        text += f" and {len(positions) - 1} more"
    return text


def _numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _to_number(series: pd.Series) -> pd.Series | None:
    """The column as floats when every non-blank value is a number (blanks -> NaN), else None."""
    if _numeric(series):
        return series.astype(float)
    if pd.api.types.is_bool_dtype(series):
        return None
    text = series.astype("string").str.strip()
    text = text.mask(text.eq(""))
    probe = pd.Series(text.dropna().unique()[:_PROBE])
    if probe.empty or pd.to_numeric(probe, errors="coerce").isna().any():
        return None  # plain text: settled on a few distinct values, not every row
    number = pd.to_numeric(text, errors="coerce")
    if (number.isna() & text.notna()).any() or text.isna().all():
        return None
    return number.astype(float)


def _first_non_numeric(series: pd.Series) -> object:
    text = series.astype("string").str.strip()
    bad = pd.to_numeric(text, errors="coerce").isna() & text.notna() & text.ne("")
    return text[bad].iloc[0] if bad.any() else series.iloc[0]


def _parse_outcome(
    series: pd.Series, ids: pd.Series, has_ids: bool
) -> tuple[np.ndarray | None, str | None]:
    """Read 0/1, booleans and yes/no (any case) as 0/1; else say which value and row is wrong."""
    if pd.api.types.is_bool_dtype(series) and not series.isna().any():
        return series.to_numpy().astype(np.int8), None
    if _numeric(series):
        values = series.to_numpy(dtype=float, na_value=np.nan)
        ok = (values == 0) | (values == 1)
        parsed = np.where(ok, values, -1).astype(np.int8)
        bad = ~ok
        shown = series.astype(object)
    else:
        text = series.astype("string").str.strip().str.lower()
        parsed = np.full(len(series), -1, dtype=np.int8)
        parsed[text.isin(_TRUE).fillna(False).to_numpy(dtype=bool)] = 1
        parsed[text.isin(_FALSE).fillna(False).to_numpy(dtype=bool)] = 0
        bad = parsed < 0
        shown = series.astype(object)
    if not bad.any():
        return parsed, None
    first = int(np.flatnonzero(bad)[0])
    value = shown.iloc[first]
    value_text = "a missing value" if pd.isna(value) else f"value {str(value)!r}"
    where = f"row {first + 1}"
    if has_ids:
        where += f", id {ids.iloc[first]}"
    count = int(bad.sum())
    more = f"; {count - 1} more rows like it" if count > 1 else ""
    return None, (f"{value_text} is not an outcome ({where}); use 0/1, true/false or "
                  f"yes/no{more}")
