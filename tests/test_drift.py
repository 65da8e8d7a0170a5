"""Population stability of features: training profile, chunked counting, PSI."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from uplift.drift import EPSILON, DriftMonitor, drifted, profile_features, psi


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.uniform(0, 100, n) + shift
    tenure[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({
        "tenure": tenure,
        "plan": rng.choice(["basic", "standard", "premium"], n, p=[0.5, 0.3, 0.2]),
        "seats": rng.integers(1, 5, n),
    })


def test_psi_equals_the_closed_form() -> None:
    expected = np.array([0.5, 0.3, 0.2])
    actual = np.array([0.25, 0.45, 0.30])
    hand = sum((q - p) * math.log(q / p) for p, q in zip(expected, actual, strict=True))
    assert psi(expected, actual) == pytest.approx(hand, rel=1e-12)
    assert psi(expected * 40, actual * 7) == pytest.approx(hand, rel=1e-12)  # counts work
    assert psi(expected, expected) == 0.0
    # An empty bin is floored at EPSILON: large but finite.
    assert psi([0.5, 0.5], [1.0, 0.0]) == pytest.approx(
        (1 - 0.5) * math.log(1 / 0.5) + (EPSILON - 0.5) * math.log(EPSILON / 0.5))


def test_profile_bins_are_training_deciles_and_shares() -> None:
    data = frame(50_000, 1)
    profile = profile_features(data, ["tenure", "plan", "seats"], ["plan"])
    finite = data["tenure"].dropna().to_numpy()
    np.testing.assert_allclose(profile["tenure"]["edges"],
                               np.quantile(finite, np.arange(1, 10) / 10), rtol=1e-12)
    shares = np.array(profile["tenure"]["shares"])
    assert shares[-1] == pytest.approx(data["tenure"].isna().mean(), abs=1e-12)
    np.testing.assert_allclose(shares[:-1], 0.09, atol=0.002)  # ten deciles of 90 %
    plan = profile["plan"]
    assert plan["categories"] == ["basic", "premium", "standard"]
    counts = data["plan"].value_counts(normalize=True)
    np.testing.assert_allclose(plan["shares"][:3], counts[plan["categories"]], rtol=1e-12)
    assert plan["shares"][3:] == [0.0, 0.0]  # other, missing
    assert profile["seats"]["kind"] == "numeric"


def test_chunked_counting_equals_one_pass_and_flags_a_shift() -> None:
    training = frame(40_000, 2)
    profile = profile_features(training, ["tenure", "plan", "seats"], ["plan"])
    same = frame(30_000, 3)
    whole = DriftMonitor(profile).update(same).psi()
    chunked = DriftMonitor(profile)
    for start in range(0, len(same), 7_000):
        chunked.update(same.iloc[start:start + 7_000])
    assert chunked.psi() == pytest.approx(whole, rel=1e-12)
    assert max(whole.values()) < 0.01
    assert drifted(whole) == []

    shifted = frame(30_000, 4, shift=40.0).assign(plan="enterprise")
    values = DriftMonitor(profile).update(shifted).psi()
    assert [name for name, _ in drifted(values)] == ["plan", "tenure"]  # worst first
    assert values["seats"] < 0.01
    # Every customer's plan is unknown: all of them land in the "other" bin.
    expected = np.array(profile["plan"]["shares"])
    assert values["plan"] == pytest.approx(psi(expected, [0, 0, 0, 1, 0]), rel=1e-12)
