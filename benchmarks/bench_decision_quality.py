"""Decision quality against the truth: how much of the oracle's net value each policy earns.

Trains on simulated customers, decides for a fresh simulated base, and scores every
decision with the simulator's true churn probabilities. Rows:

- the toolkit: ``train_models`` with the config's candidates, selection and refit;
- raw causalml learners at library defaults (T, S, X, DR with LightGBM; uplift random
  forest), features ordinal-encoded as a notebook would, with the same policy rule;
- nobody treated, and the best single offer for everyone (chosen with the truth).

The policy rule is the spec's: each customer gets the eligible offer with the highest
estimated net value, or none when no offer nets more than zero. Run by hand:

    python benchmarks/bench_decision_quality.py [--train 200000] [--test 100000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from uplift.config import load_config
from uplift.data import load_dataset
from uplift.policy import build_policy, eligibility, net_values
from uplift.simulate import simulate_customers
from uplift.training import train_models

ARMS = [
    {"name": "discount_20", "kind": "discount", "cost": {"revenue_share": 0.2, "months": 3}},
    {"name": "free_upgrade", "kind": "free_upgrade", "cost": {"fixed": 6.0},
     "eligible": {"plan": {"not_in": ["premium"]}}},
    {"name": "webinar", "kind": "webinar", "cost": {"fixed": 1.5}},
]
ALLOCATION = {"control": 0.4, "discount_20": 0.2, "free_upgrade": 0.2, "webinar": 0.2}
CATEGORICAL = ["plan", "contract", "region", "payment_method"]
FEATURES = ["tenure_months", "plan", "seats", "contract", "usage_hours", "days_since_login",
            "support_tickets", "region", "payment_method", "nps", "auto_renew",
            "monthly_revenue"]


def config_for(path: Path, learners: list[str], select_by: str, seed: int) -> dict:
    return {
        "name": "decision-quality", "period": "2026-09",
        "data": {"path": str(path), "value": "monthly_revenue", "categorical": CATEGORICAL},
        "arms": ARMS, "allocation": ALLOCATION,
        "model": {"learners": learners, "seed": seed, "select_by": select_by},
    }


class Judge:
    """True net value per customer of a policy on the fresh base, vs the oracle's."""

    def __init__(self, cfg, fresh: pd.DataFrame, truth: pd.DataFrame):
        self.cfg = cfg
        self.fresh = fresh
        arms = cfg.arm_names
        p_c = truth[f"p_churn_{cfg.control}"].to_numpy()
        p_a = truth[[f"p_churn_{a}" for a in arms]].to_numpy()
        self.value = fresh["monthly_revenue"].to_numpy()
        self.net, _ = net_values(p_c, p_a, self.value, cfg.arms, cfg.value_horizon_months)
        self.eligible = eligibility(fresh, cfg.arms)
        self.oracle = self.earned(self.rule(p_c, p_a))

    def rule(self, p_control: np.ndarray, p_arms: np.ndarray) -> np.ndarray:
        """Index of the recommended offer per customer (-1 = none), via build_policy."""
        policy = build_policy(p_control, p_arms, self.value, self.fresh, self.cfg)
        return policy.assignment.choice

    def earned(self, choice: np.ndarray) -> float:
        rows = np.flatnonzero(choice >= 0)
        return float(self.net[rows, choice[rows]].sum() / len(choice))

    def share(self, choice: np.ndarray) -> float:
        return self.earned(choice) / self.oracle


def raw_learners(train: pd.DataFrame, fresh: pd.DataFrame, arms: list[str], judge: Judge,
                 seed: int) -> list[tuple[str, float, float]]:
    """causalml learners at library defaults, with the same policy rule."""
    from causalml.inference.meta import (
        BaseDRLearner,
        BaseSClassifier,
        BaseTClassifier,
        BaseXClassifier,
    )
    from causalml.inference.tree import UpliftRandomForestClassifier
    from lightgbm import LGBMClassifier, LGBMRegressor
    from sklearn.preprocessing import OrdinalEncoder

    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    cats = CATEGORICAL + ["auto_renew"]
    nums = [c for c in FEATURES if c not in cats]

    def matrix(frame: pd.DataFrame, fit: bool = False) -> np.ndarray:
        coded = (encoder.fit_transform if fit else encoder.transform)(frame[cats].astype(str))
        return np.hstack([frame[nums].to_numpy(dtype=float), coded])

    X, X_new = matrix(train, fit=True), matrix(fresh)
    t = train["arm"].to_numpy().astype(object)
    y = train["churned"].to_numpy()
    control = t == "control"
    p_control = LGBMClassifier(verbose=-1, random_state=seed).fit(X[control], y[control])
    p_c = p_control.predict_proba(X_new)[:, 1]
    shares = {a: ALLOCATION[a] / (ALLOCATION[a] + ALLOCATION["control"]) for a in arms}
    learners = {
        "raw T (LightGBM)": (BaseTClassifier(LGBMClassifier(verbose=-1, random_state=seed),
                                             control_name="control"), False),
        "raw S (LightGBM)": (BaseSClassifier(LGBMClassifier(verbose=-1, random_state=seed),
                                             control_name="control"), False),
        "raw X (LightGBM)": (BaseXClassifier(LGBMClassifier(verbose=-1, random_state=seed),
                                             LGBMRegressor(verbose=-1, random_state=seed),
                                             control_name="control"), True),
        "raw DR (LightGBM)": (BaseDRLearner(LGBMRegressor(verbose=-1, random_state=seed),
                                            control_name="control"), True),
        "raw uplift forest": (UpliftRandomForestClassifier(control_name="control",
                                                           random_state=seed), False),
    }
    out = []
    for name, (learner, needs_p) in learners.items():
        start = time.perf_counter()
        fit_kwargs = {"X": X, "treatment": t, "y": y}
        if needs_p:
            fit_kwargs["p"] = {a: np.full(len(y), shares[a]) for a in arms}
        learner.fit(**fit_kwargs)
        if isinstance(learner, UpliftRandomForestClassifier):
            full = learner.predict(X_new, full_output=True)
            delta = np.column_stack([full[f"delta_{a}"].to_numpy() for a in arms])
        else:
            kwargs = {"p": {a: np.full(len(X_new), shares[a]) for a in arms}} if isinstance(
                learner, BaseXClassifier) else {}
            te = learner.predict(X_new, **kwargs)
            groups = list(learner.t_groups)
            delta = np.column_stack([te[:, groups.index(a)] for a in arms])
        seconds = time.perf_counter() - start
        p_a = np.clip(p_c[:, None] + delta, 1e-6, 1 - 1e-6)
        out.append((name, judge.share(judge.rule(p_c, p_a)), seconds))
    return out


def run(n_train: int, n_test: int, seed: int, learners: list[str], select_by: str,
        with_raw: bool) -> pd.DataFrame:
    train = simulate_customers(n_train, seed, period="2026-09")
    fresh = simulate_customers(n_test, seed + 1000, period="2026-10")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.parquet"
        train.customers.to_parquet(path, index=False)
        (Path(tmp) / "c.yaml").write_text(yaml.safe_dump(config_for(path, learners,
                                                                    select_by, seed)))
        cfg = load_config(Path(tmp) / "c.yaml")
        judge = Judge(cfg, fresh.customers, fresh.truth)
        rows.append(("oracle (true net value)", 1.0, 0.0, ""))
        rows.append(("nobody treated", 0.0, 0.0, ""))
        single = max(judge.share(np.where(judge.eligible[:, j], j, -1))
                     for j in range(len(cfg.arms)))
        rows.append(("best single offer for everyone", single, 0.0, ""))
        start = time.perf_counter()
        result = train_models(load_dataset(cfg), cfg)
        seconds = time.perf_counter() - start
        p_c, p_a = result.model.predict_churn(fresh.customers)
        rows.append((f"toolkit (selected {result.selected} by {select_by})",
                     judge.share(judge.rule(p_c, p_a)), seconds, ""))
        for cand in result.candidates:
            if cand.error:
                rows.append((f"  candidate {cand.learner}", np.nan, cand.fit_seconds,
                             "failed: " + cand.error))
                continue
            qini = np.mean([v for k, v in cand.metrics.items() if k.startswith("qini_")])
            note = (f"fit on the training split; held-out qini {qini:.3f}, "
                    f"DR value {cand.metrics['policy_net_value_per_customer']:.1f}")
            p_c, p_a = result.candidate_models[cand.learner].predict_churn(fresh.customers)
            rows.append((f"  candidate {cand.learner}", judge.share(judge.rule(p_c, p_a)),
                         cand.fit_seconds, note))
        if with_raw:
            for name, share, secs in raw_learners(train.customers, fresh.customers,
                                                  cfg.arm_names, judge, seed):
                rows.append((name, share, secs, ""))
    frame = pd.DataFrame(rows, columns=["policy", "share_of_oracle", "seconds", "note"])
    frame.attrs["oracle"] = judge.oracle
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=int, nargs="+", default=[200_000, 50_000])
    parser.add_argument("--test", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--learners", default="s,t,x,uplift_forest")
    parser.add_argument("--select-by", default="qini", choices=["qini", "policy_value"])
    parser.add_argument("--no-raw", action="store_true")
    opts = parser.parse_args()
    warnings.filterwarnings("ignore")
    for n_train in opts.train:
        table = run(n_train, opts.test, opts.seed, opts.learners.split(","), opts.select_by,
                    not opts.no_raw)
        print(f"\ntrain {n_train:,} customers, decide for a fresh {opts.test:,}; oracle true "
              f"net value {table.attrs['oracle']:.2f} per customer")
        print(f"{'policy':<44}{'% of oracle':>12}{'fit s':>9}  note")
        for row in table.itertuples(index=False):
            share = "" if np.isnan(row.share_of_oracle) else f"{100 * row.share_of_oracle:.1f}%"
            secs = f"{row.seconds:.1f}" if row.seconds else ""
            print(f"{row.policy:<44}{share:>12}{secs:>9}  {row.note}")


if __name__ == "__main__":
    main()
