"""Held-out split, Qini / AUUC per offer and decile tables, on cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from uplift.evaluation import arm_rows, decile_table, qini_curve, split_holdout, uplift_scores

# Three control rows, three for offer "a", two for offer "b". Scores are the predicted
# churn reduction; the outcome the metrics use is retention, y = 1 - churned.
TREATMENT = np.array(["a", "c", "a", "c", "a", "c", "b", "b"], dtype=object)
CHURNED = np.array([0, 1, 0, 0, 1, 1, 0, 1])
UPLIFT = pd.DataFrame({
    "uplift_a": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.0, 1.0],  # b's rows must not count for a
    "uplift_b": [0.0, 0.3, 0.0, 0.2, 0.0, 0.1, 0.95, 0.05],
})


def test_qini_and_auuc_per_offer_match_the_hand_computation() -> None:
    got = uplift_scores(TREATMENT, CHURNED, UPLIFT, "c", ["a", "b"])
    # Offer a, rows by score: a y=1, c y=0, a y=1, c y=1, a y=0, c y=0.
    # Qini after k rows, y_a - y_c * n_a / n_c: k=1 undefined (no control yet, so the
    # curve interpolates 0.5), then 1, 2, 1, 0.5, 1. Normalized by the last point (1) the
    # curve 0, .5, 1, 2, 1, .5, 1 sums to 6; the random line 0..1 over 7 points to 3.5.
    assert got["qini_a"] == pytest.approx((6 - 3.5) / 7, abs=1e-12)
    # Lift y_a / n_a - y_c / n_c: k=1 interpolated 0.5, then 1, 1, 1/2, 1/6, 1/3; gain =
    # lift * k = 0, .5, 2, 3, 2, 5/6, 2, normalized by 2, sums to 31/6 over 7 points.
    assert got["auuc_a"] == pytest.approx(31 / 42, abs=1e-12)
    # Offer b, rows by score: b y=1, c y=0, c y=1, c y=0, b y=0. Qini 0, .5, 1, 1/2, 2/3,
    # 1/3 normalized by 1/3 sums to 9; random line 0..1 over 6 points sums to 3.
    assert got["qini_b"] == pytest.approx((9 - 3) / 6, abs=1e-12)
    # Lift 0, .5, 1, 1/2, 2/3, 1/6; gain 0, .5, 2, 1.5, 8/3, 5/6, normalized by 5/6: sum 9.
    assert got["auuc_b"] == pytest.approx(9 / 6, abs=1e-12)
    assert set(got) == {"qini_a", "auuc_a", "qini_b", "auuc_b"}


@pytest.mark.parametrize("ties", [False, True])
def test_qini_auuc_and_the_curve_are_causalmls_to_the_last_digit(ties: bool) -> None:
    from causalml.metrics import auuc_score, get_qini, qini_score

    rng = np.random.default_rng(7)
    n = 4_000
    treatment = rng.choice(["control", "a", "b"], n, p=[0.4, 0.3, 0.3]).astype(object)
    churned = (rng.random(n) < 0.3).astype(int)
    scores = {"a": rng.normal(size=n), "b": rng.normal(size=n)}
    if ties:  # many equal scores: the order among them must be causalml's too
        scores = {"a": np.round(scores["a"], 1), "b": rng.integers(0, 3, n).astype(float)}
    uplift = pd.DataFrame({f"uplift_{arm}": s for arm, s in scores.items()})
    got = uplift_scores(treatment, churned, uplift, "control", ["a", "b"])
    for arm, score in scores.items():
        mask = (treatment == "control") | (treatment == arm)
        frame = pd.DataFrame({"y": 1 - churned[mask], "w": (treatment[mask] == arm).astype(int),
                              "model": score[mask]})
        kwargs = {"outcome_col": "y", "treatment_col": "w"}
        assert got[f"qini_{arm}"] == pytest.approx(
            float(qini_score(frame, normalize=True, **kwargs)["model"]), rel=1e-12, abs=1e-15)
        assert got[f"auuc_{arm}"] == pytest.approx(
            float(auuc_score(frame, normalize=True, **kwargs)["model"]), rel=1e-12, abs=1e-15)
        np.testing.assert_allclose(
            qini_curve(*arm_rows(treatment, churned, score, "control", arm)),
            get_qini(frame, normalize=False, **kwargs)["model"].to_numpy(), rtol=1e-12)


def test_a_model_that_finds_whom_the_offer_keeps_scores_above_a_reversed_one() -> None:
    rng = np.random.default_rng(1)
    n = 20_000
    treatment = rng.choice(["control", "offer"], n).astype(object)
    signal = rng.normal(size=n)
    p = 0.3 - 0.1 * (treatment == "offer") * (signal > 0)
    churned = (rng.random(n) < p).astype(int)
    uplift = pd.DataFrame({"uplift_offer": signal + rng.normal(0, 0.5, n)})
    good = uplift_scores(treatment, churned, uplift, "control", ["offer"])
    reversed_ = uplift_scores(treatment, churned, -uplift, "control", ["offer"])
    assert good["qini_offer"] > 0 > reversed_["qini_offer"]


def test_split_is_seeded_and_stratified() -> None:
    rng = np.random.default_rng(0)
    treatment = rng.choice(["control", "a", "b"], 10_000, p=[0.4, 0.3, 0.3]).astype(object)
    churned = (rng.random(10_000) < 0.3).astype(int)
    train, test = split_holdout(treatment, churned, 0.3, seed=5)
    again = split_holdout(treatment, churned, 0.3, seed=5)
    other = split_holdout(treatment, churned, 0.3, seed=6)
    np.testing.assert_array_equal(test, again[1])
    assert not np.array_equal(test, other[1])
    assert len(np.intersect1d(train, test)) == 0
    assert len(train) + len(test) == len(treatment)
    strata = pd.Series([f"{t}|{c}" for t, c in zip(treatment, churned, strict=True)])
    share = strata.iloc[test].value_counts() / strata.value_counts()
    assert share.between(0.29, 0.31).all()


def test_decile_table_by_hand_with_two_bins() -> None:
    # Offer a and control, 4 rows each, in halves by predicted uplift (1 = highest).
    treatment = np.array(["a", "c", "a", "c", "a", "c", "a", "c", "b"], dtype=object)
    churned = np.array([0, 1, 0, 1, 1, 0, 1, 1, 0])
    uplift = pd.DataFrame({"uplift_a": [8, 7, 6, 5, 4, 3, 2, 1, 9.0]})
    table = decile_table(treatment, churned, uplift, "c", ["a"], bins=2)
    top, bottom = (table.iloc[i] for i in range(2))
    assert list(table["decile"]) == [1, 2]
    # Top half: a churned 0 of 2, control 2 of 2 -> observed uplift 1 - 0 = 1.
    assert (top["n_arm"], top["n_control"]) == (2, 2)
    assert top["churn_rate_arm"] == 0.0
    assert top["churn_rate_control"] == 1.0
    assert top["observed_uplift"] == 1.0
    assert top["predicted_uplift"] == pytest.approx((8 + 7 + 6 + 5) / 4)
    # Bottom half: a churned 2 of 2, control 1 of 2 -> observed uplift 0.5 - 1 = -0.5.
    assert bottom["observed_uplift"] == pytest.approx(-0.5)
    assert bottom["predicted_uplift"] == pytest.approx((4 + 3 + 2 + 1) / 4)
