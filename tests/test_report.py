"""The run report: files, images, sections, escaping, the budget curve, and a browser check."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from conftest import SimulatedRun, record_browser_check, require_browser
from matplotlib.image import imread
from PIL import Image

from uplift.analysis import RctResult
from uplift.config import ExperimentConfig
from uplift.data import Dataset
from uplift.formatting import Paragraph
from uplift.models import churn_probabilities
from uplift.policy import budget_curve, build_policy
from uplift.report import (
    SECTIONS,
    SUMMARY,
    _baseline_section,
    _policy_section,
    write_report,
)
from uplift.training import (
    BUDGET_POINTS,
    TrainingResult,
    customer_values,
    holdout_budget_curve,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUN_ID = "0123abcd"


@dataclass(frozen=True)
class Built:
    folder: Path
    html_path: Path
    cfg: ExperimentConfig
    dataset: Dataset
    rct: RctResult
    training: TrainingResult
    rc_changed: list[str]


@pytest.fixture(scope="module")
def built(simulated_run: SimulatedRun, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The report of the shared small run (6,000 customers, s and t learners)."""
    root = tmp_path_factory.mktemp("report")
    cfg, dataset, rct, training = (simulated_run.cfg, simulated_run.dataset, simulated_run.rct,
                                   simulated_run.training)
    backend = matplotlib.get_backend()
    before = dict(matplotlib.rcParams)
    html_path = write_report(root / "out", cfg=cfg, dataset=dataset, rct=rct, training=training,
                             budget_curve=holdout_budget_curve(training, dataset, cfg),
                             baseline_churn_rate=0.31, baseline_source="config baseline",
                             run_id=RUN_ID)
    assert matplotlib.get_backend() == backend
    after = dict(matplotlib.rcParams)
    changed = [k for k in before if before[k] != after[k]]
    return Built(root / "out", html_path, cfg, dataset, rct, training, changed)


def image_sources(html_text: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html_text)


def embedded_images(html_text: str) -> dict[str, bytes]:
    """The PNG bytes each ``<img>`` carries as a data URI, by the file it was made from."""
    found = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="[^"]*" '
                       r'data-file="([^"]+)">', html_text)
    return {name: base64.b64decode(data) for data, name in found}


EXPECTED_PNGS = {"churn_by_group.png", "effects.png", "uplift_by_decile.png", "policy_mix.png",
                 "net_value_vs_budget.png", "qini_discount_20.png", "qini_free_upgrade.png",
                 "qini_webinar.png"}


def test_report_writes_html_markdown_and_deciles(built: Built) -> None:
    assert built.html_path == built.folder / "report.html"
    assert (built.folder / "report.md").is_file()
    deciles = (built.folder / "deciles.csv").read_text().splitlines()
    assert deciles[0].split(",")[:3] == ["learner", "arm", "decile"]
    learners = {line.split(",")[0] for line in deciles[1:]}
    assert learners == {c.learner for c in built.training.candidates
                        if c.ok and not c.model_free}
    assert built.rc_changed == []  # no global matplotlib state changed


def test_every_image_in_the_html_is_embedded_and_a_valid_png(built: Built) -> None:
    html_text = built.html_path.read_text()
    sources = image_sources(html_text)
    assert all(src.startswith("data:image/png;base64,") for src in sources)  # no paths
    images = embedded_images(html_text)
    assert len(images) == len(sources)
    assert set(images) == {p.name for p in built.folder.glob("*.png")} == EXPECTED_PNGS
    for name, data in images.items():
        assert data == (built.folder / name).read_bytes(), name  # the PNG stays beside it
        assert data[:8] == PNG_MAGIC, name
        with Image.open(built.folder / name) as image:
            image.verify()
        with Image.open(built.folder / name) as image:
            width, height = image.size
        assert width > 300, name
        assert height > 200, name
        assert imread(built.folder / name).shape[:2] == (height, width)


def test_html_has_the_sections_arms_and_is_self_contained(built: Built) -> None:
    html_text = built.html_path.read_text()
    for heading in SECTIONS:
        assert f"<h2>{heading}</h2>" in html_text
    for name in [built.cfg.control, *built.cfg.arm_names]:
        assert name in html_text
    assert RUN_ID in html_text
    assert built.dataset.sha256 in html_text
    assert "6,000" in html_text  # customers
    assert html_text.count("<figcaption>") == len(EXPECTED_PNGS)
    assert '<tr class="hl"><td>' + built.training.selected in html_text  # selected learner
    assert "<script" not in html_text  # the description is escaped; no JavaScript
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; friends" in html_text
    assert not re.search(r"(src|href)=\"(https?:)?//", html_text)
    assert "SRM check: OK" in html_text
    assert "31.00%" in html_text  # the baseline
    policy = built.training.policy_estimate.churn_rate.value
    assert f"{100 * (0.31 - policy):+.2f} pp" in html_text  # churn reduction vs baseline


def test_a_summary_given_opens_the_report_above_the_details(built: Built, tmp_path: Path
                                                           ) -> None:
    """The caller's findings come first, a warning marked as one; without them, none."""
    assert f"<h2>{SUMMARY}</h2>" not in built.html_path.read_text()
    summary = [Paragraph("Selected learner: s & t."), Paragraph("Estimated < 0.", "warn")]
    cfg, dataset, training = built.cfg, built.dataset, built.training
    html_path = write_report(tmp_path, cfg=cfg, dataset=dataset, rct=built.rct,
                             training=training,
                             budget_curve=holdout_budget_curve(training, dataset, cfg),
                             run_id=RUN_ID, summary=summary)
    html_text = html_path.read_text()
    lead = html_text[html_text.index("</h1>"):html_text.index('<table class="meta">')]
    assert lead.count("<h2>") == 1
    assert f"<h2>{SUMMARY}</h2>" in lead
    assert "<p>Selected learner: s &amp; t.</p>" in lead
    assert '<p class="warn">Estimated &lt; 0.</p>' in lead
    assert html_text.index('<table class="meta">') < html_text.index(f"<h2>{SECTIONS[0]}</h2>")
    markdown = (tmp_path / "report.md").read_text()
    assert markdown.index(f"\n## {SUMMARY}\n") < markdown.index("| field | value |") \
        < markdown.index(f"\n## {SECTIONS[0]}\n")


def test_the_readout_shows_the_adjusted_effects_beside_the_plain_ones(built: Built) -> None:
    html_text = built.html_path.read_text()
    adjusted = built.rct.adjusted
    assert adjusted is not None  # the simulated table has features: on by default
    for arm in built.cfg.arm_names:
        a, plain = adjusted.effect(arm), next(e for e in built.rct.effects if e.arm == arm)
        row = re.search(rf"<tr><td>{re.escape(arm)} \(CUPED\)</td>(.*?)</tr>", html_text)
        assert row is not None, arm
        cells = re.findall(r'<td class="num">([^<]*)</td>', row.group(1))
        assert cells[3] == f"{100 * a.ate:+.2f} pp"
        assert cells[-1] == f"{100 * a.variance_reduction:.2f}%"
        assert f"{100 * plain.ate:+.2f} pp" in html_text
    assert "adjusted for pre-treatment covariates (CUPED, linear)" in html_text


def test_markdown_has_the_same_sections_and_images(built: Built) -> None:
    markdown = (built.folder / "report.md").read_text()
    for heading in SECTIONS:
        assert f"\n## {heading}\n" in markdown
    assert set(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)) == EXPECTED_PNGS
    assert "<script>" not in markdown
    for name in built.cfg.arm_names:
        assert name in markdown


def test_baseline_is_unknown_when_not_given(built: Built) -> None:
    section = _baseline_section(built.cfg, built.rct, built.training, None, None)
    table = section.blocks[0]
    values = dict(table.rows)  # type: ignore[union-attr]
    assert values["baseline churn rate"] == "unknown"
    assert values["baseline source"] == "unknown"
    assert values["churn reduction vs baseline"].startswith("unknown")


def test_budget_curve_is_monotone_and_within_budget(built: Built) -> None:
    training, dataset, cfg = built.training, built.dataset, built.cfg
    rows = dataset.frame.iloc[training.holdout_index]
    p_control, p_arms = churn_probabilities(training.holdout_scores, cfg.arm_names)
    value = customer_values(dataset, cfg)[training.holdout_index]
    full = build_policy(p_control, p_arms, value, rows, cfg, budget=None)
    budgets = np.linspace(0.0, full.total_cost, 9)
    curve = budget_curve(p_control, p_arms, value, rows, cfg, budgets)
    assert list(curve.columns) == ["budget", "cost", "net_value", "churn_reduction",
                                   "customers_treated"]
    assert np.allclose(curve["budget"], budgets)
    assert (curve["cost"] <= curve["budget"] * (1 + 1e-9) + 1e-9).all()
    assert (np.diff(curve["net_value"]) >= -1e-6 * max(1.0, abs(full.total_net_value))).all()
    assert curve["customers_treated"].iloc[0] == 0
    assert curve["net_value"].iloc[0] == 0
    assert curve["net_value"].iloc[-1] == pytest.approx(full.total_net_value, rel=1e-6)
    with pytest.raises(ValueError, match="budgets"):
        budget_curve(p_control, p_arms, value, rows, cfg, [-1.0])


def test_the_reports_budget_curve_spans_nothing_to_the_policy_without_a_budget(
    built: Built,
) -> None:
    training, dataset, cfg = built.training, built.dataset, built.cfg
    curve = holdout_budget_curve(training, dataset, cfg)
    rows = dataset.frame.iloc[training.holdout_index]
    p_control, p_arms = churn_probabilities(training.holdout_scores, cfg.arm_names)
    value = customer_values(dataset, cfg)[training.holdout_index]
    full = build_policy(p_control, p_arms, value, rows, cfg, budget=None,
                        capacity=training.holdout_policy.capacity)
    assert len(curve) == BUDGET_POINTS
    assert curve["budget"].iloc[0] == 0.0
    assert curve["budget"].iloc[-1] == pytest.approx(full.total_cost, rel=1e-12)


# A check appended to a copy of the report (never to the report itself): once the page
# has loaded, it writes every image's state into the DOM that --dump-dom prints.
_CHECK = """<script>
window.addEventListener("load", () => {
  const out = Array.from(document.images, (img) => ({
    src: img.getAttribute("data-file"), complete: img.complete, width: img.naturalWidth}));
  const pre = document.createElement("pre");
  pre.id = "image-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def browser_image_states(folder: Path, tmp_path: Path) -> list[dict[str, object]]:
    page = folder / "check.html"
    page.write_text(built_html(folder).replace("</body>", _CHECK + "</body>"))
    result = subprocess.run(
        [str(require_browser()), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    found = re.search(r'<pre id="image-check">(.*?)</pre>', result.stdout, re.S)
    assert found, f"no image check in the DOM (exit {result.returncode}): {result.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def built_html(folder: Path) -> str:
    return (folder / "report.html").read_text()


def test_every_image_loads_in_headless_chromium(built: Built, tmp_path: Path) -> None:
    require_browser()
    copy = tmp_path / "report"
    shutil.copytree(built.folder, copy)
    states = browser_image_states(copy, tmp_path)
    assert {s["src"] for s in states} == EXPECTED_PNGS
    assert all(s["complete"] and int(s["width"]) > 0 for s in states), states  # type: ignore[call-overload]
    # The page needs no file beside it, and the check itself catches a broken image.
    for png in copy.glob("*.png"):
        png.unlink()
    page = copy / "report.html"
    broken_effects = re.sub(r'(<img src="data:image/png;base64,)[^"]{40}'
                            r'([^"]*" alt="[^"]*" data-file="effects\.png")', r"\1AAAA\2",
                            page.read_text())
    page.write_text(broken_effects)
    states = browser_image_states(copy, tmp_path)
    broken = [s["src"] for s in states if int(s["width"]) == 0]  # type: ignore[call-overload]
    assert broken == ["effects.png"]
    record_browser_check("report images")


def test_plots_keep_their_style_when_a_caller_made_another_one_global(
        built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook that imported causalml's metrics has its grey style global; not our plots."""
    import sys

    for name in [m for m in sys.modules if m.startswith("causalml.metrics")]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh, it sets its style again
    with matplotlib.rc_context():
        import causalml.metrics  # noqa: F401

        assert matplotlib.rcParams["figure.facecolor"] != "white"
        write_report(tmp_path / "out", cfg=built.cfg, dataset=built.dataset, rct=built.rct,
                     training=built.training,
                     budget_curve=holdout_budget_curve(built.training, built.dataset, built.cfg))
    for name in EXPECTED_PNGS:
        corner = np.asarray(Image.open(tmp_path / "out" / name).convert("RGB"))[2, 2]
        assert tuple(corner) == (255, 255, 255), name


def test_without_customer_values_the_report_shows_costs_and_no_net_value(
        built: Built, tmp_path: Path) -> None:
    import yaml
    from conftest import simulated_config

    from uplift.analysis import analyze_dataset
    from uplift.config import load_config
    from uplift.data import load_dataset
    from uplift.training import train_models

    mapping = simulated_config(policy={"objective": "churn_reduction"})
    del mapping["data"]["value"]
    mapping["arms"][0]["cost"] = {"fixed": 3.0}  # a share of revenue needs a value
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(mapping))
    cfg = load_config(tmp_path / "c.yaml")
    dataset = load_dataset(cfg)
    training = train_models(dataset, cfg)
    assert training.valued is False
    assert built.training.valued is True
    # A kept customer is worth nothing here, so every "net value" would be minus the cost.
    assert "net value / customer" not in training.table().header
    rows = training.policy_estimate.table(False).rows
    assert "net value per customer" not in [r[0] for r in rows]
    assert "expected net value" not in training.holdout_policy.table(False).header
    write_report(tmp_path / "out", cfg=cfg, dataset=dataset, rct=analyze_dataset(dataset, cfg),
                 training=training, budget_curve=holdout_budget_curve(training, dataset, cfg),
                 baseline_churn_rate=None, baseline_source=None, run_id=RUN_ID)
    policy = (tmp_path / "out" / "report.md").read_text().split(f"## {SECTIONS[2]}")[1]
    policy = policy.split("\n## ")[0]
    assert "| cost per customer |" in policy
    assert "net value per customer" not in policy
    assert "expected net value" not in policy
    assert "no net value is shown" in policy
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Churn reduction vs budget" in text
    assert "expected offer cost of each group (no customer values" in text
    assert "the cost actually spent (no customer values, so no net value)" in text
    for cand in training.candidates:
        assert "net value" not in training.candidate_note(cand)
    # Offering nobody is zero in every figure; without values there is no net value to name.
    nobody = _policy_section(replace(training, recommended="nobody", reason="beaten"))
    intro = nobody.blocks[0].text
    assert intro.endswith("its churn reduction and cost relative to offering nothing are zero "
                          "by definition.")
    valued = (built.folder / "report.md").read_text().split(f"## {SECTIONS[2]}")[1]
    assert "| net value per customer |" in valued.split("\n## ")[0]
    assert "expected net value" in valued.split("\n## ")[0]


def test_plots_drawn_beside_the_run_are_the_ones_drawn_in_it(
        built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Half the plots may be drawn in a child process; every file comes out byte for byte."""
    import multiprocessing.process

    from uplift import background

    started = []
    start = multiprocessing.process.BaseProcess.start

    def counted(self: multiprocessing.process.BaseProcess) -> None:
        started.append(self)
        start(self)

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", counted)
    folders = {}
    for fork in (True, False):
        monkeypatch.setattr(background, "can_fork", lambda fork=fork: fork)
        folder = tmp_path / ("beside" if fork else "here")
        write_report(folder, cfg=built.cfg, dataset=built.dataset, rct=built.rct,
                     training=built.training, run_id=RUN_ID, baseline_churn_rate=0.31,
                     baseline_source="config baseline",
                     budget_curve=holdout_budget_curve(built.training, built.dataset,
                                                       built.cfg))
        folders[fork] = {p.name: p.read_bytes() for p in folder.iterdir()}
        assert len(started) == 1  # one child when it may fork, none when it may not
    assert set(EXPECTED_PNGS) <= set(folders[False])
    assert folders[True] == folders[False]
