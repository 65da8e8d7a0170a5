"""The experiment config: pydantic models of the YAML schema and ``load_config``.

Every key is validated; unknown keys are rejected with a did-you-mean hint; paths
are resolved relative to the config file. All problems are collected so that
``uplift validate`` can list them at once; pydantic's own wording never reaches
the user (see :func:`_problems_from_validation`).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError, Problem, did_you_mean

ArmKind = Literal["discount", "free_upgrade", "webinar", "other"]
LearnerName = Literal["s", "gam", "t", "x", "r", "dr", "uplift_forest", "uplift_tree"]
Correction = Literal["holm", "bonferroni", "fdr_bh", "none"]
CupedMethod = Literal["linear", "model"]
LEARNERS: tuple[str, ...] = typing.get_args(LearnerName)
CORRECTIONS: tuple[str, ...] = typing.get_args(Correction)
CUPED_METHODS: tuple[str, ...] = typing.get_args(CupedMethod)
DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
_PERIOD_RE = re.compile(r"^(\d{4})-(\d{2})$")
# n_control, n_customers, churn_rate_observed are fixed metric names.
RESERVED_ARM_NAMES = frozenset({"control", "customers", "observed"})
# Arm names become MLflow metric names (ate_<arm>) and column names (uplift_<arm>).
_ARM_NAME_RE = re.compile(r"^[A-Za-z0-9_\-. /]+$")


def parse_period(value: str) -> tuple[int, int]:
    """Return (year, month) of a ``YYYY-MM`` period, raising ValueError otherwise."""
    match = _PERIOD_RE.match(value) if isinstance(value, str) else None
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"must be a period 'YYYY-MM', got {value!r}")
    return int(match.group(1)), int(match.group(2))


def previous_period(period: str) -> str:
    """The month before ``period`` (``2026-01`` -> ``2025-12``)."""
    year, month = parse_period(period)
    year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return f"{year:04d}-{month:02d}"


def _period(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a period 'YYYY-MM' in quotes, got {value!r}")
    parse_period(value)
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FilterConfig(_Model):
    """One eligibility filter on a column: ``in``, ``not_in``, ``min`` and/or ``max``."""

    in_: list[Any] | None = Field(default=None, alias="in")
    not_in: list[Any] | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_operator(self) -> FilterConfig:
        if self.in_ is None and self.not_in is None and self.min is None and self.max is None:
            raise ValueError("needs at least one of 'in', 'not_in', 'min', 'max'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g})")
        return self


class CostConfig(_Model):
    """What an offer costs: a fixed amount per offer made, plus a revenue share paid by stayers."""

    fixed: float = Field(default=0.0, ge=0)
    revenue_share: float = Field(default=0.0, ge=0, le=1)
    months: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _months_with_share(self) -> CostConfig:
        if self.revenue_share > 0 and self.months is None:
            raise ValueError("'months' is required with a revenue_share (how long it is given)")
        return self

    @property
    def share_months(self) -> float:
        """Months the revenue share is given for (0 without a share)."""
        return self.months or 0.0


class ArmConfig(_Model):
    """One retention offer of the test."""

    name: str
    kind: ArmKind = "other"
    cost: CostConfig = CostConfig()
    eligible: dict[str, FilterConfig] | None = None

    @field_validator("name")
    @classmethod
    def _name_chars(cls, value: str) -> str:
        if not value or not _ARM_NAME_RE.match(value):
            raise ValueError(
                f"arm name {value!r} may use only letters, digits, '_', '-', '.', ' ' and '/'"
            )
        return value


class SimulateConfig(_Model):
    """Simulated data for demos: how many customers and the seed."""

    customers: int = Field(ge=100)
    seed: int = Field(default=0, ge=0)


class DataConfig(_Model):
    """Where the customer table is and what its columns mean."""

    path: str | None = None
    simulate: SimulateConfig | None = None
    id: str | None = "customer_id"
    treatment: str = "arm"
    outcome: str = "churned"
    outcome_event: Literal["churn", "retention"] = "churn"
    value: str | None = None
    features: Literal["auto"] | list[str] = "auto"
    categorical: list[str] | None = None


# ``model.folds: auto``: cross-fit small tests, where a single split's held-out rows are
# too few to rank candidates on; above the limit a 30 % split holds out 90,000 rows or
# more, and cross-fitting would multiply the fit time of the largest runs by the folds.
AUTO_FOLDS = 3
AUTO_FOLDS_MAX_ROWS = 300_000


class ModelConfig(_Model):
    """Which uplift learners to try and how to hold data out for choosing among them."""

    learners: list[LearnerName] = Field(
        default_factory=lambda: ["s", "gam"], min_length=1
    )
    base: Literal["lightgbm", "xgboost"] = "lightgbm"
    test_size: float = Field(default=0.3, gt=0, lt=1)
    """Held-out share of the single split used when ``folds`` is 1."""
    folds: Annotated[int, Field(ge=1, le=10)] | Literal["auto"] = "auto"
    """Cross-fitting folds: every row is scored by models fitted without it (1: one split).

    ``auto``: 3 folds up to ``AUTO_FOLDS_MAX_ROWS`` rows, one split of ``test_size``
    above, where the held-out share alone holds 90,000 rows or more.
    """
    seed: int = Field(default=42, ge=0)
    select_by: Literal["qini", "policy_value"] = "policy_value"
    ensemble: bool = True  # the average of the first two learners is a candidate (the favourite)
    params: dict[str, dict[str, int | float | bool | str]] = Field(default_factory=dict)
    """Settings passed to a learner's models, keyed by learner name (or ``churn_risk``)."""

    def fold_count(self, n_rows: int) -> int:
        """The number of folds to cross-fit ``n_rows`` rows with (1: one held-out split)."""
        if self.folds != "auto":
            return self.folds
        return AUTO_FOLDS if n_rows <= AUTO_FOLDS_MAX_ROWS else 1


class PolicyConfig(_Model):
    """How offers are chosen per customer: objective, budget, capacity, holdout."""

    objective: Literal["net_value", "churn_reduction"] = "net_value"
    budget: float | None = Field(default=None, ge=0)
    capacity: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    min_net_value: float = 0.0
    holdout: float = Field(default=0.05, ge=0, lt=1)
    require_ci_above_zero: bool = False
    """Recommend offers only when the honest interval of the objective lies above zero."""


class CupedConfig(_Model):
    """The covariate-adjusted readout: which pre-treatment columns, and how they are used."""

    enabled: bool = True
    method: CupedMethod = "linear"
    covariates: Literal["auto"] | list[str] = "auto"
    exclude: list[str] = Field(default_factory=list)
    folds: int = Field(default=5, ge=2, le=20)
    params: dict[str, int | float | bool | str] = Field(default_factory=dict)
    """LightGBM settings of the ``model`` method's churn model."""


class AnalysisConfig(_Model):
    """Statistics of the RCT readout and of the power analysis."""

    alpha: float = Field(default=0.05, gt=0, lt=1)
    power: float = Field(default=0.8, gt=0, lt=1)
    correction: Correction = "holm"
    mde: float = Field(default=0.02, gt=0, lt=1)
    srm_threshold: float = Field(default=0.001, gt=0, lt=1)
    on_srm: Literal["warn", "fail"] = "warn"
    cuped: CupedConfig = CupedConfig()


class BaselineConfig(_Model):
    """Fallback baseline when no run exists for the baseline period."""

    churn_rate: float | None = Field(default=None, ge=0, le=1)


# The schemes of the stores MLflow keeps runs and registered models in; a database URI's
# driver suffix (``postgresql+psycopg2``) does not count.
TRACKING_SCHEMES = ("file", "sqlite", "http", "https", "postgresql", "mysql", "mssql",
                    "databricks", "databricks-uc", "uc")


def tracking_uri_problem(uri: str) -> str | None:
    """Why MLflow cannot keep runs at ``uri`` (an unknown scheme), or None.

    Checked before anything runs: MLflow would only fail when the run is to be logged.
    A plain path (no scheme, or a drive letter) is a local folder, which MLflow takes;
    schemes of installed tracking-store plugins are taken too.
    """
    scheme = urlsplit(uri).scheme.split("+")[0].lower()
    if scheme in ("", *TRACKING_SCHEMES, *_plugin_schemes()) or len(scheme) == 1:
        return None
    return (f"MLflow cannot keep runs at {uri!r}: unknown scheme {scheme!r} (use "
            f"{', '.join(s + '://' for s in TRACKING_SCHEMES)} or a folder)")


def _plugin_schemes() -> tuple[str, ...]:
    """Schemes that installed MLflow plugins add (``azureml``, say), by their entry points."""
    from importlib.metadata import entry_points

    return tuple(ep.name.lower() for ep in entry_points(group="mlflow.tracking_store"))


class TrackingConfig(_Model):
    """MLflow store and registered model name."""

    uri: str | None = None
    registered_model: str = Field(default="retention-uplift", min_length=1)

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        problem = None if value is None else tracking_uri_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class ExperimentConfig(_Model):
    """A whole experiment config (SPEC section 3), validated and with resolved paths."""

    name: str = Field(min_length=1)
    period: str | None = None
    baseline_period: str | None = None
    description: str | None = None
    data: DataConfig
    control: str = Field(default="control", min_length=1)
    arms: list[ArmConfig] = Field(min_length=1)
    allocation: dict[str, float] | None = None
    value_horizon_months: float = Field(default=12.0, gt=0)
    model: ModelConfig = ModelConfig()
    policy: PolicyConfig = PolicyConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    baseline: BaselineConfig = BaselineConfig()
    tracking: TrackingConfig = TrackingConfig()

    _source: str | None = PrivateAttr(default=None)
    _sha256: str | None = PrivateAttr(default=None)

    @field_validator("period", "baseline_period", mode="before")
    @classmethod
    def _check_period(cls, value: Any) -> str | None:
        return None if value is None else _period(value)

    @property
    def arm_names(self) -> list[str]:
        """Offer names in config order (the control excluded)."""
        return [arm.name for arm in self.arms]

    @property
    def groups(self) -> list[str]:
        """The control followed by every offer."""
        return [self.control, *self.arm_names]

    @property
    def source(self) -> str | None:
        """The config file as the user named it (for messages), if loaded from a file."""
        return self._source

    @property
    def sha256(self) -> str | None:
        """sha256 of the config file's bytes, if loaded from a file."""
        return self._sha256

    def arm(self, name: str) -> ArmConfig:
        """The offer called ``name``."""
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)

    def resolved_baseline_period(self, period: str | None = None) -> str | None:
        """``baseline_period``, else the month before ``period`` (or the config's period)."""
        if self.baseline_period:
            return self.baseline_period
        period = period or self.period
        return previous_period(period) if period else None


# --------------------------------------------------------------------------- loading


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as short as it can be said: relative to the working directory when inside it."""
    path = Path(path)
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if not rel.startswith("..") else str(path)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping.

    Plain YAML keeps the last of two equal keys, so a setting written twice would be
    silently replaced by the one further down. Keys merged in with ``<<`` may be
    overridden: only the keys written in the mapping itself count.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            if isinstance(key, typing.Hashable):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_config_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], bytes]:
    """Read and parse a YAML config file into a mapping; raise ConfigError if impossible."""
    shown = str(path)
    file = Path(path)
    if not file.is_file():
        reason = "is a folder, not a config file" if file.is_dir() else "file not found"
        raise ConfigError(Problem(shown, "", reason))
    try:
        raw_bytes = file.read_bytes()
        text = raw_bytes.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(Problem(shown, "", f"cannot read the file ({exc})")) from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(Problem(shown, where, f"invalid YAML: {what}")) from None
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else f"a {type(raw).__name__}"
        raise ConfigError(Problem(shown, "", f"expected a mapping of keys, the file is {kind}"))
    return raw, raw_bytes


def check_config(
    raw: Mapping[str, Any], source: str | None = None, base_dir: Path | None = None,
    *, data_file: bool = True,
) -> tuple[ExperimentConfig | None, list[Problem]]:
    """Validate a parsed config mapping; return the config (or None) and every problem found.

    Args:
        raw: The parsed YAML mapping.
        source: The config file as the user named it, used in problem messages.
        base_dir: Folder that relative ``data.path`` values are resolved against.
        data_file: Whether ``data.path`` must exist. Scoring with a model needs its
            economics, not the table it was trained on, which may since have moved.
    """
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        problems = _problems_from_validation(exc, raw, source)
        return None, problems
    if base_dir is not None and cfg.data.path is not None:
        resolved = (base_dir / Path(cfg.data.path).expanduser()).resolve()
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": str(resolved)})})
    problems = _semantic_problems(cfg, source, data_file=data_file)
    return (None if problems else cfg), problems


def collect_config_problems(
    path: str | os.PathLike[str], *, data_file: bool = True,
) -> tuple[ExperimentConfig | None, list[Problem]]:
    """Load a config file, returning it (if valid) and every problem found, without raising."""
    try:
        raw, raw_bytes = read_config_file(path)
    except ConfigError as exc:
        return None, exc.problems
    cfg, problems = check_config(raw, str(path), Path(path).resolve().parent,
                                 data_file=data_file)
    if cfg is not None:
        cfg._source = str(path)
        cfg._sha256 = hashlib.sha256(raw_bytes).hexdigest()
    return cfg, problems


def load_config(path: str | os.PathLike[str], *, data_file: bool = True) -> ExperimentConfig:
    """Load and validate an experiment config file.

    Args:
        path: The YAML file. Relative paths inside it are resolved against its folder.
        data_file: Whether ``data.path`` must exist (see :func:`check_config`).

    Returns:
        The validated config, with ``data.path`` absolute and the file's sha256 kept.

    Raises:
        ConfigError: naming the file and key of the first problem (and how many more).
    """
    cfg, problems = collect_config_problems(path, data_file=data_file)
    if problems or cfg is None:
        raise ConfigError(problems or [Problem(str(path), "", "invalid config")])
    return cfg


# --------------------------------------------------------------------------- problems


def _semantic_problems(cfg: ExperimentConfig, source: str | None, *, data_file: bool = True
                       ) -> list[Problem]:
    """Checks across keys that pydantic's per-field validation cannot express."""
    out: list[Problem] = []

    def add(where: str, message: str) -> None:
        out.append(Problem(source, where, message))

    data = cfg.data
    if (data.path is None) == (data.simulate is None):
        add("data", "give exactly one of 'path' (a .csv or .parquet file) or 'simulate'")
    if data.path is not None:
        path = Path(data.path)
        if not any(path.name.lower().endswith(s) for s in DATA_SUFFIXES):
            add("data.path", f"must end in .csv, .csv.gz or .parquet, got {path.name!r}")
        elif data_file and not path.is_file():
            add("data.path", f"file not found: {display_path(path)}")
    roles = {"id": data.id, "treatment": data.treatment, "outcome": data.outcome}
    if data.value is not None:
        roles["value"] = data.value
    seen: dict[str, str] = {}
    for role, column in roles.items():
        if column in seen:
            add(f"data.{role}", f"column {column!r} is already the {seen[column]} column")
        elif column is not None:
            seen[column] = role
    if isinstance(data.features, list):
        for i, feature in enumerate(data.features):
            if feature in (data.id, data.treatment, data.outcome):
                add(f"data.features[{i}]", f"{feature!r} is the {seen[feature]} column")
        if len(set(data.features)) != len(data.features):
            dup = sorted({f for f in data.features if data.features.count(f) > 1})
            add("data.features", f"listed twice: {', '.join(map(repr, dup))}")
        for i, cat in enumerate(data.categorical or []):
            if cat not in data.features:
                add(f"data.categorical[{i}]", f"{cat!r} is not one of data.features")

    names = cfg.arm_names
    for i, name in enumerate(names):
        if name == cfg.control:
            add(f"arms[{i}].name", f"{name!r} is the control's name; offers need other names")
        elif name in RESERVED_ARM_NAMES:
            add(f"arms[{i}].name", f"{name!r} is reserved (metric names such as "
                f"n_{name} would clash); choose another name")
        elif names.index(name) != i:
            add(f"arms[{i}].name", f"{name!r} is used by more than one arm")

    if cfg.allocation is not None:
        for key, message in allocation_problems(cfg.allocation, cfg.groups):
            add(f"allocation.{key}" if key else "allocation", message)

    out.extend(_cuped_problems(cfg, source))

    for key in cfg.policy.capacity:
        if key not in names:
            add(f"policy.capacity.{key}", f"not an offer{did_you_mean(key, names)}")

    if cfg.period and cfg.baseline_period and cfg.baseline_period >= cfg.period:
        add("baseline_period", f"{cfg.baseline_period!r} is not before period {cfg.period!r}")
    if len(set(cfg.model.learners)) != len(cfg.model.learners):
        add("model.learners", "a learner is listed twice")
    for key in cfg.model.params:
        if key not in (*cfg.model.learners, "churn_risk"):
            add(f"model.params.{key}", "not one of model.learners or churn_risk"
                f"{did_you_mean(key, [*cfg.model.learners, 'churn_risk'])}")
    return out


def run_problems(cfg: ExperimentConfig) -> list[Problem]:
    """What a run (models and a policy) needs of a valid config beyond what a readout needs.

    Without monthly revenue (``data.value``) no kept customer has a value and no discount
    has a cost: the net-value objective means nothing and a revenue-share offer would
    look free. (:func:`uplift.learners.settings_problems` checks the learners' settings.)
    """
    if cfg.data.value is not None:
        return []
    out: list[Problem] = []
    if cfg.policy.objective == "net_value":
        out.append(Problem(cfg.source, "data.value", (
            "a value column (monthly revenue) is needed for policy.objective net_value; "
            "name it, or use policy.objective churn_reduction")))
    for i, arm in enumerate(cfg.arms):
        if arm.cost.revenue_share > 0:
            out.append(Problem(cfg.source, f"arms[{i}].cost.revenue_share", (
                f"{arm.name!r} costs a share of monthly revenue, which needs data.value "
                "(the revenue column); without it the offer would look free")))
    return out


def _cuped_problems(cfg: ExperimentConfig, source: str | None) -> list[Problem]:
    """Covariates may never be the id, the group or the outcome, nor be listed twice."""
    out: list[Problem] = []
    data, cuped = cfg.data, cfg.analysis.cuped
    roles = {data.id: "id", data.treatment: "treatment", data.outcome: "outcome"}
    roles.pop(None, None)
    for i, column in enumerate(cuped.exclude):
        if column in roles:
            out.append(Problem(source, f"analysis.cuped.exclude[{i}]", (
                f"{column!r} is the {roles[column]} column, which is never a covariate; "
                "remove it from the list")))
    if isinstance(cuped.covariates, list):
        for i, column in enumerate(cuped.covariates):
            where = f"analysis.cuped.covariates[{i}]"
            if column in roles:
                out.append(Problem(source, where, (
                    f"{column!r} is the {roles[column]} column; an adjustment never uses it")))
            elif column in cuped.exclude:
                out.append(Problem(source, where, f"{column!r} is also in analysis.cuped.exclude"))
            elif cuped.covariates.index(column) != i:
                out.append(Problem(source, where, f"{column!r} is listed twice"))
    return out


def allocation_problems(allocation: Mapping[str, float], groups: list[str]
                        ) -> list[tuple[str, str]]:
    """What is wrong with planned shares: ``(group or "", message)`` pairs, empty when none.

    Every group needs a share strictly between 0 and 1, no other key may appear, and
    the shares must sum to 1.
    """
    out: list[tuple[str, str]] = []
    unknown = [key for key in allocation if key not in groups]
    for key, share in allocation.items():
        if key not in groups:
            out.append((str(key), f"not an arm or the control{did_you_mean(key, groups)}"))
        elif not _share(share):
            shown = f"{share:g}" if isinstance(share, (int, float)) else repr(share)
            out.append((str(key),
                        f"share must be between 0 and 1 (positive, below 1), got {shown}"))
    missing = [g for g in groups if g not in allocation]
    if missing:
        out.append(("", f"no share for {', '.join(map(repr, missing))}"))
    if not missing and not unknown:
        total = sum(float(v) for v in allocation.values()
                    if isinstance(v, (int, float)) and math.isfinite(v))
        if abs(total - 1.0) > 1e-6:
            out.append(("", f"shares must sum to 1, they sum to {total:.6g}"))
    return out


def check_allocation(allocation: Mapping[str, float], groups: list[str]) -> dict[str, float]:
    """Planned shares in ``groups`` order, renormalized; ValueError on the first problem."""
    if not isinstance(allocation, Mapping):
        raise ValueError(f"allocation must map group names to shares, got {allocation!r}")
    problems = allocation_problems(allocation, groups)
    if problems:
        key, message = problems[0]
        raise ValueError(f"allocation{'.' + key if key else ''}: {message}")
    total = sum(float(allocation[g]) for g in groups)
    return {g: float(allocation[g]) / total for g in groups}


def _share(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and 0 < value < 1


def _render_loc(loc: tuple[Any, ...], raw: Any) -> str:
    """``('arms', 1, 'cost', 'fixd')`` -> ``arms[1].cost.fixd`` (the key path as written)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _fields_at(loc: tuple[Any, ...]) -> list[str] | None:
    """The keys the schema allows at the mapping ``loc`` points into (None if not a model)."""
    annotation: Any = ExperimentConfig
    for part in loc:
        model = _model_of(annotation)
        if model is not None and isinstance(part, str):
            field = _field_by_key(model, part)
            if field is None:
                return None
            annotation = field.annotation
            continue
        args = [a for a in typing.get_args(_strip_optional(annotation)) if a is not type(None)]
        if not args:
            return None
        annotation = args[-1]  # list[X] -> X, dict[str, X] -> X
    model = _model_of(annotation)
    if model is None:
        return None
    return [f.alias or name for name, f in model.model_fields.items()]


def _strip_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        non_literal = [a for a in args if typing.get_origin(a) is not Literal]
        if len(non_literal) == 1:
            return non_literal[0]
    return annotation


def _model_of(annotation: Any) -> type[BaseModel] | None:
    annotation = _strip_optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _field_by_key(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field
    return None


def _elsewhere(loc: tuple[Any, ...]) -> str:
    """A hint for a known key put at the wrong level, e.g. top-level ``features``."""
    if len(loc) != 1:
        return ""
    for name, field in ExperimentConfig.model_fields.items():
        model = _model_of(field.annotation)
        if model is not None and loc[0] in (_fields_at((name,)) or []):
            return f" (did you mean '{name}.{loc[0]}'?)"
    return ""


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _problems_from_validation(
    exc: ValidationError, raw: Mapping[str, Any], source: str | None
) -> list[Problem]:
    """Turn pydantic's errors into our one-line problems, one per location."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # Union members ("list[str]" vs "literal") add their own loc parts; drop them.
        loc = tuple(
            p for p in loc if not (isinstance(p, str) and (
                "[" in p or p in ("literal", "str") or p.startswith("constrained-")))
        )
        kind = err["type"]
        value = err.get("input")
        ctx = err.get("ctx") or {}
        if kind == "extra_forbidden":
            allowed = _fields_at(loc[:-1]) or []
            message = f"unknown key{did_you_mean(loc[-1], allowed) or _elsewhere(loc)}"
        elif kind == "missing":
            message = "required key is missing"
        elif kind in ("literal_error", "enum"):
            choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
            message = f"must be one of {ctx.get('expected')}, got {_describe(value)}"
            message += did_you_mean(value, choices)
        elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
                  "less_than_equal": "<="}[kind]
            bound = next(iter(ctx.values()))
            shown = f"{bound:g}" if isinstance(bound, (int, float)) else str(bound)
            message = f"must be {op} {shown}, got {_describe(value)}"
        elif kind.startswith(("float_", "int_")) or kind in ("finite_number",):
            whole = "a whole number" if kind.startswith("int_") else "a number"
            message = f"must be {whole}, got {_describe(value)}"
        elif kind in ("string_type", "string_too_short"):
            message = f"must be a non-empty text value, got {_describe(value)}"
            if isinstance(value, bool):  # YAML reads yes / no / on / off unquoted as booleans
                message += " (YAML reads an unquoted yes, no, on or off as true or false: quote it)"
        elif kind in ("list_type", "too_short"):
            message = (
                "must be a non-empty list" if kind == "too_short"
                else f"must be a list, got {_describe(value)}"
            )
        elif kind in ("model_type", "dict_type", "model_attributes_type"):
            message = f"must be a mapping of keys, got {_describe(value)}"
        elif kind == "value_error":
            message = str(ctx.get("error", err["msg"]))
        else:
            message = f"invalid value {_describe(value)}"
        where = _render_loc(loc, raw)
        key = f"{where}|{message}"
        if key in seen:
            continue
        seen.add(key)
        # A union (e.g. features: auto | list) reports once per member; keep the first,
        # naming a literal member's choices too (folds: a whole number or 'auto').
        earlier = next((i for i, p in enumerate(problems) if p.where == where), None)
        if earlier is not None and kind != "extra_forbidden":
            first = problems[earlier]
            if kind == "literal_error" and ", got " in first.message:
                head, tail = first.message.split(", got ", 1)
                problems[earlier] = replace(first, message=f"{head} or {ctx.get('expected')}, "
                                                           f"got {tail}")
            continue
        problems.append(Problem(source, where, message))
    return problems
