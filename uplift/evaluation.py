"""Held-out evaluation of uplift predictions: the split, Qini / AUUC per offer, decile tables.

``qini_<arm>`` and ``auuc_<arm>`` are causalml's ``qini_score`` / ``auuc_score``
(normalize=True) on that offer's held-out rows plus the held-out control rows, with
retention (1 - churn) as the outcome and the predicted churn reduction as the score,
so a model that finds whom the offer keeps scores above zero (SPEC section 4).

They are computed here, with causalml's definition to the last digit (its tests compare
the two): ``causalml.metrics`` imports causalml's whole inference stack (TMLE, shap,
numba), about a second, and re-sorts the rows for every curve, another second per run for
three candidates. Here each offer's rows are sorted once, in causalml's order, and both
curves come from the same cumulative counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .learners import LEARNER_LABELS
from .models import uplift_column

NOBODY = "nobody"
EVERYONE = "everyone:"  # + an arm's name: that offer for every eligible customer


def everyone(arm: str) -> str:
    """The name of the policy giving ``arm`` to every eligible customer."""
    return EVERYONE + arm


def split_holdout(treatment: Sequence[str], churned: Sequence[int], test_size: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of a seeded train / held-out split, stratified by group and outcome."""
    from sklearn.model_selection import train_test_split

    treatment = np.asarray(treatment, dtype=object)
    strata = pd.Series(treatment).astype(str) + "|" + pd.Series(np.asarray(churned)).astype(str)
    positions = np.arange(len(treatment))
    train, test = train_test_split(positions, test_size=test_size, random_state=seed,
                                   stratify=strata.to_numpy())
    return np.sort(train), np.sort(test)


def cross_folds(treatment: Sequence[str], churned: Sequence[int], folds: int,
                test_size: float, seed: int) -> np.ndarray:
    """Each row's fold (0 .. folds - 1), seeded and stratified by group and outcome.

    With ``folds`` 1 there is one held-out fold: a ``test_size`` share of the rows get
    fold 0, the others -1 (never held out, always fitted on).
    """
    from sklearn.model_selection import StratifiedKFold

    if folds == 1:
        _, test = split_holdout(treatment, churned, test_size, seed)
        out = np.full(len(treatment), -1, dtype=np.intp)
        out[test] = 0
        return out
    treatment = np.asarray(treatment, dtype=object)
    strata = pd.Series(treatment).astype(str) + "|" + pd.Series(np.asarray(churned)).astype(str)
    out = np.empty(len(treatment), dtype=np.intp)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(out)), strata.to_numpy())):
        out[test] = k
    return out


def arm_rows(treatment: np.ndarray, churned: np.ndarray, score: np.ndarray, control: str,
              arm: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Retention, offered-or-not and score of ``arm``'s and the control's rows."""
    mask = (treatment == control) | (treatment == arm)
    return (1 - churned[mask].astype(int), (treatment[mask] == arm).astype(int),
            score[mask].astype(float))


def _cumulative(retained: np.ndarray, offered: np.ndarray, score: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Offered, not offered, and their retained, among the top 1..n rows by score.

    Rows are ordered as causalml orders them (pandas' descending quicksort), so tied
    scores fall in the same order and the curves agree to the last digit.
    """
    order = pd.Series(score).sort_values(ascending=False).index.to_numpy()
    y, w = retained[order], offered[order]
    n_offered = np.cumsum(w)
    n_control = np.arange(1, len(w) + 1) - n_offered
    return n_offered, n_control, np.cumsum(y * w), np.cumsum(y * (1 - w))


def _from_zero(curve: np.ndarray) -> np.ndarray:
    """The curve with a 0 for no rows in front, gaps (0 / 0) interpolated as causalml does."""
    return pd.Series(np.concatenate([[0.0], curve])).interpolate().to_numpy()


def qini_curve(retained: np.ndarray, offered: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Radcliffe's Qini curve (causalml's ``get_qini``, not normalized), 0 .. n rows.

    After the top k rows: retained offered minus retained controls scaled to the number
    offered, the extra customers kept by targeting those k.
    """
    return _qini_of(*_cumulative(retained, offered, score))


def _qini_of(n_offered: np.ndarray, n_control: np.ndarray, kept_offered: np.ndarray,
             kept_control: np.ndarray) -> np.ndarray:
    """:func:`qini_curve` from the cumulative counts of :func:`_cumulative`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _from_zero(kept_offered - kept_control * n_offered / n_control)


def _gain_of(n_offered: np.ndarray, n_control: np.ndarray, kept_offered: np.ndarray,
             kept_control: np.ndarray) -> np.ndarray:
    """The cumulative gain curve (causalml's ``get_cumgain``): the lift in the top k, times k.

    From the cumulative counts of :func:`_cumulative`.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = _from_zero(kept_offered / n_offered - kept_control / n_control)
    return lift * np.arange(len(lift))


def _normalized(curve: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return curve / np.abs(curve[-1])


def uplift_scores(treatment: Sequence[str], churned: Sequence[int], uplift: pd.DataFrame,
                  control: str, arms: Sequence[str]) -> dict[str, float]:
    """``qini_<arm>`` and ``auuc_<arm>`` per offer: causalml's scores, normalize=True.

    Qini is the mean height of the normalized Qini curve above the straight line from
    its first to its last point (random targeting); AUUC the mean height of the
    normalized cumulative gain curve.
    """
    treatment = np.asarray(treatment, dtype=object)
    churned = np.asarray(churned)
    out: dict[str, float] = {}
    for arm in arms:
        counts = _cumulative(*arm_rows(treatment, churned,
                                       uplift[uplift_column(arm)].to_numpy(), control, arm))
        qini = _normalized(_qini_of(*counts))
        random = np.linspace(qini[0], qini[-1], len(qini))
        gain = _normalized(_gain_of(*counts))
        out[f"qini_{arm}"] = float((np.nansum(qini) - random.sum()) / len(qini))
        out[f"auuc_{arm}"] = float(np.nansum(gain) / len(gain))
    return out


def decile_table(treatment: Sequence[str], churned: Sequence[int], uplift: pd.DataFrame,
                 control: str, arms: Sequence[str], bins: int = 10) -> pd.DataFrame:
    """Per offer and decile of predicted uplift (1 = highest): predicted vs observed uplift.

    Deciles are cut on the predicted churn reduction over the offer's and the
    control's held-out rows together; the observed uplift of a decile is the control's
    churn rate minus the offer's churn rate inside it.
    """
    treatment = np.asarray(treatment, dtype=object)
    churned = np.asarray(churned, dtype=float)
    rows = []
    for arm in arms:
        score = uplift[uplift_column(arm)].to_numpy()
        mask = (treatment == control) | (treatment == arm)
        ranks = pd.Series(-score[mask]).rank(method="first").to_numpy()
        decile = np.minimum((ranks - 1) * bins // mask.sum(), bins - 1).astype(int) + 1
        frame = pd.DataFrame({"decile": decile, "treated": treatment[mask] == arm,
                              "churned": churned[mask], "predicted": score[mask]})
        for d, part in frame.groupby("decile", sort=True):
            treated, ctrl = part[part["treated"]], part[~part["treated"]]
            rate_arm = treated["churned"].mean() if len(treated) else np.nan
            rate_ctrl = ctrl["churned"].mean() if len(ctrl) else np.nan
            rows.append({"arm": arm, "decile": int(d), "n_arm": len(treated),
                         "n_control": len(ctrl), "churn_rate_arm": rate_arm,
                         "churn_rate_control": rate_ctrl,
                         "observed_uplift": rate_ctrl - rate_arm,
                         "predicted_uplift": part["predicted"].mean()})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class CandidateResult:
    """One learner's held-out performance, or why it failed.

    ``metrics`` holds ``qini_<arm>``, ``auuc_<arm>`` and the held-out estimate of the
    policy it recommends (``policy_net_value_per_customer``;
    ``policy_churn_reduction``).
    """

    learner: str
    metrics: dict[str, float] = field(default_factory=dict)
    deciles: pd.DataFrame | None = None
    fit_seconds: float = 0.0
    error: str | None = None
    members: tuple[str, ...] = ()
    started: float | None = None
    """When its fit started (seconds since the epoch), if it was fitted."""
    settings: dict[str, Any] = field(default_factory=dict)
    """What its models were fitted with (``learners.learner_settings``)."""

    @property
    def ok(self) -> bool:
        """True when the learner fitted and was scored."""
        return self.error is None

    @property
    def label(self) -> str:
        """The learner's name, with an ensemble's members: ``ensemble (s+t)``."""
        return self.learner + (f" ({'+'.join(self.members)})" if self.members else "")

    @property
    def model_free(self) -> bool:
        """A policy without a model: nobody, or one offer for everyone eligible."""
        return self.learner == NOBODY or self.learner.startswith(EVERYONE)

    @property
    def display_name(self) -> str:
        """A name for people: ``T-learner``, ``uplift forest``, ``ensemble (x + t)``."""
        if self.learner.startswith(EVERYONE):
            return f"{self.learner[len(EVERYONE):]} for everyone"
        if self.members:
            return f"{self.learner} ({' + '.join(self.members)})"
        return LEARNER_LABELS.get(self.learner, self.learner)

    def mean_score(self, prefix: str) -> float:
        """Mean over offers of the metrics named ``<prefix>_<arm>`` (-inf when none)."""
        values = [v for k, v in self.metrics.items() if k.startswith(f"{prefix}_")]
        return float(np.mean(values)) if values else float("-inf")
