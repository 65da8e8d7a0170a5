"""How customers were assigned to groups: the sample-ratio check and the probabilities.

The readout tests the group counts against the config's ``allocation``; the learners,
the covariate-adjusted readout and the off-policy estimates weigh customers by the
probability they were assigned with. That probability is the allocation when the
counts agree with it, else the observed shares: a sample-ratio mismatch (the check of
``analysis.srm_threshold``) shows the planned shares are not what the data were drawn
with, the observed shares then estimate the real assignment probabilities, and
weighting by the plan would bias every learner that uses propensities (X, R, DR) and
every off-policy estimate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .config import ExperimentConfig
from .data import Dataset


def srm_pvalue(counts: Sequence[int], shares: Sequence[float]) -> float:
    """Chi-square goodness-of-fit p-value of group counts against planned shares."""
    n = np.asarray(counts, dtype=float)
    expected = n.sum() * np.asarray(shares, dtype=float)
    return float(stats.chisquare(n, f_exp=expected).pvalue)


def group_shares(treatment: Sequence[str] | np.ndarray, groups: Sequence[str],
                 planned: Mapping[str, float] | None = None) -> dict[str, float]:
    """Assignment probability per group: the ``planned`` shares when given, else observed."""
    if planned is not None:
        return {g: float(planned[g]) for g in groups}
    counts = pd.Series(np.asarray(treatment, dtype=object)).value_counts(normalize=True)
    return {g: float(counts.get(g, 0.0)) for g in groups}


def assignment_shares(dataset: Dataset, cfg: ExperimentConfig) -> dict[str, float]:
    """The probability each group was assigned with (see the module docs).

    The allocation when the group counts are consistent with it (sample-ratio check
    p-value at least ``analysis.srm_threshold``); else, or without an allocation, the
    observed shares.
    """
    planned = cfg.allocation
    if planned is not None:
        counts = dataset.group_counts()
        p = srm_pvalue(counts.to_numpy(), [planned[g] for g in cfg.groups])
        if p < cfg.analysis.srm_threshold:
            planned = None
    return group_shares(dataset.treatment, cfg.groups, planned)
