"""Real data by hand: Hillstrom's e-mail test, the toolkit against raw causalml and simple policies.

Kevin Hillstrom's MineThatData test sent 64,000 customers a men's e-mail, a women's
e-mail or nothing, a third each. Read as a retention test: ``visit`` is the retention
event, ``history / 12`` the monthly value, each e-mail costs 0.25, over the default
12-month horizon. Per split seed, 70 % of the customers (stratified by group and visit)
go to ``uplift run`` and the other 30 % to ``uplift export`` of the model it
registered, exactly as a user drives the CLI. Every policy is then valued on the 30 %
by inverse propensity weighting with the known propensity 1/3 (written out here, not
the package's estimator): net value per customer relative to mailing nobody, with a
95 % normal interval, and the toolkit's value minus each other policy's on the same
customers (paired, so the noise both share cancels). Rows: the toolkit's export; raw
causalml learners at library defaults (S, T, X, DR on LightGBM, the uplift random
forest) deciding with the same rule (the e-mail with the highest predicted net value,
none when none is positive); nobody; each e-mail for everyone.

    python benchmarks/bench_hillstrom.py --data ../shared/data/hillstrom/marketing_data.csv.gz
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ARMS = {"Mens E-Mail": "mens_email", "Womens E-Mail": "womens_email", "No E-Mail": "control"}
FEATURES = ["recency", "history_segment", "history", "mens", "womens", "zip_code", "newbie",
            "channel"]
CATEGORICAL = ["history_segment", "zip_code", "channel"]
COST, HORIZON, PROPENSITY = 0.25, 12.0, 1.0 / 3.0
TOOLKIT = "toolkit (uplift run + export)"


def load(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    frame.insert(0, "customer_id", [f"c{i:05d}" for i in range(len(frame))])
    frame["arm"] = frame["segment"].map(ARMS)
    frame["monthly_value"] = frame["history"] / 12.0
    return frame[["customer_id", *FEATURES, "monthly_value", "arm", "visit"]]


def config(path: Path, name: str, seed: int) -> dict:
    return {
        "name": name, "period": "2008-03",
        "data": {"path": str(path), "id": "customer_id", "treatment": "arm",
                 "outcome": "visit", "outcome_event": "retention", "value": "monthly_value",
                 "features": FEATURES, "categorical": CATEGORICAL},
        "control": "control",
        "arms": [{"name": arm, "cost": {"fixed": COST}}
                 for arm in ("mens_email", "womens_email")],
        "model": {"seed": seed},
        "policy": {"holdout": 0.0},
        "tracking": {"registered_model": name},
    }


def ipw_rows(offer: np.ndarray, test: pd.DataFrame) -> np.ndarray:
    """Each test customer's IPW term of the policy's net value vs mailing nobody."""
    arm, visit = test["arm"].to_numpy(), test["visit"].to_numpy(dtype=float)
    value = test["monthly_value"].to_numpy() * HORIZON
    mailed = offer != "control"
    kept_policy = (arm == offer) * visit / PROPENSITY
    kept_nobody = (arm == "control") * visit / PROPENSITY
    return (kept_policy - kept_nobody) * value - COST * mailed


def mean_ci(rows: np.ndarray) -> tuple[float, float, float]:
    """Mean of per-customer terms with its 95 % normal interval."""
    se = rows.std(ddof=1) / np.sqrt(len(rows))
    return float(rows.mean()), float(rows.mean() - 1.96 * se), float(rows.mean() + 1.96 * se)


def raw_offers(train: pd.DataFrame, test: pd.DataFrame, seed: int) -> dict[str, np.ndarray]:
    """Each raw causalml learner's recommended e-mail per test customer."""
    from causalml.inference.meta import (
        BaseDRLearner,
        BaseSClassifier,
        BaseTClassifier,
        BaseXClassifier,
    )
    from causalml.inference.tree import UpliftRandomForestClassifier
    from lightgbm import LGBMClassifier, LGBMRegressor
    from sklearn.preprocessing import OrdinalEncoder

    arms = ["mens_email", "womens_email"]
    nums = [c for c in FEATURES if c not in CATEGORICAL]
    enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    X = np.hstack([train[nums].to_numpy(float), enc.fit_transform(train[CATEGORICAL])])
    X_new = np.hstack([test[nums].to_numpy(float), enc.transform(test[CATEGORICAL])])
    t, y = train["arm"].to_numpy(object), train["visit"].to_numpy()
    p = {a: np.full(len(y), 0.5) for a in arms}
    p_new = {a: np.full(len(X_new), 0.5) for a in arms}
    value = test["monthly_value"].to_numpy() * HORIZON
    def clf() -> LGBMClassifier:
        return LGBMClassifier(verbose=-1, random_state=seed)

    def reg() -> LGBMRegressor:
        return LGBMRegressor(verbose=-1, random_state=seed)

    makers = {
        "raw S (LightGBM)": lambda: BaseSClassifier(clf(), control_name="control"),
        "raw T (LightGBM)": lambda: BaseTClassifier(clf(), control_name="control"),
        "raw X (LightGBM)": lambda: BaseXClassifier(clf(), reg(), control_name="control"),
        "raw DR (LightGBM)": lambda: BaseDRLearner(reg(), control_name="control"),
        "raw uplift forest": lambda: UpliftRandomForestClassifier(control_name="control",
                                                                  random_state=seed),
    }
    out = {}
    for name, make in makers.items():
        learner = make()
        kwargs = {"X": X, "treatment": t, "y": y}
        if "X (" in name or "DR" in name:
            kwargs["p"] = p
        if "DR" in name:
            kwargs["seed"] = seed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            learner.fit(**kwargs)
            if "forest" in name:
                full = learner.predict(X_new, full_output=True)
                te = np.column_stack([full[f"delta_{a}"].to_numpy() for a in arms])
            else:
                extra = {"p": p_new} if "X (" in name else {}
                raw = np.asarray(learner.predict(X_new, **extra))
                groups = list(learner.t_groups)
                te = np.column_stack([raw[:, groups.index(a)] for a in arms])
        net = te * value[:, None] - COST  # effect on the visit rate: more visits = kept
        out[name] = np.where(net.max(axis=1) > 0, np.array(arms)[net.argmax(axis=1)],
                             "control")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    opts = parser.parse_args()
    from sklearn.model_selection import train_test_split

    data = load(opts.data)
    results: dict[str, list[tuple[float, float, float]]] = {}
    versus: dict[str, list[tuple[float, float, float]]] = {}
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    uplift = [sys.executable, "-m", "uplift"]
    for seed in opts.seeds:
        strata = data["arm"] + "|" + data["visit"].astype(str)
        train, test = train_test_split(data, test_size=0.3, random_state=seed, stratify=strata)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            train.to_csv(folder / "train.csv", index=False)
            test.drop(columns=["arm", "visit"]).to_csv(folder / "score.csv", index=False)
            name = f"hillstrom-{seed}"
            (folder / "run.yaml").write_text(yaml.safe_dump(config(folder / "train.csv", name,
                                                                   seed)))
            store = f"sqlite:///{folder / 'mlflow.db'}"
            start = time.perf_counter()
            subprocess.run([*uplift, "run", str(folder / "run.yaml"), "--tracking-uri", store,
                            "--quiet"], check=True, cwd=folder, env=env)
            subprocess.run([*uplift, "export", "--customers", str(folder / "score.csv"),
                            "--out", str(folder / "recs.csv"), "--model",
                            f"models:/{name}@candidate", "--tracking-uri", store, "--quiet"],
                           check=True, cwd=folder, env=env)
            seconds = time.perf_counter() - start
            recs = pd.read_csv(folder / "recs.csv").set_index("customer_id")
        offers = {TOOLKIT: recs.loc[test["customer_id"], "offer"].to_numpy(object)}
        offers.update(raw_offers(train, test, seed))
        offers["nobody"] = np.full(len(test), "control", dtype=object)
        for arm in ("mens_email", "womens_email"):
            offers[f"{arm} for everyone"] = np.full(len(test), arm, dtype=object)
        toolkit = ipw_rows(offers[TOOLKIT], test)
        for method, offer in offers.items():
            rows = ipw_rows(offer, test)
            results.setdefault(method, []).append(mean_ci(rows))
            # Paired on the same customers: most of each policy's noise is shared.
            versus.setdefault(method, []).append(mean_ci(toolkit - rows))
        print(f"seed {seed}: toolkit run + export {seconds:.0f} s; "
              + ", ".join(f"{m} {v[-1][0]:.2f}" for m, v in results.items()), flush=True)

    print(f"\nNet value per customer vs mailing nobody, IPW on the 30 % (propensity 1/3), "
          f"seeds {opts.seeds}: mean over seeds, and each seed's value [95% CI]")
    table(results, opts.seeds)
    print(f"\nThe toolkit's net value minus each policy's, paired on the same 30 % "
          f"(positive = the toolkit earns more), seeds {opts.seeds}")
    table({m: v for m, v in versus.items() if m != TOOLKIT}, opts.seeds)


def table(results: dict[str, list[tuple[float, float, float]]], seeds: list[int]) -> None:
    """A Markdown table: per policy, the mean over seeds and each seed's value [95% CI]."""
    print("| policy | mean | " + " | ".join(f"seed {s}" for s in seeds) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in seeds) + " |")
    for method, values in results.items():
        cells = " | ".join(f"{v:.2f} [{lo:.2f}, {hi:.2f}]" for v, lo, hi in values)
        print(f"| {method} | {np.mean([v[0] for v in values]):.2f} | {cells} |")


if __name__ == "__main__":
    main()
