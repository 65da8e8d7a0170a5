"""Screen uplift learner settings against the truth: one fit per setting, no selection.

For each world (``benchmarks/worlds.py``), training size and seed it fits every given
setting of the package's uplift learners once, on the whole training sample, scores the
fresh base with it and decides with the spec's rule (``uplift.policy.build_policy``, no
budget), taking P(churn | no offer) from the package's churn-risk model fitted on the same
sample. Each decision is valued with the true net values, as a share of the oracle's, as
in ``bench_decision_quality.py``. Per world it also prints how much of the distance to the
ceiling is lost on the tenth of customers with the highest value, where an uplift error
costs the most, and how far the setting's predicted churn reduction lies from the true one
there on average over the offers (in points; positive = it expects too much).

A setting is one learner or several joined by ``+`` (their predictions averaged, as the
toolkit's ensemble does), each with optional overrides of its settings after ``:``,
separated by ``;``::

    python benchmarks/screen_learners.py "s+gam" "s:n_estimators=600+gam" "gam:C=0.1"
    python benchmarks/screen_learners.py "s+gam" uplift_forest --worlds today,whales \\
        --sizes 20000 50000 --seeds 1 2 3

This is a screen, not the suite: the toolkit's default also cross-fits, chooses among
its candidates and can recommend a simple policy, which only
``bench_decision_quality.py`` measures. A screen takes seconds per world and setting
where the suite takes minutes; a setting that wins here must then win there, over every
seed. Run from the checkout with ``PYTHONPATH=.`` so the package under test is this one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from uplift.assignment import assignment_shares
from uplift.config import LEARNERS, load_config
from uplift.data import load_dataset
from uplift.models import ChurnRiskModel, UpliftModel, churn_probabilities, uplift_column

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decision_quality import TEST, Judge  # noqa: E402
from worlds import WORLDS  # noqa: E402

TOP_SHARE = 0.1  # the tenth of customers with the highest value


def parse_setting(setting: str) -> list[tuple[str, dict]]:
    """``"s:n_estimators=600+gam"`` -> ``[("s", {"n_estimators": 600}), ("gam", {})]``."""
    members = []
    for part in setting.split("+"):
        name, _, rest = part.partition(":")
        params = {}
        for item in filter(None, rest.split(";")):
            key, sep, value = item.partition("=")
            if not sep:
                raise SystemExit(f"setting {setting!r}: {item!r} is not key=value")
            params[key.strip()] = yaml.safe_load(value)
        members.append((name.strip(), params))
    return members


def top_loss(judge: Judge, ceiling: np.ndarray, choice: np.ndarray) -> float:
    """Share of the oracle lost against the ceiling on the highest-value tenth."""
    top = judge.value >= np.quantile(judge.value, 1.0 - TOP_SHARE)

    def earned(c: np.ndarray) -> float:
        rows = np.flatnonzero(top & (c >= 0))
        return float(judge.net[rows, c[rows]].sum())

    return (earned(ceiling) - earned(choice)) / len(choice) / judge.oracle


def top_bias(judge: Judge, p_true: np.ndarray, uplift: np.ndarray) -> float:
    """Mean predicted minus true churn reduction on the highest-value tenth, over offers.

    Positive: the learner expects more of its offers from the customers whose decisions
    weigh most than they deliver (on the suite's worlds, learners flatten how effects
    change with value, which shows here).
    """
    top = judge.value >= np.quantile(judge.value, 1.0 - TOP_SHARE)
    truth = p_true[:, [0]] - p_true[:, 1:]
    return float((uplift[top] - truth[top]).mean())


def screen_cell(world, size: int, seed: int, settings: list[str], test: int,
                tmp: Path) -> dict[str, tuple[float, float, float, float]]:
    """Per setting, for one world and seed: share of the oracle, top-tenth loss, seconds
    and top-tenth bias of the predicted churn reduction."""
    train = world.sample(size, seed, 0).customers
    fresh = world.sample(test, seed, 1)
    path = tmp / "train.parquet"
    train.to_parquet(path, index=False)
    (tmp / "screen.yaml").write_text(yaml.safe_dump(world.config(path)))
    cfg = load_config(tmp / "screen.yaml")
    data = load_dataset(cfg)
    features = list(data.features)
    X, X_fresh = data.frame[features], fresh.customers[features]
    judge = Judge(cfg, fresh.customers, fresh.p_true)
    expected = world.ceiling(fresh)
    ceiling = judge.rule(expected[:, 0], expected[:, 1:])
    threads = os.cpu_count() or 1
    shares = assignment_shares(data, cfg)
    risk = ChurnRiskModel(control=cfg.control, categorical=list(data.categorical),
                          seed=seed, n_jobs=threads).fit(X, data.treatment, data.churned)
    p_control = risk.predict_proba(X_fresh)
    out = {}
    for setting in settings:
        start = time.perf_counter()
        total = 0.0
        members = parse_setting(setting)
        for name, params in members:
            model = UpliftModel(learner=name, control=cfg.control, arms=cfg.arm_names,
                                propensity=shares,
                                categorical=list(data.categorical), seed=seed,
                                n_jobs=threads, params=params or None)
            model.fit(X, data.treatment, data.churned)
            total = total + model.predict(X_fresh).to_numpy(dtype=float)
        scores = {"churn_risk": p_control}
        scores.update({uplift_column(a): total[:, j] / len(members)
                       for j, a in enumerate(cfg.arm_names)})
        p_c, p_a = churn_probabilities(pd.DataFrame(scores), cfg.arm_names)
        choice = judge.rule(p_c, p_a)
        out[setting] = (judge.share(choice), top_loss(judge, ceiling, choice),
                        time.perf_counter() - start, top_bias(judge, fresh.p_true, total /
                                                              len(members)))
    out["ceiling (E[p | X])"] = (judge.share(ceiling), 0.0, 0.0, 0.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("settings", nargs="+", help='e.g. "s+gam" "s:num_leaves=31+gam"')
    parser.add_argument("--worlds", default="all",
                        help=f"comma-separated, of {', '.join(WORLDS)} (default all)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--test", type=int, default=TEST, help="fresh customers to decide for")
    opts = parser.parse_args()
    names = list(WORLDS) if opts.worlds == "all" else opts.worlds.split(",")
    unknown = [n for n in names if n not in WORLDS]
    if unknown:
        raise SystemExit(f"--worlds: unknown {', '.join(unknown)}; use {', '.join(WORLDS)}")
    for setting in opts.settings:
        for learner, _ in parse_setting(setting):
            if learner not in LEARNERS:
                raise SystemExit(f"setting {setting!r}: unknown learner {learner!r}; use one "
                                 f"of {', '.join(LEARNERS)}")
    warnings.filterwarnings("ignore")
    results: dict[tuple[int, str, str], list[tuple[float, float, float, float]]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for size in opts.sizes:
            for name in names:
                for seed in opts.seeds:
                    cell = screen_cell(WORLDS[name], size, seed, opts.settings, opts.test,
                                       Path(tmp))
                    for setting, figures in cell.items():
                        results[(size, name, setting)].append(figures)
    rows = [*opts.settings, "ceiling (E[p | X])"]
    width = max(len(r) for r in rows) + 2
    for size in opts.sizes:
        print(f"\n== {size:,} training customers, seeds {', '.join(map(str, opts.seeds))}: "
              "share of the oracle (mean over seeds), the part of the oracle lost "
              f"against the ceiling on the top {TOP_SHARE:.0%} by value, and the bias of "
              "the predicted churn reduction there")
        print(f"   {'world':<16}{'setting':<{width}}{'share':>8}{'sd':>6}{'top loss':>10}"
              f"{'top bias':>10}{'fit s':>8}")
        average: dict[str, list[float]] = defaultdict(list)
        for name in names:
            for setting in rows:
                figures = np.array(results[(size, name, setting)])
                share = figures[:, 0]
                sd = f"{100 * share.std(ddof=1):6.1f}" if len(share) > 1 else f"{'':6}"
                average[setting].append(share.mean())
                print(f"   {name:<16}{setting:<{width}}{100 * share.mean():7.1f}%"
                      f"{sd}{100 * figures[:, 1].mean():9.1f}%"
                      f"{100 * figures[:, 3].mean():+7.2f} pp{figures[:, 2].mean():8.1f}")
        for setting in rows:
            print(f"   {'average':<16}{setting:<{width}}{100 * np.mean(average[setting]):7.1f}%")


if __name__ == "__main__":
    main()
