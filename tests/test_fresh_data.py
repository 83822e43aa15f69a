"""dataset.fresh: a freshly generated training set each epoch (synthetic: the same teacher, new
inputs; mnist1d: the generator with a seed per epoch), deterministic and resumable; the
probes, the held-out split and the recorded training numbers stay those of the fixed split."""

from __future__ import annotations

import random
import textwrap

import numpy as np
import pytest

import actstats
from actstats.capture.config import ConfigError, parse_config
from actstats.capture.data import FreshData, data_fingerprint, load_dataset

from conftest import write_config
from reliability_tools import assert_complete_records_match, cli
from test_capture import assert_stores_identical

SYNTHETIC = {"name": "synthetic", "n_samples": 600, "n_features": 8, "n_classes": 3, "teacher_width": 16,
             "data_seed": 5, "split_seed": 0, "test_fraction": 0.2}


def _reference_teacher(spec):
    """The teacher's weights drawn as capture.data.synthetic_teacher draws them (x first), written
    out here again."""
    rng = np.random.default_rng(spec["data_seed"])
    rng.standard_normal((spec["n_samples"], spec["n_features"]))
    w1 = rng.standard_normal((spec["n_features"], spec["teacher_width"])) / np.sqrt(spec["n_features"])
    w2 = rng.standard_normal((spec["teacher_width"], spec["n_classes"])) / np.sqrt(spec["teacher_width"])
    return lambda x: np.argmax(np.tanh(x @ w1) @ w2, axis=1)


def test_synthetic_epochs_differ_are_reproducible_and_keep_the_teacher():
    data = load_dataset(SYNTHETIC)
    n = len(data.x_train)
    teacher = _reference_teacher(SYNTHETIC)
    assert (teacher(data.x_train) == data.y_train).all()  # the reference teacher is the data set's
    fresh = FreshData(SYNTHETIC, n)
    epochs = {k: fresh.epoch(k) for k in (1, 2, 3)}
    for k, (x, y) in epochs.items():
        assert x.shape == data.x_train.shape and x.dtype == np.float32 and y.shape == (n,) and y.dtype == np.int64
        assert (y == teacher(x)).all(), f"epoch {k}: labels are not the teacher's"
        assert not np.isin(x[:, 0], data.x_train[:, 0]).any()  # new inputs, not rows of the data set
        again = FreshData(SYNTHETIC, n).epoch(k)  # depends on the config and k only
        assert again[0].tobytes() == x.tobytes() and again[1].tobytes() == y.tobytes()
        assert abs(x.mean()) < 0.1 and abs(x.std() - 1) < 0.1  # N(0, I)
        assert set(np.unique(y)) == set(range(SYNTHETIC["n_classes"]))
    assert not np.array_equal(epochs[1][0], epochs[2][0]) and not np.array_equal(epochs[2][0], epochs[3][0])
    other = FreshData({**SYNTHETIC, "data_seed": 6}, n).epoch(1)[0]  # another data set: other inputs
    assert not np.array_equal(other, epochs[1][0])
    with pytest.raises(ValueError):
        fresh.epoch(0)


def test_mnist1d_epochs_differ_are_reproducible_and_leave_global_generators_alone():
    spec = {"name": "mnist1d", "data_seed": 0, "n_samples": 200, "split_seed": 0, "test_fraction": 0.2}
    data = load_dataset(spec)
    random.seed(123)
    np.random.seed(456)
    before = random.random(), np.random.random()
    random.seed(123)
    np.random.seed(456)
    fresh = FreshData(spec, 95)  # not a multiple of 10: 100 made, 95 kept
    x1, y1 = fresh.epoch(1)
    x2, y2 = fresh.epoch(2)
    assert (random.random(), np.random.random()) == before  # make_dataset seeds them; restored
    assert x1.shape == (95, 40) and x1.dtype == np.float32 and y1.dtype == np.int64
    assert set(np.unique(np.r_[y1, y2])) <= set(range(10)) and len(np.unique(y1)) >= 8
    assert not np.array_equal(x1, x2)
    again = FreshData(spec, 95).epoch(2)
    assert again[0].tobytes() == x2.tobytes() and again[1].tobytes() == y2.tobytes()
    assert not np.isin(x1[:, 5], data.x_train[:, 5]).any()


def _trainer(spec, fresh):
    from actstats.capture.recorder import RunTrainer, select_probes

    spec = {**spec, **({"fresh": True} if fresh else {})}
    run = parse_config(
        "[model]\ndepth = 1\nwidth = 8\n[train]\nlr = 0.2\nbatch_size = 32\nepochs = 3\n[record]\nepochs = [0, 3]\n"
    ).runs[0]
    run["dataset"] = spec
    data = load_dataset(spec)
    return RunTrainer(0, run, data, select_probes(data, spec), {"unit": 8, "fan_in": 40, "class": data.n_classes})


@pytest.mark.parametrize("spec", [SYNTHETIC, {"name": "mnist1d", "data_seed": 1, "n_samples": 300, "split_seed": 0,
                                              "test_fraction": 0.2}], ids=["synthetic", "mnist1d"])
def test_training_uses_the_split_in_epoch_0_and_fresh_sets_after(spec):
    plain, fresh, again = _trainer(spec, False), _trainer(spec, True), _trainer(spec, True)

    def weights(t):
        return [p.detach().clone() for p in t.model.parameters()]

    for t in (plain, fresh, again):
        t.train_until(t.spe)
    assert all(a.equal(b) for a, b in zip(weights(plain), weights(fresh)))  # epoch 0: the training split
    for t in (plain, fresh, again):
        t.train_until(2 * t.spe + 3)
    assert not all(a.equal(b) for a, b in zip(weights(plain), weights(fresh)))
    assert all(a.equal(b) for a, b in zip(weights(fresh), weights(again)))  # deterministic


FRESH_CONFIG = textwrap.dedent(
    """
    [dataset]
    name = "synthetic"
    n_samples = 600
    n_features = 8
    n_classes = 3
    teacher_width = 16
    probe_train = 16
    probe_test = 8
    fresh = true

    [model]
    depth = 1
    width = 8

    [train]
    lr = 0.2
    batch_size = 32
    epochs = 3

    [record]
    epochs = [0, 1, 1.5, 2, 3]
    """
)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A capture with fresh data and the same config without."""
    from actstats.capture import capture

    directory = tmp_path_factory.mktemp("fresh")
    out = {}
    for name, text in (("fresh", FRESH_CONFIG), ("plain", FRESH_CONFIG.replace("fresh = true\n", ""))):
        config = write_config(directory, text, f"{name}.toml")
        out[name] = (config, str(directory / f"{name}.zarr"))
        capture(config, out[name][1], progress=False)
    return out


def test_probes_held_out_split_and_recorded_numbers_are_the_fixed_splits(stores):
    fresh, plain = (actstats.open_store(stores[k][1]) for k in ("fresh", "plain"))
    for name in ("input", "label", "source_index", "split", "step"):
        assert np.array_equal(fresh[name].values, plain[name].values), name
    epochs = fresh["epoch"].values.tolist()
    up_to_1 = [e <= 1 for e in epochs]  # epoch 0 trains on the split in both
    for name in ("activation", "weight", "train_loss", "test_loss"):
        a, b = fresh[name].values[:, up_to_1], plain[name].values[:, up_to_1]
        assert a.tobytes() == b.tobytes(), name
        assert not np.array_equal(fresh[name].values[:, -1], plain[name].values[:, -1]), name
    # train_loss / train_accuracy are on the fixed training split: recomputed from the stored network
    data = load_dataset({**SYNTHETIC, "data_seed": 0, "fresh": True})
    w, b = fresh["weight"].values[0, :, 0, :8, :8], fresh["bias"].values[0, :, 0, :8]
    rw, rb = fresh["readout_weight"].values[0, :, :, :8], fresh["readout_bias"].values[0]
    for e in range(len(epochs)):
        h = 1 / (1 + np.exp(-(data.x_train.astype(np.float64) @ w[e].T + b[e])))
        logits = h @ rw[e].T + rb[e]
        logits -= logits.max(axis=1, keepdims=True)
        loss = np.mean(np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(len(logits)), data.y_train])
        assert loss == pytest.approx(float(fresh["train_loss"].values[0, e]), rel=1e-4), epochs[e]
        accuracy = np.mean(logits.argmax(axis=1) == data.y_train)
        assert abs(accuracy - float(fresh["train_accuracy"].values[0, e])) <= 2 / len(data.y_train)


def test_fingerprint_says_fresh(stores):
    import zarr

    fingerprints = {k: zarr.open_group(stores[k][1], mode="r").attrs["data_fingerprint"] for k in stores}
    assert fingerprints["fresh"]["source"]["fresh"] is True
    assert "fresh" not in fingerprints["plain"]["source"]  # stores made without fresh: unchanged
    assert fingerprints["fresh"]["arrays"] == fingerprints["plain"]["arrays"]  # the fixed splits
    spec = {**SYNTHETIC, "fresh": True}
    assert data_fingerprint(spec, load_dataset(spec))["source"]["fresh"] is True


def test_resume_with_fresh_changed_is_refused(stores, tmp_path):
    config, store = stores["fresh"]
    changed = write_config(tmp_path, FRESH_CONFIG.replace("fresh = true", "fresh = false"))
    code, _, err = cli("capture", changed, "-o", store, "--resume", "--no-progress")
    assert code == 2 and "dataset.fresh" in err and err.count("\n") == 1, err


class _Interrupted(RuntimeError):
    pass


def test_interrupted_capture_resumes_to_the_uninterrupted_store(stores, tmp_path, monkeypatch):
    """Stopped before its fourth record (epoch 2): resumed from the checkpoint at epoch 1.5,
    half-way through the first fresh epoch, whose set must be made again identically."""
    import actstats.capture.recorder as recorder
    from actstats.capture import capture

    config, reference = stores["fresh"]
    store = str(tmp_path / "interrupted.zarr")
    count = []

    def fail():
        count.append(1)
        if len(count) == 4:
            raise _Interrupted()

    monkeypatch.setattr(recorder, "before_record", fail)
    with pytest.raises(_Interrupted):
        capture(config, store, progress=False)
    monkeypatch.undo()
    assert assert_complete_records_match(store, reference)[0].tolist() == [True, True, True, False, False]
    assert recorder.load_checkpoint(store, 0)["epoch_index"] == 2  # epoch 1.5
    capture(config, store, resume=True, progress=False)
    assert_stores_identical(reference, store)


@pytest.mark.parametrize("name", ["digits", "npz"])
def test_fresh_needs_a_generator(name, tmp_path):
    path = f'\npath = "{tmp_path / "x.npz"}"' if name == "npz" else ""
    with pytest.raises(ConfigError) as info:
        parse_config(f'[dataset]\nname = "{name}"{path}\nfresh = true\n', source="c.toml")
    assert str(info.value).startswith("c.toml: dataset.fresh = true: only for dataset.name = 'mnist1d' or 'synthetic'")
    parse_config(f'[dataset]\nname = "{name}"{path}\nfresh = false\n')  # false: as without it


def test_fresh_absent_unless_given():
    assert "fresh" not in parse_config('[dataset]\nname = "synthetic"\n').sweep["dataset"]
