"""Numbers as the readout, reports and estimates show them (one place, one style)."""

from __future__ import annotations

import math


def pct(x: float, missing: str = "n/a") -> str:
    """A rate as a percentage: ``0.2734`` -> ``27.34%``."""
    return f"{100 * x:.2f}%" if math.isfinite(x) else missing


def pp(x: float, missing: str = "n/a") -> str:
    """A difference of rates in signed percentage points: ``0.012`` -> ``+1.20 pp``."""
    return f"{100 * x:+.2f} pp" if math.isfinite(x) else missing


def money(x: float, missing: str = "n/a") -> str:
    """An amount with thousands separators and cents."""
    return f"{x:,.2f}" if math.isfinite(x) else missing


def pval(x: float, missing: str = "n/a") -> str:
    """A p-value with four decimals, or ``<0.0001``."""
    if not math.isfinite(x):
        return missing
    return "<0.0001" if x < 1e-4 else f"{x:.4f}"
