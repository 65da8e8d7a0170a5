"""Decision quality against the truth, over diverse worlds: the share of the oracle earned.

For each world (``benchmarks/worlds.py``), training size and seed it draws a randomized
offer test to train on and an independent fresh base to decide for, then values every
policy's decisions for the fresh base with the TRUE per-customer net value (SPEC section
3: ``net = (p_control - p_arm) * value * horizon - cost``, from the world's true churn
probabilities), as a share of the oracle's. Rows:

- ceiling: the policy rule applied to E[p | observed features], computed exactly from
  the world's generative model (quadrature over its hidden traits); the best any model
  of the observed features can do;
- toolkit default: ``uplift.training.train_models`` with a config holding only the
  world's data, arms and allocation (``model:`` and ``policy:`` left to the package's
  defaults), deciding with its own policy rule through its public API;
- toolkit candidate <name>: each candidate model the package fitted, deciding alone;
- raw causalml learners at library defaults: S, T, X and DR on LightGBM and the uplift
  random forest, features as a notebook user passes them (numbers as is, categories
  ordinal-encoded, missing values left as NaN, which both LightGBM and causalml's
  uplift forest accept), X and DR given the known assignment probabilities;
  P(churn | control) from a default LightGBM on the control rows; the same rule;
- trivial: nobody treated (0 %), each single offer for every eligible customer, and the
  best of those (chosen with the truth per seed).

The policy rule is the spec's, via ``uplift.policy.build_policy`` without a budget: each
customer gets the eligible offer with the highest estimated net value, or none when none
nets more than zero. The summary averages over worlds per size and checks the goals:
toolkit at least 3 points above the best raw learner at 20k and 50k (1.5 above 200k),
never more than 0.5 below it nor below the best trivial policy on any world and size,
and closing at least half the gap from the best raw learner to the ceiling.

Every row goes to ``--out`` (JSON lines). ``--reuse FILE`` skips rows already measured
for the same world, size, seed, fresh-base size and code version (for toolkit rows the
source of the package modules between the data and the decision, not the CLI, report or
MLflow logging; the worlds, this suite's code and the libraries for the others), so
after a package change only the toolkit rows need computing::

    python benchmarks/bench_decision_quality.py --out results.jsonl            # all
    python benchmarks/bench_decision_quality.py --reuse results.jsonl \\
        --out results.jsonl --only toolkit                                     # rerun
    python benchmarks/bench_decision_quality.py --worlds today,whales --sizes 20000 \\
        --seeds 1 --test 50000                                                  # quick look

Run from the checkout with ``PYTHONPATH=.`` so the package under test is this one.
``benchmarks/results/decision_quality.jsonl`` holds the last measurement kept with the
code (every world, seed and size, toolkit rows included); pass it to ``--reuse`` and
only what the code has changed since is measured again: with the package unchanged the
whole table prints without fitting anything.
Worlds and seeds run one after another; fits use the libraries' own threading.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import inspect
import json
import math
import sys
import tempfile
import time
import traceback
import warnings
from collections import defaultdict
from importlib.metadata import version as dist_version
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

import uplift
from uplift.config import load_config
from uplift.data import load_dataset
from uplift.policy import build_policy, eligibility, net_values
from uplift.training import train_models

sys.path.insert(0, str(Path(__file__).resolve().parent))
from worlds import CONTROL, VALUE, WORLDS, World  # noqa: E402

GROUPS = ("ceiling", "toolkit", "raw", "trivial")
SIZES = (20_000, 50_000, 200_000)
SEEDS = (1, 2, 3)
TEST = 100_000
RAW = ("raw S (LightGBM)", "raw T (LightGBM)", "raw X (LightGBM)", "raw DR (LightGBM)",
       "raw uplift forest")
TOOLKIT = "toolkit default"
ORACLE = "oracle"
CEILING = "ceiling (E[p | X])"
NOBODY = "nobody"
BEST_SINGLE = "best single offer"
NOT_FEATURES = ("customer_id", "arm", "churned")


# --------------------------------------------------------------------------- judging


class Judge:
    """True net value per customer of a policy on the fresh base, vs the oracle's."""

    def __init__(self, cfg, fresh: pd.DataFrame, p_true: np.ndarray):
        self.cfg = cfg
        self.fresh = fresh
        self.value = fresh[VALUE].to_numpy(dtype=float)
        self.net, _ = net_values(p_true[:, 0], p_true[:, 1:], self.value, cfg.arms,
                                 cfg.value_horizon_months)
        self.eligible = eligibility(fresh, cfg.arms)
        self.oracle = self.earned(self.rule(p_true[:, 0], p_true[:, 1:]))

    def rule(self, p_control: np.ndarray, p_arms: np.ndarray, cfg=None) -> np.ndarray:
        """Index of the recommended offer per customer (-1 = none), via build_policy."""
        policy = build_policy(p_control, p_arms, self.value, self.fresh, cfg or self.cfg)
        return policy.assignment.choice

    def earned(self, choice: np.ndarray) -> float:
        rows = np.flatnonzero(choice >= 0)
        return float(self.net[rows, choice[rows]].sum() / len(choice))

    def share(self, choice: np.ndarray) -> float:
        return self.earned(choice) / self.oracle


def row(method: str, group: str, judge: Judge | None, choice: np.ndarray | None,
        seconds: float, note: str = "") -> dict:
    if choice is None:
        return {"method": method, "group": group, "share": None, "net": None,
                "seconds": round(seconds, 3), "note": note}
    net = judge.earned(choice)
    return {"method": method, "group": group, "share": net / judge.oracle, "net": net,
            "seconds": round(seconds, 3), "note": note,
            "treated": float(np.mean(choice >= 0))}


def failure(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return "failed: " + text[:300]


def ceiling_rows(world: World, fresh, judge: Judge) -> list[dict]:
    start = time.perf_counter()
    expected = world.ceiling(fresh)
    choice = judge.rule(expected[:, 0], expected[:, 1:])
    return [row(CEILING, "ceiling", judge, choice, time.perf_counter() - start)]


def trivial_rows(judge: Judge) -> list[dict]:
    rows = [row(NOBODY, "trivial", judge, np.full(len(judge.value), -1), 0.0)]
    for j, arm in enumerate(judge.cfg.arms):
        rows.append(row(f"single {arm.name}", "trivial", judge,
                        np.where(judge.eligible[:, j], j, -1), 0.0,
                        "every eligible customer"))
    best = max(rows[1:], key=lambda r: r["share"])
    rows.append({**best, "method": BEST_SINGLE, "note": best["method"]})
    return rows


def toolkit_rows(world: World, train: pd.DataFrame, fresh: pd.DataFrame, judge: Judge,
                 tmp: Path) -> list[dict]:
    """The package as a user runs it: defaults for everything but the world's test."""
    path = tmp / "train.parquet"
    train.to_parquet(path, index=False)
    (tmp / "toolkit.yaml").write_text(yaml.safe_dump(world.config(path)))
    start = time.perf_counter()
    try:
        cfg = load_config(tmp / "toolkit.yaml")
        result = train_models(load_dataset(cfg), cfg)
        p_c, p_a = result.model.predict_churn(fresh)
        fixed = getattr(result.model, "fixed_offer", None)  # nobody / one offer for all
        choice = (judge.rule(p_c, p_a, cfg) if fixed is None else
                  build_policy(p_c, p_a, judge.value, fresh, cfg,
                               fixed_offer=fixed).assignment.choice)
    except Exception as exc:  # a failing toolkit is a result, not a crash
        return [row(TOOLKIT, "toolkit", judge, None, time.perf_counter() - start,
                    failure(exc))]
    rows = [row(TOOLKIT, "toolkit", judge, choice, time.perf_counter() - start,
                f"selected {result.selected} by {result.select_by}; recommends "
                f"{getattr(result, 'recommended', result.selected)}")]
    for cand in result.candidates:
        name = f"toolkit candidate {cand.learner}"
        if not cand.error and cand.learner not in result.candidate_models:
            continue  # a policy without a model (nobody, one offer for all): see trivial
        if cand.error:
            rows.append(row(name, "toolkit", judge, None, cand.fit_seconds,
                            "failed: " + cand.error))
            continue
        try:
            p_c, p_a = result.candidate_models[cand.learner].predict_churn(fresh)
            choice = judge.rule(p_c, p_a, cfg)
        except Exception as exc:
            rows.append(row(name, "toolkit", judge, None, cand.fit_seconds, failure(exc)))
            continue
        qini = [v for k, v in cand.metrics.items() if k.startswith("qini_")]
        note = (f"held-out qini {np.mean(qini):.3f}, DR value "
                f"{cand.metrics.get('policy_net_value_per_customer', float('nan')):.1f}")
        rows.append(row(name, "toolkit", judge, choice, cand.fit_seconds, note))
    return rows


def feature_matrix(train: pd.DataFrame, fresh: pd.DataFrame, categorical: list[str]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Numbers as is (NaN kept), text and listed categories ordinal-encoded."""
    from sklearn.preprocessing import OrdinalEncoder

    features = [c for c in train.columns if c not in NOT_FEATURES]
    cats = [c for c in features if c in categorical
            or not (pd.api.types.is_numeric_dtype(train[c])
                    or pd.api.types.is_bool_dtype(train[c]))]
    nums = [c for c in features if c not in cats]
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    coded = encoder.fit_transform(train[cats].astype(str))
    fresh_coded = encoder.transform(fresh[cats].astype(str))
    return (np.hstack([train[nums].to_numpy(dtype=float), coded]),
            np.hstack([fresh[nums].to_numpy(dtype=float), fresh_coded]))


def raw_rows(world: World, train: pd.DataFrame, fresh: pd.DataFrame, judge: Judge,
             seed: int, only: set[str] | None = None) -> list[dict]:
    """causalml learners at library defaults, decided with the same policy rule."""
    from causalml.inference.meta import (
        BaseDRLearner,
        BaseSClassifier,
        BaseTClassifier,
        BaseXClassifier,
    )
    from causalml.inference.tree import UpliftRandomForestClassifier
    from lightgbm import LGBMClassifier, LGBMRegressor

    arms = [arm["name"] for arm in world.arms]
    X, X_new = feature_matrix(train, fresh, world.categorical)
    t = train["arm"].to_numpy().astype(object)
    y = train["churned"].to_numpy()
    start = time.perf_counter()
    control = t == CONTROL
    risk = LGBMClassifier(verbose=-1, random_state=seed).fit(X[control], y[control])
    p_c = risk.predict_proba(X_new)[:, 1]
    risk_seconds = time.perf_counter() - start
    alloc = world.allocation
    shares = {a: alloc[a] / (alloc[a] + alloc[CONTROL]) for a in arms}

    def clf():
        return LGBMClassifier(verbose=-1, random_state=seed)

    def reg():
        return LGBMRegressor(verbose=-1, random_state=seed)

    makers = {
        RAW[0]: lambda: BaseSClassifier(clf(), control_name=CONTROL),
        RAW[1]: lambda: BaseTClassifier(clf(), control_name=CONTROL),
        RAW[2]: lambda: BaseXClassifier(clf(), reg(), control_name=CONTROL),
        RAW[3]: lambda: BaseDRLearner(reg(), control_name=CONTROL),
        RAW[4]: lambda: UpliftRandomForestClassifier(control_name=CONTROL, random_state=seed),
    }
    out = []
    for name, make in makers.items():
        if only is not None and name not in only:
            continue
        start = time.perf_counter()
        try:
            learner = make()
            kwargs = {"X": X, "treatment": t, "y": y}
            if name in (RAW[2], RAW[3]):
                kwargs["p"] = {a: np.full(len(y), shares[a]) for a in arms}
            if name == RAW[3]:
                kwargs["seed"] = seed  # its cross-fitting folds, else unseeded
            learner.fit(**kwargs)
            if name == RAW[4]:
                full = learner.predict(X_new, full_output=True)
                delta = np.column_stack([full[f"delta_{a}"].to_numpy() for a in arms])
            else:
                extra = ({"p": {a: np.full(len(X_new), shares[a]) for a in arms}}
                         if name == RAW[2] else {})
                te = np.asarray(learner.predict(X_new, **extra))
                groups = list(learner.t_groups)
                delta = np.column_stack([te[:, groups.index(a)] for a in arms])
            # causalml's effect is P(churn | offer) - P(churn | control).
            p_a = np.clip(p_c[:, None] + delta, 1e-6, 1 - 1e-6)
            choice = judge.rule(p_c, p_a)
        except Exception as exc:
            out.append(row(name, "raw", judge, None, time.perf_counter() - start,
                           failure(exc)))
            continue
        out.append(row(name, "raw", judge, choice,
                       time.perf_counter() - start + risk_seconds))
    return out


# --------------------------------------------------------------------------- versions


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


# The package modules this suite calls; the digest follows their imports from here.
ENTRY_MODULES = ("uplift", "uplift.config", "uplift.data", "uplift.policy", "uplift.training")


def _module_file(root: Path, name: str) -> Path | None:
    """The source file of the package module ``name`` (``uplift.x.y``), if there is one."""
    parts = name.split(".")[1:]
    candidates = [root.joinpath(*parts, "__init__.py")]
    if parts:
        candidates.append(root.joinpath(*parts[:-1], parts[-1] + ".py"))
    return next((path for path in candidates if path.is_file()), None)


def _package_imports(root: Path, name: str, path: Path) -> set[str]:
    """Package modules that ``path`` imports anywhere in its body (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "uplift")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                module = ".".join([*parts[:len(parts) - node.level + 1],
                                   *([node.module] if node.module else [])])
            elif (node.module or "").split(".")[0] == "uplift":
                module = node.module
            else:
                continue
            found.add(module)
            # ``from . import x`` and ``from .pkg import mod`` name modules too
            found.update(f"{module}.{a.name}" for a in node.names)
    return {m for m in found if _module_file(root, m) is not None}


def package_digest() -> str:
    """Hash of the package source the toolkit rows run (the checkout on the path).

    That is every module reachable by import statements (at module level or inside a
    function) from the ones this suite calls: an edit to the command line, the report
    or the MLflow logging leaves the stored rows valid, any edit on the path from the
    data to the decision does not. The package's lazy attribute exports are not
    followed; this suite imports what it uses by module.
    """
    root = Path(uplift.__file__).resolve().parent
    seen: dict[str, Path] = {}
    todo = list(ENTRY_MODULES)
    while todo:
        name = todo.pop()
        path = _module_file(root, name)
        if name in seen or path is None:
            continue
        seen[name] = path
        todo.extend(_package_imports(root, name, path) - set(seen))
    return _digest(*(f"{seen[m].relative_to(root)}\n{seen[m].read_text()}" for m in sorted(seen)))


def world_source(world: World) -> str:
    """The code that makes a world: the shared machinery and its own class."""
    import worlds

    shared = [getattr(worlds, name) for name in ("World", "Sample", "ramp", "labels", "pick",
                                                 "tenure_months", "gauss_hermite")]
    constants = repr((worlds.NODES, worlds.MISSING_NODES, CONTROL, VALUE))
    return "\n".join([*(inspect.getsource(obj) for obj in shared),
                      inspect.getsource(type(world)), constants])


def versions() -> dict[str, dict[str, str]]:
    """Code version per world and group of rows.

    A world's rows depend on its own code (editing one world keeps the others' rows),
    the judge and the libraries; toolkit rows also on the package's decision code
    (:func:`package_digest`).
    """
    libs = ",".join(f"{d}={dist_version(d)}" for d in
                    ("causalml", "lightgbm", "scikit-learn", "numpy", "scipy", "pandas"))
    judge = inspect.getsource(Judge) + inspect.getsource(row) + inspect.getsource(run_cell)
    package = package_digest()
    out = {}
    for name, world in WORLDS.items():
        reference = _digest(world_source(world), judge, libs)
        out[name] = {
            "oracle": reference,
            "ceiling": _digest(reference, inspect.getsource(ceiling_rows)),
            "trivial": _digest(reference, inspect.getsource(trivial_rows)),
            "raw": _digest(reference, inspect.getsource(raw_rows),
                           inspect.getsource(feature_matrix)),
            "toolkit": _digest(reference, inspect.getsource(toolkit_rows), package),
        }
    return out


# --------------------------------------------------------------------------- running


def load_rows(path: Path | None) -> list[dict]:
    if path is None or not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


class Store:
    """Rows measured or reused, keyed by world, size, seed, fresh size and method."""

    def __init__(self, reuse: list[dict], out: Path | None,
                 version: dict[str, dict[str, str]]):
        self.version = version
        self.cache: dict[tuple, dict] = {}
        for r in reuse:
            if r.get("version") == version.get(r.get("world"), {}).get(r.get("group")):
                self.cache[self.key(r)] = r  # last one wins
        self.rows: dict[tuple, dict] = {}
        self.out = out
        self.written: set[tuple] = set()
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            self.written = {self.key(r) + (r.get("version"),) for r in load_rows(out)}

    @staticmethod
    def key(r: dict) -> tuple:
        return (r["world"], r["size"], r["seed"], r["test"], r["method"])

    def cached(self, cell: tuple, group: str) -> list[dict]:
        return [r for k, r in self.cache.items() if k[:4] == cell and r["group"] == group]

    def add(self, cell: tuple, rows: list[dict]) -> None:
        world, size, seed, test = cell
        lines = []
        for r in rows:
            r = {"world": world, "size": size, "seed": seed, "test": test, **r,
                 "version": r.get("version", self.version[world][r["group"]])}
            k = self.key(r)
            self.rows[k] = r
            if k + (r["version"],) not in self.written:
                self.written.add(k + (r["version"],))
                lines.append(json.dumps(r))
        if self.out is not None and lines:
            with self.out.open("a") as handle:
                handle.write("\n".join(lines) + "\n")


def run_cell(world: World, size: int, seed: int, test: int, groups: set[str],
             store: Store, log) -> None:
    """Measure one world, size and seed: reuse what the store has, compute the rest."""
    cell = (world.name, size, seed, test)
    todo = []
    for group in GROUPS:
        reused = store.cached(cell, group)
        if group == "raw":
            store.add(cell, reused)  # learner by learner
            done = {r["method"] for r in reused} >= set(RAW)
        else:
            done = bool(reused) and (group != "toolkit"
                                     or any(r["method"] == TOOLKIT for r in reused))
            if done:
                store.add(cell, reused)
        if not done and group in groups:
            todo.append(group)
    if not todo:
        store.add(cell, store.cached(cell, "oracle"))
        return
    start = time.perf_counter()
    train = world.sample(size, seed, 0).customers
    fresh_sample = world.sample(test, seed, 1)
    fresh = fresh_sample.customers.drop(columns=["arm", "churned"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train.head(200).to_parquet(tmp / "judge.parquet", index=False)
        judge_cfg = world.config(tmp / "judge.parquet")
        # The spec's rule, stated in full so that the judge never moves with defaults.
        judge_cfg["policy"] = {"objective": "net_value", "min_net_value": 0.0}
        judge_cfg["value_horizon_months"] = 12
        (tmp / "judge.yaml").write_text(yaml.safe_dump(judge_cfg))
        judge = Judge(load_config(tmp / "judge.yaml"), fresh, fresh_sample.p_true)
        setup = time.perf_counter() - start
        store.add(cell, [{"method": ORACLE, "group": "oracle", "share": 1.0,
                          "net": judge.oracle, "seconds": round(setup, 3),
                          "group_seconds": round(setup, 3),
                          "note": "true net value per customer"}])
        for group in todo:
            t0 = time.perf_counter()
            if group == "ceiling":
                rows = ceiling_rows(world, fresh_sample, judge)
            elif group == "trivial":
                rows = trivial_rows(judge)
            elif group == "toolkit":
                rows = toolkit_rows(world, train, fresh, judge, tmp)
            else:
                have = {r["method"] for r in store.cached(cell, "raw")}
                rows = raw_rows(world, train, fresh, judge, seed, only=set(RAW) - have)
            wall = round(time.perf_counter() - t0, 3)
            store.add(cell, [{**r, "group_seconds": wall} for r in rows])
            log(f"  {world.name} n={size:,} seed {seed}: {group} in {wall:.0f}s: " + ", ".join(
                f"{r['method']} {fmt_pct(r['share'])}" for r in rows))


# --------------------------------------------------------------------------- reporting


def fmt_pct(x: float | None) -> str:
    return "fail" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def method_order(method: str, group: str) -> tuple:
    """Ceiling, the toolkit and its candidates, raw learners, trivial policies."""
    rank = {"ceiling": 0, "toolkit": 1, "raw": 2, "trivial": 3}[group]
    if method in RAW:
        return (rank, RAW.index(method), method)
    first = {TOOLKIT: 0, NOBODY: 0, BEST_SINGLE: 2}
    return (rank, first.get(method, 1), method)


def stats(values: list[float]) -> dict:
    ok = [v for v in values if v is not None and math.isfinite(v)]
    if not ok:
        return {"mean": math.nan, "sd": math.nan, "min": math.nan, "max": math.nan,
                "n": 0, "failed": len(values)}
    arr = np.array(ok) * 100
    return {"mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "min": float(arr.min()), "max": float(arr.max()), "n": len(arr),
            "failed": len(values) - len(ok)}


def report(rows: list[dict], worlds: list[str], sizes: list[int], seeds: list[int],
           test: int) -> str:
    lines: list[str] = []
    cells = defaultdict(list)
    for r in rows:
        if r["test"] == test and r["seed"] in seeds:
            cells[(r["world"], r["size"])].append(r)
    summary: dict[int, dict[str, dict]] = defaultdict(dict)
    for size in sizes:
        for name in worlds:
            rs = cells.get((name, size))
            if not rs:
                continue
            world = WORLDS[name]
            by_method = defaultdict(list)
            groups = {}
            walls = defaultdict(dict)  # per seed, per group: wall seconds
            for r in rs:
                by_method[r["method"]].append(r)
                groups[r["method"]] = r["group"]
                walls[r["seed"]][r["group"]] = r.get("group_seconds") or 0.0
            seconds = {seed: sum(w.values()) for seed, w in walls.items()}
            oracle = [r["net"] for r in by_method.pop(ORACLE, [])]
            lines.append("")
            lines.append(f"== {name} — {world.title}")
            lines.append(f"   hard: {world.hard}")
            lines.append(f"   train {size:,}, decide for a fresh {test:,}; seeds "
                         f"{','.join(str(s) for s in sorted({r['seed'] for r in rs}))}; "
                         f"oracle true net value {np.mean(oracle):.2f} per customer "
                         f"(sd {np.std(oracle, ddof=1) if len(oracle) > 1 else 0:.2f}); "
                         f"{np.mean(list(seconds.values())):.0f}s per seed")
            lines.append(f"   {'policy':<34}{'mean':>8}{'sd':>6}{'min':>8}{'max':>8}"
                         f"{'seeds':>6}{'fit s':>8}  note")
            table = {}
            for method in sorted(by_method, key=lambda m: method_order(m, groups[m])):
                entries = by_method[method]
                st = stats([r["share"] for r in entries])
                table[method] = st
                secs = np.mean([r["seconds"] or 0 for r in entries])
                note = table_note(method, entries)
                fails = f" ({st['failed']} failed)" if st["failed"] else ""
                lines.append(f"   {method:<34}{st['mean']:>7.1f}%{st['sd']:>6.1f}"
                             f"{st['min']:>7.1f}%{st['max']:>7.1f}%{st['n']:>6}"
                             f"{secs:>8.1f}  {note}{fails}")
            raw = {m: s for m, s in table.items() if groups[m] == "raw"
                   and math.isfinite(s["mean"])}
            trivial = [s["mean"] for m, s in table.items() if m in (NOBODY, BEST_SINGLE)]
            best_raw = max(raw, key=lambda m: raw[m]["mean"]) if raw else None
            if best_raw:
                lines.append(f"   {'best raw learner':<34}{raw[best_raw]['mean']:>7.1f}%"
                             f"{'':>34}  {best_raw}")
            summary[size][name] = {
                "toolkit": table.get(TOOLKIT, {}).get("mean", math.nan),
                "best_raw": raw[best_raw]["mean"] if best_raw else math.nan,
                "best_raw_name": best_raw or "",
                "trivial": max(trivial) if trivial else math.nan,
                "ceiling": table.get(CEILING, {}).get("mean", math.nan),
                "seconds": float(np.mean(list(seconds.values()))),
            }
    lines += summary_lines(summary)
    return "\n".join(lines)


def table_note(method: str, entries: list[dict]) -> str:
    """One note for a method over seeds: what the toolkit selected, or a common note."""
    notes = [r.get("note") or "" for r in entries]
    failed = [n for n in notes if n.startswith("failed")]
    if failed:
        return failed[0][:90]
    if method == TOOLKIT:
        picks = defaultdict(int)
        for n in notes:
            picks[n.removeprefix("selected ").split(" by ")[0]] += 1
        return "selected " + ", ".join(f"{k} x{v}" for k, v in sorted(picks.items()))
    if len(entries) == 1 or len(set(notes)) == 1:
        return notes[0][:90]
    return ""


def goal_points(size: int) -> float:
    return 3.0 if size <= 50_000 else 1.5


def summary_lines(summary: dict[int, dict[str, dict]]) -> list[str]:
    lines = []
    for size, per_world in summary.items():
        lines.append("")
        lines.append(f"== summary at {size:,} training customers (share of the oracle, "
                     "mean over seeds)")
        lines.append(f"   {'world':<16}{'toolkit':>9}{'best raw':>10}{'trivial':>9}"
                     f"{'ceiling':>9}{'tk-raw':>8}{'closed':>8}  best raw learner")
        for name, s in per_world.items():
            diff = s["toolkit"] - s["best_raw"]
            gap = s["ceiling"] - s["best_raw"]
            closed = diff / gap if gap > 0 else math.nan
            lines.append(f"   {name:<16}{s['toolkit']:>8.1f}%{s['best_raw']:>9.1f}%"
                         f"{s['trivial']:>8.1f}%{s['ceiling']:>8.1f}%{diff:>+8.1f}"
                         f"{100 * closed:>7.0f}%  {s['best_raw_name']}")
        vals = {k: float(np.mean([s[k] for s in per_world.values()]))
                for k in ("toolkit", "best_raw", "trivial", "ceiling")}
        diff = vals["toolkit"] - vals["best_raw"]
        gap = vals["ceiling"] - vals["best_raw"]
        closed = diff / gap if gap > 0 else math.nan
        lines.append(f"   {'average':<16}{vals['toolkit']:>8.1f}%{vals['best_raw']:>9.1f}%"
                     f"{vals['trivial']:>8.1f}%{vals['ceiling']:>8.1f}%{diff:>+8.1f}"
                     f"{100 * closed:>7.0f}%")
        need = goal_points(size)
        below_raw = [n for n, s in per_world.items()
                     if not s["toolkit"] >= s["best_raw"] - 0.5]
        below_trivial = [n for n, s in per_world.items() if not s["toolkit"] >= s["trivial"]]
        goals = [
            (f"toolkit >= best raw + {need:g} points on average", diff >= need,
             f"{diff:+.1f}"),
            ("toolkit never more than 0.5 below the best raw learner", not below_raw,
             ", ".join(below_raw) or "every world"),
            ("toolkit never below the best trivial policy", not below_trivial,
             ", ".join(below_trivial) or "every world"),
            ("toolkit closes >= half the gap from best raw to the ceiling",
             closed >= 0.5, f"{100 * closed:.0f}%"),
        ]
        for text, ok, detail in goals:
            lines.append(f"   goal {'MET    ' if ok else 'NOT MET'} {text} ({detail})")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worlds", default="all",
                        help=f"comma-separated, or all: {','.join(WORLDS)}")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES),
                        help="training customers per world (default 20000 50000 200000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS),
                        help="seeds per world and size (default 1 2 3)")
    parser.add_argument("--test", type=int, default=TEST,
                        help="customers in the fresh decision base (default 100000)")
    parser.add_argument("--only", default="all",
                        help=f"comma-separated groups to compute: {','.join(GROUPS)} "
                             "(default all; the oracle is always valued)")
    parser.add_argument("--out", type=Path, help="append every row here (JSON lines)")
    parser.add_argument("--reuse", type=Path,
                        help="results file whose rows of the same code version are reused")
    parser.add_argument("--quiet", action="store_true", help="no per-cell progress lines")
    opts = parser.parse_args(argv)
    worlds = list(WORLDS) if opts.worlds == "all" else opts.worlds.split(",")
    unknown = [w for w in worlds if w not in WORLDS]
    groups = set(GROUPS) if opts.only == "all" else set(opts.only.split(","))
    if unknown or groups - set(GROUPS):
        parser.error(f"unknown world(s) {unknown} or group(s) {sorted(groups - set(GROUPS))}")
    warnings.filterwarnings("ignore")
    store = Store(load_rows(opts.reuse), opts.out, versions())

    def log(text: str) -> None:
        if not opts.quiet:
            print(text, file=sys.stderr, flush=True)

    for size in opts.sizes:
        for name in worlds:
            for seed in opts.seeds:
                try:
                    run_cell(WORLDS[name], size, seed, opts.test, groups, store, log)
                except Exception:
                    log(f"  {name} n={size:,} seed {seed}: failed\n{traceback.format_exc()}")
    print(report(list(store.rows.values()), worlds, opts.sizes, opts.seeds, opts.test))


if __name__ == "__main__":
    main()
