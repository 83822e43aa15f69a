"""Readers other than actstats: every array of a store read by TensorStore's zarr3 driver (a
second Zarr 3 implementation, C++), the text coordinates decoded from their attributes alone,
and compared with what actstats.open_store returns; xarray's back end (engine="actstats")
and plain xarray; stores of the older format (text as Zarr 3 strings) still read and resumed.

docs/store-format.md ("Text coordinates") says which readers were checked: these tests."""

from __future__ import annotations

import doctest
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

import actstats
from actstats.capture import Recorder
from actstats.store import COORDINATES, OPTIONAL_COORDINATES, write_store

from conftest import write_config
from recorder_tools import digits_tensors, quick_recording
from reliability_tools import TINY_CONFIG, TINY_PUTS, capture_process, cli

#: The text coordinates of the format (docs/store-format.md), spelled out: this file reads
#: stores without actstats' tables.
TEXT = ("split", "activation_fn", "init", "optimizer", "dataset", "config", "layer_activation_fn")
F = torch.nn.functional


def test_the_text_coordinates_named_here_are_the_formats():
    assert set(TEXT) == {n for n, (_, kind) in {**COORDINATES, **OPTIONAL_COORDINATES}.items() if kind == "str"}


# ------------------------------------------------------------------------ three writers


NEURONS = ("run", "epoch", "layer", "sample", "unit")


@pytest.fixture(scope="module")
def written_store(tmp_path_factory) -> str:
    """actstats.write_store: two runs, run 1 one layer shallower (so layer_activation_fn pads
    with ""), a data set name with a blank and JSON configs (no CF words: labels only)."""
    rng = np.random.default_rng(0)
    runs, epochs, layers, samples, units, features = 2, 2, 2, 9, 3, 4
    z = rng.normal(size=(runs, epochs, layers, samples, units)).astype("float32")
    z[1, :, 1] = np.nan  # run 1 has one hidden layer
    h = np.stack([np.tanh(z[:, :, 0]), np.maximum(z[:, :, 1], 0)], axis=2)
    weight = np.full((runs, epochs, layers, units, features), np.nan, "float32")
    weight[:, :, 0] = rng.normal(size=(runs, epochs, units, features))
    weight[0, :, 1, :, :units] = rng.normal(size=(epochs, units, units))
    bias = np.zeros((runs, epochs, layers, units), "float32")
    bias[1, :, 1] = np.nan
    path = str(tmp_path_factory.mktemp("written") / "written.zarr")
    return write_store(path, {
        "activation": (NEURONS, h), "preactivation": (NEURONS, z),
        "weight": (("run", "epoch", "layer", "unit", "fan_in"), weight),
        "bias": (("run", "epoch", "layer", "unit"), bias),
        "input": (("sample", "feature"), rng.random((samples, features))),
        "epoch": ("epoch", [0.0, 1.0]),
        "split": ("sample", ["train"] * 6 + ["test"] * 3),
        "layer_activation_fn": (("run", "layer"), [["tanh", "relu"], ["tanh", "relu"]]),
        "dataset": ("run", ["my digits", "my digits"]),
        "config": ("run", [json.dumps({"lr": 0.1, "note": "a b"}),
                           json.dumps({"lr": 0.2, "note": "ü"}, ensure_ascii=False)]),
    })


def _mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 12), torch.nn.Sigmoid(), torch.nn.Linear(12, 8), torch.nn.Tanh(),
                               torch.nn.Linear(8, 10))


def _probes(n_train=30, n_test=15):
    x, y = digits_tensors()
    return {"train": (x[:n_train], y[:n_train]), "test": (x[-n_test:], y[-n_test:])}


def _record(path, epochs, *, of=range(3)):
    """A Recorder session on `path` (epochs `of`) that records `epochs`."""
    model = _mlp()
    with quick_recording(), Recorder(path, model, probes=_probes(), loss=F.cross_entropy, epochs=of,
                                     attributes={"optimizer": "sgd", "lr": 0.5, "note": "x"}) as rec:
        for epoch in epochs:
            rec.record(epoch=epoch)


@pytest.fixture(scope="module")
def recorder_store(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("recorder") / "recorded.zarr")
    _record(path, range(3))
    return path


@pytest.fixture(params=["capture", "write_store", "Recorder"])
def store(request, small_store, written_store, recorder_store) -> str:
    return {"capture": small_store, "write_store": written_store, "Recorder": recorder_store}[request.param]


# ---------------------------------------------------------------- TensorStore, no actstats


def read_with_tensorstore(path: str) -> dict[str, dict]:
    """Every array of the store at `path`, found and read with TensorStore alone: name ->
    {"meta": its zarr.json, "values": numpy array, "labels": the dimension labels}."""
    ts = pytest.importorskip("tensorstore", reason="TensorStore is the other Zarr 3 reader (actstats[dev])")
    kvstore = ts.KvStore.open({"driver": "file", "path": os.path.abspath(path) + "/"}).result()
    out = {}
    for key in kvstore.list().result():
        if not key.endswith(b"/zarr.json"):
            continue
        meta = json.loads(kvstore.read(key).result().value)
        if meta["node_type"] != "array":
            continue  # the groups resume/ and actstats_manifest/
        name = key.decode()[: -len("/zarr.json")]
        array = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": os.path.join(path, name) + "/"}},
                        open=True, read=True).result()
        out[name] = {"meta": meta, "values": array.read().result(), "labels": tuple(array.domain.labels)}
    return out


def decode_from_attributes(values: np.ndarray, attributes: dict) -> list:
    """Codes to text with the array's attributes and nothing else (docs/store-format.md)."""
    labels = attributes["labels"]
    if "flag_meanings" in attributes:  # CF's form, where the labels are words
        assert attributes["flag_meanings"].split(" ") == labels
        assert attributes["flag_values"] == list(range(len(labels)))
    return np.array(labels, dtype=object)[values].tolist()


def test_tensorstore_reads_every_array_and_the_labels_decode_to_what_actstats_returns(store):
    ds = actstats.open_store(store)
    arrays = read_with_tensorstore(store)
    assert set(arrays) == set(ds.variables), "TensorStore found other arrays than actstats opens"
    for name, array in arrays.items():
        meta, values = array["meta"], array["values"]
        assert array["labels"] == tuple(meta["dimension_names"]) == ds[name].dims, name
        assert values.shape == ds[name].shape, name
        assert [c["name"] for c in meta["codecs"]] == ["bytes", "crc32c"], name
        assert values.dtype.kind in "iufb", name
        if name in TEXT:
            assert values.dtype == np.int32 and meta["fill_value"] == -1, name
            decoded = decode_from_attributes(values, meta["attributes"])
            assert decoded == ds[name].values.tolist(), name
        else:
            np.testing.assert_array_equal(values, ds[name].values, err_msg=name)  # NaN where NaN
    assert set(TEXT) - {"layer_activation_fn"} <= set(arrays)
    split = decode_from_attributes(arrays["split"]["values"], arrays["split"]["meta"]["attributes"])
    assert split == ds["split"].values.tolist() and set(split) == {"train", "test"}
    configs = decode_from_attributes(arrays["config"]["values"], arrays["config"]["meta"]["attributes"])
    assert [json.loads(c) for c in configs] == [json.loads(c) for c in ds["config"].values]


def test_cf_attributes_only_where_every_label_is_a_word(small_store, written_store):
    arrays = read_with_tensorstore(small_store)
    assert arrays["split"]["meta"]["attributes"] == {"labels": ["train", "test"], "flag_values": [0, 1],
                                                     "flag_meanings": "train test"}
    assert arrays["split"]["values"].tolist() == [0] * 40 + [1] * 24
    assert set(arrays["activation_fn"]["meta"]["attributes"]["flag_meanings"].split()) == {"sigmoid", "tanh"}
    assert "flag_meanings" not in arrays["config"]["meta"]["attributes"]  # JSON text is no word
    written = read_with_tensorstore(written_store)
    assert written["layer_activation_fn"]["meta"]["attributes"] == {"labels": ["tanh", "relu", ""]}
    assert written["layer_activation_fn"]["values"].tolist() == [[0, 1], [0, 2]]
    assert written["dataset"]["meta"]["attributes"] == {"labels": ["my digits"]}
    assert json.loads(decode_from_attributes(written["config"]["values"],
                                             written["config"]["meta"]["attributes"])[1])["note"] == "ü"


# --------------------------------------------------------------------------------- xarray


def test_xarray_back_end_returns_what_open_store_returns(store):
    """The back end's class, as xarray takes it; registered by name: the next test."""
    import xarray as xr

    from actstats.store.backend import ActstatsBackendEntrypoint

    ds = xr.open_dataset(store, engine=ActstatsBackendEntrypoint)
    want = actstats.open_store(store)
    xr.testing.assert_identical(ds, want)
    assert isinstance(ds["split"].values[0], str)
    chunked = xr.open_dataset(store, engine=ActstatsBackendEntrypoint, chunks={})  # a dask chunk a Zarr chunk
    assert chunked["activation"].data.chunks == want["activation"].data.chunks
    assert "activation" not in xr.open_dataset(store, engine=ActstatsBackendEntrypoint, drop_variables=["activation"])


def test_engine_actstats_is_registered_and_light(small_store, tmp_path):
    """xr.open_dataset(path, engine="actstats") through the installed entry point, in a fresh
    process started elsewhere (so that no stale *.egg-info of the source tree hides the
    installed metadata). xarray imports every back end's module whenever it lists its engines
    (any open_dataset call), so actstats' imports nothing of the store until a store is opened."""
    code = textwrap.dedent(f"""
        import doctest, json, sys, xarray as xr
        engines = xr.backends.list_engines()
        loaded = sorted(m for m in sys.modules if m == "zarr" or m.startswith("actstats.store."))
        ds = xr.open_dataset({small_store!r}, engine="actstats")
        import actstats.store.backend
        examples = doctest.testmod(actstats.store.backend, optionflags=doctest.NORMALIZE_WHITESPACE)
        codes = xr.open_zarr({small_store!r})["split"].values.tolist()
        print(json.dumps({{"registered": "actstats" in engines, "loaded": loaded, "examples": list(examples),
                          "split": ds["split"].values.tolist(), "codes": codes}}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["registered"] and out["loaded"] == ["actstats.store.backend"], out["loaded"]
    assert out["examples"][1] > 0 and out["examples"][0] == 0, result.stdout  # the docstring's example (failed, tried)
    assert out["split"] == ["train"] * 40 + ["test"] * 24 and out["codes"] == [0] * 40 + [1] * 24


def test_plain_xarray_shows_the_codes_with_their_labels(small_store):
    import xarray as xr

    plain = xr.open_zarr(small_store)
    assert plain["split"].dtype == np.int32 and plain["split"].attrs["labels"] == ["train", "test"]
    assert plain["split"].values.tolist() == [0] * 40 + [1] * 24
    labels = np.array(plain["activation_fn"].attrs["labels"])
    want = actstats.open_store(small_store)["activation_fn"].values.tolist()
    assert labels[plain["activation_fn"].values].tolist() == want


def test_a_dataset_read_by_plain_xarray_is_written_again_with_its_text(written_store, tmp_path):
    """write_store takes text coordinates as codes with their labels, as plain xarray reads them."""
    import xarray as xr

    copy, want = actstats.open_store(write_store(tmp_path / "copy.zarr", xr.open_zarr(written_store))), \
        actstats.open_store(written_store)
    for name in TEXT:
        assert copy[name].values.tolist() == want[name].values.tolist(), name


@pytest.mark.parametrize("module", ["actstats.store.text", "actstats.store.write", "actstats.store.open"])
def test_docstring_examples_run(module):
    """(actstats.store.backend's run in the test above, where its engine is registered.)"""
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------- stores of actstats.store/1


def to_format_1(path: str) -> None:
    """Rewrite the store at `path` as actstats wrote stores before actstats.store/2: text
    coordinates as Zarr 3 ``string`` arrays (vlen-utf8, fill value "", no attributes) and the
    schema ``actstats.store/1``; then the consolidated metadata and the manifest's
    ``store.json`` (the checksums of the coordinate chunks) as creation wrote them."""
    import zarr
    from zarr.codecs import Crc32cCodec

    from actstats.store.manifest import write_store_manifest

    group = zarr.open_group(path, mode="r+")
    group.attrs["schema"] = "actstats.store/1"
    for name in TEXT:
        if name not in group:
            continue
        array = group[name]
        values = np.array(array.attrs["labels"], dtype=object)[array[...]].astype(str)
        strings = group.create_array(name, shape=values.shape, chunks=values.shape, dtype=str,
                                     compressors=[Crc32cCodec()], dimension_names=list(array.metadata.dimension_names),
                                     fill_value="", config={"write_empty_chunks": True}, overwrite=True)
        strings[...] = values
    with warnings.catch_warnings():  # zarr-python's on consolidated metadata and the manifest's files, as at creation
        warnings.simplefilter("ignore", UserWarning)
        zarr.consolidate_metadata(path)
    write_store_manifest(path)


def _is_format_1(path) -> bool:
    import zarr

    group = zarr.open_group(path, mode="r")
    return group.attrs["schema"] == "actstats.store/1" and all(
        np.dtype(group[n].dtype).kind in "OTU" and not dict(group[n].attrs) for n in TEXT if n in group)


def test_a_store_of_the_old_format_opens_queries_and_verifies_with_the_same_labels(small_store, tmp_path):
    import xarray as xr

    from actstats.store.backend import ActstatsBackendEntrypoint

    old = str(tmp_path / "old.zarr")
    shutil.copytree(small_store, old)
    to_format_1(old)
    assert _is_format_1(old)
    got, want = actstats.open_store(old), actstats.open_store(small_store)
    assert got.attrs.pop("schema") == "actstats.store/1" and want.attrs.pop("schema") == "actstats.store/2"
    xr.testing.assert_identical(got, want)  # labels, their str dtype, every variable
    for name in TEXT:
        if name in want:
            assert got[name].values.dtype == want[name].values.dtype, name
    report = actstats.verify_store(old, progress=False)
    assert report.ok and report.manifest, report.lines()
    with actstats.set_options(scheduler=False):
        xr.testing.assert_identical(actstats.saturation(actstats.open_store(old), by=("split",)),
                                    actstats.saturation(actstats.open_store(small_store), by=("split",)))
    xr.testing.assert_identical(xr.open_dataset(old, engine=ActstatsBackendEntrypoint).drop_attrs(),
                                actstats.open_store(small_store).drop_attrs())


def test_strings_in_a_store_of_the_new_format_are_a_format_error(written_store, tmp_path):
    """actstats.store/2 promises every reader numbers: text as strings there is refused."""
    import zarr

    path = str(tmp_path / "mixed.zarr")
    shutil.copytree(written_store, path)
    to_format_1(path)
    zarr.open_group(path, mode="r+").attrs["schema"] = "actstats.store/2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        zarr.consolidate_metadata(path)
    # (the data type as numpy names zarr-python's strings: StringDType() with numpy 2)
    message = r"variable 'split' has data type \S+, expected integer codes with their labels \(text in " \
              r"actstats.store/2, docs/store-format.md\)$"
    with pytest.raises(actstats.StoreFormatError, match=message):
        actstats.open_store(path)
    assert any(re.search(message, line) for line in actstats.verify_store(path, progress=False).lines())


@pytest.mark.long  # 6-14 s: a capture, killed and resumed (make test-long)
def test_a_capture_of_the_old_format_resumes_as_before(tmp_path):
    """A capture killed part-way, its store turned into the old format, then --resume: the
    store stays actstats.store/1 and ends as an uninterrupted capture's (read by actstats)."""
    import xarray as xr

    from actstats.capture import capture

    config = write_config(str(tmp_path), TINY_CONFIG, "tiny.toml")
    reference = str(tmp_path / "reference.zarr")
    capture(config, reference, progress=False)
    store = str(tmp_path / "old.zarr")
    process = capture_process(config, store, env={"ACTSTATS_FAULT_KILL_AFTER_PUTS": str(TINY_PUTS // 2)})
    process.communicate(timeout=600)
    to_format_1(store)
    assert not actstats.open_store(store)["complete"].values.all()
    code, _, err = cli("capture", config, "-o", store, "--resume", "--no-progress")
    assert code == 0, err
    assert _is_format_1(store)
    got, want = actstats.open_store(store).load(), actstats.open_store(reference).load()
    for ds in (got, want):
        ds.attrs.clear()
    xr.testing.assert_identical(got, want)
    assert actstats.verify_store(store, progress=False).ok


def test_a_recorder_adds_to_a_store_of_the_old_format(tmp_path):
    path = str(tmp_path / "old.zarr")
    _record(path, [0, 1])
    before = actstats.open_store(path)
    to_format_1(path)
    _record(path, [2])
    assert _is_format_1(path)
    ds = actstats.open_store(path)
    assert ds["complete"].values.all()
    for name in TEXT:
        assert ds[name].values.tolist() == before[name].values.tolist(), name
    assert ds["layer_activation_fn"].values.tolist() == [["sigmoid", "tanh"]]
    assert actstats.verify_store(path, progress=False).ok
