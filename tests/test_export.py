"""The recommendation export: contract, determinism, atomic delivery, bad input, Spark parity."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REGISTERED, RegisteredStore
from mlflow import MlflowClient

from uplift.cli import cli
from uplift.errors import UpliftWarning
from uplift.export import export_recommendations
from uplift.tracking import use_store

NAME = REGISTERED
ARMS = ["discount_20", "free_upgrade", "webinar"]
COLUMNS = ["customer_id", "offer", "holdout", "churn_risk", *(f"uplift_{a}" for a in ARMS),
           "net_value", "rank"]
MANIFEST_KEYS = {"rows", "offers", "holdout", "model_uri", "model_version", "run_id",
                 "input_sha256", "output_sha256", "created_at"}


Store = RegisteredStore


@pytest.fixture
def store(registered_store: RegisteredStore) -> RegisteredStore:
    return registered_store


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_export(store: Store, out: Path, **kwargs: object) -> object:
    kwargs.setdefault("tracking_uri", store.uri)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UpliftWarning)
        return export_recommendations(kwargs.pop("customers", store.customers_csv), out,
                                      **kwargs)


def read(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype={"customer_id": str})


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_file_and_manifest_follow_the_contract(store: Store, tmp_path: Path,
                                               suffix: str) -> None:
    result = run_export(store, tmp_path / f"recs{suffix}")
    frame = read(result.path)
    assert list(frame.columns) == COLUMNS
    assert len(frame) == len(store.customers)
    assert frame["customer_id"].tolist() == store.customers["customer_id"].tolist()
    assert set(frame["offer"]) <= {"control", *ARMS}
    assert (frame.loc[frame["holdout"], "offer"] == "control").all()
    assert (frame.loc[frame["offer"] == "control", "net_value"] == 0).all()
    assert sorted(frame["rank"]) == list(range(1, len(frame) + 1))
    # Premium customers are never offered the upgrade (the model's eligibility rule).
    premium = store.customers["plan"].eq("premium").to_numpy()
    assert not frame.loc[premium, "offer"].eq("free_upgrade").any()

    manifest = json.loads(result.manifest_path.read_text())
    assert result.manifest_path.name == f"recs{suffix}.manifest.json"
    assert manifest.keys() >= MANIFEST_KEYS
    assert manifest["output_sha256"] == sha256(result.path)
    assert manifest["input_sha256"] == sha256(store.customers_csv)
    assert manifest["rows"] == len(frame)
    assert manifest["holdout"] == int(frame["holdout"].sum())
    assert manifest["offers"] == {k: int((frame["offer"] == k).sum())
                                  for k in ["control", *ARMS]}
    assert manifest["model_uri"] == f"models:/{NAME}@champion"
    assert manifest["model_version"] == "1"
    assert manifest["value_column"] == "monthly_revenue"
    assert leftovers(tmp_path) == []
    # Readable by the CRM's user: the usual permissions, not a temporary file's 0600.
    umask = os.umask(0o022)
    os.umask(umask)
    for path in (result.path, result.manifest_path):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_offers_are_each_customers_best_by_the_spec_formula(store: Store,
                                                            tmp_path: Path) -> None:
    frame = read(run_export(store, tmp_path / "recs.csv", holdout=0.0).path)
    assert not frame["holdout"].any()
    risk = frame["churn_risk"].to_numpy()
    revenue = store.customers["monthly_revenue"].to_numpy()
    value = revenue * 12  # value_horizon_months defaults to 12
    # Spec section 3, written out: discount pays a revenue share from who stays.
    costs = {"discount_20": lambda p: (1 - p) * 0.2 * revenue * 3,
             "free_upgrade": lambda p: np.full_like(p, 6.0),
             "webinar": lambda p: np.full_like(p, 1.5)}
    nets = []
    for arm in ARMS:
        uplift = frame[f"uplift_{arm}"].to_numpy()
        p_arm = np.clip(risk - uplift, 1e-6, 1 - 1e-6)
        net = (risk - p_arm) * value - costs[arm](p_arm)
        if arm == "free_upgrade":
            net = np.where(store.customers["plan"].eq("premium"), -np.inf, net)
        nets.append(net)
    nets = np.column_stack(nets)
    best = np.where(nets.max(axis=1) > 0, np.array(ARMS)[nets.argmax(axis=1)], "control")
    assert (frame["offer"].to_numpy() == best).all()
    np.testing.assert_allclose(frame["net_value"], np.where(best == "control", 0,
                                                            nets.max(axis=1)), rtol=1e-9)
    offered = frame[frame["offer"] != "control"].sort_values("rank")
    assert offered["rank"].max() == len(offered)  # offered customers come first
    assert offered["net_value"].is_monotonic_decreasing


@pytest.mark.parametrize("fixed", ["control", "free_upgrade"])
def test_a_fixed_recommendation_goes_to_every_eligible_customer_not_held_out(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixed: str) -> None:
    from uplift import registry

    real = registry.load_model

    def load(*args: object, **kwargs: object) -> registry.LoadedModel:
        loaded = real(*args, **kwargs)
        model = copy.copy(loaded.model)
        model.fixed_offer = fixed
        return dataclasses.replace(loaded, model=model)

    monkeypatch.setattr(registry, "load_model", load)
    frame = read(run_export(store, tmp_path / "recs.csv", holdout=0.1).path)
    premium = store.customers["plan"].eq("premium").to_numpy()
    held = frame["holdout"].to_numpy()
    expected = np.where(held | (fixed == "free_upgrade") & premium | (fixed == "control"),
                        "control", fixed)
    assert 0 < held.sum() < len(frame)
    assert (frame["offer"].to_numpy() == expected).all()


@pytest.mark.parametrize("source", ["csv", "parquet"])
def test_scores_equal_the_registered_models_predictions(store: Store, tmp_path: Path,
                                                        source: str) -> None:
    import mlflow.pyfunc

    customers = store.customers_csv if source == "csv" else store.customers_parquet
    frame = read(run_export(store, tmp_path / "recs.parquet", customers=customers).path)
    with use_store(store.uri):
        model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    expected = model.predict(store.customers)
    for column in expected.columns:
        np.testing.assert_allclose(frame[column], expected[column], rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- determinism


def test_reruns_are_byte_identical_whatever_the_chunk_size(store: Store, tmp_path: Path) -> None:
    for suffix in (".csv", ".parquet"):
        first = run_export(store, tmp_path / f"a{suffix}", chunk_size=20_000)
        second = run_export(store, tmp_path / f"b{suffix}", chunk_size=20_000)
        third = run_export(store, tmp_path / f"c{suffix}", chunk_size=1_337)
        assert first.path.read_bytes() == second.path.read_bytes()
        assert first.path.read_bytes() == third.path.read_bytes()


def test_long_ids_over_many_row_groups_give_the_same_bytes_for_any_chunk_size(
    store: Store, tmp_path: Path
) -> None:
    import uuid

    rng = np.random.default_rng(8)
    big = pd.concat([store.customers] * 4, ignore_index=True)
    big["customer_id"] = [str(uuid.UUID(int=int(x))) for x in rng.integers(0, 2**62, len(big))]
    path = tmp_path / "long_ids.parquet"
    big.to_parquet(path, index=False)
    for suffix in (".parquet", ".csv"):
        first = run_export(store, tmp_path / f"a{suffix}", customers=path, chunk_size=50_000)
        second = run_export(store, tmp_path / f"b{suffix}", customers=path, chunk_size=6_007)
        assert first.path.read_bytes() == second.path.read_bytes(), suffix


def messy_csv(store: Store, path: Path) -> Path:
    """The customers as real CSV exports write them: BOM, TRUE/FALSE, NA for missing."""
    messy = store.customers.copy()
    messy["auto_renew"] = messy["auto_renew"].map({True: "TRUE", False: "FALSE"})
    messy["nps"] = messy["nps"].map(lambda v: "NA" if pd.isna(v) else f"{v:g}")
    assert (messy["nps"] == "NA").any()
    messy.to_csv(path, index=False, encoding="utf-8-sig")
    return path


def test_csv_and_parquet_inputs_give_the_same_file(store: Store, tmp_path: Path) -> None:
    """Text as real CSV exports write it scores like the typed data."""
    path = messy_csv(store, tmp_path / "messy.csv")
    from_csv = run_export(store, tmp_path / "from_csv.csv", customers=path)
    from_parquet = run_export(store, tmp_path / "from_parquet.csv",
                              customers=store.customers_parquet)
    assert from_csv.path.read_bytes() == from_parquet.path.read_bytes()
    assert from_csv.manifest["psi"] == from_parquet.manifest["psi"]


def test_ties_at_the_budget_margin_do_not_depend_on_row_order(store: Store,
                                                              tmp_path: Path) -> None:
    """Twins (same features, other ids) score alike; under a binding budget and capacity
    which twin gets the offer must not depend on where they sit in the file."""
    base = store.customers.head(3_000)
    twins = pd.concat([base, base.assign(customer_id=base["customer_id"] + "-twin")],
                      ignore_index=True)
    first_path, second_path = tmp_path / "twins.csv", tmp_path / "twins_shuffled.csv"
    twins.to_csv(first_path, index=False)
    twins.sample(frac=1.0, random_state=11).to_csv(second_path, index=False)
    free = run_export(store, tmp_path / "free.csv", customers=first_path, holdout=0.0)
    webinars = free.manifest["offers"]["webinar"]
    split = False
    # Whether a limit cuts between two twins depends on where it falls; a few budgets
    # make sure the check below met a split pair.
    for share in (0.4, 0.33, 0.47, 0.25):
        budget = round(share * free.manifest["expected_cost"], 2)
        mapping = {**store.mapping, "policy": {"holdout": 0.0, "budget": budget,
                                              "capacity": {"webinar": webinars // 3}}}
        config = tmp_path / "tight.yaml"
        config.write_text(yaml.safe_dump(mapping), encoding="utf-8")
        one = read(run_export(store, tmp_path / "one.csv", customers=first_path,
                              config=config).path).set_index("customer_id")
        two = read(run_export(store, tmp_path / "two.csv", customers=second_path,
                              config=config).path).set_index("customer_id")
        two = two.loc[one.index]
        assert (one["offer"] == two["offer"]).all()
        assert (one["rank"] == two["rank"]).all()
        pair = one["offer"].to_numpy().reshape(2, -1)
        split = bool((pair[0] != pair[1]).any())
        if split:
            break
    # The limits bind, so some twins were split: the test exercised ties.
    assert split


def test_shuffling_changes_no_customers_holdout_offer_or_rank(store: Store,
                                                              tmp_path: Path) -> None:
    shuffled = store.customers.sample(frac=1.0, random_state=3)
    shuffled_path = tmp_path / "shuffled.parquet"
    shuffled.to_parquet(shuffled_path, index=False)
    budget = {**store.mapping, "policy": {"holdout": 0.1, "budget": 20_000.0,
                                         "capacity": {"webinar": 3000}}}
    config = tmp_path / "budget.yaml"
    config.write_text(yaml.safe_dump(budget), encoding="utf-8")
    for extra in ({}, {"config": config}):
        plain = read(run_export(store, tmp_path / "plain.csv", **extra).path)
        mixed = read(run_export(store, tmp_path / "mixed.csv", customers=shuffled_path,
                                **extra).path)
        assert mixed["customer_id"].tolist() == shuffled["customer_id"].tolist()
        joined = plain.set_index("customer_id").loc[mixed["customer_id"]]
        for column in ("holdout", "offer", "rank"):
            assert joined[column].tolist() == mixed[column].tolist(), column


def test_holdout_share_and_stability(store: Store, tmp_path: Path) -> None:
    n = len(store.customers)
    for share in (0.05, 0.3):
        frame = read(run_export(store, tmp_path / "recs.csv", holdout=share).path)
        tolerance = 4 * np.sqrt(share * (1 - share) / n)
        assert abs(frame["holdout"].mean() - share) < tolerance
    # A customer's holdout depends on their id alone: a subset keeps every draw.
    subset = store.customers.iloc[::7]
    subset_path = tmp_path / "subset.csv"
    subset.to_csv(subset_path, index=False)
    whole = read(run_export(store, tmp_path / "whole.csv").path).set_index("customer_id")
    part = read(run_export(store, tmp_path / "part.csv", customers=subset_path).path)
    assert part["holdout"].tolist() == whole.loc[part["customer_id"], "holdout"].tolist()
    # Nested shares: a larger holdout contains the smaller one.
    small = read(run_export(store, tmp_path / "s.csv", holdout=0.05).path)["holdout"]
    large = read(run_export(store, tmp_path / "l.csv", holdout=0.3).path)["holdout"]
    assert (large | ~small).all()


def test_budget_and_capacity_hold_over_the_whole_population(store: Store,
                                                            tmp_path: Path) -> None:
    free_result = run_export(store, tmp_path / "free.csv")
    free = read(free_result.path)
    webinars = int((free["offer"] == "webinar").sum())
    budget = round(0.5 * free_result.manifest["expected_cost"], 2)
    mapping = {**store.mapping, "policy": {"holdout": 0.1, "budget": budget,
                                          "capacity": {"webinar": webinars // 2}}}
    config = tmp_path / "limits.yaml"
    config.write_text(yaml.safe_dump(mapping), encoding="utf-8")
    result = run_export(store, tmp_path / "limited.csv", config=config, chunk_size=3_000)
    frame = read(result.path)
    assert (frame["offer"] == "webinar").sum() <= webinars // 2
    assert result.manifest["expected_cost"] <= budget * (1 + 1e-9)
    assert result.manifest["expected_cost"] >= 0.98 * budget  # the budget binds
    assert result.manifest["budget"] == budget
    assert (frame["holdout"] == free["holdout"]).all()
    assert frame["net_value"].sum() < free["net_value"].sum()


@pytest.mark.parametrize(("source", "suffix"), [(".csv", ".csv"), (".parquet", ".parquet"),
                                              (".parquet", ".csv")])
def test_an_empty_customer_table_gives_an_empty_file(store: Store, tmp_path: Path,
                                                     source: str, suffix: str) -> None:
    empty = tmp_path / f"empty{source}"
    if source == ".csv":
        store.customers.head(0).to_csv(empty, index=False)
    else:
        store.customers.head(0).to_parquet(empty, index=False)
    result = run_export(store, tmp_path / f"recs{suffix}", customers=empty)
    frame = read(result.path)
    assert list(frame.columns) == COLUMNS
    assert len(frame) == 0
    assert result.manifest["rows"] == 0
    assert result.manifest["offers"] == dict.fromkeys(["control", *ARMS], 0)
    # No customers, no population to compare with the training rows: no drift measured.
    assert result.manifest["psi"] == {}
    assert result.drifted == []


def test_date_in_the_output_name(store: Store, tmp_path: Path) -> None:
    import datetime as dt

    result = run_export(store, tmp_path / "recs-{date}.csv", today=dt.date(2026, 12, 1))
    assert result.path == tmp_path / "recs-2026-12-01.csv"
    assert result.manifest_path == tmp_path / "recs-2026-12-01.csv.manifest.json"
    assert result.path.is_file()


def test_a_shifted_population_raises_the_drift_warning(store: Store, tmp_path: Path) -> None:
    shifted = store.customers.assign(tenure_months=store.customers["tenure_months"] + 60)
    path = tmp_path / "shifted.parquet"
    shifted.to_parquet(path, index=False)
    with pytest.warns(UpliftWarning, match=r"tenure_months \("):
        result = export_recommendations(path, tmp_path / "recs.csv", tracking_uri=store.uri)
    assert result.manifest["drifted_features"] == ["tenure_months"]
    assert result.manifest["psi"]["tenure_months"] > 0.25
    assert max(v for k, v in result.manifest["psi"].items() if k != "tenure_months") < 0.1


# --------------------------------------------------------------------------- bad input


def lock(folder: Path) -> None:
    """Make ``folder`` unwritable, even for root (immutable flag), or skip the test."""
    folder.chmod(0o500)
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
        if done.returncode != 0:
            folder.chmod(0o700)
            pytest.skip("cannot make a folder unwritable for root here (no chattr +i)")


def unlock(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True, check=False)
    folder.chmod(0o700)


def cli_export(store: Store, tmp_path: Path, *args: str,
               env: dict[str, str] | None = None) -> object:
    from click.testing import CliRunner

    base = ["export", "--customers", str(store.customers_csv), "--out",
            str(tmp_path / "out" / "recs.csv")]
    return CliRunner().invoke(cli, [*base, *args], env=env or {"MLFLOW_TRACKING_URI": store.uri})


@pytest.mark.parametrize(("case", "args", "expected"), [
    ("missing feature", ["--customers", "{no_feature}"], r"column 'tenure_months': not found"),
    ("unknown model", ["--model", f"models:/{NAME}/99"], rf"--model: no model models:/{NAME}/99"),
    ("no such model name", ["--model", "models:/nothing@champion"], r"--model: no model"),
    ("holdout above one", ["--holdout", "1.5"], r"--holdout: must be a share in \[0, 1\)"),
    ("unwritable folder", ["--out", "{locked}/recs.csv"], r"--out: folder .* is not writable"),
    ("missing folder", ["--out", "{missing}/recs.csv"], r"--out: folder .* does not exist"),
    ("bad extension", ["--out", "{out}/recs.xlsx"], r"--out: must end in \.csv or \.parquet"),
    ("missing customers", ["--customers", "{missing}/c.csv"], r"--customers: file not found"),
    ("bad chunk size", ["--chunk-size", "0"], r"--chunk-size: must be >= 1"),
    ("missing id", ["--customers", "{no_id}"], r"column 'customer_id': missing id \(row 3\)"),
    ("malformed csv", ["--customers", "{ragged}"], r"cannot read the table"),
    ("empty file", ["--customers", "{zero}"], r"cannot read the table"),
    ("duplicate ids", ["--customers", "{dup}"], r"duplicate ids \(1 row repeats an id\)"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    store: Store, tmp_path: Path, case: str, args: list[str], expected: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    locked = tmp_path / "locked"
    locked.mkdir()
    if any("{locked}" in a for a in args):  # only this case needs an unwritable folder
        lock(locked)
    no_feature = tmp_path / "no_feature.csv"
    store.customers.drop(columns=["tenure_months"]).to_csv(no_feature, index=False)
    no_id = tmp_path / "no_id.csv"
    store.customers.assign(customer_id=lambda f: f["customer_id"].mask(f.index == 2)).to_csv(
        no_id, index=False)
    ragged = tmp_path / "ragged.csv"
    text = store.customers.head(50).to_csv(index=False).splitlines()
    text[30] += ",extra,fields"
    ragged.write_text("\n".join(text) + "\n")
    zero = tmp_path / "zero.csv"
    zero.write_bytes(b"")
    dup = tmp_path / "dup.csv"
    head = store.customers.head(100)
    pd.concat([head, head.iloc[[5]]]).to_csv(dup, index=False)
    names = {"no_feature": no_feature, "no_id": no_id, "locked": locked,
             "missing": tmp_path / "missing", "out": out, "ragged": ragged, "zero": zero,
             "dup": dup}
    filled = [a.format(**names) for a in args]
    try:
        result = cli_export(store, tmp_path, *filled)
    finally:
        unlock(locked)
    assert result.exit_code == 2, (case, result.output)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, lines
    assert __import__("re").search(expected, lines[0]), lines[0]
    assert "Traceback" not in result.output
    for folder in (out, locked):
        assert list(folder.iterdir()) == []


def test_no_champion_tells_the_user_to_promote(store: Store, tmp_path: Path) -> None:
    client = MlflowClient(store.uri)
    client.delete_registered_model_alias(NAME, "champion")
    try:
        (tmp_path / "out").mkdir()
        result = cli_export(store, tmp_path)
    finally:
        client.set_registered_model_alias(NAME, "champion", "1")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert f"'{NAME}' has no 'champion' version yet" in lines[0]
    assert "uplift promote" in lines[0]
    assert list((tmp_path / "out").iterdir()) == []


def test_no_store_is_not_created_by_a_failed_export(store: Store, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    missing = f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}"
    result = cli_export(store, tmp_path, env={"MLFLOW_TRACKING_URI": missing})
    assert result.exit_code == 2
    assert "no MLflow store" in result.output
    assert not (tmp_path / "nowhere").exists()


def test_cli_export_prints_a_summary(store: Store, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    result = cli_export(store, tmp_path)
    assert result.exit_code == 0, result.output
    assert "Scored 20,000 customers" in result.output
    assert (tmp_path / "out" / "recs.csv.manifest.json").is_file()
    out = tmp_path / "out" / "recs.csv"
    assert f"Wrote {out} and {out}.manifest.json in " in result.output
    assert f"@champion (version {store.version}): " in result.output
    # A model named by its run's artifact has no version: the line names the run.
    result = cli_export(store, tmp_path, "--model", f"runs:/{store.run_id}/model")
    assert result.exit_code == 0, result.output
    assert f"runs:/{store.run_id}/model (run {store.run_id}): " in result.output


# --------------------------------------------------------------------------- crashes


@pytest.mark.slow
def test_sigkill_never_leaves_a_partial_file(store: Store, tmp_path: Path) -> None:
    big = pd.concat([store.customers.assign(customer_id=store.customers["customer_id"] + f"-{i}")
                     for i in range(5)], ignore_index=True)
    customers = tmp_path / "big.csv"
    big.to_csv(customers, index=False)
    target = tmp_path / "deliver" / "recs.csv"
    target.parent.mkdir()
    manifest = Path(f"{target}.manifest.json")

    def command(out: Path, holdout: str) -> list[str]:
        return [sys.executable, "-m", "uplift", "--quiet", "export", "--customers",
                str(customers), "--out", str(out), "--holdout", holdout,
                "--chunk-size", "20000"]

    subprocess.run(command(target, "0.05"), env=store.env(), check=True, timeout=300)
    earlier, earlier_manifest = target.read_bytes(), manifest.read_bytes()
    assert leftovers(target.parent) == []
    newer_path = tmp_path / "newer.csv"
    start = time.monotonic()
    subprocess.run(command(newer_path, "0.2"), env=store.env(), check=True, timeout=300)
    duration = time.monotonic() - start
    newer = newer_path.read_bytes()
    assert newer != earlier

    rng = random.Random(5)
    during_write = 0
    for trial in range(12):
        proc = subprocess.Popen(command(target, "0.2"), env=store.env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if trial % 2 == 0:  # anywhere in the run
            time.sleep(rng.uniform(0.2, duration))
        else:  # inside the write: once the temporary file exists
            deadline = time.monotonic() + duration * 2
            while not leftovers(target.parent) and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.05))
        writing = bool(leftovers(target.parent))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        during_write += writing
        content = target.read_bytes()
        assert content in (earlier, newer), "a partial file was left at the target"
        if manifest.exists():
            described = json.loads(manifest.read_text())["output_sha256"]
            assert described == hashlib.sha256(content).hexdigest()
        if content == newer or not manifest.exists():  # put the earlier delivery back
            target.write_bytes(earlier)
            manifest.write_bytes(earlier_manifest)
    # The kills did land inside the write window, where a non-atomic writer would fail.
    assert during_write >= 3
    subprocess.run(command(target, "0.2"), env=store.env(), check=True, timeout=300)
    assert target.read_bytes() == newer
    assert json.loads(manifest.read_text())["output_sha256"] == hashlib.sha256(newer).hexdigest()
    assert leftovers(target.parent) == []  # the interrupted runs' temporary files are gone


# --------------------------------------------------------------------------- spark


@pytest.mark.slow
@pytest.mark.parametrize("source", ["csv", "parquet"])
def test_spark_engine_writes_the_same_file(store: Store, tmp_path: Path, source: str) -> None:
    customers = (messy_csv(store, tmp_path / "messy.csv") if source == "csv"
                 else store.customers_parquet)
    mapping = {**store.mapping, "policy": {"holdout": 0.1, "budget": 2_000.0}}
    config = tmp_path / "budget.yaml"
    config.write_text(yaml.safe_dump(mapping), encoding="utf-8")
    for suffix, extra in ((".csv", {}), (".parquet", {"config": config})):
        pandas_result = run_export(store, tmp_path / f"pandas{suffix}", customers=customers,
                                   chunk_size=7_000, **extra)
        spark_result = run_export(store, tmp_path / f"spark{suffix}", customers=customers,
                                  engine="spark", spark_master="local[2]", **extra)
        assert spark_result.path.read_bytes() == pandas_result.path.read_bytes()
        assert spark_result.manifest["psi"] == pandas_result.manifest["psi"]
        assert spark_result.manifest["engine"] == "spark"


# --------------------------------------------------------------------------- lock, temporaries


def test_the_lock_lives_beside_the_target_and_is_gone_afterwards(
    store: Store, tmp_path: Path
) -> None:
    import tempfile

    from uplift.export import _exclusive

    target = tmp_path / "deliver" / "recs.csv"
    target.parent.mkdir()
    shared = sorted(Path(tempfile.gettempdir()).glob("uplift-export-*.lock"))
    with _exclusive(target):
        assert [p.name for p in target.parent.iterdir()] == [".recs.csv.lock"]
    assert list(target.parent.iterdir()) == []
    assert sorted(Path(tempfile.gettempdir()).glob("uplift-export-*.lock")) == shared
    run_export(store, target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["recs.csv",
                                                              "recs.csv.manifest.json"]


def test_a_lock_another_user_planted_in_the_temporary_folder_blocks_nothing(
    store: Store, tmp_path: Path
) -> None:
    import fcntl
    import hashlib as hashes
    import tempfile

    target = tmp_path / "deliver" / "recs.csv"
    target.parent.mkdir()
    # Where the lock used to be: a predictable name anyone could take first.
    key = hashes.sha256(str(target.resolve()).encode()).hexdigest()[:24]
    planted = Path(tempfile.gettempdir()) / f"uplift-export-{key}.lock"
    with open(planted, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            done = subprocess.run([sys.executable, "-m", "uplift", "--quiet", "export",
                                   "--customers", str(store.customers_csv), "--out",
                                   str(target)], env=store.env(), capture_output=True,
                                  text=True, timeout=300, check=False)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            planted.unlink(missing_ok=True)
    assert done.returncode == 0, done.stderr
    assert target.is_file()


def test_stale_temporaries_of_other_tools_are_left_alone(store: Store, tmp_path: Path) -> None:
    from uplift.tables import remove_stale_temps

    folder = tmp_path / "deliver"
    folder.mkdir()
    old = time.time() - 3 * 86400
    others = [folder / ".crm-sync.abc12345.tmp", folder / ".report.pdf.tmp",
              folder / ".other.csv.x1y2z3w4.tmp"]
    ours_elsewhere = folder / ".other.csv.uplift-a1b2c3d4.tmp"
    fresh_ours = folder / ".other.csv.uplift-zzzzzzzz.tmp"
    mine = folder / ".recs.csv.uplift-q1w2e3r4.tmp"
    for path in [*others, ours_elsewhere, fresh_ours, mine]:
        path.write_text("x")
        if path is not fresh_ours:
            os.utime(path, (old, old))
    removed = remove_stale_temps(folder / "recs.csv")
    assert sorted(p.name for p in removed) == sorted([ours_elsewhere.name, mine.name])
    assert all(p.exists() for p in [*others, fresh_ours])


def test_an_assignment_not_proven_optimal_is_said_on_stderr(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from uplift import policy

    real = policy.assign_offers

    def loose(*args: object, **kwargs: object) -> object:
        result = real(*args, **kwargs)
        return replace(result, upper_bound=result.objective + 12.5)

    monkeypatch.setattr(policy, "assign_offers", loose)
    config = tmp_path / "limits.yaml"
    mapping = {**store.mapping, "policy": {"budget": 500.0, "holdout": 0.1}}
    config.write_text(yaml.safe_dump(mapping), encoding="utf-8")
    (tmp_path / "out").mkdir()
    result = cli_export(store, tmp_path, "--config", str(config), "--quiet")
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert re.search(r"^Warning: .*customers\.csv: the offer assignment is not proven "
                     r"optimal; it is within 12\.5 ", lines[0]), lines[0]
    manifest = json.loads((tmp_path / "out" / "recs.csv.manifest.json").read_text())
    assert manifest["assignment"] == {"optimal": False, "gap": 12.5}
