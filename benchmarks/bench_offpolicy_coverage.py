"""Coverage, width, bias and speed of the off-policy estimators on simulated tests.

A LightGBM T-learner (one churn classifier per group) is trained once on separate
simulated rows; its policy gives each customer the arm with the highest estimated
net value (control when none is positive). Then, R times, a fresh randomized test
is simulated as the held-out rows, and the policy's churn rate, churn reduction and
net value per customer are estimated with plain IPW (Horvitz-Thompson), Hajek
(self-normalised within the policy's segments) and doubly robust (DR, augmented
with the T-learner's own predictions). Each interval is checked against two truths:

* sample: the mean over the held-out rows of the true per-customer expectations
  (what the policy would do to exactly these customers);
* population: the same mean over a large separate simulation (what the estimators'
  intervals, which include the variation between customers, are built for).

Run by hand:

    python benchmarks/bench_offpolicy_coverage.py [--replications 100] [--rows 25000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightgbm as lgb
import numpy as np
import pandas as pd

from uplift.config import ArmConfig
from uplift.offpolicy import evaluate_policy
from uplift.simulate import DEFAULT_ALLOCATION, FEATURES, simulate_customers

ARMS = [
    ArmConfig(name="discount_20", kind="discount", cost={"revenue_share": 0.2, "months": 3}),
    ArmConfig(name="free_upgrade", kind="free_upgrade", cost={"fixed": 6.0}),
    ArmConfig(name="webinar", kind="webinar", cost={"fixed": 1.5}),
]
GROUPS = ["control", *(a.name for a in ARMS)]
FIXED = np.array([0.0, *(a.cost.fixed for a in ARMS)])
SHARE = np.array([0.0, *(a.cost.revenue_share * a.cost.share_months for a in ARMS)])
CATEGORIES = {
    "plan": ["basic", "standard", "premium"],
    "contract": ["monthly", "annual"],
    "region": ["north_america", "europe", "apac", "latam"],
    "payment_method": ["credit_card", "paypal", "bank_transfer", "invoice"],
}
CATEGORICAL = [FEATURES.index(c) for c in CATEGORIES]
METRICS = {"churn rate": "churn_rate", "churn reduction": "churn_reduction",
           "net value / customer": "net_value_per_customer"}  # fmt: skip
ESTIMATORS = {"IPW (Horvitz-Thompson)": "ipw", "Hajek": "hajek", "DR (LightGBM T-learner)": "dr"}


def features(customers: pd.DataFrame) -> np.ndarray:
    """Float matrix of the features; categoricals as codes (numpy predicts faster)."""
    X = customers[list(FEATURES)].copy()
    for column, levels in CATEGORIES.items():
        X[column] = pd.Categorical(X[column].astype(str), categories=levels).codes
    return X.astype(float).to_numpy()


def train_t_learner(rows: int, seed: int) -> list[lgb.LGBMClassifier]:
    customers = simulate_customers(rows, seed).customers
    X, arm, y = features(customers), customers["arm"].astype(str), customers["churned"].to_numpy()
    models = []
    for group in GROUPS:
        mask = (arm == group).to_numpy()
        model = lgb.LGBMClassifier(n_estimators=150, learning_rate=0.08, num_leaves=31,
                                   min_child_samples=200, subsample=0.8, subsample_freq=1,
                                   colsample_bytree=0.8, random_state=seed, n_jobs=1,
                                   verbose=-1)  # fmt: skip
        models.append(model.fit(X[mask], y[mask], categorical_feature=CATEGORICAL))
    return models


def net_values(p: np.ndarray, value: np.ndarray, horizon: float) -> np.ndarray:
    """(n, groups) expected net value of each group per customer (control = 0)."""
    cost = FIXED + (1.0 - p) * SHARE * value[:, None]
    cost[:, 0] = 0.0
    return (p[:, [0]] - p) * value[:, None] * horizon - cost


def policy_truth(p_true: np.ndarray, rec: np.ndarray, value: np.ndarray, horizon: float) -> dict:
    rows = np.arange(len(rec))
    p_pi = p_true[rows, rec]
    return {
        "churn_rate": p_pi.mean(),
        "churn_reduction": (p_true[:, 0] - p_pi).mean(),
        "net_value_per_customer": net_values(p_true, value, horizon)[rows, rec].mean(),
    }


def apply_policy(models: list, customers: pd.DataFrame, horizon: float):
    X = features(customers)
    p_hat = np.column_stack([m.predict_proba(X)[:, 1] for m in models])
    value = customers["monthly_revenue"].to_numpy()
    net = net_values(p_hat, value, horizon)
    rec = np.where(net.max(axis=1) > 0, net.argmax(axis=1), 0)
    return p_hat, rec, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replications", type=int, default=100)
    parser.add_argument("--rows", type=int, default=25_000, help="held-out rows per replication")
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument("--population-rows", type=int, default=1_000_000)
    parser.add_argument("--time-rows", type=int, default=1_000_000,
                        help="also time one evaluation on this many rows (0: skip)")
    parser.add_argument("--horizon", type=float, default=12.0)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args()

    models = train_t_learner(opts.train_rows, opts.seed)
    population = simulate_customers(opts.population_rows, opts.seed + 10**6)
    pop_p = population.truth[[f"p_churn_{g}" for g in GROUPS]].to_numpy()
    _, pop_rec, pop_value = apply_policy(models, population.customers, opts.horizon)
    truth_pop = policy_truth(pop_p, pop_rec, pop_value, opts.horizon)

    records: list[dict] = []
    times: dict[str, list[float]] = {label: [] for label in ESTIMATORS}
    common = {"control": "control", "arms": ARMS, "propensity": DEFAULT_ALLOCATION,
              "horizon_months": opts.horizon, "alpha": opts.alpha}  # fmt: skip
    for r in range(opts.replications):
        sim = simulate_customers(opts.rows, opts.seed + 1 + r)
        p_hat, rec, value = apply_policy(models, sim.customers, opts.horizon)
        p_true = sim.truth[[f"p_churn_{g}" for g in GROUPS]].to_numpy()
        truth = policy_truth(p_true, rec, value, opts.horizon)
        recommended = np.array(GROUPS, dtype=object)[rec]
        for label, kind in ESTIMATORS.items():
            extra = ({"predicted_churn": dict(zip(GROUPS, p_hat.T, strict=True))}
                     if kind == "dr" else {"estimator": kind})  # fmt: skip
            start = time.perf_counter()
            est = evaluate_policy(recommended, sim.customers["arm"], sim.customers["churned"],
                                  value, **common, **extra)  # fmt: skip
            times[label].append(time.perf_counter() - start)
            for metric, attr in METRICS.items():
                e = getattr(est, attr)
                records.append({
                    "estimator": label, "metric": metric,
                    "cover_sample": e.ci_low <= truth[attr] <= e.ci_high,
                    "cover_pop": e.ci_low <= truth_pop[attr] <= e.ci_high,
                    "width": e.ci_high - e.ci_low, "bias": e.value - truth[attr],
                })  # fmt: skip

    frame = pd.DataFrame(records)
    level = f"{100 * (1 - opts.alpha):g}%"
    print(f"{opts.replications} replications x {opts.rows:,} held-out rows; T-learner trained on "
          f"{opts.train_rows:,} separate rows; population truth from "
          f"{opts.population_rows:,} rows: churn {truth_pop['churn_rate']:.4f}, reduction "
          f"{truth_pop['churn_reduction']:.4f}, net value {truth_pop['net_value_per_customer']:.3f}"
          f"; policy shares {np.bincount(pop_rec, minlength=4) / len(pop_rec)}\n")  # fmt: skip
    header = ["estimator", "metric", f"{level} coverage (sample)", "coverage (population)",
              "mean CI width", "mean bias (MC se)", "median ms / eval"]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + " |")
    for (label, metric), g in frame.groupby(["estimator", "metric"], sort=False):
        se = g["bias"].std(ddof=1) / np.sqrt(len(g))
        print(f"| {label} | {metric} | {g['cover_sample'].mean():.1%} | {g['cover_pop'].mean():.1%}"
              f" | {g['width'].mean():.4g} | {g['bias'].mean():+.4g} ({se:.2g})"
              f" | {1000 * statistics.median(times[label]):.1f} |")  # fmt: skip

    if opts.time_rows:
        sim = simulate_customers(opts.time_rows, opts.seed + 2 * 10**6)
        p_hat, rec, value = apply_policy(models, sim.customers, opts.horizon)
        recommended = np.array(GROUPS, dtype=object)[rec]
        print()
        for label, kind in ESTIMATORS.items():
            extra = ({"predicted_churn": dict(zip(GROUPS, p_hat.T, strict=True))}
                     if kind == "dr" else {"estimator": kind})  # fmt: skip
            runs = []
            for _ in range(3):
                start = time.perf_counter()
                evaluate_policy(recommended, sim.customers["arm"], sim.customers["churned"],
                                value, **common, **extra)  # fmt: skip
                runs.append(time.perf_counter() - start)
            seconds = statistics.median(runs)
            print(f"{label}: {opts.time_rows:,} rows in {seconds:.3f} s (median of 3)")


if __name__ == "__main__":
    main()
