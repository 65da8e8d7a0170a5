"""Numbers and tables as the readout, reports and estimates show them (one place, one style).

Each result lays itself out once as a :class:`Table` (formatted cells) plus
:class:`Paragraph` notes; the CLI, the Markdown and the HTML report only render those,
so a figure reads the same wherever it appears.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field


def pct(x: float | None, missing: str = "n/a") -> str:
    """A rate as a percentage: ``0.2734`` -> ``27.34%``."""
    return f"{100 * x:.2f}%" if _finite(x) else missing


def pp(x: float | None, missing: str = "n/a") -> str:
    """A difference of rates in signed percentage points: ``0.012`` -> ``+1.20 pp``."""
    return f"{100 * x:+.2f} pp" if _finite(x) else missing


# Said after a cost where a net value would stand: without ``data.value`` a kept customer
# is worth nothing, so the "net value" would be minus the cost.
NO_NET_VALUE = "(no data.value: no net value)"


def money(x: float | None, missing: str = "n/a") -> str:
    """An amount with thousands separators and cents."""
    return f"{x:,.2f}" if _finite(x) else missing


def gain(x: float | None, missing: str = "n/a") -> str:
    """A difference of money with its sign: ``+1,234.50``, ``-0.88``."""
    return f"{x:+,.2f}" if _finite(x) else missing


def pval(x: float | None, missing: str = "n/a") -> str:
    """A p-value with four decimals, or ``<0.0001``."""
    if not _finite(x):
        return missing
    return "<0.0001" if x < 1e-4 else f"{x:.4f}"


def number(x: float | None, missing: str = "") -> str:
    """A score with four decimals (Qini, AUUC)."""
    return f"{x:.4f}" if _finite(x) else missing


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def interval(low: float | None, high: float | None,
             fmt: Callable[[float | None], str]) -> str:
    """``[low, high]`` in ``fmt``; empty when either end is missing or not finite."""
    if not (_finite(low) and _finite(high)):
        return ""
    return f"[{fmt(low)}, {fmt(high)}]"


def with_interval(value: float | None, low: float | None, high: float | None,
                  fmt: Callable[[float | None], str]) -> str:
    """``value [low, high]``, the interval left out when it has no finite ends."""
    ci = interval(low, high, fmt)
    return f"{fmt(value)} {ci}" if ci else fmt(value)


def metric_with_interval(metrics: Mapping[str, float], name: str,
                         fmt: Callable[[float | None], str]) -> str:
    """Metric ``name`` with its ``_ci_low`` / ``_ci_high`` companions, as :func:`with_interval`."""
    return with_interval(metrics.get(name), metrics.get(f"{name}_ci_low"),
                         metrics.get(f"{name}_ci_high"), fmt)


@dataclass(frozen=True)
class Paragraph:
    """A sentence or two that goes with a result; ``kind`` is ``""``, ``"note"`` or ``"warn"``."""

    text: str
    kind: str = ""

    def to_markdown(self) -> str:
        """The text as a Markdown paragraph (bold when it is a warning)."""
        text = markdown_text(self.text)
        return f"**{text}**" if self.kind == "warn" else text


@dataclass(frozen=True)
class Table:
    """A result laid out for display: header, formatted cells, right-aligned columns.

    Attributes:
        header: Column titles.
        rows: Formatted cells, one tuple per row.
        numeric: Positions of right-aligned (number) columns.
        highlight: Positions of rows to emphasise (the selected learner).
        title: A caption the terminal view prints above the table.
    """

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...] = ()
    numeric: frozenset[int] = field(default_factory=frozenset)
    highlight: frozenset[int] = field(default_factory=frozenset)
    title: str = ""

    @classmethod
    def build(cls, header: Sequence[str], rows: Iterable[Sequence[str]],
              numeric: Iterable[int] = (), highlight: Iterable[int] = (),
              title: str = "") -> Table:
        """A table from any sequences (cells converted to text)."""
        return cls(tuple(header), tuple(tuple(str(c) for c in row) for row in rows),
                   frozenset(numeric), frozenset(highlight), title)

    def to_markdown(self) -> str:
        """The table in Markdown (highlighted rows bold)."""
        return markdown_table(self.header, self.rows, self.numeric, self.highlight)


def markdown_text(text: str) -> str:
    """Text with Markdown's emphasis, code and HTML characters escaped."""
    for char in "\\*`":
        text = text.replace(char, "\\" + char)
    return text.replace("<", "&lt;").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]],
                   numeric: Iterable[int] = (), highlight: Iterable[int] = ()) -> str:
    """A Markdown table: escaped cells, numeric columns right-aligned, highlighted rows bold."""
    numeric, highlight = set(numeric), set(highlight)

    def cell(text: object) -> str:
        return markdown_text(str(text)).replace("|", "\\|")

    align = ["---:" if j in numeric else "---" for j in range(len(header))]
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    for i, row in enumerate(rows):
        cells = [cell(c) for c in row]
        if i in highlight:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_markdown(table: Table, paragraphs: Sequence[Paragraph] = ()) -> str:
    """A table followed by its paragraphs, as one Markdown block."""
    parts = [table.to_markdown()] + [p.to_markdown() + "\n" for p in paragraphs]
    return "\n".join(parts)
