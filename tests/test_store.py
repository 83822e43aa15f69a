"""The store format: readable without actstats, internally consistent, checked on open."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy.special import expit

import actstats
from actstats.errors import IntegrityError, StoreFormatError
from actstats.store import COORDINATES, VARIABLES

from conftest import run_cli

PLAIN_READER = textwrap.dedent(
    """
    import json, sys
    sys.modules["actstats"] = None   # importing actstats or capture now fails
    sys.modules["capture"] = None
    import xarray as xr, zarr
    path = sys.argv[1]
    ds = xr.open_zarr(path)
    group = zarr.open_group(path, mode="r")
    out = {
        "dims": {k: int(v) for k, v in ds.sizes.items()},
        "data_vars": sorted(ds.data_vars),
        "coords": sorted(ds.coords),
        "var_dims": {k: list(v.dims) for k, v in ds.variables.items()},
        "attrs": sorted(ds.attrs),
        "zarr_attrs": sorted(group.attrs),
        # text coordinates are integer codes; the labels say what each code means
        "split": [ds["split"].attrs["labels"][c] for c in ds["split"].values],
        "split_codes": sorted(set(ds["split"].values.tolist())),
        "split_flags": [ds["split"].attrs["flag_values"], ds["split"].attrs["flag_meanings"]],
        "activation_fn": [group["activation_fn"].attrs["labels"][c] for c in group["activation_fn"][...]],
        "dimension_names": list(group["activation"].metadata.dimension_names),
        "codecs": [c.to_dict()["name"] for c in group["activation"].metadata.codecs],
        "complete": ds["complete"].values.tolist(),
        "mean_activation": float(ds["activation"].mean()),
    }
    try:
        import actstats  # noqa: F401
        out["actstats_importable"] = True
    except ImportError:
        out["actstats_importable"] = False
    print(json.dumps(out))
    """
)


def test_plain_xarray_and_zarr_read_the_store_without_actstats(small_store, tmp_path):
    script = tmp_path / "reader.py"
    script.write_text(PLAIN_READER)
    result = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", str(script), small_store],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["actstats_importable"] is False
    assert out["dims"] == {
        "run": 8, "epoch": 4, "layer": 3, "sample": 64, "unit": 12, "fan_in": 64,
        "class": 10, "feature": 64,
    }
    until = {"stopped", "until_epoch"}  # only in stores where some run has train.until
    assert set(VARIABLES) - until <= set(out["data_vars"])
    assert not until & set(out["data_vars"])
    assert set(COORDINATES) <= set(out["coords"])
    for name, (dims, _, _) in VARIABLES.items():
        if name not in until:
            assert out["var_dims"][name] == list(dims), name
    for name, (dims, _) in COORDINATES.items():
        assert out["var_dims"][name] == list(dims), name
    expected_attrs = {"schema", "created_at", "creation_library", "creation_library_version", "torch_version", "sweep"}
    assert expected_attrs <= set(out["attrs"]) and expected_attrs <= set(out["zarr_attrs"])
    assert out["split"] == ["train"] * 40 + ["test"] * 24
    assert out["split_codes"] == [0, 1] and out["split_flags"] == [[0, 1], "train test"]
    assert set(out["activation_fn"]) == {"sigmoid", "tanh"}
    assert out["dimension_names"] == ["run", "epoch", "layer", "sample", "unit"]
    assert "crc32c" in out["codecs"]
    assert all(all(row) for row in out["complete"])
    assert np.isfinite(out["mean_activation"])


def test_every_array_has_a_checksum_and_dimension_names(small_store):
    import zarr
    from zarr.codecs import Crc32cCodec

    group = zarr.open_group(small_store, mode="r")
    for name, array in group.arrays():
        assert any(isinstance(c, Crc32cCodec) for c in array.metadata.codecs), name
        assert array.metadata.dimension_names is not None, name


def test_root_attributes(small_store):
    ds = actstats.open_store(small_store)
    assert ds.attrs["schema"] == actstats.SCHEMA == "actstats.store/2"
    assert ds.attrs["creation_library"] == "actstats"
    sweep = json.loads(ds.attrs["sweep"])
    assert sweep["sweep"]["model.depth"] == [1, 3]
    configs = [json.loads(c) for c in ds["config"].values]
    assert [c["model"]["depth"] for c in configs] == list(ds["depth"].values)
    assert ds["epoch"].values.tolist() == [0, 0.25, 1, 2]


def test_activation_is_f_of_preactivation_for_each_run(small_store):
    ds = actstats.open_store(small_store)
    for run in ds["run"].values:
        name = str(ds["activation_fn"].sel(run=run).values)
        f = {"sigmoid": expit, "tanh": np.tanh}[name]
        h = ds["activation"].sel(run=run).values
        z = ds["preactivation"].sel(run=run).values
        np.testing.assert_allclose(h, f(z.astype(np.float64)), atol=2e-7, rtol=2e-6, equal_nan=True)
        assert np.isfinite(h).sum() > 0


def test_layer_one_preactivation_is_a_forward_pass_of_the_recorded_weights(small_store):
    ds = actstats.open_store(small_store)
    x = ds["input"].values.astype(np.float64)
    n_features = x.shape[1]
    for run in ds["run"].values:
        width = int(ds["width"].sel(run=run, layer=1))
        w = ds["weight"].sel(run=run, layer=1).values[:, :width, :n_features].astype(np.float64)
        b = ds["bias"].sel(run=run, layer=1).values[:, :width].astype(np.float64)
        z = ds["preactivation"].sel(run=run, layer=1).values[:, :, :width]
        expected = np.einsum("sf,euf->esu", x, w) + b[:, None, :]
        np.testing.assert_allclose(z, expected, atol=1e-5, rtol=1e-5)


def test_deeper_layers_chain_through_recorded_weights(small_store):
    ds = actstats.open_store(small_store)
    run = int(np.flatnonzero(ds["depth"].values == 3)[0])
    width = ds["width"].sel(run=run).values
    h1 = ds["activation"].sel(run=run, layer=1).values[..., : width[0]].astype(np.float64)
    w2 = ds["weight"].sel(run=run, layer=2).values[:, : width[1], : width[0]].astype(np.float64)
    b2 = ds["bias"].sel(run=run, layer=2).values[:, : width[1]].astype(np.float64)
    z2 = ds["preactivation"].sel(run=run, layer=2).values[..., : width[1]]
    np.testing.assert_allclose(z2, np.einsum("esf,euf->esu", h1, w2) + b2[:, None, :], atol=1e-5, rtol=1e-5)


def test_padding_is_nan_exactly_where_width_says_nothing_exists(small_store):
    ds = actstats.open_store(small_store)
    width = ds["width"].values
    activation = ds["activation"].values
    for r in range(width.shape[0]):
        for layer in range(width.shape[1]):
            block = activation[r, :, layer]
            assert np.isfinite(block[..., : width[r, layer]]).all()
            assert np.isnan(block[..., width[r, layer]:]).all()
    assert (width[ds["depth"].values == 1][:, 1:] == 0).all()


def test_delta_is_the_gradient_of_each_samples_own_loss(small_store):
    # For the top hidden layer of a depth-1 run: delta = (softmax(logits) - onehot) @ W_out * f'(z)
    ds = actstats.open_store(small_store)
    run = int(np.flatnonzero((ds["depth"].values == 1) & (ds["activation_fn"].values == "sigmoid"))[0])
    width = int(ds["width"].sel(run=run, layer=1))
    e = 2
    h = ds["activation"].isel(run=run, epoch=e, layer=0).values[:, :width].astype(np.float64)
    w_out = ds["readout_weight"].isel(run=run, epoch=e).values[:, :width].astype(np.float64)
    b_out = ds["readout_bias"].isel(run=run, epoch=e).values.astype(np.float64)
    logits = h @ w_out.T + b_out
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(p.shape[1])[ds["label"].values]
    expected = ((p - onehot) @ w_out) * h * (1 - h)
    delta = ds["delta"].isel(run=run, epoch=e, layer=0).values[:, :width]
    np.testing.assert_allclose(delta, expected, atol=1e-6, rtol=1e-4)


def test_steps_follow_the_schedule(small_store):
    ds = actstats.open_store(small_store)
    # digits: 1797 rows, 20% held out -> 1438 training rows; batch 32 -> 45 steps per epoch
    assert ds["step"].sel(run=0).values.tolist() == [0, 11, 45, 90]


def _copy(store, tmp_path, name="copy.zarr"):
    target = tmp_path / name
    shutil.copytree(store, target)
    return str(target)


@pytest.mark.long  # over 10 s in make test's profile: run by make test-long
def test_corrupted_chunk_names_the_variable(small_store, tmp_path):
    path = _copy(small_store, tmp_path)
    chunk = os.path.join(path, "activation", "c", "1", "2", "0", "0", "0")
    data = bytearray(open(chunk, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(chunk, "wb").write(bytes(data))
    ds = actstats.open_store(path)
    with pytest.raises(IntegrityError, match=r"variable 'activation' chunk \(1, 2, 0, 0, 0\)"):
        ds["activation"].values
    ds["preactivation"].values  # other variables still read
    result = run_cli("verify", path)
    assert result.returncode == 3
    assert "variable 'activation' chunk (1, 2, 0, 0, 0)" in result.stdout


def test_deleted_chunk_of_a_complete_record_is_reported(small_store, tmp_path):
    path = _copy(small_store, tmp_path)
    os.remove(os.path.join(path, "weight", "c", "0", "1", "0", "0", "0"))
    result = run_cli("verify", path)
    assert result.returncode == 3
    assert "variable 'weight' chunk (0, 1, 0, 0, 0) is missing although run 0, epoch 0.25 is complete" in result.stdout


def test_verify_passes_an_intact_store(small_store):
    result = run_cli("verify", small_store, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "intact" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize(
    "damage, message",
    [
        ("schema", "schema 'actstats.store/9' is not supported"),
        ("no_schema", "root attribute 'schema' is missing"),
        ("missing_variable", "required variable 'weight' is missing"),
        ("dims", "variable 'bias' has dimension_names"),
    ],
)
def test_open_store_names_what_is_wrong(small_store, tmp_path, damage, message):
    import zarr

    path = _copy(small_store, tmp_path)
    meta_path = os.path.join(path, "zarr.json")
    meta = json.load(open(meta_path))
    if damage == "schema":
        meta["attributes"]["schema"] = "actstats.store/9"
    elif damage == "no_schema":
        del meta["attributes"]["schema"]
    elif damage == "missing_variable":
        shutil.rmtree(os.path.join(path, "weight"))
        meta["consolidated_metadata"]["metadata"].pop("weight")
    elif damage == "dims":
        for where in (os.path.join(path, "bias", "zarr.json"),):
            bias = json.load(open(where))
            bias["dimension_names"] = ["run", "epoch", "layer", "neuron"]
            json.dump(bias, open(where, "w"))
        meta["consolidated_metadata"]["metadata"]["bias"]["dimension_names"] = ["run", "epoch", "layer", "neuron"]
    json.dump(meta, open(meta_path, "w"))
    with pytest.raises(StoreFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        actstats.open_store(path)
    result = run_cli("info", path)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert zarr  # imported for the store layout


def _edit_array_json(path, name, edit) -> None:
    """Apply `edit` to array `name`'s metadata in both copies: its zarr.json and the root's
    consolidated metadata (as a writer that got it wrong would have written both)."""
    own = os.path.join(path, name, "zarr.json")
    meta = json.load(open(own))
    edit(meta)
    json.dump(meta, open(own, "w"))
    root = os.path.join(path, "zarr.json")
    meta = json.load(open(root))
    edit(meta["consolidated_metadata"]["metadata"][name])
    json.dump(meta, open(root, "w"))


def _set_attributes(name, **changes):
    def edit(meta):
        for key, value in changes.items():
            if value is None:
                meta["attributes"].pop(key, None)
            else:
                meta["attributes"][key] = value
    return lambda path: _edit_array_json(path, name, edit)


def _write_code(path, value=7, at=3):
    """A code without a label, written with plain zarr (its chunk's checksum is valid)."""
    import zarr

    zarr.open_group(path, mode="r+")["split"][at] = value


def _schema(value):
    def damage(path):
        meta = json.load(open(os.path.join(path, "zarr.json")))
        meta["attributes"]["schema"] = value
        json.dump(meta, open(os.path.join(path, "zarr.json"), "w"))
    return damage


@pytest.mark.parametrize("damage, message", [
    (_write_code, "variable 'split' holds code 7 at sample 3, but has 2 labels (codes 0 … 1)"),
    (lambda p: _write_code(p, value=-1, at=0), "variable 'split' holds code -1 at sample 0, but has 2 labels"),
    (_set_attributes("split", labels="train test"),
     "variable 'split' holds codes, but its attribute 'labels' is not a list of strings (the text of each code)"),
    (_set_attributes("activation_fn", labels=[0, 1]),
     "variable 'activation_fn' holds codes, but its attribute 'labels' is not a list of strings"),
    (_set_attributes("config", labels=None),
     "variable 'config' holds codes but has no attribute 'labels' (the text of each code)"),
    (_set_attributes("split", labels=["train", "train"], flag_meanings="train train"),
     "variable 'split' holds codes, but its attribute 'labels' holds 'train' twice (two codes for one text)"),
    (_set_attributes("split", flag_meanings="test train"),
     "variable 'split' holds codes, but its attribute 'flag_meanings' is not its labels joined by blanks"),
    (_set_attributes("split", flag_values=[1, 2]),
     "variable 'split' holds codes, but its attribute 'flag_values' is not 0 … 1, the codes of its 2 labels"),
    (_schema("actstats.store/1"),  # the old format's text is strings: codes there are not read as text
     "variable 'split' has data type int32, expected str (actstats.store/1 stores text as strings)"),
])
def test_text_coordinates_that_cannot_be_decoded_are_a_format_error(small_store, tmp_path, capsys, damage, message):
    """A text coordinate is integer codes with their labels (docs/store-format.md, "Text"):
    labels that are not a list of distinct strings, CF attributes that disagree with them, or
    a code without a label are a one-line format error for open_store, `info` and verify."""
    from conftest import run_main

    path = _copy(small_store, tmp_path)
    damage(path)
    with pytest.raises(StoreFormatError) as error:
        actstats.open_store(path)
    assert message in str(error.value) and "\n" not in str(error.value), str(error.value)
    code, _, err = run_main(capsys, "info", path)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert f"damaged: {message}" in "\n".join(actstats.verify_store(path, progress=False).lines())
    code, out, _ = run_main(capsys, "verify", path)
    assert code == 3 and message in out


def test_labels_that_differ_between_the_two_copies_of_the_metadata_are_reported(small_store, tmp_path):
    """The labels say what the codes mean, so they are bound like the data type: an array's
    own zarr.json and the consolidated copy must agree (verify), as readers may use either."""
    path = _copy(small_store, tmp_path)
    own = os.path.join(path, "split", "zarr.json")
    meta = json.load(open(own))
    meta["attributes"]["labels"] = ["test", "train"]
    json.dump(meta, open(own, "w"))
    lines = actstats.verify_store(path, progress=False).lines()
    assert "damaged: coordinate 'split': its zarr.json says labels = [\"test\", \"train\"], the consolidated " \
           "metadata in the root zarr.json says [\"train\", \"test\"]" in lines, lines


def test_not_a_store(tmp_path):
    with pytest.raises(StoreFormatError, match="no such store"):
        actstats.open_store(tmp_path / "absent.zarr")
    config = tmp_path / "c.toml"
    config.write_text("[model]\ndepth = 2\n")
    result = run_cli("info", config)
    assert result.returncode == 2 and "not a Zarr group" in result.stderr
    assert result.stderr.count("\n") == 1


def test_open_store_is_lazy_and_dask_backed(small_store):
    import dask.array as da

    ds = actstats.open_store(small_store)
    assert isinstance(ds["activation"].data, da.Array)
    # default: whole Zarr chunks grouped into dask chunks of about DASK_CHUNK_BYTES (this small
    # store: one); chunks="zarr": one dask chunk a Zarr chunk
    assert ds["activation"].data.chunksize == ds["activation"].shape
    assert actstats.open_store(small_store, chunks="zarr")["activation"].data.chunksize == (1, 1, 1, 64, 12)
    import xarray as xr

    xr.testing.assert_identical(ds.load(), actstats.open_store(small_store, chunks="zarr").load())


def test_dask_chunks_are_whole_zarr_chunks_up_to_the_target():
    from actstats.store.open import dask_chunks

    # the layer axis grows once sample and unit are whole: 2 x 4 MiB chunks of samples, 2 layers
    assert dask_chunks((9, 12, 5, 2000, 1000), (1, 1, 1, 1048, 1000), 4, target=16 * 2**20) == (1, 1, 2, 2000, 1000)
    # an axis stops growing below its length: the axes before it keep their Zarr chunk
    assert dask_chunks((9, 12, 5, 4000, 1000), (1, 1, 1, 1000, 1000), 4, target=8 * 10**6) == (1, 1, 1, 2000, 1000)
    # a target below one chunk: the Zarr chunks themselves
    assert dask_chunks((3, 4, 100), (1, 2, 50), 8, target=1) == (1, 2, 50)
    assert dask_chunks((0, 4), (1, 4), 8) == (1, 4)
    with pytest.raises(ValueError, match="chunks must be"):
        actstats.open_store("x.zarr", chunks=64)


def test_weight_grad_and_losses_match_autograd_on_the_recorded_network(small_store):
    """Rebuild the network from the recorded weights and let autograd compute the gradient
    of the mean training loss over the whole training split (an independent path)."""
    import torch

    from actstats.capture.config import parse_config
    from actstats.capture.data import load_dataset
    from actstats.capture.model import FeedForward

    ds = actstats.open_store(small_store)
    config = parse_config(ds.attrs["config_text"])
    data = load_dataset(config.runs[0]["dataset"])
    run = int(np.flatnonzero(ds["depth"].values == 3)[-1])
    width = [int(w) for w in ds["width"].sel(run=run).values]
    activation = str(ds["activation_fn"].sel(run=run).values)
    e = 2
    model = FeedForward(64, width, 10, activation).double()
    fan_in = [64, *width[:-1]]
    with torch.no_grad():
        for i, layer in enumerate(model.hidden):
            layer.weight.copy_(torch.from_numpy(ds["weight"].isel(run=run, epoch=e, layer=i).values[: width[i], : fan_in[i]].astype(np.float64)))
            layer.bias.copy_(torch.from_numpy(ds["bias"].isel(run=run, epoch=e, layer=i).values[: width[i]].astype(np.float64)))
        model.readout.weight.copy_(torch.from_numpy(ds["readout_weight"].isel(run=run, epoch=e).values[:, : width[-1]].astype(np.float64)))
        model.readout.bias.copy_(torch.from_numpy(ds["readout_bias"].isel(run=run, epoch=e).values.astype(np.float64)))
    logits, _, _ = model(torch.from_numpy(data.x_train).double())
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(data.y_train))
    grads = torch.autograd.grad(loss, [layer.weight for layer in model.hidden])
    for i, g in enumerate(grads):
        recorded = ds["weight_grad"].isel(run=run, epoch=e, layer=i).values[: width[i], : fan_in[i]]
        np.testing.assert_allclose(recorded, g.numpy(), rtol=1e-3, atol=1e-6)
    assert float(ds["train_loss"].isel(run=run, epoch=e)) == pytest.approx(float(loss.detach()), rel=1e-5)
    accuracy = float((logits.argmax(1).numpy() == data.y_train).mean())
    assert float(ds["train_accuracy"].isel(run=run, epoch=e)) == pytest.approx(accuracy, abs=1e-6)


def test_a_store_written_by_another_program_opens(tmp_path):
    """docs/examples/write_store_without_actstats.py follows docs/store-format.md with plain zarr."""
    from conftest import ROOT

    script = os.path.join(ROOT, "docs", "examples", "write_store_without_actstats.py")
    target = tmp_path / "other.zarr"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", "import sys; sys.modules['actstats'] = None; "
                             f"sys.argv = ['x', {str(target)!r}]; exec(open({script!r}).read())"],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    ds = actstats.open_store(target)
    assert ds.sizes["run"] == 2 and ds["activation_fn"].values.tolist() == ["sigmoid", "sigmoid"]
    h, z = ds["activation"].values, ds["preactivation"].values
    np.testing.assert_allclose(h, expit(z), rtol=1e-6, equal_nan=True)
    assert np.isnan(h[1, :, 1]).all() and np.isnan(h[0, :, 1, :, 6:]).all()
    assert run_cli("verify", target).returncode == 0
