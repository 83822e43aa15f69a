"""tools/findings*.py, the generator of docs/findings.md: its helpers (fast), and one generation
on a small captured store (marked long: the report's verdicts carried over, every experiment
without a store skipped with a line, the figures and the experiment's findings.json written)."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from scipy import stats

from conftest import ROOT


@pytest.fixture
def common(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "tools"))
    import findings_common

    return findings_common


def test_t_interval_is_students(common):
    values = [0.6, 0.7, 0.65, 0.8]
    mean, low, high = common.t_interval(values + [np.nan])
    half = stats.t.ppf(0.975, 3) * np.std(values, ddof=1) / 2
    assert (mean, low, high) == pytest.approx((0.6875, 0.6875 - half, 0.6875 + half))
    assert np.isnan(common.t_interval([0.5])[1]) and np.isnan(common.t_interval([])[0])


def test_welch_interval_matches_scipy(common):
    a, b = [0.3, 0.35, 0.5, 0.42], [0.1, 0.2, 0.15]
    difference, low, high = common.welch_interval(a, b)
    expected = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert difference == pytest.approx(np.mean(a) - np.mean(b))
    assert (low, high) == pytest.approx((expected.low, expected.high))


def test_direction_words_follow_the_interval(common):
    assert common.direction(0.01, 0.2) == "grows"
    assert common.direction(-0.2, -0.01) == "falls"
    assert common.direction(-0.1, 0.1).startswith("shows no change")
    assert common.direction(np.nan, np.nan).startswith("cannot be judged")


def test_trimmed_drops_per_run_lists_only_when_large(common):
    small = {"claims": [{"verdict": "mixed", "population": {"runs": list(range(20))}}]}
    assert common.trimmed(small) == small
    large = {"claims": [{"verdict": "mixed", "ci": [0.1, 0.2], "population": {"runs": list(range(20))}}],
             "padding": "x" * 100}
    out = common.trimmed(large, limit=50)
    assert out["claims"][0]["verdict"] == "mixed" and out["claims"][0]["ci"] == [0.1, 0.2]
    assert out["claims"][0]["population"]["runs"] == {"dropped": "20 per-run values (in the full report: actstats report)"}


def test_capture_seconds_sum_the_pieces(common, tmp_path):
    (tmp_path / "timings").mkdir()
    assert common.timing_seconds(str(tmp_path), "x") is None
    (tmp_path / "timings" / "x.seconds").write_text("50\n")
    assert common.timing_seconds(str(tmp_path), "x") == (50.0, 1)
    (tmp_path / "timings" / "x.seconds.log").write_text("100\n20\n3\n")
    assert common.timing_seconds(str(tmp_path), "x") == (123.0, 3)


@pytest.mark.long
def test_generation_on_a_small_store(common, small_store, tmp_path):
    """About a minute on two busy cores (capture, report, every section): make test-long."""
    import findings
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(small_store, data / "terminal.zarr")
    (data / "timings").mkdir()
    (data / "timings" / "terminal.seconds.log").write_text("60\n30\n")
    stale = tmp_path / "docs" / "findings" / "answer_old_figure.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    os.utime(stale, (1e9, 1e9))
    text = findings.write_findings(str(data), str(tmp_path / "docs"), str(tmp_path / "work"))
    assert not stale.exists()  # a figure of an earlier generation, no longer in the document

    with open(tmp_path / "work" / "terminal" / "findings.json") as f:
        report = json.load(f)
    with open(tmp_path / "docs" / "findings" / "terminal.findings.json") as f:
        assert json.load(f) == common.trimmed(report)  # committed next to the document
    for claim in report["claims"]:
        section = text.split(f"### {claim['id']}: ")[1].split("\n### ")[0].split("\n## ")[0]
        assert f"| `terminal` | **{claim['verdict']}** | {claim['population'].get('n_runs', 0)} |" in section
    for name, _ in findings.EXPERIMENTS:
        if name != "terminal":
            assert f"`{name}`: store `{data}/{name}.zarr` absent" in text
    assert text.startswith("# Findings") and "## The answer" in text and "## Training state" in text
    assert "## The terminal phase" in text and "| `terminal` | 1.5 min in 2 pieces |" in text
    figures = re.findall(r"\]\((findings/[^)]+)\)", text)
    assert figures and all(os.path.exists(tmp_path / "docs" / f) for f in figures)
