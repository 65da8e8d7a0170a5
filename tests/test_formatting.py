from __future__ import annotations

import math

import pytest

from uplift.formatting import interval, metric_with_interval, money, pp, with_interval


def test_an_interval_is_shown_in_the_value_format() -> None:
    assert interval(-0.0123, 0.0456, pp) == "[-1.23 pp, +4.56 pp]"
    assert with_interval(12.5, -3.0, 28.25, money) == "12.50 [-3.00, 28.25]"


@pytest.mark.parametrize(("low", "high"), [(math.nan, 1.0), (0.0, math.inf), (None, 1.0)])
def test_an_interval_without_finite_ends_is_left_out(low: float | None, high: float) -> None:
    assert interval(low, high, pp) == ""
    assert with_interval(0.02, low, high, pp) == pp(0.02)


def test_a_metric_is_read_with_its_interval_companions() -> None:
    m = {"policy_churn_reduction": 0.031, "policy_churn_reduction_ci_low": 0.012,
         "policy_churn_reduction_ci_high": 0.05}
    assert metric_with_interval(m, "policy_churn_reduction", pp) == "+3.10 pp [+1.20 pp, +5.00 pp]"
    assert metric_with_interval({"x": 1.0}, "x", money) == money(1.0)
