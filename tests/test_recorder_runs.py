"""capture.Recorder with several runs in one store (runs=, run=): a user's sweep recorded by
one Recorder session a run, one after another or in parallel processes, each run with its own
attributes; the report's factor comparison (C5) and activation comparison (C6) run on it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import actstats
from actstats.errors import ActstatsValueError
from actstats.capture import Recorder
from recorder_tools import digits_tensors, quick_recording

from conftest import ROOT

F = torch.nn.functional

RUNS = [{"name": "default", "init": "default", "optimizer": "adam", "lr": 0.03, "seed": 0, "note": "x"},
        {"name": "xavier", "init": "xavier_uniform", "optimizer": "adam", "lr": 0.03, "seed": 0}]


@pytest.fixture(autouse=True, scope="module")
def quick():
    with quick_recording():
        yield


@pytest.fixture(scope="module")
def digits():
    return digits_tensors()


def probes_of(digits):
    x, y = digits
    return {"train": (x[:60], y[:60]), "test": (x[-30:], y[-30:])}


def mlp(activation=torch.nn.Sigmoid, seed=0, init="default"):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 16), activation(), torch.nn.Linear(16, 16), activation(),
                                torch.nn.Linear(16, 10))
    if init == "xavier_uniform":
        for module in model[::2]:
            torch.nn.init.xavier_uniform_(module.weight)
    return model


def train(model, optimizer, digits, epoch):
    x, y = digits
    order = torch.randperm(1200, generator=torch.Generator().manual_seed(epoch))
    for rows in order.split(16):
        optimizer.zero_grad()
        F.cross_entropy(model(x[rows]), y[rows]).backward()
        optimizer.step()


def record_run(path, digits, run, runs=None, activation=torch.nn.Sigmoid):
    spec = (runs or RUNS)[run] if isinstance(run, int) else next(r for r in runs or RUNS if r.get("name") == run)
    model = mlp(activation, init=spec.get("init", "default"))
    optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    with Recorder(path, model, probes=probes_of(digits), loss=F.cross_entropy, epochs=[0, 1, 2, 3],
                  runs=runs or RUNS, run=run, steps_per_epoch=75) as rec:
        rec.record(epoch=0)
        for epoch in (1, 2, 3):
            train(model, optimizer, digits, epoch)
            rec.record(epoch=epoch)
    return model


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, digits):
    """Run "default" then run 1 ("xavier"), each by its own Recorder session, into one store."""
    path = str(tmp_path_factory.mktemp("runs") / "sweep.zarr")
    models = [record_run(path, digits, "default"), record_run(path, digits, 1)]
    return path, models


def test_two_sessions_fill_one_store_with_each_runs_attributes(two_runs):
    import json

    path, models = two_runs
    ds = actstats.open_store(path)
    assert ds.sizes["run"] == 2 and bool(ds["complete"].all())
    assert actstats.verify_store(path, progress=False).ok
    assert ds["init"].values.tolist() == ["default", "xavier_uniform"]
    assert ds["optimizer"].values.tolist() == ["adam", "adam"]
    np.testing.assert_array_equal(ds["lr"].values, [0.03, 0.03])
    assert ds["activation_fn"].values.tolist() == ["sigmoid", "sigmoid"]
    configs = [json.loads(c) for c in ds["config"].values]
    assert configs[0]["attributes"] == RUNS[0] and configs[1]["attributes"] == RUNS[1]
    assert ds["step"].values.tolist() == [[0, 75, 150, 225]] * 2
    for run, model in enumerate(models):  # each run holds its own model's weights
        np.testing.assert_array_equal(ds["weight"].isel(run=run, epoch=-1, layer=0).values[:16, :64],
                                      model[0].weight.detach().numpy())
    assert not np.array_equal(ds["weight"].isel(run=0, epoch=-1).values, ds["weight"].isel(run=1, epoch=-1).values)


def test_the_reports_factor_comparison_runs_on_it(two_runs):
    from actstats.report import assess

    path, _ = two_runs
    c5 = assess(actstats.open_store(path), claims=["C5"]).claims[0]
    assert c5.verdict != "not testable", c5.summary
    assert c5.population["runs"] == [0, 1]
    assert c5.evidence["factors"]["init"]["runs_per_level"] == {"default": 1, "xavier_uniform": 1}


def test_runs_are_fixed_when_the_store_is_made(two_runs, digits, tmp_path):
    path, _ = two_runs
    model = mlp()
    probes = probes_of(digits)
    kwargs = dict(probes=probes, loss=F.cross_entropy)
    with pytest.raises(ActstatsValueError, match=r"^runs: .* was made with 2 runs declared otherwise"):
        Recorder(path, model, runs=RUNS[:1], run=0, **kwargs)
    with pytest.raises(ActstatsValueError, match=r"^run: no run is named 'rmsprop' \(names: 'default', 'xavier'\)$"):
        Recorder(path, model, run="rmsprop", **kwargs)
    with pytest.raises(ActstatsValueError, match=r"^run: 2 is not a run of the store \(0…1\)$"):
        Recorder(path, model, run=2, **kwargs)
    with pytest.raises(ActstatsValueError, match=r"^attributes: .* holds 2 runs"):
        Recorder(path, model, run=0, attributes={"seed": 1}, **kwargs)
    with Recorder(path, model, run="xavier", **kwargs) as rec:  # runs= omitted: the store's
        assert rec.run == 1 and rec.recorded_epochs == (0.0, 1.0, 2.0, 3.0)
    new = str(tmp_path / "new.zarr")
    for runs, message in [(0, r"^runs: expected a positive number of runs, got 0$"),
                          ([{"lr": "fast"}], r"^runs\[0\]\['lr'\]: expected float, got 'fast'$"),
                          ([{"name": "a"}, {"name": "a"}], r"^runs: two runs have the same name$"),
                          ([{"activation": "tanh"}, {}], r"^runs: some runs declare an activation and others not"),
                          ([{"activation": "swish"}], r"^runs\[0\]\['activation'\]: unknown activation 'swish'")]:
        with pytest.raises(ActstatsValueError, match=message):
            Recorder(new, model, epochs=[0], runs=runs, **kwargs)
    with pytest.raises(ActstatsValueError, match=r"^attributes: with runs=, give each run's attributes in runs="):
        Recorder(new, model, epochs=[0], runs=2, attributes={"seed": 0}, **kwargs)
    with pytest.raises(ActstatsValueError, match=r"^runs\[1\] declares activation 'tanh' for layer '1', but the "
                                                 r"model has 'sigmoid' there$"):
        Recorder(new, model, epochs=[0], runs=[{"activation": "sigmoid"}, {"activation": "tanh"}], run=1, **kwargs)
    assert not os.path.exists(new)


@pytest.mark.long  # two processes recording at once: a trial of several seconds (make test-long)
def test_runs_of_other_activation_functions_written_in_parallel_processes(tmp_path, digits):
    """Two processes record two runs (sigmoid and tanh) into one store at the same time; the
    report's activation comparison (C6) and C5 read it."""
    from actstats.report import assess

    path = str(tmp_path / "parallel.zarr")
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {os.path.join(ROOT, "tests")!r})
        import actstats.capture.recorder
        actstats.capture.recorder.FSYNC = False
        torch.set_num_threads(1)
        from recorder_tools import digits_tensors
        from test_recorder_runs import record_run
        runs = [{{"name": "s", "activation": "sigmoid", "optimizer": "adam", "lr": 0.03}},
                {{"name": "t", "activation": "tanh", "optimizer": "adam", "lr": 0.02}}]
        activation = torch.nn.Sigmoid if sys.argv[1] == "s" else torch.nn.Tanh
        record_run({path!r}, digits_tensors(), sys.argv[1], runs=runs, activation=activation)
    """)
    env = dict(os.environ, PYTHONPATH=ROOT)
    processes = [subprocess.Popen([sys.executable, "-c", script, name], env=env, stderr=subprocess.PIPE, text=True)
                 for name in ("s", "t")]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    ds = actstats.open_store(path)
    assert bool(ds["complete"].all()) and actstats.verify_store(path, progress=False).ok
    assert ds["activation_fn"].values.tolist() == ["sigmoid", "tanh"]
    assert ds["layer_activation_fn"].values.tolist() == [["sigmoid", "sigmoid"], ["tanh", "tanh"]]
    h, z = ds["activation"].isel(run=1, epoch=-1).values, ds["preactivation"].isel(run=1, epoch=-1).values
    np.testing.assert_allclose(h, np.tanh(z), atol=1e-6)
    c6 = assess(ds, claims=["C6"]).claims[0]
    assert c6.verdict != "not testable", c6.summary
    assert [s.name for s in c6.strata] == ["tanh minus sigmoid"]
