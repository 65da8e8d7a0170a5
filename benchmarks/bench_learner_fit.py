"""Fit time of our learners next to the same causalml learner fitted raw, same rows, same process.

"Ours" is ``UpliftModel.fit`` on the customer frame (feature encoding, checks, known
propensities, causalml's fit); "raw" is the identical causalml estimator (same base
model settings, from ``learners.make_learner``) fitted directly on an already-encoded
numpy matrix with the same propensities. The ratio is our wrapper's overhead. It also
checks that X, R and DR never fit a propensity model. Run by hand:

    python benchmarks/bench_learner_fit.py [--rows 100000 1000000] [--learners s t x]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

from uplift.learners import PROPENSITY_LEARNERS, make_learner
from uplift.models import FeatureEncoder, UpliftModel
from uplift.simulate import DEFAULT_ALLOCATION, simulate_customers

CATEGORICAL = ["plan", "contract", "region", "payment_method"]


def count_propensity_fits() -> list[int]:
    """Patch causalml's propensity fitting to count calls (it must stay at zero)."""
    import causalml.inference.meta.base as base
    import causalml.inference.meta.drlearner as drlearner

    calls = [0]
    original_set, original_compute = (base.BaseLearner._set_propensity_models,
                                      drlearner.compute_propensity_score)

    def counted_set(*args, **kwargs):
        calls[0] += 1
        return original_set(*args, **kwargs)

    def counted_compute(*args, **kwargs):
        calls[0] += 1
        return original_compute(*args, **kwargs)

    base.BaseLearner._set_propensity_models = counted_set
    drlearner.compute_propensity_score = counted_compute
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--learners", nargs="+", default=["s", "t", "x", "dr", "uplift_forest"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-rows-slow", type=int, default=100_000,
                        help="rows above which dr, r and uplift_forest are skipped")
    opts = parser.parse_args()
    warnings.filterwarnings("ignore")
    calls = count_propensity_fits()
    arms = ["discount_20", "free_upgrade", "webinar"]
    print(f"{'rows':>10} {'learner':<14}{'ours s':>9}{'raw s':>9}{'ratio':>8}"
          f"{'propensity fits':>17}")
    for n in opts.rows:
        sim = simulate_customers(n, 11).customers
        X = sim.drop(columns=["customer_id", "arm", "churned"])
        treatment = sim["arm"].to_numpy().astype(object)
        y = sim["churned"].to_numpy()
        matrix = FeatureEncoder(CATEGORICAL).fit(X, y).transform(X)
        pair = {a: np.full(n, DEFAULT_ALLOCATION[a] / (DEFAULT_ALLOCATION[a] + 0.4))
                for a in arms}
        for learner in opts.learners:
            if n > opts.max_rows_slow and learner in ("dr", "r", "uplift_forest"):
                continue
            ours, raw = [], []
            before = calls[0]
            for _ in range(opts.repeats):  # interleaved, so load hits both alike
                model = UpliftModel(learner=learner, control="control", arms=arms,
                                    propensity=DEFAULT_ALLOCATION, categorical=CATEGORICAL,
                                    seed=0, n_jobs=2)
                start = time.perf_counter()
                model.fit(X, treatment, y)
                ours.append(time.perf_counter() - start)
                estimator = make_learner(learner, "lightgbm", 0, "control", n_jobs=2)
                kwargs = {"X": matrix, "treatment": treatment, "y": y}
                if learner in PROPENSITY_LEARNERS:
                    kwargs["p"] = pair
                if learner == "dr":
                    kwargs["seed"] = 0
                start = time.perf_counter()
                estimator.fit(**kwargs)
                raw.append(time.perf_counter() - start)
            a, b = statistics.median(ours), statistics.median(raw)
            print(f"{n:>10,} {learner:<14}{a:>9.2f}{b:>9.2f}{a / b:>8.2f}"
                  f"{calls[0] - before:>17}", flush=True)


if __name__ == "__main__":
    main()
