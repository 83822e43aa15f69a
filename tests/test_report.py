"""The report end to end: findings.json's shape, a self-contained index.html, escaping."""

from __future__ import annotations

import json
import os
import shutil
from html.parser import HTMLParser

import pytest

from conftest import run_cli

VERDICTS = {"supported", "not supported", "mixed", "not testable"}


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.sources, self.hrefs, self.scripts, self.links = set(), [], [], 0, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if "src" in attrs:
            self.sources.append(attrs["src"])
        if tag == "a" and "href" in attrs:
            self.hrefs.append(attrs["href"])
        if tag == "link":
            self.links.append(attrs)
        if tag == "script":
            self.scripts += 1


@pytest.fixture(scope="module")
def report_dir(small_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    result = run_cli("report", small_store, "-o", out)
    assert result.returncode == 0, result.stderr
    return out


def test_findings_json_has_every_claim_with_a_verdict(report_dir, small_store):
    findings = json.loads((report_dir / "findings.json").read_text())
    assert findings["store"] == small_store
    assert [c["id"] for c in findings["claims"]] == ["C1", "C2", "C3", "C4", "C5", "C6"]
    for claim in findings["claims"]:
        assert set(claim) == {"id", "claim", "criterion", "verdict", "evidence", "population", "estimate", "ci",
                              "margin", "sensitivity", "strata"}
        assert claim["verdict"] in VERDICTS
        assert claim["criterion"] and claim["evidence"]["summary"]
        for stratum in claim["strata"]:
            assert stratum["verdict"] in VERDICTS and set(stratum) >= {"name", "runs", "estimate", "ci"}
    # every run is counted: in the population or excluded with a reason
    training = findings["training"]
    assert sum(len(r) for r in training["runs_by_status"].values()) == 8
    c1 = {c["id"]: c for c in findings["claims"]}["C1"]
    sigmoid_runs = {0, 2, 4, 6}  # the small sweep alternates sigmoid and tanh
    counted = set(c1["population"]["runs"]) | {r for runs in c1["population"]["excluded"].values() for r in runs}
    assert counted == sigmoid_runs and c1["population"]["activation_fn"] == "sigmoid"


def test_index_html_is_self_contained_with_every_section(report_dir):
    text = (report_dir / "index.html").read_text()
    parser = _Collector()
    parser.feed(text)
    assert {"C1", "C2", "C3", "C4", "C5", "C6"} <= parser.ids
    assert parser.sources and all(src.startswith("data:image/png;base64,") for src in parser.sources)
    assert parser.scripts == 0 and not parser.links
    assert all(h.startswith("#") for h in parser.hrefs)
    assert "http://" not in text and "https://" not in text
    assert sorted(os.listdir(report_dir / "figures"))
    assert (report_dir / "findings.md").read_text().startswith("# ")


def test_strings_from_the_store_are_escaped(small_store, tmp_path):
    store = tmp_path / "evil.zarr"
    shutil.copytree(small_store, store)
    meta_path = store / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["creation_library"] = "<script>alert(1)</script>"
    meta["attributes"]["sweep"] = json.dumps({"model": {"note": "<img src=x onerror=alert(1)>"}})
    meta_path.write_text(json.dumps(meta))
    out = tmp_path / "report"
    result = run_cli("report", store, "-o", out, "--no-progress")
    assert result.returncode == 0, result.stderr
    text = (out / "index.html").read_text()
    assert "<script>" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (("report", "missing.zarr", "-o", "out"), "missing.zarr: no such store"),
        (("report", "{store}", "-o", "out", "--eps", "2"), "--eps 2: must be between 0 and 0.5"),
        (("report", "{config}", "-o", "out"), "not a Zarr group"),
    ],
)
def test_bad_report_arguments(small_store, small_config, tmp_path, args, message):
    args = [a.format(store=small_store, config=small_config) for a in args]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1
