"""Candidate fitting, selection, skipping failed learners, propensities, and the refit."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from conftest import SimulatedRun, simulated_config, small_params

from uplift.assignment import assignment_shares
from uplift.cli import cli
from uplift.config import load_config
from uplift.data import load_dataset
from uplift.errors import InputError
from uplift.evaluation import CandidateResult
from uplift.models import LearnerError, TrainingDataError, UpliftModel
from uplift.simulate import simulate_customers
from uplift.training import train_models


def config(tmp_path: Path, mapping: dict | None = None, **model: object) -> Path:
    mapping = mapping or simulated_config(policy={"budget": 3000.0, "capacity": {"webinar": 400}})
    mapping["model"].update(model)
    if "learners" in model:
        mapping["model"]["params"] = small_params(*mapping["model"]["learners"])
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(mapping))
    return path


def mean_qini(cand: CandidateResult) -> float:
    return float(np.mean([cand.metrics[f"qini_{a}"]
                          for a in ("discount_20", "free_upgrade", "webinar")]))


MODEL_FREE = ["nobody", "everyone:discount_20", "everyone:free_upgrade", "everyone:webinar"]


def test_the_ensemble_of_the_first_two_learners_is_the_favourite(
    simulated_run: SimulatedRun,
) -> None:
    result = simulated_run.training
    assert result.folds == 3
    assert result.select_by == "policy_value"
    assert [c.learner for c in result.candidates] == ["s", "t", "ensemble", *MODEL_FREE]
    # No single learner beats the favourite by two standard errors on these data.
    assert result.selected == "ensemble" == result.chosen.learner
    # Every customer is scored out of fold, and the figures cover them all.
    assert len(result.holdout_index) == simulated_run.dataset.n_rows
    assert len(result.holdout_scores) == simulated_run.dataset.n_rows
    # The ensemble averages the first two learners, whose predictions it reproduces.
    ensemble = next(c for c in result.candidates if c.learner == "ensemble")
    assert ensemble.members == ("s", "t")
    rows = simulated_run.dataset.frame.head(40)
    fitted = result.candidate_models
    mean = (fitted["s"].uplift.predict(rows) + fitted["t"].uplift.predict(rows)) / 2
    np.testing.assert_allclose(fitted["ensemble"].uplift.predict(rows).to_numpy(),
                               mean.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(result.model.predict(rows)[mean.columns].to_numpy(),
                               ((result.model.uplift.members[0].predict(rows)
                                 + result.model.uplift.members[1].predict(rows)) / 2).to_numpy(),
                               rtol=1e-12)


def test_a_learner_that_clearly_beats_the_favourite_replaces_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = UpliftModel.predict

    def s_believes_every_offer_harms(self: UpliftModel, X: object) -> object:
        out = real(self, X)  # s, and so the ensemble's average, offers nobody anything
        return out - 0.6 if self.learner == "s" else out

    monkeypatch.setattr(UpliftModel, "predict", s_believes_every_offer_harms)
    mapping = simulated_config(policy={"objective": "churn_reduction"})
    cfg = load_config(config(tmp_path, mapping))
    result = train_models(load_dataset(cfg), cfg)
    reduction = {c.learner: c.metrics["policy_churn_reduction"] for c in result.candidates}
    assert reduction["s"] == pytest.approx(0.0, abs=1e-4)
    assert reduction["ensemble"] == pytest.approx(0.0, abs=1e-4)
    t = next(c for c in result.candidates if c.learner == "t")
    assert t.metrics["policy_churn_reduction_ci_low"] > 0
    assert result.selected == "t"
    assert result.model.learner == "t"


def test_select_by_qini_ranks_the_models_by_their_mean_out_of_fold_qini(
    tmp_path: Path,
) -> None:
    cfg = load_config(config(tmp_path, select_by="qini", ensemble=False))
    result = train_models(load_dataset(cfg), cfg)
    models = [c for c in result.candidates if not c.model_free]
    assert [c.learner for c in models] == ["s", "t"]
    assert result.selected == max(models, key=mean_qini).learner


def test_with_one_fold_the_held_out_policy_respects_the_scaled_limits(tmp_path: Path) -> None:
    cfg = load_config(config(tmp_path, folds=1, ensemble=False, learners=["s"]))
    dataset = load_dataset(cfg)
    result = train_models(dataset, cfg)
    share = len(result.holdout_index) / dataset.n_rows
    policy = result.holdout_policy
    assert 0.29 < share < 0.31
    assert result.folds == 1
    assert policy.total_cost <= 3000.0 * share * (1 + 1e-9)
    assert policy.counts()["webinar"] <= int(400 * share)


def test_the_policy_respects_the_limits_and_reports_intervals(simulated_run: SimulatedRun
                                                              ) -> None:
    result, dataset = simulated_run.training, simulated_run.dataset
    policy = result.holdout_policy
    cfg = simulated_run.cfg
    if cfg.policy.budget is not None:
        assert policy.total_cost <= cfg.policy.budget * (1 + 1e-9)
    metrics = result.policy_estimate.metrics()
    for name in ("policy_churn_reduction", "policy_net_value_per_customer"):
        assert metrics[f"{name}_ci_low"] < metrics[name] < metrics[f"{name}_ci_high"]
    scores = result.model.predict(dataset.frame.head(50))
    assert list(scores.columns) == ["churn_risk", "uplift_discount_20", "uplift_free_upgrade",
                                    "uplift_webinar"]
    assert scores["churn_risk"].between(0, 1).all()


def test_the_candidates_table_names_every_candidate_and_marks_the_choice(
    simulated_run: SimulatedRun,
) -> None:
    result = simulated_run.training
    table = result.table()
    assert [row[0] for row in table.rows] == [
        "s", "t", "ensemble (s+t)", "nobody", "discount_20 for everyone",
        "free_upgrade for everyone", "webinar for everyone"]
    status = [row[-1] for row in table.rows]
    assert status.count("recommended") == 1
    assert status.count("selected model") == (result.recommended != result.selected)
    assert table.highlight == {i for i, s in enumerate(status) if s != "ok"}
    assert "by the doubly robust estimate of its policy's value" in result.to_markdown()
    frame = result.to_frame()
    assert frame.loc[frame["selected"], "learner"].tolist() == [result.selected]


def test_a_model_whose_policy_clearly_loses_gives_way_to_a_model_free_policy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = UpliftModel.predict

    def every_offer_harms(self: UpliftModel, X: object) -> object:
        return real(self, X) - 0.6  # every learner offers nobody anything

    monkeypatch.setattr(UpliftModel, "predict", every_offer_harms)
    # The webinar keeps almost every customer it reaches, so it is worth far more than
    # it costs: offering nobody anything loses clearly, whatever the draw.
    customers = simulate_customers(6000, 4).customers
    webinar = customers["arm"] == "webinar"
    rng = np.random.default_rng(0)
    customers.loc[webinar, "churned"] = (rng.random(int(webinar.sum())) < 0.03).astype(int)
    customers.to_parquet(tmp_path / "d.parquet", index=False)
    mapping = simulated_config()
    mapping["data"] = {"path": str(tmp_path / "d.parquet"), "value": "monthly_revenue",
                       "categorical": mapping["data"]["categorical"]}
    cfg = load_config(config(tmp_path, mapping, ensemble=False))
    result = train_models(load_dataset(cfg), cfg)
    assert result.recommended == "everyone:webinar"
    fixed = result.model.fixed_offer
    assert fixed == (cfg.control if result.recommended == "nobody"
                     else result.recommended.removeprefix("everyone:"))
    values = {c.learner: c.metrics["policy_net_value_per_customer"] for c in result.candidates}
    assert values[result.recommended] == max(values[m] for m in MODEL_FREE)
    assert values[result.recommended] > values[result.selected]
    offered = set(result.holdout_policy.offer) - {cfg.control}
    assert offered == (set() if fixed == cfg.control else {fixed})
    label = result.recommended_label
    assert f"**The run recommends {label}: on the out-of-fold estimates" in result.to_markdown()
    assert result.versus_simple == {}
    assert result.versus_metrics() == {}
    assert result.simple_label == ""


def _few_huge_accounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, same_fold: bool
                       ) -> object:
    """A run whose model offers nothing, where 9 webinar customers who stayed pay 10^5 a month.

    The webinar costs 30, more than it keeps elsewhere, so offering it to everyone loses
    money except on those nine, whose inverse-propensity terms are huge: all in one fold
    (``same_fold``), or three in each fold.
    """
    from uplift.evaluation import cross_folds
    from uplift.training import _seeds

    monkeypatch.setattr(UpliftModel, "predict", lambda self, X: pd.DataFrame(
        0.0, index=X.index, columns=[f"uplift_{a}" for a in self.arms_]))
    mapping = simulated_config(learners=("s",))
    mapping["model"]["ensemble"] = False
    mapping["arms"] = [dict(arm) for arm in mapping["arms"]]
    next(a for a in mapping["arms"] if a["name"] == "webinar")["cost"] = {"fixed": 30.0}
    customers = simulate_customers(6000, 4).customers
    customers.to_parquet(tmp_path / "d.parquet", index=False)
    mapping["data"] = {"path": str(tmp_path / "d.parquet"), "value": "monthly_revenue",
                       "categorical": mapping["data"]["categorical"]}
    cfg = load_config(config(tmp_path, mapping))
    dataset = load_dataset(cfg)
    fold = cross_folds(dataset.treatment, dataset.churned, 3, cfg.model.test_size,
                       _seeds(cfg.model.seed, 3)[0])
    stayed = (dataset.treatment == "webinar") & (np.asarray(dataset.churned) == 0)
    huge = (np.flatnonzero(stayed & (fold == 0))[:9] if same_fold else
            np.concatenate([np.flatnonzero(stayed & (fold == k))[:3] for k in range(3)]))
    customers.loc[huge, "monthly_revenue"] = 1e5
    customers.to_parquet(tmp_path / "d.parquet", index=False)
    return train_models(load_dataset(cfg), cfg)


@pytest.mark.parametrize("same_fold", [True, False])
def test_a_lead_made_by_a_few_accounts_in_one_fold_is_not_evidence(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, same_fold: bool) -> None:
    result = _few_huge_accounts(tmp_path, monkeypatch, same_fold)
    values = {c.learner: c.metrics for c in result.candidates}
    webinar = values["everyone:webinar"]
    # Overall the webinar for everyone looks far ahead of the model's (offers nothing)...
    assert webinar["policy_net_value_per_customer_ci_low"] > abs(
        values["s"]["policy_net_value_per_customer"]) + 100
    # ...but when the lead sits in one fold it is luck, and the model's policy stays.
    assert result.recommended == ("s" if same_fold else "everyone:webinar")


def test_progress_steps_are_reported_in_order(tmp_path: Path) -> None:
    cfg = load_config(config(tmp_path, ensemble=False, learners=["s"]))
    steps: list[str] = []
    train_models(load_dataset(cfg), cfg, on_step=steps.append)
    assert steps == [*(f"Fitting the churn-risk model (fold {k} of 3)" for k in (1, 2, 3)),
                     "Refitting the churn-risk model on all rows",
                     *(f"Fitting learner s (fold {k} of 3)" for k in (1, 2, 3)),
                     "Choosing the policy", "Refitting s on all rows",
                     "Estimating the recommended policy"]


def test_the_same_seed_gives_the_same_model(tmp_path: Path) -> None:
    cfg = load_config(config(tmp_path, ensemble=False))
    dataset = load_dataset(cfg)
    a = train_models(dataset, cfg).model.predict(dataset.frame.head(100))
    b = train_models(dataset, cfg).model.predict(dataset.frame.head(100))
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())


def test_model_params_reach_the_base_models(tmp_path: Path) -> None:
    mapping = simulated_config(customers=3000, learners=("t",))
    mapping["model"]["params"] = {"t": {"n_estimators": 7}, "churn_risk": {"n_estimators": 9}}
    cfg = load_config(config(tmp_path, mapping, ensemble=False))
    model = train_models(load_dataset(cfg), cfg).model
    assert model.uplift.learner_.model_c.n_estimators == 7
    assert model.risk.model_.n_estimators == 9


def test_a_failing_learner_is_reported_and_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_config(config(tmp_path))
    original = UpliftModel.fit

    def fit(self: UpliftModel, *args: object, **kwargs: object) -> UpliftModel:
        if self.learner == "t":
            raise LearnerError("learner 't' failed to fit: boom")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(UpliftModel, "fit", fit)
    result = train_models(load_dataset(cfg), cfg)
    failed = [c for c in result.candidates if not c.ok]
    assert [c.learner for c in failed] == ["t"]
    assert "boom" in failed[0].error
    assert result.selected == "s"


def test_every_learner_failing_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    cfg = load_config(config(tmp_path))

    def fit(self: UpliftModel, *args: object, **kwargs: object) -> UpliftModel:
        raise LearnerError(f"learner {self.learner!r} failed to fit: boom")

    monkeypatch.setattr(UpliftModel, "fit", fit)
    with pytest.raises(LearnerError, match=r"every candidate learner failed \(s: .*; t: "):
        train_models(load_dataset(cfg), cfg)


def tiny_group_table(path: Path) -> None:
    """A valid test whose webinar group is far too small to learn an effect from."""
    frame = simulate_customers(3000, 5).customers
    webinar = frame.index[frame["arm"] == "webinar"]
    frame = frame.drop(webinar[40:]).reset_index(drop=True)
    frame.to_csv(path, index=False)


def test_a_group_too_small_to_learn_from_is_bad_input(tmp_path: Path) -> None:
    tiny_group_table(tmp_path / "customers.csv")
    mapping = simulated_config()
    mapping["data"] = {"path": "customers.csv", "value": "monthly_revenue"}
    mapping.pop("allocation")
    cfg = load_config(config(tmp_path, mapping))
    with pytest.raises(TrainingDataError, match=r"column 'arm': group 'webinar' has 2\d rows "
                       r"in the training data; at least 50 are needed") as caught:
        train_models(load_dataset(cfg), cfg)
    assert isinstance(caught.value, InputError)
    assert caught.value.problems[0].file.endswith("customers.csv")


def test_the_cli_exits_2_with_one_line_on_a_group_too_small(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    tiny_group_table(tmp_path / "customers.csv")
    mapping = simulated_config()
    mapping["data"] = {"path": "customers.csv", "value": "monthly_revenue"}
    mapping.pop("allocation")
    config(tmp_path, mapping)
    result = CliRunner().invoke(cli, ["run", "c.yaml", "--tracking-uri",
                                      f"sqlite:///{tmp_path / 'm.db'}"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: customers.csv: column 'arm': group 'webinar' has ")


# --------------------------------------------------------------------------- propensities


def test_propensities_are_the_allocation_when_the_counts_agree(simulated_run: SimulatedRun
                                                               ) -> None:
    assert simulated_run.training.shares == simulated_run.cfg.allocation
    assert not simulated_run.rct.srm_detected


def test_propensities_are_the_observed_shares_under_a_sample_ratio_mismatch(
    tmp_path: Path,
) -> None:
    # Drawn with equal shares, planned as 40/20/20/20: a clear mismatch.
    equal = {"control": 0.25, "discount_20": 0.25, "free_upgrade": 0.25, "webinar": 0.25}
    frame = simulate_customers(8000, 6, allocation=equal).customers
    frame.to_csv(tmp_path / "customers.csv", index=False)
    mapping = simulated_config()
    mapping["data"] = {"path": "customers.csv", "value": "monthly_revenue"}
    cfg = load_config(config(tmp_path, mapping))
    dataset = load_dataset(cfg)
    observed = frame["arm"].value_counts(normalize=True)
    shares = assignment_shares(dataset, cfg)
    assert shares == pytest.approx({g: observed[g] for g in cfg.groups}, abs=1e-15)
    # With these, inverse propensity weighting recovers the control's churn rate exactly;
    # the planned 0.4 would have scaled it by the observed / planned share (about 0.62).
    control = (frame["arm"] == "control").to_numpy()
    churned = frame["churned"].to_numpy()
    ipw = np.mean(control * churned / shares["control"])
    planned = np.mean(control * churned / cfg.allocation["control"])
    assert ipw == pytest.approx(churned[control].mean(), rel=1e-12)
    assert planned / ipw == pytest.approx(observed["control"] / 0.4, rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train_models(dataset, cfg.model_copy(update={"model": cfg.model.model_copy(
            update={"learners": ["t"], "ensemble": False})}))
    assert result.shares == shares
    assert result.model.uplift.shares_ == shares


# --------------------------------------------------------------------------- selection


def test_an_ensembles_label_names_its_members() -> None:
    cand = CandidateResult("ensemble", {"qini_x": 0.1}, members=("t", "x"))
    assert cand.label == "ensemble (t+x)"
    assert cand.mean_score("qini") == 0.1
    assert cand.mean_score("auuc") == float("-inf")


def test_a_held_out_policy_not_proven_optimal_is_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from uplift import policy
    from uplift.errors import UpliftWarning

    real = policy.assign_offers

    def loose(*args: object, **kwargs: object) -> object:
        result = real(*args, **kwargs)
        return replace(result, upper_bound=result.objective + 3.0)

    monkeypatch.setattr(policy, "assign_offers", loose)
    cfg = load_config(config(tmp_path, ensemble=False, learners=["s"]))
    with pytest.warns(UpliftWarning, match=r"^the held-out policy: the offer assignment is "
                      r"not proven optimal; it is within 3 "):
        train_models(load_dataset(cfg), cfg)


@pytest.mark.slow
def test_the_reported_policy_intervals_cover_the_truth_selection_included(tmp_path: Path
                                                                          ) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_selection_coverage import coverage, replicate

    records = [replicate(4000, 500 + r, ["s", "gam"], tmp_path) for r in range(50)]
    table = coverage(records).set_index(["estimate", "metric"])["coverage"]
    assert table["reported", "churn reduction"] >= 0.9
    assert table["reported", "net value / customer"] >= 0.9
    # ... and so does the comparison with the best simple policy, when a model's is chosen
    assert table["versus", "churn reduction"] >= 0.9
    assert table["versus", "net value / customer"] >= 0.9
    assert (coverage(records).set_index("estimate").loc["versus", "replications"] >= 40).all()


def _guarded(tmp_path: Path, guard: bool, customers: int = 3000, **policy: object) -> object:
    mapping = simulated_config(customers=customers, learners=("s",),
                               policy={"require_ci_above_zero": guard, **policy})
    mapping["model"]["ensemble"] = False
    path = tmp_path / f"guard-{guard}.yaml"
    path.write_text(yaml.safe_dump(mapping))
    cfg = load_config(path)
    return train_models(load_dataset(cfg), cfg)


def test_a_policy_whose_interval_reaches_zero_gives_way_to_nobody(tmp_path: Path) -> None:
    free = _guarded(tmp_path, False)
    est = free.policy_estimate.net_value_per_customer
    assert est.ci_low < 0 < est.ci_high  # 3,000 customers cannot tell it from nothing
    guarded = _guarded(tmp_path, True)
    assert guarded.recommended == "nobody"
    assert guarded.reason == "unproven"
    assert guarded.model.fixed_offer == "control"
    assert guarded.declined_estimate == free.policy_estimate
    reported = guarded.policy_estimate
    assert reported.net_value_per_customer.value == 0.0
    assert reported.net_value_per_customer.ci_high == 0.0
    assert reported.churn_reduction.value == 0.0
    assert set(guarded.holdout_policy.offer) == {"control"}
    assert guarded.versus_metrics() == {}
    assert free.versus_metrics() != {}
    text = guarded.to_markdown()
    assert f"[{est.ci_low:,.2f}, {est.ci_high:,.2f}] per customer" in text
    assert "policy.require_ci_above_zero" in text


def test_a_policy_whose_interval_lies_above_zero_is_kept(tmp_path: Path) -> None:
    # The churn reduction of the best offers is known far more precisely than net value.
    free = _guarded(tmp_path, False, 20000, objective="churn_reduction")
    assert free.policy_estimate.churn_reduction.ci_low > 0
    guarded = _guarded(tmp_path, True, 20000, objective="churn_reduction")
    assert (guarded.recommended, guarded.reason) == (free.recommended, free.reason)
    assert guarded.policy_estimate == free.policy_estimate
    assert guarded.declined_estimate is None


def test_under_churn_reduction_the_guard_checks_the_churn_reductions_interval(
        tmp_path: Path) -> None:
    free = _guarded(tmp_path, False, objective="churn_reduction")
    est = free.policy_estimate.churn_reduction
    assert est.ci_low < 0 < est.ci_high  # 3,000 customers cannot tell it from nothing
    guarded = _guarded(tmp_path, True, objective="churn_reduction")
    assert guarded.reason == "unproven"
    assert guarded.declined_estimate == free.policy_estimate
    assert (f"estimated churn reduction of {est.value * 100:+.2f} pp "
            f"[{est.ci_low * 100:+.2f} pp, {est.ci_high * 100:+.2f} pp]") in guarded.why_recommended


def _exported_shares(result: object, cfg: object, dataset: object) -> np.ndarray:
    """Each group's share (control first) under the policy the export applies to every row."""
    from uplift.policy import build_policy
    from uplift.training import customer_values

    p_control, p_arms = result.model.predict_churn(dataset.frame)
    exported = build_policy(p_control, p_arms, customer_values(dataset, cfg), dataset.frame,
                            cfg, fixed_offer=result.model.fixed_offer)
    groups = [cfg.control, *cfg.arm_names]
    return np.array([(exported.offer == g).sum() for g in groups]) / dataset.n_rows


def test_the_reported_estimate_describes_the_refitted_models_policy(
    simulated_run: SimulatedRun,
) -> None:
    result, cfg, dataset = simulated_run.training, simulated_run.cfg, simulated_run.dataset
    assert result.folds == 3  # every row is evaluated, so the exported policy covers them
    groups = [cfg.control, *cfg.arm_names]
    counts = _exported_shares(result, cfg, dataset)
    reported = result.policy_estimate.shares
    np.testing.assert_allclose([reported[g] for g in groups], counts)
    # ... not the out-of-fold policy the candidates were judged by, which differs from it
    held_out = result.selection_estimate.shares
    assert any(abs(held_out[g] - reported[g]) > 0 for g in groups)


def test_a_fold_that_chose_another_policy_is_valued_under_the_exported_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from uplift import training

    real = training._Judge.choose

    def fold_of_row_0_left_out_offers_nothing(self: object, mask: np.ndarray) -> tuple:
        best, recommended = real(self, mask)
        return (best, "nobody") if not mask[0] else (best, recommended)

    monkeypatch.setattr(training._Judge, "choose", fold_of_row_0_left_out_offers_nothing)
    mapping = simulated_config(policy={"objective": "churn_reduction"})
    cfg = load_config(config(tmp_path, mapping, learners=["s", "gam"]))
    dataset = load_dataset(cfg)
    result = train_models(dataset, cfg)
    assert result.recommended not in MODEL_FREE
    assert result.folds == 3
    # Under churn_reduction every reported figure is the selection procedure's; the fold
    # whose rule offered nothing is still valued under the offers the export makes.
    groups = [cfg.control, *cfg.arm_names]
    counts = _exported_shares(result, cfg, dataset)
    reported = result.policy_estimate.shares
    np.testing.assert_allclose([reported[g] for g in groups], counts)
    assert counts[0] < 0.9  # the export does offer something


@pytest.mark.parametrize("objective", ["net_value", "churn_reduction"])
def test_offering_nobody_is_reported_at_exactly_zero_whatever_the_folds_chose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, objective: str,
) -> None:
    from uplift import training

    real = training._Judge.choose

    def nobody_on_all_rows_only(self: object, mask: np.ndarray) -> tuple:
        best, recommended = real(self, mask)
        return (best, "nobody") if mask.all() else (best, best)

    monkeypatch.setattr(training._Judge, "choose", nobody_on_all_rows_only)
    mapping = simulated_config(policy={"objective": objective})
    cfg = load_config(config(tmp_path, mapping, learners=["s", "gam"]))
    result = train_models(load_dataset(cfg), cfg)
    assert result.recommended == "nobody"
    assert result.reason == "beaten"
    # Every fold chose a model's policy; offering nobody anything still changes nothing
    # against offering nobody anything, on any rows, with no uncertainty.
    est = result.policy_estimate
    for figure in (est.net_value_per_customer, est.churn_reduction, est.cost_per_customer):
        assert (figure.value, figure.ci_low, figure.ci_high) == (0.0, 0.0, 0.0)
    assert est.shares[cfg.control] == 1.0
    assert result.versus_metrics() == {}
    assert result.caution == ""  # nobody is never "below offering nobody anything"
    assert result.selection_estimate.net_value_per_customer.value == 0.0
    text = result.to_markdown()
    assert "it is that of offering nobody anything, zero relative to offering nothing" in text
    assert "includes the selection" not in text


def test_the_recommended_policy_is_set_against_the_best_simple_one_on_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from uplift import training

    # Every fold's best simple policy is the webinar for everyone (no eligibility rule) ...
    monkeypatch.setattr(training._Judge, "simplest", lambda self, mask: "everyone:webinar")
    cfg = load_config(config(tmp_path, simulated_config(), learners=["s", "gam"]))
    result = train_models(load_dataset(cfg), cfg)
    assert result.recommended not in MODEL_FREE  # a model's policy is recommended here
    assert result.simple == "everyone:webinar"
    assert result.simple_label == "webinar for everyone"
    assert set(result.simple_groups) == {"webinar"}
    assert len(result.simple_groups) == len(result.holdout_index)
    # ... so each figure is the reported estimate's minus that policy's own on the same
    # rows (differences of means are means of differences), inside its interval.
    simple = {c.learner: c for c in result.candidates}["everyone:webinar"].metrics
    reported = result.policy_estimate
    versus = result.versus_simple
    assert versus["net_value"].value == pytest.approx(
        reported.net_value_per_customer.value - simple["policy_net_value_per_customer"])
    assert versus["churn_reduction"].value == pytest.approx(
        reported.churn_reduction.value - simple["policy_churn_reduction"])
    for est in versus.values():
        assert est.ci_low < est.value < est.ci_high
    metrics = result.versus_metrics()
    assert metrics["policy_net_value_per_customer_vs_simple"] == versus["net_value"].value
    assert metrics["policy_churn_reduction_vs_simple_ci_high"] == versus[
        "churn_reduction"].ci_high
    assert "Against the best of those, webinar for everyone (each fold's customers" in (
        result.to_markdown())


def test_each_fold_is_set_against_the_simple_policy_the_other_folds_chose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from uplift import training

    # The fold holding the first row, left out, finds nobody best; the others the webinar.
    monkeypatch.setattr(training._Judge, "simplest",
                        lambda self, mask: "everyone:webinar" if mask[0] else "nobody")
    cfg = load_config(config(tmp_path, simulated_config(), learners=["s", "gam"]))
    result = train_models(load_dataset(cfg), cfg)
    assert result.folds == 3
    assert result.recommended not in MODEL_FREE
    assert sorted(result.simple_picks) == ["everyone:webinar", "everyone:webinar", "nobody"]
    assert result.simple == "everyone:webinar"
    assert result.simple_label == "webinar for everyone in 2 of 3 folds, nobody in 1"
    groups = np.asarray(result.simple_groups)
    assert groups[0] == "control"  # the first row's fold was compared with nobody ...
    assert set(groups) == {"control", "webinar"}  # ... the other two with the webinar
    assert abs(np.mean(groups == "control") - 1 / 3) < 0.01  # one fold of three
