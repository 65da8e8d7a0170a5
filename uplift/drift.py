"""Population stability of the model's features between training and scoring.

``profile_features`` summarizes the training rows as per-feature bins (deciles of a
numeric feature, the most frequent categories of a categorical one, and a bin for
missing values each) and is stored with the model. ``DriftMonitor`` counts the
scored customers into the same bins chunk by chunk, so an export of any size keeps
only the counts, and reports the population stability index per feature:

    PSI = sum_b (q_b - p_b) * ln(q_b / p_b)

with p the training share and q the scored share of bin b, both floored at
``EPSILON`` so an empty bin contributes a large but finite term. Values above 0.25
are the usual sign that a population has shifted enough to distrust the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

DRIFT_THRESHOLD = 0.25
EPSILON = 1e-4
NUMERIC_BINS = 10
MAX_CATEGORIES = 50
_OTHER = "__other__"


def profile_features(frame: pd.DataFrame, features: Sequence[str],
                     categorical: Sequence[str]) -> dict[str, Any]:
    """Per-feature bins and training shares of ``frame`` (JSON-ready)."""
    cats = set(categorical)
    profile: dict[str, Any] = {}
    for name in features:
        values = frame[name]
        if name in cats or not pd.api.types.is_numeric_dtype(values):
            counts = values.dropna().astype(str).value_counts()
            top = sorted(counts.index[:MAX_CATEGORIES].tolist())
            entry: dict[str, Any] = {"kind": "categorical", "categories": top}
        else:
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            finite = numbers[np.isfinite(numbers)]
            quantiles = np.quantile(finite, np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1]) \
                if finite.size else np.array([])
            entry = {"kind": "numeric", "edges": np.unique(quantiles).tolist()}
        counts_ = bin_counts(entry, values)
        entry["shares"] = (counts_ / max(counts_.sum(), 1)).tolist()
        entry["rows"] = int(len(values))
        profile[name] = entry
    return profile


def bin_counts(entry: Mapping[str, Any], values: pd.Series) -> np.ndarray:
    """Counts per bin: the regular bins, then ``other`` (categorical) and ``missing``."""
    if entry["kind"] == "numeric":
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        missing = ~np.isfinite(numbers)
        edges = np.asarray(entry["edges"], dtype=float)
        index = np.searchsorted(edges, numbers[~missing], side="right")
        counts = np.bincount(index, minlength=len(edges) + 1).astype(float)
        return np.append(counts, missing.sum())
    categories = entry["categories"]
    missing = values.isna().to_numpy()
    text = values[~missing].astype(str)
    known = text.value_counts().reindex(categories, fill_value=0).to_numpy(dtype=float)
    other = float(len(text) - known.sum())
    return np.concatenate([known, [other, missing.sum()]])


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index between two share (or count) vectors over the same bins."""
    p = np.asarray(expected, dtype=float)
    q = np.asarray(actual, dtype=float)
    p = np.maximum(p / max(p.sum(), 1e-300), EPSILON)
    q = np.maximum(q / max(q.sum(), 1e-300), EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


class DriftMonitor:
    """Accumulates scored customers into the training bins, chunk by chunk."""

    def __init__(self, profile: Mapping[str, Any]):
        self.profile = dict(profile)
        self.counts_ = {name: np.zeros(len(entry["shares"])) for name, entry in
                        self.profile.items()}

    def update(self, frame: pd.DataFrame) -> DriftMonitor:
        """Count one chunk of scored customers."""
        for name, entry in self.profile.items():
            self.counts_[name] += bin_counts(entry, frame[name])
        return self

    def psi(self) -> dict[str, float]:
        """PSI per feature, in the profile's order; none when no customer was counted.

        An empty population has no shares to compare, and the floor would otherwise make
        every feature look shifted.
        """
        if not any(counts.sum() for counts in self.counts_.values()):
            return {}
        return {name: psi(np.asarray(entry["shares"]), self.counts_[name])
                for name, entry in self.profile.items()}


def drifted(values: Mapping[str, float], threshold: float = DRIFT_THRESHOLD
            ) -> list[tuple[str, float]]:
    """Features whose PSI exceeds ``threshold``, worst first."""
    return sorted(((k, v) for k, v in values.items() if v > threshold),
                  key=lambda item: item[1], reverse=True)
