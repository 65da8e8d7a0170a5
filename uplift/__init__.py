"""Retention experiment and uplift modeling toolkit.

The public API, for notebooks and scripts (the ``uplift`` CLI is a thin layer over it)::

    from uplift import load_config, load_dataset, analyze_dataset, simulate_customers

    cfg = load_config("experiments/demo.yaml")
    readout = analyze_dataset(load_dataset(cfg), cfg)
    readout.to_frame()

Submodules: ``config``, ``data``, ``tables``, ``simulate``, ``assignment``, ``analysis``,
``adjustment``, ``design``, ``learners``, ``models``, ``evaluation``, ``training``,
``policy``, ``optimize``, ``offpolicy``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_config": "config",
    "ExperimentConfig": "config",
    "load_dataset": "data",
    "Dataset": "data",
    "simulate_customers": "simulate",
    "analyze_rct": "analysis",
    "analyze_dataset": "analysis",
    "adjust_effects": "adjustment",
    "adjust_dataset": "adjustment",
    "solve_sample_size": "design",
    "solve_mde": "design",
    "UpliftModel": "models",
    "ChurnRiskModel": "models",
    "train_models": "training",
    "RetentionModel": "models",
    "build_policy": "policy",
    "assign_offers": "policy",
    "evaluate_policy": "offpolicy",
    "run_experiment": "pipeline",
    "export_recommendations": "export",
    "UpliftError": "errors",
    "InputError": "errors",
    "ConfigError": "errors",
    "DataError": "errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import public names on first use, so the CLI starts fast."""
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
