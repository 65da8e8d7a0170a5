from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import base_config, set_key

from uplift.config import load_config
from uplift.data import collect_data_problems, load_dataset
from uplift.errors import DataError


def config_for(tmp_path: Path, frame: pd.DataFrame | None = None, name: str = "customers.csv",
               **keys: object) -> Path:
    """Write ``frame`` (if given) and a config whose dotted keys are overridden."""
    if frame is not None:
        if name.endswith(".parquet"):
            frame.to_parquet(tmp_path / name, index=False)
        else:
            frame.to_csv(tmp_path / name, index=False)
    mapping = base_config(name)
    for key, value in keys.items():
        mapping = set_key(mapping, key.replace("__", "."), value)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(mapping))
    return path


def problems(path: Path) -> list[str]:
    _, found = collect_data_problems(load_config(path))
    return [str(p) for p in found]


def test_csv_and_parquet_give_the_same_dataset(tmp_path: Path, table: pd.DataFrame) -> None:
    a = load_dataset(load_config(config_for(tmp_path, table)))
    b = load_dataset(load_config(config_for(tmp_path, table, name="c.parquet")))
    np.testing.assert_array_equal(a.churned, b.churned)
    np.testing.assert_array_equal(a.treatment, b.treatment)
    assert a.features == b.features
    pd.testing.assert_frame_equal(a.frame[list(a.features)], b.frame[list(b.features)],
                                  check_dtype=False)


def test_dataset_roles_and_auto_features(tmp_path: Path, table: pd.DataFrame) -> None:
    ds = load_dataset(load_config(config_for(tmp_path, table)))
    assert ds.features == ("tenure_months", "plan", "nps", "monthly_revenue")
    assert ds.categorical == ("plan",)
    np.testing.assert_array_equal(ds.churned, table["churned"].to_numpy())
    assert ds.group_counts().to_dict() == table["arm"].value_counts().to_dict()
    assert ds.sha256 == hashlib.sha256((tmp_path / "customers.csv").read_bytes()).hexdigest()


def test_listed_categorical_may_be_numeric(tmp_path: Path, table: pd.DataFrame) -> None:
    ds = load_dataset(load_config(config_for(tmp_path, table, data__categorical=["nps"])))
    assert set(ds.categorical) == {"nps", "plan"}


@pytest.mark.parametrize(
    ("yes", "no"),
    [("Yes", "no"), ("TRUE", "FALSE"), ("true", "False"), ("1", "0"), ("1.0", "0.0"),
     (" y ", "N"), (True, False)],
)
def test_outcome_spellings(tmp_path: Path, table: pd.DataFrame, yes: object, no: object) -> None:
    frame = table.assign(churned=np.where(table["churned"] == 1, yes, no))
    frame["churned"] = frame["churned"].astype(object)
    ds = load_dataset(load_config(config_for(tmp_path, frame)))
    np.testing.assert_array_equal(ds.churned, table["churned"].to_numpy())


def test_bool_outcome_in_parquet(tmp_path: Path, table: pd.DataFrame) -> None:
    frame = table.assign(churned=table["churned"].astype(bool))
    ds = load_dataset(load_config(config_for(tmp_path, frame, name="c.parquet")))
    np.testing.assert_array_equal(ds.churned, table["churned"].to_numpy())


def test_retention_event_is_turned_into_churn(tmp_path: Path, table: pd.DataFrame) -> None:
    frame = table.assign(churned=1 - table["churned"])
    ds = load_dataset(load_config(config_for(tmp_path, frame, data__outcome_event="retention")))
    np.testing.assert_array_equal(ds.churned, table["churned"].to_numpy())


def test_messy_real_world_csv(tmp_path: Path) -> None:
    """BOM, CRLF, numbers stored as text with blanks, TRUE/FALSE booleans."""
    rows = ["customer_id,TotalCharges,Partner,arm,churned"]
    groups = ["control", "discount_20", "free_upgrade", "webinar"]
    for i in range(40):
        charges = " " if i % 10 == 3 else f"{20 + i}.5"
        rows.append(f"{i:04d},{charges},{'TRUE' if i % 3 else 'FALSE'},{groups[i % 4]},"
                    f"{'Yes' if i % 8 < 4 else 'No'}")
    (tmp_path / "messy.csv").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode() + b"\r\n")
    path = config_for(tmp_path, name="messy.csv", data__value=None, arms__1__eligible=None)
    ds = load_dataset(load_config(path))
    assert ds.frame["customer_id"].iloc[0] == "0000"  # ids stay text
    charges = ds.frame["TotalCharges"]
    assert pd.api.types.is_float_dtype(charges)
    assert charges.isna().sum() == 4
    assert ds.categorical == ("Partner",)
    assert ds.churned.sum() == 20


def test_all_missing_column_is_dropped_under_auto(tmp_path: Path, table: pd.DataFrame) -> None:
    ds = load_dataset(load_config(config_for(tmp_path, table.assign(empty=np.nan))))
    assert "empty" not in ds.features
    assert any("'empty' is empty in every row" in note for note in ds.notes)


def test_row_ids_when_the_table_has_no_id(tmp_path: Path, table: pd.DataFrame) -> None:
    ds = load_dataset(load_config(config_for(tmp_path, table.drop(columns="customer_id"),
                                             data__id=None)))
    assert ds.id_column == "row"
    assert ds.frame["row"].tolist() == list(range(1, len(table) + 1))


@pytest.mark.parametrize(
    ("change", "keys", "expected"),
    [
        (lambda t: t.drop(columns="arm"), {}, "column 'arm': not found (data.treatment)"),
        (lambda t: t.rename(columns={"churned": "churn"}), {},
         "column 'churned': not found (data.outcome) (did you mean 'churn'?)"),
        (lambda t: t, {"data__value": "revenue"}, "column 'revenue': not found (data.value)"),
        (lambda t: t, {"data__features": ["plan", "tenure"]},
         "column 'tenure': not found (data.features[1]) (did you mean 'tenure_months'?)"),
        (lambda t: t.assign(churned=t["churned"].astype(str).where(t.index != 5, "maybe")), {},
         "column 'churned': value 'maybe' is not an outcome (row 6, id C000005)"),
        (lambda t: t.assign(churned=t["churned"].where(t.index != 9)), {},
         "column 'churned': a missing value is not an outcome (row 10, id C000009)"),
        (lambda t: t.assign(churned=t["churned"].where(t.index != 2, 2)), {},
         "column 'churned': value '2' is not an outcome (row 3"),
        (lambda t: t.assign(arm=t["arm"].where(t.index != 7, "discout_20")), {},
         "column 'arm': value 'discout_20' is not the control or an arm (did you mean "
         "'discount_20'?) (row 8)"),
        (lambda t: t.assign(arm=t["arm"].where(t.index != 4)), {},
         "column 'arm': missing group row 5"),
        (lambda t: t.assign(customer_id=t["customer_id"].where(t.index != 3, "C000001")), {},
         "column 'customer_id': duplicate id 'C000001' (2 rows share an id)"),
        (lambda t: t[t["arm"] != "webinar"], {}, "column 'arm': group 'webinar' has no rows"),
        (lambda t: t.assign(churned=t["churned"].where(t["arm"] != "webinar", 0)), {},
         "column 'churned': group 'webinar' has no churned customers"),
        (lambda t: t.assign(monthly_revenue=t["monthly_revenue"].where(t.index != 1, -3)), {},
         "column 'monthly_revenue': negative value -3 (row 2)"),
        (lambda t: t.assign(monthly_revenue=t["monthly_revenue"].astype(str)
                            .where(t.index != 1, "abc")), {},
         "column 'monthly_revenue': must be numeric, found 'abc'"),
        (lambda t: t.assign(monthly_revenue=t["monthly_revenue"].where(t.index != 0)), {},
         "column 'monthly_revenue': missing value row 1"),
        (lambda t: t.assign(empty=np.nan), {"data__features": ["plan", "empty"]},
         "column 'empty': is empty in every row"),
        (lambda t: t, {"arms__1__eligible": {"seats": {"min": 2}}},
         "column 'seats': not found (arms[free_upgrade].eligible)"),
        (lambda t: t, {"arms__1__eligible": {"plan": {"min": 2}}},
         "column 'plan': arms[free_upgrade].eligible uses min/max but the column is not numeric"),
        (lambda t: t.iloc[:0], {}, "the table has no rows"),
    ],
)
def test_bad_data_names_file_column_and_value(
    tmp_path: Path, table: pd.DataFrame, change: object, keys: dict, expected: str
) -> None:
    found = problems(config_for(tmp_path, change(table), **keys))
    assert len(found) == 1, found
    assert found[0].startswith("customers.csv: ") or "customers.csv: " in found[0]
    assert expected in found[0], found


def test_every_problem_is_collected(tmp_path: Path, table: pd.DataFrame) -> None:
    frame = table.assign(
        churned=table["churned"].astype(str).where(table.index != 5, "maybe"),
        monthly_revenue=table["monthly_revenue"].where(table.index != 1, -3),
        customer_id=table["customer_id"].where(table.index != 3, "C000001"),
    )
    found = problems(config_for(tmp_path, frame))
    assert len(found) == 3
    with pytest.raises(DataError, match=r"\(and 2 more; run uplift validate\)"):
        load_dataset(load_config(config_for(tmp_path, frame)))


def test_unparseable_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "customers.parquet").write_bytes(b"not a parquet file")
    found = problems(config_for(tmp_path, name="customers.parquet"))
    assert len(found) == 1
    assert "customers.parquet: cannot read the table (" in found[0]
