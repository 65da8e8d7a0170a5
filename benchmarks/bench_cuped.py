"""Coverage, bias, false positives and efficiency of the covariate-adjusted readout.

Part 1, validity: R simulated tests of N customers each (``uplift.simulate``, a fresh
seed per test), each read out twice:

* A/B: the simulator's outcomes, with heterogeneous effects of every offer;
* A/A: every customer's outcome redrawn from their own control churn probability, so
  no offer has any effect (same customers, same groups).

Per method (the plain Newcombe readout, ``linear``, ``model``): coverage of the 95 %
intervals of the true average effect (A/B: the mean of ``p_control - p_offer`` over
every simulated customer of every test; A/A: 0), bias with its Monte Carlo error,
mean interval width, and under A/A the family-wise false-positive rate after Holm
(any offer with adjusted p < 0.05). The ``model`` method uses a cheap LightGBM here
(60 trees, learning rate 0.15) so 2 x R readouts stay within minutes; its validity does
not depend on the churn model's quality.

Part 2, efficiency: T tests per scenario, on ``uplift simulate`` data and on a
non-linear variant built here (same customers and groups, churn driven by a tenure x
contract interaction, thresholds and a periodic term in usage, with heterogeneous
effects). Per method: the mean interval width against the plain readout's and the mean
variance reduction; beside them the out-of-fold R² of churn on the covariates from a
LightGBM tuned on a separate sample of the scenario (a small grid, 5-fold), the
ceiling any adjustment can reach, and the share of it each method reaches. ``model``
runs with the toolkit's default settings here, as ``uplift analyze`` would.

Run by hand (about 25 minutes on one core with the defaults):

    python benchmarks/bench_cuped.py [--replications 500] [--customers 20000] \
        [--efficiency-tests 20]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
import warnings

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core: no spinning BLAS threads

import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.special import expit  # noqa: E402

from uplift.adjustment import AdjustmentWarning, adjust_effects  # noqa: E402
from uplift.analysis import analyze_rct  # noqa: E402
from uplift.simulate import DEFAULT_ALLOCATION, simulate_customers  # noqa: E402

ARMS = ["discount_20", "free_upgrade", "webinar"]
GROUPS = ["control", *ARMS]
CHEAP = {"n_estimators": 60, "learning_rate": 0.15, "min_child_samples": 100}
GRID = [{"n_estimators": n, "learning_rate": 0.05, "num_leaves": leaves,
         "min_child_samples": child, "subsample": 0.8, "subsample_freq": 1, "verbose": -1}
        for n, leaves, child in itertools.product([100, 200, 400], [3, 7, 15], [50, 200])]
CATEGORIES = {"plan": ["basic", "standard", "premium"], "contract": ["monthly", "annual"],
              "region": ["north_america", "europe", "apac", "latam"],
              "payment_method": ["credit_card", "paypal", "bank_transfer", "invoice"]}


# --------------------------------------------------------------------------- scenarios


def simulated(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """(covariates, groups and outcome, true churn probability per customer x group)."""
    sim = simulate_customers(n, seed)
    c = sim.customers
    probs = sim.truth[[f"p_churn_{g}" for g in GROUPS]].to_numpy()
    return c.drop(columns=["customer_id", "arm", "churned"]), c[["arm", "churned"]], probs


def nonlinear(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """The simulator's customers and groups with churn that is far from linear in them."""
    sim = simulate_customers(n, seed)
    c = sim.customers
    monthly = (c["contract"] == "monthly").to_numpy()
    tenure = c["tenure_months"].to_numpy(float)
    usage = c["usage_hours"].to_numpy(float)
    idle = c["days_since_login"].to_numpy(float)
    tickets = c["support_tickets"].to_numpy(float)
    big = ((c["plan"] == "premium") & (c["seats"] >= 10)).to_numpy()
    base = (-1.6 + 2.4 * monthly * np.exp(-tenure / 6.0) - 1.2 * (~monthly) * (tenure > 24)
            + 1.6 * (idle > 21) * (tickets >= 2) - 1.4 * big + 0.9 * np.cos(usage / 2.0)
            + 0.8 * (np.abs(tenure - 12) < 2))
    effect = {"discount_20": -0.6 * monthly * (usage < 10),
              "free_upgrade": -0.5 * (usage > 8) + 0.6 * (usage < 1),
              "webinar": -0.9 * np.exp(-tenure / 6.0) + 0.7 * (idle > 30)}
    probs = np.column_stack([expit(base)] + [expit(base + effect[a]) for a in ARMS])
    rng = np.random.default_rng([seed, 7])
    arm = c["arm"].astype(str).to_numpy()
    p = probs[np.arange(n), [GROUPS.index(g) for g in arm]]
    outcome = pd.DataFrame({"arm": arm, "churned": (rng.random(n) < p).astype(int)})
    return c.drop(columns=["customer_id", "arm", "churned"]), outcome, probs


SCENARIOS = {"uplift simulate": simulated, "non-linear variant": nonlinear}


# --------------------------------------------------------------------------- readouts


def readouts(cov: pd.DataFrame, arm: pd.Series, y: np.ndarray, seed: int,
             model_params: dict | None) -> dict[str, np.ndarray]:
    """Per method an (arms, 5) array: estimate, CI low, CI high, adjusted p, variance cut."""
    plain = analyze_rct(arm, y, control="control", arms=ARMS, allocation=DEFAULT_ALLOCATION)
    out = {"plain": np.array([[e.ate, e.ci_low, e.ci_high, e.pvalue_adj, 0.0]
                              for e in plain.effects])}
    for method in ("linear", "model"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AdjustmentWarning)
            res = adjust_effects(cov, arm, y, control="control", arms=ARMS, method=method,
                                 propensities=DEFAULT_ALLOCATION, seed=seed, n_jobs=1,
                                 params=model_params)
        out[method] = np.array([[e.ate, e.ci_low, e.ci_high, e.pvalue_adj,
                                 e.variance_reduction] for e in res.effects])
    return out


def tree_matrix(cov: pd.DataFrame) -> tuple[np.ndarray, list[int]]:
    """Covariates as floats, categories as codes, and the positions of the categories."""
    x = cov.copy()
    for column, levels in CATEGORIES.items():
        x[column] = pd.Categorical(x[column].astype(str), categories=levels).codes
    return x.astype(float).to_numpy(), [list(cov.columns).index(c) for c in CATEGORIES]


def oof_r2(cov: pd.DataFrame, y: np.ndarray, params: dict, seed: int) -> float:
    """Out-of-fold R² of churn from LightGBM on the covariates (5 folds)."""
    x, cats = tree_matrix(cov)
    fold = np.random.default_rng(seed).permutation(len(y)) % 5
    pred = np.empty(len(y))
    for k in range(5):
        test = fold == k
        model = lgb.LGBMClassifier(**params, random_state=seed, n_jobs=1)
        model.fit(x[~test], y[~test], categorical_feature=cats)
        pred[test] = model.predict_proba(x[test])[:, 1]
    return float(1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))


# --------------------------------------------------------------------------- parts


def validity(reps: int, n: int) -> list[dict]:
    truth_sum, customers = np.zeros(len(ARMS)), 0
    results: dict[str, dict[str, list[np.ndarray]]] = {"A/B": {}, "A/A": {}}
    start = time.perf_counter()
    for rep in range(reps):
        cov, outcome, probs = simulated(n, 10_000 + rep)
        truth_sum += (probs[:, :1] - probs[:, 1:]).sum(axis=0)
        customers += n
        null_y = (np.random.default_rng([rep, 1]).random(n) < probs[:, 0]).astype(int)
        for name, y in (("A/B", outcome["churned"].to_numpy()), ("A/A", null_y)):
            for method, values in readouts(cov, outcome["arm"], y, rep, CHEAP).items():
                results[name].setdefault(method, []).append(values)
        if (rep + 1) % 50 == 0:
            print(f"  validity: {rep + 1}/{reps} tests, {time.perf_counter() - start:.0f} s",
                  flush=True)
    truth = {"A/B": truth_sum / customers, "A/A": np.zeros(len(ARMS))}
    rows = []
    for name, by_method in results.items():
        for method, values in by_method.items():
            v = np.stack(values)  # (reps, arms, 5)
            covered = (v[:, :, 1] <= truth[name]) & (truth[name] <= v[:, :, 2])
            err = v[:, :, 0] - truth[name]
            rows.append({
                "test": name, "method": method,
                "coverage": covered.mean(),
                "coverage by offer": " / ".join(f"{c:.3f}" for c in covered.mean(axis=0)),
                "bias (pp)": " / ".join(f"{100 * b:+.3f}" for b in err.mean(axis=0)),
                "bias / MC s.e.": " / ".join(
                    f"{b / s:+.1f}" for b, s in zip(err.mean(axis=0),
                                                    err.std(axis=0, ddof=1) / np.sqrt(reps),
                                                    strict=True)),
                "CI width (pp)": 100 * (v[:, :, 2] - v[:, :, 1]).mean(),
                "variance reduction": v[:, :, 4].mean(),
                "false positives (any offer, adj. p < 0.05)":
                    (v[:, :, 3] < 0.05).any(axis=1).mean() if name == "A/A" else np.nan,
            })
    return rows


def efficiency(tests: int, n: int) -> list[dict]:
    rows = []
    for scenario, make in SCENARIOS.items():
        cov, outcome, _ = make(n, 90_000)
        y = outcome["churned"].to_numpy()
        scores = [oof_r2(cov, y, params, 1) for params in GRID]
        tuned = GRID[int(np.argmax(scores))]
        widths: dict[str, list[float]] = {"plain": [], "linear": [], "model": []}
        reductions: dict[str, list[float]] = {"linear": [], "model": []}
        ceilings = []
        for t in range(tests):
            cov, outcome, _ = make(n, 50_000 + t)
            y = outcome["churned"].to_numpy()
            for method, v in readouts(cov, outcome["arm"], y, t, None).items():
                widths[method].append(float((v[:, 2] - v[:, 1]).mean()))
                if method != "plain":
                    reductions[method].append(float(v[:, 4].mean()))
            ceilings.append(oof_r2(cov, y, tuned, t))
        ceiling = float(np.mean(ceilings))
        for method in ("plain", "linear", "model"):
            vr = float(np.mean(reductions[method])) if method != "plain" else 0.0
            rows.append({
                "scenario": scenario, "method": method,
                "CI width (pp)": 100 * np.mean(widths[method]),
                "width / plain": np.mean(widths[method]) / np.mean(widths["plain"]),
                "variance reduction": vr,
                "tuned LightGBM OOF R²": ceiling,
                "share of R²": vr / ceiling if method != "plain" else np.nan,
            })
        best = ", ".join(f"{k}={tuned[k]}" for k in ("n_estimators", "num_leaves",
                                                    "min_child_samples"))
        print(f"  efficiency: {scenario}: tuned LightGBM {best} (grid OOF R² "
              f"{max(scores):.4f})", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replications", type=int, default=500)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--efficiency-tests", type=int, default=20)
    opts = parser.parse_args()
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 20)
    start = time.perf_counter()
    eff = pd.DataFrame(efficiency(opts.efficiency_tests, opts.customers))
    val = pd.DataFrame(validity(opts.replications, opts.customers))
    print(f"\nValidity: {opts.replications} simulated tests x {len(ARMS)} offers, "
          f"{opts.customers:,} customers each (95 % intervals; Monte Carlo s.e. of a "
          f"coverage near 0.95: {np.sqrt(0.95 * 0.05 / (opts.replications * len(ARMS))):.4f})")
    print(val.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"\nEfficiency: {opts.efficiency_tests} tests per scenario, {opts.customers:,} "
          "customers each (means over tests and offers)")
    print(eff.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
