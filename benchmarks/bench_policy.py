"""Time the exact offer optimizer (``assign_offers``) at scale, with and without limits.

Builds a realistic random instance (default 1,000,000 customers x the spec's 3 offers:
a 20 % discount for 3 months, a free upgrade costing 6.0, a webinar costing 1.5), scores
it by expected net value over 12 months, and times four cases: no limits, a budget, per-offer
capacities, both. Prints a table of medians over the repeats, the customers the MILP step had
to decide (``MILP n``; all others were fixed by reduced-cost arguments), the proven
optimality gap (absolute and relative to the objective; ``optimal`` means relative gap
<= 1e-9) and the budget/capacity used against the limits. Run by hand:

    python benchmarks/bench_policy.py [--customers 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from uplift.config import ArmConfig
from uplift.optimize import Assignment, assign_offers
from uplift.policy import net_values

ARMS = [
    ArmConfig.model_validate({"name": "discount_20", "kind": "discount",
                              "cost": {"revenue_share": 0.2, "months": 3}}),
    ArmConfig.model_validate({"name": "free_upgrade", "kind": "free_upgrade",
                              "cost": {"fixed": 6.0}}),
    ArmConfig.model_validate({"name": "webinar", "kind": "webinar", "cost": {"fixed": 1.5}}),
]


def instance(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Net value, cost and eligibility of a plausible subscription base."""
    rng = np.random.default_rng(seed)
    value = np.round(rng.gamma(2.0, 20.0, n), 2)  # monthly revenue
    risk = rng.beta(2.0, 5.0, n)  # P(churn | no offer), mean ~0.29
    premium = rng.random(n) < 0.2
    # Heterogeneous relative churn reductions; some offers backfire for some customers.
    effect = np.column_stack([
        rng.normal(0.20, 0.15, n),  # discount: strongest
        rng.normal(0.10, 0.10, n),  # free upgrade
        rng.normal(0.03, 0.06, n),  # webinar: weak, cheap
    ])
    p_arms = np.clip(risk[:, None] * (1.0 - effect), 0.0, 1.0)
    net, cost = net_values(risk, p_arms, value, ARMS, 12.0)
    eligible = np.ones((n, 3), dtype=bool)
    eligible[:, 1] = ~premium  # free upgrade: not for premium customers
    return net, cost, eligible


def timed(repeats: int, **kwargs: object) -> tuple[float, Assignment]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = assign_offers(**kwargs)  # type: ignore[arg-type]
        times.append(time.perf_counter() - start)
    assert result is not None
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--budget-share", type=float, default=0.3,
                        help="budget as a share of the unconstrained policy's cost")
    parser.add_argument("--capacity-share", type=float, default=0.5,
                        help="capacity per offer as a share of its unconstrained count")
    opts = parser.parse_args()

    start = time.perf_counter()
    net, cost, eligible = instance(opts.customers, opts.seed)
    print(f"instance: {opts.customers:,} customers x {net.shape[1]} offers "
          f"({time.perf_counter() - start:.2f} s to build)")
    free = assign_offers(net, cost, eligible=eligible)
    budget = round(opts.budget_share * free.total_cost, 2)
    capacity = [int(opts.capacity_share * c) for c in free.counts]
    capacity[0] = None  # the discount has no seat limit; upgrades and webinars do
    print(f"unconstrained: cost {free.total_cost:,.2f}, counts {free.counts.tolist()}; "
          f"budget {budget:,.2f}, capacity {capacity}\n")

    cases = {
        "no limits": {},
        "budget": {"budget": budget},
        "capacity": {"capacity": capacity},
        "budget + capacity": {"budget": budget, "capacity": capacity},
    }
    header = (f"| {'case':<17} | {'median s':>8} | {'objective':>14} | {'gap':>9} | "
              f"{'rel gap':>8} | {'optimal':>7} | {'MILP n':>6} | {'cost used / budget':>27} | "
              "counts used / capacity")
    print(header)
    print("|" + "|".join("-" * (len(part) + 0) for part in header.split("|")[1:]))
    for name, limits in cases.items():
        seconds, result = timed(opts.repeats, score=net, cost=cost, eligible=eligible, **limits)
        spent = f"{result.total_cost:,.2f} / {limits.get('budget', float('inf')):,.2f}"
        caps = limits.get("capacity", [None] * net.shape[1])
        used = ", ".join(f"{c:,}/{'-' if cap is None else f'{cap:,}'}"
                         for c, cap in zip(result.counts.tolist(), caps, strict=True))
        rel = result.gap / max(1.0, abs(result.upper_bound))
        print(f"| {name:<17} | {seconds:8.2f} | {result.objective:14,.2f} | {result.gap:9.2e} | "
              f"{rel:8.1e} | {result.optimal!s:>7} | {result.free_customers:6,} | {spent:>27} | "
              f"{used}")


if __name__ == "__main__":
    main()
