"""README, "Record your own model": the example runs as printed, and the report can test
what the README says it can on the store it writes."""

from __future__ import annotations

import os

import pytest
import torch

import actstats

from conftest import ROOT


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    """No fsync of chunks (the write order is the same) and one torch thread (tiny networks)."""
    import actstats.capture.recorder

    monkeypatch.setattr(actstats.capture.recorder, "FSYNC", False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_readme_example_runs_and_its_claims_are_testable(tmp_path, monkeypatch):
    """README, "Record your own model": the example as printed, then the claims it says the
    store can test (C1-C4), and a mixed model's report on layers of one function."""
    import re

    from actstats.report import assess

    with open(os.path.join(ROOT, "README.md")) as f:
        section = f.read().split("## Record your own model", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    ds = actstats.open_store("mine.zarr")
    assert ds["complete"].values.all() and actstats.verify_store("mine.zarr", progress=False).ok
    findings = {c.id: c for c in assess(ds, claims=["C1", "C2", "C3", "C4", "C5"]).claims}
    assert [findings[c].verdict != "not testable" for c in ("C1", "C2", "C3", "C4")] == [True] * 4
    assert findings["C5"].verdict == "not testable"
    assert findings["C1"].population["activation_fn"] == "sigmoid"
    mixed = ds.assign_coords(layer_activation_fn=(("run", "layer"), [["sigmoid", "tanh"]]),
                             activation_fn=("run", ["mixed"]))  # as if layer 2 were tanh: selected away
    assert assess(mixed.sel(layer=[1]), claims=["C1"]).claims[0].population["activation_fn"] == "sigmoid"
