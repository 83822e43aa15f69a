"""Capture end to end: determinism, kill -9 and --resume, workers, refusals, progress."""

from __future__ import annotations

import os
import re
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import actstats
from actstats.store import VARIABLES, COORDINATES

from conftest import ROOT, run_cli, small_config_text, write_config


def assert_stores_identical(a: str, b: str) -> None:
    """Every variable and coordinate equal bit for bit (NaN padding included)."""
    import zarr

    ga, gb = zarr.open_group(a, mode="r"), zarr.open_group(b, mode="r")
    for name in list(VARIABLES) + list(COORDINATES):
        if name not in ga:
            assert name not in gb, name
            continue
        xa, xb = np.asarray(ga[name][...]), np.asarray(gb[name][...])
        assert xa.shape == xb.shape, name
        if xa.dtype.kind in "fib":
            assert xa.tobytes() == xb.tobytes(), f"{name} differs"
        else:
            assert xa.astype(object).tolist() == xb.astype(object).tolist(), name
    assert ga.attrs["sweep"] == gb.attrs["sweep"]


def test_same_config_twice_gives_identical_stores(small_config, small_store, tmp_path):
    from actstats.capture import capture

    again = str(tmp_path / "again.zarr")
    capture(small_config, again, progress=False)
    assert_stores_identical(small_store, again)


@pytest.mark.long
def test_workers_write_the_same_store(small_config, small_store, tmp_path):
    result = run_cli("capture", small_config, "-o", tmp_path / "w.zarr", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert_stores_identical(small_store, str(tmp_path / "w.zarr"))


def test_existing_store_is_refused_and_left_untouched(small_config, small_store):
    before = {p: os.stat(os.path.join(dp, p)).st_mtime_ns for dp, _, fs in os.walk(small_store) for p in fs}
    result = run_cli("capture", small_config, "-o", small_store)
    assert result.returncode == 2
    assert "store exists; use --resume to continue it or --overwrite to replace it" in result.stderr
    assert result.stderr.count("\n") == 1
    after = {p: os.stat(os.path.join(dp, p)).st_mtime_ns for dp, _, fs in os.walk(small_store) for p in fs}
    assert before == after


def test_resume_with_a_different_config_is_refused(small_store, tmp_path):
    other = write_config(tmp_path, small_config_text(**{"lr = 0.05": "lr = 0.06"}))
    result = run_cli("capture", other, "-o", small_store, "--resume")
    assert result.returncode == 2
    assert "--resume with a different config" in result.stderr
    assert "train.lr: store has 0.05, config has 0.06" in result.stderr


@pytest.mark.long  # 11-13 s in make test's profile: run by make test-long
def test_overwrite_replaces_the_store(small_config, tmp_path):
    target = tmp_path / "o.zarr"
    cfg = write_config(tmp_path, small_config_text(**{'"model.width" = [12, 8]': '"model.width" = [5]'}), "one.toml")
    from actstats.capture import capture

    capture(cfg, str(target), progress=False)
    result = run_cli("capture", cfg, "-o", target, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert actstats.open_store(target)["complete"].values.all()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".o.zarr")]


@pytest.mark.parametrize(
    "args, message",
    [
        (("capture", "missing.toml", "-o", "x.zarr"), "missing.toml: no such config file"),
        (("capture", "{cfg}", "-o", "x.zarr", "--workers", "0"), "--workers 0: must be at least 1"),
        (("frobnicate", "x"), "invalid choice: 'frobnicate'"),
        (("info",), "the following arguments are required: STORE"),
        (("capture", "{bad}", "-o", "x.zarr"), "unknown key 'model.widht' (did you mean 'model.width'?)"),
        (("capture", "{npz_cfg}", "-o", "x.zarr"), "the .npz has no array 'y'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, small_config, args, message):
    bad = write_config(tmp_path, "[model]\nwidht = 3\n", "bad.toml")
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 3)))
    npz_cfg = write_config(tmp_path, f'[dataset]\nname = "npz"\npath = "{tmp_path / "d.npz"}"\n', "npz.toml")
    args = [a.format(cfg=small_config, bad=bad, npz_cfg=npz_cfg) for a in args]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "x.zarr").exists()


@pytest.mark.long  # 11-13 s in make test's profile: run by make test-long
def test_global_options_before_or_after_the_subcommand(small_store):
    for args in (("--no-progress", "info", small_store), ("info", small_store, "--no-progress")):
        result = run_cli(*args)
        assert result.returncode == 0, result.stderr
        assert "records complete: 32/32" in result.stdout


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path):
    cfg = write_config(tmp_path, small_config_text(**{'"model.width" = [12, 8]': '"model.width" = [5]'}))
    result = run_cli("capture", cfg, "-o", tmp_path / "p.zarr")
    assert result.returncode == 0
    assert result.stderr == ""


def test_npz_dataset_with_its_own_test_split(tmp_path):
    from actstats.capture import capture

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x[:20] + 1, y_test=y[:20])
    cfg = write_config(
        tmp_path,
        f'[dataset]\nname = "npz"\npath = "{tmp_path / "d.npz"}"\nprobe_test = 7\n'
        "[model]\ndepth = 2\nwidth = 4\n[train]\nepochs = 1\n[record]\nepochs = [0, 1]\n",
    )
    capture(cfg, str(tmp_path / "n.zarr"), progress=False)
    ds = actstats.open_store(tmp_path / "n.zarr")
    assert (ds["split"].values == "train").sum() == 60 and (ds["split"].values == "test").sum() == 7
    np.testing.assert_array_equal(ds["input"].values[60:], x[:7] + 1)
    assert ds["source_index"].values[60:].tolist() == list(range(7))


def test_digits_are_scikit_learns():
    from sklearn.datasets import load_digits as sklearn_digits

    from actstats.capture.data import load_digits

    x, y = load_digits()
    bunch = sklearn_digits()
    np.testing.assert_array_equal(x, (bunch.data / 16.0).astype(np.float32))
    np.testing.assert_array_equal(y, bunch.target)


@pytest.mark.parametrize("name", ["synthetic", "mnist1d"])
def test_other_datasets(tmp_path, name):
    from actstats.capture import capture

    extra = 'n_samples = 300\n'
    cfg = write_config(
        tmp_path,
        f'[dataset]\nname = "{name}"\n{extra}probe_train = 20\nprobe_test = 10\n'
        '[model]\ndepth = 2\nwidth = 6\ninit = "lsuv"\n[train]\nepochs = 1\n[record]\nepochs = [0, 1]\n',
    )
    capture(cfg, str(tmp_path / "d.zarr"), progress=False)
    ds = actstats.open_store(tmp_path / "d.zarr")
    assert ds.sizes["feature"] == (32 if name == "synthetic" else 40)
    assert ds["complete"].values.all()


@pytest.mark.parametrize("init", ["xavier_uniform", "xavier_normal", "kaiming_normal", "normal", "uniform", "orthogonal", "lsuv", "default"])
def test_initialisations(init):
    """Each initialisation's weights have the spread its definition gives (fan_in 64 -> 48)."""
    import torch

    from actstats.capture.model import FeedForward, initialise

    torch.manual_seed(0)
    model = FeedForward(64, [48, 48], 10, "tanh")
    x = torch.rand(512, 64)
    initialise(model, init, 0.5 if init in ("normal", "uniform") else 1.0, x)
    w = model.hidden[0].weight.detach().numpy()
    expected_std = {
        "xavier_uniform": np.sqrt(2 / (64 + 48)),
        "xavier_normal": np.sqrt(2 / (64 + 48)),
        "kaiming_normal": 5 / 3 / np.sqrt(64),
        "normal": 0.5,
        "uniform": 0.5 / np.sqrt(3),
        "orthogonal": 1 / np.sqrt(64),
        "default": 1 / np.sqrt(64) / np.sqrt(3),
    }
    if init == "lsuv":
        z = model.hidden[0](x).detach()
        assert abs(float(z.var()) - 1) < 0.1
        h = model.activation(z)
        assert abs(float(model.hidden[1](h).detach().var()) - 1) < 0.1
        return
    assert w.std() == pytest.approx(expected_std[init], rel=0.06)
    if init == "orthogonal":
        np.testing.assert_allclose(w @ w.T, np.eye(48), atol=1e-5)


def test_readout_initialised_apart_and_zero_biases():
    """readout_init gives the readout its own init and scale while the hidden layers keep
    theirs; bias_init = "zero" zeroes PyTorch's default U(±1/sqrt(fan_in)) biases and leaves
    its weights alone."""
    import torch

    from actstats.capture.model import FeedForward, initialise

    torch.manual_seed(0)
    model = FeedForward(64, [48, 48], 10, "sigmoid")
    initialise(model, "normal", 2.0, torch.zeros(4, 64), readout_init="normal", readout_scale=0.01)
    assert model.hidden[1].weight.std().item() == pytest.approx(2.0, rel=0.06)  # 2304 draws: 3 std of the std
    assert model.readout.weight.std().item() == pytest.approx(0.01, rel=0.2)  # 480 draws
    torch.manual_seed(0)
    reference = FeedForward(64, [48, 48], 10, "sigmoid")
    torch.manual_seed(0)
    model = FeedForward(64, [48, 48], 10, "sigmoid")
    initialise(model, "default", 1.0, torch.zeros(4, 64), bias_init="zero")
    for layer, same in zip(model.layers, reference.layers):
        assert torch.equal(layer.weight, same.weight)
        assert not layer.bias.any() and same.bias.any()


def test_new_model_keys_leave_older_configs_unchanged():
    """bias_init, readout_init and readout_init_scale are absent unless given: a config that
    does not name them normalises as before, so a store made before them still resumes."""
    from actstats.capture.config import parse_config

    whole = parse_config("[model]\ndepth = 2\nwidth = 8\n").sweep
    assert not {"bias_init", "readout_init", "readout_init_scale"} & set(whole["model"])


@pytest.mark.stress  # make test kills at random moments in tests/test_reliability.py already
def test_kill_9_at_random_moments_then_resume_equals_an_uninterrupted_capture(tmp_path):
    cfg = write_config(
        tmp_path,
        small_config_text(**{
            '"model.width" = [12, 8]': '"model.width" = [24]',
            "epochs = 2\n": "epochs = 4\n",
            "epochs = [0, 0.25, 1, 2]": "epochs = [0, 0.1, 0.25, 0.5, 1, 2, 3, 4]",
        }),
    )
    reference = tmp_path / "reference.zarr"
    start = time.monotonic()
    assert run_cli("capture", cfg, "-o", reference).returncode == 0
    duration = time.monotonic() - start
    rng = random.Random(20261129)
    for trial in range(1):  # one trial here; tests/test_reliability.py kills more (54 with `make stress`)
        target = tmp_path / f"killed-{trial}.zarr"
        process = subprocess.Popen(
            [sys.executable, "-m", "actstats.cli", "capture", cfg, "-o", str(target)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.35, 0.95) * duration)
        process.send_signal(signal.SIGKILL)
        process.wait()
        if target.exists():
            ds = actstats.open_store(target)  # opens whatever moment the kill hit
            verify = run_cli("verify", target)
            if not ds["complete"].values.all():
                assert verify.returncode == 3 and "incomplete: run" in verify.stdout
        result = run_cli("capture", cfg, "-o", target, "--resume")
        assert result.returncode == 0, result.stderr
        assert_stores_identical(str(reference), str(target))
        assert run_cli("verify", target).returncode == 0


@pytest.mark.slow
def test_glorot2010_signature(tmp_path):
    """Glorot & Bengio 2010, Fig. 2: with default init, SGD, the top sigmoid layer's mean
    activation falls toward 0 within the first epochs while layer 1 stays near 0.5."""
    from actstats import configs
    from actstats.capture import capture

    text = configs.text("glorot2010")
    text = text.split("[sweep]")[0]  # one run: depth 4, lr 0.1, seed 0
    text = re.sub(r"(?m)^epochs = \d+$", "epochs = 10", text)
    text = re.sub(r"(?m)^epochs = \[.*\]$", "epochs = [0, 1, 5, 10]", text)
    text = text.replace("probe_train = 300", "probe_train = 200").replace("probe_test = 300", "probe_test = 50")
    assert "epochs = [0, 1, 5, 10]" in text and "epochs = 10\n" in text and 'bias_init = "zero"' in text
    cfg = write_config(tmp_path, text)
    capture(cfg, str(tmp_path / "g.zarr"), progress=False)
    ds = actstats.open_store(tmp_path / "g.zarr")
    mean = ds["activation"].isel(run=0).where(ds["split"] == "train").mean(["sample", "unit"]).values
    top, first = mean[:, -1], mean[:, 0]
    assert abs(top[0] - 0.5) < 0.05  # starts near 0.5
    assert top[-1] < 0.15  # collapsed toward 0 by epoch 10
    assert np.all(np.diff(top) < 0)  # monotone fall
    assert np.all(np.abs(first - 0.5) < 0.05)  # first layer stays near 0.5
