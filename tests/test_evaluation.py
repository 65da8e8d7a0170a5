"""Held-out split, Qini / AUUC per offer (against causalml called independently), deciles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from causalml.metrics import auuc_score, qini_score

from uplift.evaluation import decile_table, split_holdout, uplift_scores

ARMS = ["discount_20", "webinar"]


def readout(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    treatment = rng.choice(["control", *ARMS], n, p=[0.4, 0.3, 0.3]).astype(object)
    signal = rng.normal(size=n)
    p = 0.3 - 0.1 * (treatment == "discount_20") * (signal > 0) + 0.05 * (
        treatment == "webinar")
    churned = (rng.random(n) < p).astype(int)
    uplift = pd.DataFrame({"uplift_discount_20": signal + rng.normal(0, 0.5, n),
                           "uplift_webinar": rng.normal(size=n)})
    return treatment, churned, uplift


def test_qini_and_auuc_equal_causalml_per_arm() -> None:
    treatment, churned, uplift = readout()
    got = uplift_scores(treatment, churned, uplift, "control", ARMS)
    for arm in ARMS:
        mask = np.isin(treatment, ["control", arm])
        frame = pd.DataFrame({"y": 1 - churned[mask], "w": (treatment[mask] == arm).astype(int),
                              "tau_hat": uplift[f"uplift_{arm}"].to_numpy()[mask]})
        assert got[f"qini_{arm}"] == pytest.approx(
            qini_score(frame, outcome_col="y", treatment_col="w", normalize=True)["tau_hat"],
            abs=1e-12)
        assert got[f"auuc_{arm}"] == pytest.approx(
            auuc_score(frame, outcome_col="y", treatment_col="w", normalize=True)["tau_hat"],
            abs=1e-12)
    assert set(got) == {f"{m}_{a}" for m in ("qini", "auuc") for a in ARMS}


def test_a_model_that_finds_whom_the_offer_keeps_scores_above_a_reversed_one() -> None:
    treatment, churned, uplift = readout(20_000, seed=1)
    good = uplift_scores(treatment, churned, uplift, "control", ARMS)
    reversed_ = uplift_scores(treatment, churned, -uplift, "control", ARMS)
    assert good["qini_discount_20"] > 0 > reversed_["qini_discount_20"]


def test_split_is_seeded_and_stratified() -> None:
    treatment, churned, _ = readout(10_000)
    train, test = split_holdout(treatment, churned, 0.3, seed=5)
    again = split_holdout(treatment, churned, 0.3, seed=5)
    np.testing.assert_array_equal(test, again[1])
    assert len(np.intersect1d(train, test)) == 0
    assert len(train) + len(test) == len(treatment)
    strata = pd.Series([f"{t}|{c}" for t, c in zip(treatment, churned, strict=True)])
    share = strata.iloc[test].value_counts() / strata.value_counts()
    assert share.between(0.29, 0.31).all()


def test_decile_table_counts_and_observed_uplift() -> None:
    treatment, churned, uplift = readout(5000, seed=2)
    table = decile_table(treatment, churned, uplift, "control", ARMS)
    assert list(table["decile"].unique()) == list(range(1, 11))
    for arm in ARMS:
        part = table[table["arm"] == arm]
        assert part["n_arm"].sum() == (treatment == arm).sum()
        assert part["n_control"].sum() == (treatment == "control").sum()
        first = part[part["decile"] == 1].iloc[0]
        assert first["observed_uplift"] == pytest.approx(
            first["churn_rate_control"] - first["churn_rate_arm"])
    discount = table[table["arm"] == "discount_20"].set_index("decile")
    # The informative score puts the customers the discount keeps in the top deciles.
    assert discount.loc[1:3, "observed_uplift"].mean() > discount.loc[8:10,
                                                                       "observed_uplift"].mean()
