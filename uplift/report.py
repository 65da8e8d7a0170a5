"""The run report a retention team reviews: HTML and Markdown with PNG plots.

:func:`write_report` writes into one folder ``report.html`` (self-contained: inline
CSS, the plots embedded as data URIs, no JavaScript, no network resources), ``report.md``
(the same content as Markdown), one PNG per plot and ``deciles.csv`` (every candidate's
held-out decile table). Plots are drawn on matplotlib ``Figure`` objects with the Agg
canvas, never through ``pyplot``, so no global backend or figure state changes.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import style
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.ticker import StrMethodFormatter
from scipy.stats import norm

from . import __version__
from .analysis import RctResult
from .background import Background
from .config import ExperimentConfig
from .data import Dataset
from .evaluation import NOBODY, arm_rows, qini_curve
from .formatting import (
    Paragraph,
    Table,
    markdown_table,
    markdown_text,
    pct,
    pp,
    pval,
    with_interval,
)
from .models import uplift_column
from .training import TrainingResult

__all__ = ["SECTIONS", "SUMMARY", "write_report"]

SECTIONS = ("RCT readout", "Candidate learners", "Recommended policy", "Baseline comparison",
            "Plots")
SUMMARY = "Summary"  # the run's findings, above everything, when the caller gives them
_CONTROL_COLOR, _ARM_COLOR, _MODEL_COLOR = "#d95f02", "#1f6fb4", "#1b9e77"
_DPI = 110
_CURVE_POINTS = 1_000  # vertices of a drawn curve, at most
_THOUSANDS = "{x:,.0f}"
# Plots look the same whatever style a caller (or an imported library: causalml sets
# fivethirtyeight on import) made global; the context restores it afterwards.
_STYLE = ["default", {"axes.spines.top": False, "axes.spines.right": False,
                      "axes.titleweight": "bold", "figure.facecolor": "white"}]

_CSS = """body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;
max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #1f6fb4}h2{margin-top:1.8em;color:#1f6fb4}table.meta th{text-align:left}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.92em}th{background:#eef3f8}
th,td{border:1px solid #ccc;padding:.3em .6em}td.num{text-align:right}p.note{color:#555}
tr.hl td{background:#fff4d6;font-weight:600}p.warn{color:#a40000;font-weight:600}
figure{margin:1.2em 0 2em}figure img{max-width:100%;border:1px solid #ddd}
figcaption{color:#444;font-size:.92em;max-width:850px}"""


# --------------------------------------------------------------------------- document


@dataclass(frozen=True)
class _Plot:
    file: str
    title: str
    caption: str


_Block = Paragraph | Table | _Plot


@dataclass
class _Section:
    heading: str
    blocks: list[_Block] = field(default_factory=list)


def _data_uri(path: Path) -> str:
    """A PNG as a ``data:`` URI, so the page needs no other file.

    MLflow shows HTML artifacts in a sandboxed frame where relative paths do not resolve.
    """
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _render_html(title: str, meta: list[tuple[str, str]], sections: list[_Section],
                 folder: Path, lead: list[_Section]) -> str:
    esc = html.escape
    out = ['<!DOCTYPE html>', '<html lang="en">', '<head>', '<meta charset="utf-8">',
           f"<title>{esc(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
           f"<h1>{esc(title)}</h1>"]
    for section in [*lead, None, *sections]:
        if section is None:  # the run's details, after the lead
            out += ['<table class="meta">',
                    *(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in meta),
                    "</table>"]
            continue
        out.append(f"<section>\n<h2>{esc(section.heading)}</h2>")
        for block in section.blocks:
            if isinstance(block, Paragraph):
                cls = f' class="{block.kind}"' if block.kind else ""
                out.append(f"<p{cls}>{esc(block.text)}</p>")
            elif isinstance(block, Table):
                out.append("<table>")
                out.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in block.header) + "</tr>")
                for i, row in enumerate(block.rows):
                    cls = ' class="hl"' if i in block.highlight else ""
                    cells = "".join(
                        f'<td class="num">{esc(c)}</td>' if j in block.numeric else
                        f"<td>{esc(c)}</td>" for j, c in enumerate(row))
                    out.append(f"<tr{cls}>{cells}</tr>")
                out.append("</table>")
            else:
                out += ["<figure>", f"<h3>{esc(block.title)}</h3>",
                        f'<img src="{_data_uri(folder / block.file)}" '
                        f'alt="{esc(block.title)}" data-file="{esc(block.file, quote=True)}">',
                        f"<figcaption>{esc(block.caption)}</figcaption>", "</figure>"]
        out.append("</section>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


def _render_markdown(title: str, meta: list[tuple[str, str]], sections: list[_Section],
                     lead: list[_Section]) -> str:
    out = [f"# {markdown_text(title)}"]
    for section in [*lead, None, *sections]:
        if section is None:  # the run's details, after the lead
            out += [*([""] if out[-1] else []), markdown_table(["field", "value"], meta).rstrip()]
            continue
        out += ["", f"## {markdown_text(section.heading)}", ""]
        for block in section.blocks:
            if isinstance(block, (Paragraph, Table)):
                out += [block.to_markdown().rstrip(), ""]
            else:
                title = markdown_text(block.title)
                out += [f"### {title}", "", f"![{title}]({block.file})", "",
                        f"*{markdown_text(block.caption)}*", ""]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- sections


def _rct_section(rct: RctResult) -> _Section:
    return _Section(SECTIONS[0], [rct.table(), *rct.paragraphs()])


def _candidates_section(training: TrainingResult) -> _Section:
    return _Section(SECTIONS[1], [*training.paragraphs(), training.table()])


def _policy_section(training: TrainingResult) -> _Section:
    est = training.policy_estimate
    policy = training.holdout_policy
    limited = policy.budget is not None or bool(policy.capacity)
    valued = training.valued
    figures = "churn reduction and net value are" if valued else "churn reduction and cost are"
    return _Section(SECTIONS[2], [
        Paragraph(f"Off-policy estimates of offering nobody anything, on {est.n:,} "
                  f"randomized customers ({est.method} estimator with the design's known "
                  "propensities): its churn reduction"
                  + (", cost and net value" if valued else " and cost")
                  + " relative to offering nothing are zero by definition."
                  + (" The policy the run declined is described under Candidate learners."
                     if training.reason == "unproven" else "")
                  if training.recommended == NOBODY else
                  f"Off-policy estimates of choosing the policy the way this run did, "
                  f"which recommends {training.recommended_label}, on {est.n:,} randomized "
                  f"customers ({est.method} estimator with the design's known propensities). "
                  "Each customer is valued under the policy the selection chose without "
                  "them, so the estimate includes the selection; customers whom the export "
                  "treats differently from that policy are then valued by the churn-risk "
                  "model's predictions of the two offers, so the estimate and its shares "
                  f"describe the policy the export applies. {figures.capitalize()} relative "
                  "to giving nobody an offer"
                  + ("." if valued else "; with no customer values (data.value) a kept "
                     "customer is worth nothing, so no net value is shown.")),
        *([Paragraph(training.caution + ".", "warn")] if training.caution else []),
        est.table(valued),
        Paragraph("The recommended offers of the out-of-fold policy (the candidates' "
                  "predictions for customers their models never saw) on the held-out rows"
                  + (", with the config's budget and capacities scaled to the held-out share "
                     "of the customers:" if limited else ":")),
        policy.table(valued),
        *policy.paragraphs(),
    ])


def _baseline_section(cfg: ExperimentConfig, rct: RctResult, training: TrainingResult,
                      baseline: float | None, source: str | None) -> _Section:
    est = training.policy_estimate.churn_rate
    if baseline is not None and not math.isfinite(baseline):
        baseline = None
    rows = [
        ["baseline period", cfg.resolved_baseline_period() or "unknown"],
        ["baseline churn rate", "unknown" if baseline is None else pct(baseline)],
        ["baseline source", source or "unknown"],
        ["observed churn this period (all rows)", pct(rct.churn_rate_observed)],
        ["policy churn rate (held-out estimate)",
         with_interval(est.value, est.ci_low, est.ci_high, pct)],
    ]
    rows.append(["churn reduction vs baseline", "unknown (no baseline churn rate)"
                 if baseline is None else f"{pp(baseline - est.value)} "
                 f"[{pp(baseline - est.ci_high)}, {pp(baseline - est.ci_low)}]"])
    return _Section(SECTIONS[3], [
        Table.build(["", "value"], rows, numeric={1}),
        Paragraph("Churn reduction vs baseline = baseline churn rate - the policy's estimated "
                  "churn rate, in percentage points (positive = fewer churn than last "
                  "period); the interval carries the policy estimate's uncertainty only.",
                  "note"),
    ])


# --------------------------------------------------------------------------- plots


def _label_bars(ax: Axes, x: np.ndarray, tops: Sequence[float], texts: Sequence[str]) -> None:
    """Write ``texts`` just above the points ``(x, tops)``."""
    for xi, top, text in zip(x, tops, texts, strict=True):
        ax.annotate(text, (xi, top), textcoords="offset points", xytext=(0, 3), ha="center",
                    fontsize=9)


def _figure(width: float, height: float) -> Figure:
    """A figure of that many inches at the PNGs' resolution; :func:`_save` lays it out."""
    return Figure(figsize=(width, height), dpi=_DPI)


def _save(fig: Figure, path: Path) -> None:
    """Apply constrained layout once, then draw the figure once into a PNG.

    Under a layout engine, ``savefig`` would first draw the whole figure without output
    only to run the layout; run alone, at the same resolution, it places everything alike.
    """
    FigureCanvasAgg(fig)
    ConstrainedLayoutEngine().execute(fig)
    fig.savefig(path, dpi=_DPI, format="png", metadata={"Software": None})


def _plot_churn(rct: RctResult, path: Path) -> None:
    from statsmodels.stats.proportion import proportion_confint

    names = [rct.control, *(e.arm for e in rct.effects)]
    stats = [rct.control_stats, *rct.effects]
    rates = np.array([s.churn_rate for s in stats])
    low, high = proportion_confint([s.churners for s in stats], [s.n for s in stats],
                                   alpha=rct.alpha, method="wilson")
    colors = [_CONTROL_COLOR] + [_ARM_COLOR] * len(rct.effects)
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    ax.bar(x, 100 * rates, color=colors, alpha=0.85)
    ax.errorbar(x, 100 * rates, yerr=[100 * (rates - low), 100 * (high - rates)], fmt="none",
                ecolor="black", capsize=6)
    ax.axhline(100 * rates[0], color=_CONTROL_COLOR, ls="--", lw=1, label="control churn rate")
    _label_bars(ax, x, 100 * high, [f"{100 * r:.1f}%" for r in rates])
    first = names[0] if names[0] == "control" else f"{names[0]}\n(control)"
    ax.set_xticks(x, [first, *names[1:]])
    ax.set_ylim(0, 100 * float(np.max(high)) * 1.3)
    ax.set(ylabel="churn rate (%)", xlabel="group (randomized)",
           title=f"Observed churn by group, {100 * (1 - rct.alpha):g}% Wilson intervals")
    ax.legend(loc="upper right")
    _save(fig, path)


def _plot_effects(rct: RctResult, path: Path) -> None:
    """Each offer's effect with its interval; with an adjustment, the adjusted one beneath."""
    effects = list(rct.effects)
    adj = rct.adjusted
    rows = [(e.arm, e.ate, e.ci_low, e.ci_high, e.pvalue_adj, _ARM_COLOR, "")
            for e in effects]
    offset = 0.0
    if adj is not None:
        offset = 0.18
        rows += [(e.arm, a.ate, a.ci_low, a.ci_high, a.pvalue_adj, _MODEL_COLOR,
                  f", variance -{100 * a.variance_reduction:.0f}%")
                 for e in effects for a in [adj.effect(e.arm)]]
    fig = _figure(8, 1.6 + (1.2 if adj is not None else 0.7) * len(effects))
    ax = fig.add_subplot()
    y = np.arange(len(effects))[::-1].astype(float)
    for i, (_, ate, low, high, p_adj, color, extra) in enumerate(rows):
        yi = y[i % len(effects)] + (offset if i < len(effects) else -offset)
        significant = p_adj < rct.alpha
        ax.plot([100 * low, 100 * high], [yi, yi], color=color, lw=2)
        ax.plot(100 * ate, yi, "o", ms=9, color=color,
                markerfacecolor=color if significant else "white")
        ax.annotate(f"{100 * ate:+.2f} pp, adj. p {pval(p_adj)}" + (" *" if significant else "")
                    + extra, (100 * high, yi), textcoords="offset points", xytext=(8, -3),
                    fontsize=9)
    ax.axvline(0, color="black", lw=1)
    ax.plot([], [], "o", color=_ARM_COLOR, label=f"significant (adj. p < {rct.alpha:g})")
    ax.plot([], [], "o", color=_ARM_COLOR, markerfacecolor="white", label="not significant")
    if adj is not None:
        ax.plot([], [], "-", color=_ARM_COLOR, lw=2, label="plain (Newcombe)")
        ax.plot([], [], "-", color=_MODEL_COLOR, lw=2,
                label=f"covariate-adjusted (CUPED, {adj.method})")
    ax.set_yticks(y, [e.arm for e in effects])
    ax.set_ylim(-0.7, len(effects) - 0.3)
    lo = min(0.0, *(100 * r[2] for r in rows))
    hi = max(0.0, *(100 * r[3] for r in rows))
    ax.set_xlim(lo - 0.1 * (hi - lo + 1e-9), hi + 0.8 * (hi - lo + 1e-9))
    title = f"Effect of each offer, {100 * (1 - rct.alpha):g}% intervals" if adj is not None \
        else f"Effect of each offer, {100 * (1 - rct.alpha):g}% Newcombe intervals"
    ax.set(xlabel="churn reduction vs control (percentage points; > 0 = fewer churn)",
           ylabel="offer", title=title)
    if adj is None:
        ax.legend(loc="lower right", fontsize=8)
    else:
        fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    _save(fig, path)


def _plot_qini(arm: str, treatment: np.ndarray, churned: np.ndarray, score: np.ndarray,
               control: str, learner: str, qini_score: float | None, path: Path) -> None:
    rows = arm_rows(treatment, churned, score, control, arm)
    curve = qini_curve(*rows)
    end = float(curve[-1])
    values = curve / abs(end) if end != 0 and math.isfinite(end) else curve
    share = np.arange(len(values)) / max(len(values) - 1, 1)
    # One point per customer is tens of thousands of vertices for a few hundred pixels:
    # slow to draw and to place the legend around, and no different to look at.
    keep = np.unique(np.linspace(0, len(values) - 1, min(len(values), _CURVE_POINTS)).round()
                     ).astype(int)
    share, values = share[keep], values[keep]
    fig = _figure(6.5, 4.5)
    ax = fig.add_subplot()
    label = f"{learner} (Qini {qini_score:.4f})" if qini_score is not None else learner
    ax.plot(100 * share, values, color=_MODEL_COLOR, lw=2, label=label)
    ax.plot([0, 100], [0, values[-1]], color="grey", ls="--", label="random targeting")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel("customers targeted, highest predicted uplift first (%)")
    ax.set_ylabel("cumulative extra customers kept\n(normalized: all targeted = ±1)"
                  if end != 0 else "cumulative extra customers kept")
    ax.set_title(f"Qini curve: {arm} vs control\n"
                 f"{rows[0].size:,} held-out customers", fontsize=11)
    ax.legend(loc="best")
    _save(fig, path)


def _plot_deciles(deciles: pd.DataFrame, arms: Sequence[str], alpha: float, learner: str,
                  path: Path) -> None:
    fig = _figure(4.2 * len(arms) + 0.8, 4.3)
    axes = fig.subplots(1, len(arms), sharey=True, squeeze=False)[0]
    z = float(norm.ppf(1 - alpha / 2))
    for ax, arm in zip(axes, arms, strict=True):
        part = deciles[deciles["arm"] == arm].sort_values("decile")
        p1, n1 = part["churn_rate_arm"].to_numpy(float), part["n_arm"].to_numpy(float)
        p0, n0 = part["churn_rate_control"].to_numpy(float), part["n_control"].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            se = np.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
        d = part["decile"].to_numpy()
        ax.bar(d, 100 * part["observed_uplift"].to_numpy(float), color=_ARM_COLOR, alpha=0.6,
               yerr=100 * z * se, capsize=3, ecolor="#555", label="observed")
        ax.plot(d, 100 * part["predicted_uplift"].to_numpy(float), "o-", color=_MODEL_COLOR,
                lw=2, label="predicted")
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(range(1, int(d.max(initial=1)) + 1))
        ax.set(title=arm, xlabel="decile of predicted uplift (1 = highest)")
    axes[0].set_ylabel("churn reduction (percentage points)")
    axes[0].legend(loc="upper right", fontsize=8)
    fig.suptitle(f"Predicted vs observed uplift by decile ({learner}, held-out rows)")
    _save(fig, path)


def _plot_policy_mix(training: TrainingResult, path: Path) -> None:
    policy = training.holdout_policy
    frame = policy.to_frame()
    colors = [_CONTROL_COLOR if g == policy.control else _ARM_COLOR for g in frame["group"]]
    labels = [f"{g}\n(no offer)" if g == policy.control else str(g) for g in frame["group"]]
    x = np.arange(len(frame))
    fig = _figure(10, 4.3)
    left, right = fig.subplots(1, 2)
    left.bar(x, 100 * frame["share"], color=colors, alpha=0.85)
    _label_bars(left, x, 100 * frame["share"], [f"{n:,}" for n in frame["customers"]])
    left.set(ylabel="share of held-out customers (%)",
             title="Who gets which offer (labels: customers)")
    # Without customer values the net value is only minus the cost: show the cost.
    column, what = ("net_value", "net value") if training.valued else ("cost", "offer cost")
    right.bar(x, frame[column], color=colors, alpha=0.85)
    _label_bars(right, x, frame[column].clip(lower=0), [f"{v:,.0f}" for v in frame[column]])
    right.yaxis.set_major_formatter(StrMethodFormatter(_THOUSANDS))
    right.axhline(0, color="black", lw=0.6)
    right.set(ylabel=f"expected {what} (currency)",
              title=f"Expected {what} per group (labels: total)")
    for ax in (left, right):
        ax.set_xticks(x, labels)
        ax.set_xlabel("recommended group")
    fig.suptitle(f"Recommended policy on the held-out rows ({training.recommended_label})")
    _save(fig, path)


def _plot_budget(curve: pd.DataFrame, mark: float | None, current: tuple[float, float],
                 path: Path, valued: bool = True) -> None:
    """Net value (only when customers have values) and cost, and churn reduction, by budget."""
    fig = _figure(10, 4.3)
    left, right = fig.subplots(1, 2)
    b = curve["budget"].to_numpy()
    if valued:
        left.plot(b, curve["net_value"], "o-", color=_MODEL_COLOR, lw=2, label="net value")
    left.plot(b, curve["cost"], "s-", color=_ARM_COLOR, lw=1.5, label="cost")
    right.plot(b, 100 * curve["churn_reduction"], "o-", color=_MODEL_COLOR, lw=2)
    left.plot(*current, "*", ms=14, color=_CONTROL_COLOR, label="recommended policy")
    for ax in (left, right):
        if mark is not None:
            ax.axvline(mark, color=_CONTROL_COLOR, ls="--", lw=1.2,
                       label="config budget (held-out share)" if ax is left else None)
        ax.set_xlabel("budget: cap on expected offer cost (currency)")
        ax.xaxis.set_major_formatter(StrMethodFormatter(_THOUSANDS))
        ax.grid(alpha=0.3)
    left.yaxis.set_major_formatter(StrMethodFormatter(_THOUSANDS))
    left.set(ylabel="expected total (currency)",
             title=("Net value and cost" if valued else "Cost") + " of the optimal policy")
    left.legend(loc="best", fontsize=8)
    right.set(ylabel="predicted churn reduction (percentage points)",
              title="Predicted churn reduction")
    fig.suptitle("What each budget buys on the held-out rows")
    _save(fig, path)


def _file_names(arms: Sequence[str]) -> dict[str, str]:
    """A distinct, URL- and filesystem-safe ``qini_<arm>.png`` name per arm."""
    out: dict[str, str] = {}
    for arm in arms:
        stem = "qini_" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", arm).strip("-.") or "arm")
        name, i = f"{stem}.png", 2
        while name in out.values():
            name, i = f"{stem}-{i}.png", i + 1
        out[arm] = name
    return out


def _plots(folder: Path, cfg: ExperimentConfig, dataset: Dataset, rct: RctResult,
           training: TrainingResult, curve: pd.DataFrame) -> list[_Block]:
    level = f"{100 * (1 - rct.alpha):g}%"
    blocks: list[_Block] = []
    jobs: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
    jobs.append((_plot_churn, (rct, folder / "churn_by_group.png")))
    blocks.append(_Plot("churn_by_group.png", "Churn by group", (
        f"Observed churn rate of each randomized group with its {level} Wilson interval; "
        "the control (orange, dashed line) is the reference. An offer works when its bar "
        "sits clearly below the line.")))
    jobs.append((_plot_effects, (rct, folder / "effects.png")))
    both = ("" if rct.adjusted is None else
            " Beneath each, in green, the same effect adjusted for pre-treatment covariates "
            f"(CUPED, {rct.adjusted.method}) with its {level} interval and the share of the "
            "variance the adjustment removed: the narrower interval from the same customers.")
    blocks.append(_Plot("effects.png", "Effect of each offer", (
        f"Churn reduction of each offer against the control in percentage points with its "
        f"{level} Newcombe interval. Right of the zero line = fewer churn. A filled dot (*) "
        f"is significant after {rct.correction} adjustment over offers (adjusted p < "
        f"{rct.alpha:g}); an interval crossing zero is not conclusive.{both}")))

    selected, arms = training.selected, cfg.arm_names
    chosen = training.chosen
    idx = np.asarray(training.holdout_index)
    scores = training.holdout_scores
    if scores is None or len(scores) != len(idx):
        raise ValueError("training.holdout_scores must hold the held-out rows' predictions")
    treatment, churned = dataset.treatment[idx], np.asarray(dataset.churned)[idx]
    for arm, name in _file_names(arms).items():
        jobs.append((_plot_qini, (arm, treatment, churned, scores[uplift_column(arm)].to_numpy(),
                                  cfg.control, selected, chosen.metrics.get(f"qini_{arm}"),
                                  folder / name)))
        blocks.append(_Plot(name, f"Qini curve: {arm}", (
            f"Held-out customers given {arm} or nothing, ranked by the {selected} model's "
            f"predicted churn reduction from {arm}: the extra customers kept when targeting "
            "the top x% (normalized: everyone targeted = 1, or -1 if the offer loses customers "
            "overall). Above the dashed random-targeting line = the model finds whom the offer "
            "keeps; the area between the two is the Qini score.")))

    if chosen.deciles is not None and len(chosen.deciles):
        jobs.append((_plot_deciles, (chosen.deciles, arms, rct.alpha, selected,
                                     folder / "uplift_by_decile.png")))
        blocks.append(_Plot("uplift_by_decile.png", "Predicted vs observed uplift by decile", (
            f"Per offer, held-out customers cut into ten equal groups by predicted churn "
            f"reduction (decile 1 = highest). Bars: observed churn reduction (control churn - "
            f"offer churn in the decile) with a {level} normal interval; line: the mean "
            "predicted reduction. A good model's bars fall from left to right and track the "
            "line; deciles hold few customers, so single bars are noisy.")))

    jobs.append((_plot_policy_mix, (training, folder / "policy_mix.png")))
    blocks.append(_Plot("policy_mix.png", "Policy mix", (
        "Left: share of held-out customers the recommended policy sends to each group (no "
        "offer in orange), with customer counts, from the out-of-fold predictions (the "
        "refitted model's shares are those of the policy estimate). Right: "
        + ("expected net value of each group (value of the customers kept over the value "
           "horizon minus the offers' cost), predicted by the selected model."
           if training.valued else
           "expected offer cost of each group (no customer values, data.value, so no net "
           "value)."))))

    policy = training.holdout_policy
    star = policy.total_net_value if training.valued else policy.total_cost
    jobs.append((_plot_budget, (curve, policy.budget, (policy.total_cost, star),
                                folder / "net_value_vs_budget.png", training.valued)))
    marked = ("; the dashed line is the config's budget scaled to the held-out share"
              if policy.budget is not None else "")
    gauge = "net value" if training.valued else "churn reduction"
    blocks.append(_Plot("net_value_vs_budget.png", f"{gauge.capitalize()} vs budget", (
        "The best policy the selected model finds on the held-out rows when the total "
        "expected offer cost may not exceed the budget (x axis), from nothing up to the cost "
        "of the unconstrained policy. Left: "
        + ("expected net value (green) and the cost actually spent (blue)" if training.valued
           else "the cost actually spent (no customer values, so no net value)")
        + f"; the star is the recommended policy{marked}. Right: predicted churn "
        f"reduction per held-out customer. Where the {gauge} flattens, more budget buys "
        "little.")))
    _draw(jobs)
    return blocks


def _draw(jobs: Sequence[tuple[Callable[..., None], tuple[Any, ...]]]) -> None:
    """Draw the plots, every other one in a child process where a core is free."""
    def some(part: Sequence[tuple[Callable[..., None], tuple[Any, ...]]]) -> None:
        for plot, args in part:
            plot(*args)

    with Background(some, jobs[1::2]) as other:
        some(jobs[0::2])
        other.result()


# --------------------------------------------------------------------------- entry point


def write_report(folder: Path, *, cfg: ExperimentConfig, dataset: Dataset, rct: RctResult,
                 training: TrainingResult, budget_curve: pd.DataFrame,
                 baseline_churn_rate: float | None = None,
                 baseline_source: str | None = None, run_id: str | None = None,
                 summary: Sequence[Paragraph] = ()) -> Path:
    """Write the run report (HTML, Markdown, PNG plots and ``deciles.csv``) into a folder.

    Args:
        folder: Where to write; created if missing. Existing files of the same names are
            replaced.
        cfg: The experiment config.
        dataset: The data the run used.
        rct: The RCT readout of ``dataset``.
        training: The candidates, the selected model and the held-out policy.
        budget_curve: What each budget buys on the held-out rows
            (:func:`uplift.training.holdout_budget_curve`); only drawn here.
        baseline_churn_rate: Last period's churn rate; None when unknown.
        baseline_source: Where the baseline came from (e.g. a run id, or the config).
        run_id: The MLflow run the report belongs to.
        summary: What the run found, in the words of its summary (the model, the policy
            it recommends, its estimate, the comparisons); the report opens with it,
            under ``SUMMARY``, above the run's details.

    Returns:
        The path of ``report.html``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    title = f"Retention uplift report: {cfg.name}"
    meta = [
        ("experiment", cfg.name),
        ("description", cfg.description or ""),
        ("period", cfg.period or "unknown"),
        ("run id", run_id or "none"),
        ("data", dataset.source),
        ("data sha256", dataset.sha256),
        ("customers", f"{dataset.n_rows:,}"),
        ("offers", ", ".join(cfg.arm_names)),
        ("selected learner", training.selected),
        ("recommended policy", training.recommended_label),
        ("uplift version", __version__),
    ]
    sections = [
        _rct_section(rct),
        _candidates_section(training),
        _policy_section(training),
        _baseline_section(cfg, rct, training, baseline_churn_rate, baseline_source),
    ]
    with style.context(_STYLE):
        sections.append(_Section(SECTIONS[4], _plots(folder, cfg, dataset, rct, training,
                                                         budget_curve)))
    tables = [c.deciles.assign(learner=c.learner)[["learner", *c.deciles.columns]]
              for c in training.candidates if c.ok and c.deciles is not None]
    deciles = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    deciles.to_csv(folder / "deciles.csv", index=False, lineterminator="\n")
    lead = [_Section(SUMMARY, list(summary))] if summary else []
    (folder / "report.md").write_text(_render_markdown(title, meta, sections, lead),
                                      encoding="utf-8")
    path = folder / "report.html"
    path.write_text(_render_html(title, meta, sections, folder, lead), encoding="utf-8")
    return path
