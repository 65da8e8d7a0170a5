"""Coverage of the run's policy estimate, selection included, on simulated tests.

Each replication simulates a randomized offer test (``uplift simulate``'s world), runs
the whole of ``uplift.training.train_models`` on it (cross-fitting, selection among the
learners, their ensemble and the model-free policies), and checks the reported 95 %
intervals of the policy's churn reduction and net value per customer against the
truth: the mean over the test's customers of the true per-customer effect of the policy
the run recommends (the refitted model's, or the model-free one it chose), from the
simulator's true churn probabilities. For contrast it also checks the figure the choice
was made on (``selection_estimate``), which the run does not report as its estimate.
When a model's policy is recommended it also checks the comparison with the best policy
that needs no model (``versus_simple``: the reported figure minus that policy's on the
same customers, its interval from a bootstrap that makes each fold's choice of simple
policy again) against the true difference of the two policies. The model's side of that
truth is the recommended policy's, as for the reported figure, which values every fold
under it (a fold whose own choice was another policy is moved to it by the churn-risk
model's predictions).

Learners are small (40 trees per LightGBM model; the additive ``gam`` is fast as it is)
so that hundreds of replications fit in minutes; coverage is a property of the estimate
and the selection, not of the learners.

``--world`` replaces the simulator with a world of the decision-quality suite
(``benchmarks/worlds.py``), drawn afresh per replication with its true churn
probabilities: ``whales``, where 2 % of the accounts carry about half the revenue, checks
the intervals where a few customers' values dominate the mean.

    python benchmarks/bench_selection_coverage.py [--replications 200] [--sizes 20000 50000]
    python benchmarks/bench_selection_coverage.py --world whales --sizes 20000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from uplift.config import load_config
from uplift.data import load_dataset
from uplift.policy import build_policy, net_values
from uplift.simulate import DEFAULT_ALLOCATION, simulate_customers
from uplift.training import customer_values, train_models

sys.path.insert(0, str(Path(__file__).resolve().parent))
from worlds import WORLDS  # noqa: E402

SIMULATOR = "simulate"  # ``uplift simulate``'s world, the default

ARMS = [
    {"name": "discount_20", "kind": "discount", "cost": {"revenue_share": 0.2, "months": 3}},
    {"name": "free_upgrade", "kind": "free_upgrade", "cost": {"fixed": 6.0},
     "eligible": {"plan": {"not_in": ["premium"]}}},
    {"name": "webinar", "kind": "webinar", "cost": {"fixed": 1.5}},
]
GROUPS = ["control", *(a["name"] for a in ARMS)]
SMALL = {"n_estimators": 40}
METRICS = {"churn reduction": "churn_reduction", "net value / customer": "net_value_per_customer"}
VERSUS = {"churn_reduction": "churn_reduction", "net_value_per_customer": "net_value"}


def config_mapping(path: Path, learners: list[str], seed: int, world: str = SIMULATOR) -> dict:
    """A run's config on the drawn file: small learners, the package's defaults."""
    model = {"learners": learners, "seed": seed,
             "params": {name: dict(SMALL) for name in (*learners, "churn_risk")
                        if name != "gam"}}
    if world != SIMULATOR:
        return {**WORLDS[world].config(path), "name": "selection-coverage", "model": model}
    return {
        "name": "selection-coverage", "period": "2026-10",
        "data": {"path": str(path), "value": "monthly_revenue",
                 "categorical": ["plan", "contract", "region", "payment_method"]},
        "arms": ARMS, "allocation": dict(DEFAULT_ALLOCATION), "model": model,
    }


def draw(world: str, rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A test's customers and their true P(churn) per group (control first), row by row."""
    if world == SIMULATOR:
        sim = simulate_customers(rows, seed)
        truth = sim.truth.set_index("customer_id").loc[sim.customers["customer_id"]]
        return sim.customers, truth[[f"p_churn_{g}" for g in GROUPS]].to_numpy()
    sample = WORLDS[world].sample(rows, seed, 0)
    return sample.customers, sample.p_true


def replicate(rows: int, seed: int, learners: list[str], folder: Path,
              world: str = SIMULATOR) -> dict:
    """One simulated test through ``train_models``: estimates, truths and the choice."""
    customers, p_true = draw(world, rows, seed)
    path = folder / f"test-{seed}.parquet"
    customers.to_parquet(path, index=False)
    config = folder / f"config-{seed}.yaml"
    config.write_text(yaml.safe_dump(config_mapping(path, learners, seed, world)))
    cfg = load_config(config)
    dataset = load_dataset(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train_models(dataset, cfg)
    frame = dataset.frame
    if not frame[cfg.data.id].equals(customers["customer_id"]):
        raise SystemExit("the loaded rows are not the drawn customers in order")
    p_control, p_arms = result.model.predict_churn(frame)
    value = customer_values(dataset, cfg)
    policy = build_policy(p_control, p_arms, value, frame, cfg,
                          fixed_offer=result.model.fixed_offer)
    net, _ = net_values(p_true[:, 0], p_true[:, 1:], value, cfg.arms, cfg.value_horizon_months)
    choice = policy.assignment.choice
    offered = np.flatnonzero(choice >= 0)
    reduction = np.zeros(len(frame))
    reduction[offered] = p_true[offered, 0] - p_true[offered, 1 + choice[offered]]
    gained = np.zeros(len(frame))
    gained[offered] = net[offered, choice[offered]]
    out = {"recommended": result.recommended, "selected": result.selected,
           "truth churn_reduction": reduction.mean(), "truth net_value_per_customer": gained.mean()}
    for label, est in (("reported", result.policy_estimate),
                       ("selection", result.selection_estimate)):
        for attr in METRICS.values():
            e = getattr(est, attr)
            out[f"{label} {attr}"] = (e.value, e.ci_low, e.ci_high)
    if result.versus_simple:
        # The simple policies' truth: each row's group under the one its fold was compared
        # with (an offer for every eligible customer, or nobody).
        simple = np.full(len(frame), -1)
        simple[result.holdout_index] = [cfg.arm_names.index(g) if g in cfg.arm_names else -1
                                        for g in result.simple_groups]
        sent = np.flatnonzero(simple >= 0)
        simple_reduction, simple_gained = np.zeros(len(frame)), np.zeros(len(frame))
        simple_reduction[sent] = p_true[sent, 0] - p_true[sent, 1 + simple[sent]]
        simple_gained[sent] = net[sent, simple[sent]]
        for attr, figure in VERSUS.items():
            e = result.versus_simple[figure]
            out[f"versus {attr}"] = (e.value, e.ci_low, e.ci_high)
        rows = result.holdout_index  # the customers the comparison is made on
        out["truth versus churn_reduction"] = (reduction - simple_reduction)[rows].mean()
        out["truth versus net_value_per_customer"] = (gained - simple_gained)[rows].mean()
    return out


def coverage(records: list[dict]) -> pd.DataFrame:
    """Per estimate and metric: coverage of the truth, mean CI width, mean bias."""
    rows = []
    for label in ("reported", "selection", "versus"):
        for metric, attr in METRICS.items():
            kept = [r for r in records if f"{label} {attr}" in r]
            if not kept:
                continue
            prefix = "truth versus" if label == "versus" else "truth"
            truth = np.array([r[f"{prefix} {attr}"] for r in kept])
            est = np.array([r[f"{label} {attr}"] for r in kept])
            bias = est[:, 0] - truth
            rows.append({"estimate": label, "metric": metric,
                         "coverage": float(np.mean((est[:, 1] <= truth) & (truth <= est[:, 2]))),
                         "mean CI width": float(np.mean(est[:, 2] - est[:, 1])),
                         "mean bias": float(bias.mean()),
                         "bias MC se": float(bias.std(ddof=1) / np.sqrt(len(bias))),
                         "replications": len(kept)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replications", type=int, default=200)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 50_000])
    parser.add_argument("--learners", nargs="+", default=["s", "gam"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--world", default=SIMULATOR, choices=[SIMULATOR, *WORLDS],
                        help="uplift simulate's world, or a world of the decision suite")
    opts = parser.parse_args()
    for size in opts.sizes:
        records, start = [], time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(opts.replications):
                records.append(replicate(size, opts.seed + 10_000 * size + r, opts.learners,
                                         Path(tmp), opts.world))
                if (r + 1) % 50 == 0 and r + 1 < opts.replications:
                    so_far = coverage(records).set_index(["estimate", "metric"])["coverage"]
                    print(f"  {size:,}: {r + 1} replications, reported coverage "
                          + ", ".join(f"{m} {so_far['reported', m]:.1%}" for m in METRICS),
                          flush=True)
        table = coverage(records)
        picks = pd.Series([r["recommended"] for r in records]).value_counts()
        print(f"\n{opts.replications} replications of {size:,} customers ({opts.world}), learners "
              f"{', '.join(opts.learners)} (+ ensemble, model-free policies), "
              f"{time.perf_counter() - start:.0f} s; recommended: "
              + ", ".join(f"{k} {v}" for k, v in picks.items()))
        print("| estimate | metric | 95% coverage | mean CI width | mean bias (MC se) "
              "| replications |")
        print("| --- | --- | ---: | ---: | ---: | ---: |")
        for row in table.itertuples(index=False):
            print(f"| {row[0]} | {row[1]} | {row[2]:.1%} | {row[3]:.4g} | {row[4]:+.4g} "
                  f"({row[5]:.2g}) | {row[6]} |")
        print("versus: the reported figure minus the best simple policy's, when a model's "
              "policy is recommended, against the true difference of the two policies")


if __name__ == "__main__":
    main()
