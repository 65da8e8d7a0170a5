"""Scoring customers for the export, and choosing every customer's offer and rank.

``ScoringPlan.score`` turns one chunk of raw customer rows into scored rows: the id,
its keyed hash, the holdout flag, the churn risk, each offer's predicted uplift and,
from :func:`uplift.policy.score_offers` (the run's own valuation), each offer's score,
net value, cost and eligibility. It needs nothing but the plan, so the pandas engine
and Spark workers run the same code. :class:`Decisions` collects the scored chunks and
chooses offers once over the whole population with :func:`uplift.policy.choose_offers`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..config import ExperimentConfig
from ..drift import DriftMonitor
from ..errors import DataError, Problem
from ..models import churn_probabilities, uplift_column
from ..policy import (
    capacity_list,
    choose_offers,
    offer_threshold,
    optimality_warning,
    picked,
    score_offers,
)

HASH_COLUMN = "_hash"
_TEXT_FLAGS = {"True", "False"}


def score_column(arm: str) -> str:
    """Scratch column of the offer's score under the objective."""
    return f"_score_{arm}"


def net_column(arm: str) -> str:
    """Scratch column of the offer's expected net value per customer."""
    return f"_net_{arm}"


def cost_column(arm: str) -> str:
    """Scratch column of the offer's expected cost per customer."""
    return f"_cost_{arm}"


def eligible_column(arm: str) -> str:
    """Scratch column: may the customer get the offer."""
    return f"_ok_{arm}"


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
        """Per customer: id, hash, holdout, churn risk, uplift, and per offer score/net/cost/ok.

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
                                    f"missing id{row(int(np.argmax(blank.to_numpy())))}"))
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
        offers = score_offers(p_control, p_arms, value, frame, self.cfg,
                              getattr(self.model, "fixed_offer", None))
        out = {self.id_column: ids.to_numpy(), HASH_COLUMN: hashes,
               "holdout": hashes < holdout_threshold(self.holdout), "churn_risk": p_control}
        for a, arm in enumerate(self.arms):
            out[uplift_column(arm)] = uplift[:, a]
        for a, arm in enumerate(self.arms):
            out[score_column(arm)] = offers.score[:, a]
            out[net_column(arm)] = offers.net[:, a]
            out[cost_column(arm)] = offers.cost[:, a]
            out[eligible_column(arm)] = offers.eligible[:, a]
        return pd.DataFrame(out)


class Decisions:
    """Collects the scored chunks and chooses every customer's offer and rank.

    Without a budget or capacity each customer's choice is theirs alone, made chunk by
    chunk; with one, every customer not held out enters one optimal assignment.
    """

    def __init__(self, plan: ScoringPlan):
        self.plan = plan
        cfg = plan.cfg
        self.limited = cfg.policy.budget is not None or bool(cfg.policy.capacity)
        self.min_score = offer_threshold(cfg, getattr(plan.model, "fixed_offer", None))
        self.hashes: list[np.ndarray] = []
        self.choice: list[np.ndarray] = []
        self.key: list[np.ndarray] = []
        self.offered_key: list[np.ndarray] = []
        self.score: list[np.ndarray] = []
        self.cost: list[np.ndarray] = []
        self.allowed: list[np.ndarray] = []

    def add(self, scored: pd.DataFrame) -> None:
        """Take one scored chunk (in file order)."""
        arms = self.plan.arms
        score = scored[[score_column(a) for a in arms]].to_numpy(dtype=float)
        cost = scored[[cost_column(a) for a in arms]].to_numpy(dtype=float)
        allowed = (scored[[eligible_column(a) for a in arms]].to_numpy(dtype=bool)
                   & ~scored["holdout"].to_numpy(dtype=bool)[:, None])
        self.hashes.append(scored[HASH_COLUMN].to_numpy(dtype=np.uint64))
        # What contacting a customer would be worth with their best open offer.
        self.key.append(np.where(allowed, score, -np.inf).max(axis=1, initial=-np.inf))
        if self.limited:
            self.score.append(score)
            self.cost.append(cost)
            self.allowed.append(allowed)
        else:
            choice = choose_offers(score, cost, allowed, min_score=self.min_score).choice
            self.choice.append(choice.astype(np.int16))
            self.offered_key.append(picked(score, choice))

    def decide(self) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Every customer's offer index (-1: none) and rank, and the solve's summary."""
        summary: dict[str, Any] = {}
        hashes = np.concatenate(self.hashes) if self.hashes else np.zeros(0, np.uint64)
        duplicates = hashes.size - np.unique(hashes).size
        if duplicates:
            raise DataError(Problem(self.plan.source, f"column {self.plan.id_column!r}",
                                    f"duplicate ids ({duplicates} "
                                    f"{'row repeats' if duplicates == 1 else 'rows repeat'} "
                                    "an id)"))
        if self.limited:
            policy = self.plan.cfg.policy
            k = len(self.plan.arms)
            score = np.concatenate(self.score) if self.score else np.zeros((0, k))
            cost = np.concatenate(self.cost) if self.cost else np.zeros_like(score)
            allowed = (np.concatenate(self.allowed) if self.allowed
                       else np.zeros(score.shape, dtype=bool))
            self.score, self.cost, self.allowed = [], [], []
            # Solved in id-hash order, so ties fall the same way whatever the file order.
            by_hash = np.argsort(hashes, kind="stable")
            result = choose_offers(score[by_hash], cost[by_hash], allowed[by_hash],
                                   min_score=self.min_score, budget=policy.budget,
                                   capacity=capacity_list(policy.capacity, self.plan.arms))
            optimality_warning(result, self.plan.source)
            choice = np.empty_like(result.choice)
            choice[by_hash] = result.choice
            offered_key = picked(score, choice)
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


# --------------------------------------------------------------------------- conversions


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
            out[column] = "flag_text" if known and known <= _TEXT_FLAGS else "text"
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
