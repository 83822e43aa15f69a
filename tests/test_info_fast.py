"""``actstats info`` through the direct reader (actstats.store.summary: metadata and small
arrays, no xarray/zarr/dask) prints exactly what it prints through ``open_store`` (xarray):
the same stdout, stderr and exit code, in text and JSON, on a captured store, a store with
train.until stops, a store without training variables, a compressed store, a store of
actstats.store/1, and damaged or malformed stores (which the direct reader leaves to
``open_store``)."""

from __future__ import annotations

import json
import os
import shutil
import warnings

import numpy as np
import pytest

from actstats import cli
from actstats.store import summary as summary_module
from actstats.store.summary import NotServed, store_summary
from actstats.store.write import write_store
from test_other_readers import to_format_1

NEURONS = ("run", "epoch", "layer", "sample", "unit")


def _main(capsys, *args):
    code = cli.main([str(a) for a in args] + ["--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _refuse(*args, **kwargs):
    raise NotServed("the xarray path, for comparison")


def both(capsys, monkeypatch, store, *options):
    """(exit code, stdout, stderr) of ``actstats info STORE OPTIONS``: as the command runs,
    then with the direct reader refused (through open_store)."""
    fast = _main(capsys, "info", store, *options)
    with monkeypatch.context() as patched:
        patched.setattr(summary_module, "store_summary", _refuse)
        slow = _main(capsys, "info", store, *options)
    return fast, slow


def assert_same_info(capsys, monkeypatch, store, *, served=True):
    """Text and JSON output equal on both paths; `served`: the direct reader serves the store."""
    if served:
        store_summary(store)  # raises NotServed if the command would fall back
    else:
        with pytest.raises(NotServed):
            store_summary(store)
    outputs = []
    for options in ((), ("--format", "json")):
        fast, slow = both(capsys, monkeypatch, store, *options)
        assert fast == slow
        outputs.append(fast)
    return outputs


def _records_store(path, *, stopped=True, training=True, runs=3, epochs=(0.0, 0.5, 1.0, 2.0)):
    """A write_store store of `runs` runs: run 0 stops at epoch 0.5 (later records keep their
    step, not complete), run 1 runs to the end, run 2 has no complete record and (with more
    runs) run 3 diverges; training numbers with one run at chance."""
    rng = np.random.default_rng(1)
    n_epochs, layers, samples, units, features = len(epochs), 1, 6, 3, 4
    complete = np.ones((runs, n_epochs), bool)
    complete[0, 2:] = False
    complete[2] = False
    z = rng.normal(size=(runs, n_epochs, layers, samples, units)).astype("float32")
    z[~complete] = np.nan
    weight = rng.normal(size=(runs, n_epochs, layers, units, features)).astype("float32")
    weight[~complete] = np.nan
    bias = np.zeros((runs, n_epochs, layers, units), "float32")
    bias[~complete] = np.nan
    data = {
        "activation": (NEURONS, np.tanh(z)), "preactivation": (NEURONS, z),
        "weight": (("run", "epoch", "layer", "unit", "fan_in"), weight),
        "bias": (("run", "epoch", "layer", "unit"), bias),
        "input": (("sample", "feature"), rng.random((samples, features))),
        "epoch": ("epoch", list(epochs)), "split": ("sample", ["train"] * 4 + ["test"] * 2),
        "activation_fn": ("run", ["tanh"] * runs), "complete": (("run", "epoch"), complete),
        "step": (("run", "epoch"), np.where(complete | (np.arange(runs) == 0)[:, None], 10 * np.arange(n_epochs), -1)),
        "width": (("run", "layer"), np.full((runs, layers), units)),
        "readout_bias": (("run", "epoch", "class"), np.zeros((runs, n_epochs, 5), "float32")),
    }
    if stopped:
        flag = np.zeros((runs, n_epochs), bool)
        flag[0, 1] = True
        data["stopped"] = (("run", "epoch"), flag)
        data["until_epoch"] = (("run", "epoch"), np.where(flag, 0.4, np.nan).astype("float32"))
    if training:
        accuracy = np.linspace(0.1, 0.99, runs * n_epochs).reshape(runs, n_epochs)
        accuracy[1] = [0.2, 0.2, 0.25, 0.23]  # at chance (1/5 classes)
        accuracy[~complete] = np.nan
        loss = np.where(complete, 2.0 - accuracy, np.nan)
        diverged = np.zeros((runs, n_epochs), bool)
        if runs > 3:
            loss[3, 1] = np.inf
            diverged[3, 2] = True
        data.update({name: (("run", "epoch"), value.astype("float32")) for name, value in
                     (("train_accuracy", accuracy), ("test_accuracy", accuracy - 0.02), ("train_loss", loss),
                      ("test_loss", loss + 0.1))})
        data["diverged"] = (("run", "epoch"), diverged)
    return write_store(path, data)


@pytest.fixture(scope="module")
def stopped_store(tmp_path_factory):
    return _records_store(str(tmp_path_factory.mktemp("info-fast") / "stopped.zarr"), runs=4)


def _copy(store, tmp_path, name="copy.zarr"):
    target = str(tmp_path / name)
    shutil.copytree(store, target)
    return target


# ------------------------------------------------------------------------ intact stores


def test_a_captured_store_prints_the_same(small_store, capsys, monkeypatch):
    (code, text, _), (_, out, _) = assert_same_info(capsys, monkeypatch, small_store)
    assert code == 0 and "training, at each run's last complete record" in text
    assert json.loads(out)["records_complete"] > 0


def test_a_store_with_stops_divergence_and_a_run_at_chance_prints_the_same(stopped_store, capsys, monkeypatch):
    (code, text, err), (_, out, _) = assert_same_info(capsys, monkeypatch, stopped_store)
    assert code == 0 and "stopped by train.until: 1 of 4 runs: run 0 at epoch 0.5" in text
    assert "2 of 4 runs sit at chance" in err
    runs = json.loads(out)["runs"]
    assert [run["status"] for run in runs] == ["not trained", "not trained", "no complete record", "diverged"]
    assert [run["complete"] for run in runs] == ["2/2", "4/4", "0/0", "4/4"]


def test_a_store_without_training_variables_prints_the_same(tmp_path, capsys, monkeypatch):
    path = _records_store(str(tmp_path / "plain.zarr"), stopped=False, training=False)
    (code, text, err), (_, out, _) = assert_same_info(capsys, monkeypatch, path)
    assert code == 0 and err == "" and "training," not in text and "stopped by" not in text
    assert "runs_at_chance" not in json.loads(out)


def test_a_compressed_store_is_read_directly_and_prints_the_same(stopped_store, tmp_path, capsys, monkeypatch):
    """Another program's store: blosc, zstd or gzip between bytes and crc32c on the arrays info
    reads (read with numcodecs); consolidated by zarr-python."""
    import zarr
    from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec, ZstdCodec

    path = _copy(stopped_store, tmp_path, "compressed.zarr")
    group = zarr.open_group(path, mode="r+")
    compressors = {"step": ZstdCodec(level=3), "activation_fn": GzipCodec(level=1), "complete": GzipCodec(level=5),
                   "train_accuracy": GzipCodec(level=5), "diverged": BloscCodec(cname="zstd", shuffle="bitshuffle"),
                   "stopped": ZstdCodec(level=1), "width": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")}
    for name, compressor in compressors.items():
        array = group[name]
        values, attrs = array[...], dict(array.attrs)
        new = group.create_array(name, shape=array.shape, chunks=array.chunks, dtype=array.dtype,
                                 compressors=[compressor, Crc32cCodec()], fill_value=array.metadata.fill_value,
                                 dimension_names=list(array.metadata.dimension_names), attributes=attrs,
                                 config={"write_empty_chunks": True}, overwrite=True)
        new[...] = values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        zarr.consolidate_metadata(path)
    meta = json.load(open(os.path.join(path, "zarr.json")))["consolidated_metadata"]["metadata"]
    assert [c["name"] for c in meta["train_accuracy"]["codecs"]] == ["bytes", "gzip", "crc32c"]
    fast, _ = assert_same_info(capsys, monkeypatch, path)
    plain = _main(capsys, "info", stopped_store)
    assert fast[1].replace(path, stopped_store) == plain[1] and fast[2] == plain[2]


def test_a_store_of_the_first_format_goes_through_open_store_and_prints_the_same(
        stopped_store, tmp_path, capsys, monkeypatch):
    path = _copy(stopped_store, tmp_path, "old.zarr")
    to_format_1(path)  # tests/test_other_readers.py: as actstats.store/1 wrote stores
    (code, text, err), (_, out, _) = assert_same_info(capsys, monkeypatch, path, served=False)
    _, new_text, new_err = _main(capsys, "info", stopped_store)
    assert code == 0 and err == new_err
    assert text.replace(path, stopped_store).replace("actstats.store/1", "actstats.store/2") == new_text
    assert json.loads(out)["schema"] == "actstats.store/1"


# ------------------------------------------------------------ damaged or malformed stores


def _chunk(path, name, *index):
    return os.path.join(path, name, "c", *map(str, index))


def _flip_a_byte(file):
    data = bytearray(open(file, "rb").read())
    data[0] ^= 0xFF
    open(file, "wb").write(bytes(data))


def _edit_root(path, edit):
    meta_path = os.path.join(path, "zarr.json")
    meta = json.load(open(meta_path))
    edit(meta)
    json.dump(meta, open(meta_path, "w"))


def _metadata_of(name, key, value):
    def edit(meta):
        meta["consolidated_metadata"]["metadata"][name][key] = value
    return edit


DAMAGE = {
    # training numbers unreadable: info still describes the store, with a warning (exit 0)
    "train_accuracy chunk flipped": (lambda p: _flip_a_byte(_chunk(p, "train_accuracy", 1, 0)), 0, "warning"),
    "test_loss chunk of a complete run deleted": (lambda p: os.remove(_chunk(p, "test_loss", 0, 0)), 0, "warning"),
    "diverged chunk flipped": (lambda p: _flip_a_byte(_chunk(p, "diverged", 3, 0)), 0, "warning"),
    # what info lists cannot be read: exit 3
    "stopped chunk of a complete run deleted": (lambda p: os.remove(_chunk(p, "stopped", 0, 0)), 3, "stopped"),
    "step chunk flipped": (lambda p: _flip_a_byte(_chunk(p, "step", 0, 0)), 3, "'step'"),
    "complete chunk deleted": (lambda p: os.remove(_chunk(p, "complete", 1, 0)), 3, "'complete'"),
    "seed chunk truncated": (lambda p: open(_chunk(p, "seed", 0), "wb").close(), 3, "'seed'"),
    "config chunk a FIFO": (lambda p: (os.remove(_chunk(p, "config", 0)), os.mkfifo(_chunk(p, "config", 0))),
                            3, "'config'"),
    # malformed: exit 2
    "root zarr.json not JSON": (lambda p: open(os.path.join(p, "zarr.json"), "w").write("{"), 2, "not a Zarr group"),
    "schema unknown": (lambda p: _edit_root(p, lambda m: m["attributes"].update(schema="actstats.store/9")),
                       2, "not supported"),
    "created_at missing": (lambda p: _edit_root(p, lambda m: m["attributes"].pop("created_at")), 2, "created_at"),
    "dimension names wrong": (lambda p: _edit_root(p, _metadata_of("lr", "dimension_names", ["runs"])), 2, "'lr'"),
    "data type wrong": (lambda p: _edit_root(p, _metadata_of("train_loss", "data_type", "float64")), 2, "train_loss"),
    "a label missing": (lambda p: _edit_root(p, _metadata_of("optimizer", "attributes", {"labels": []})),
                        2, "'optimizer'"),
    "codec unknown": (lambda p: _edit_root(p, _metadata_of("depth", "codecs", [{"name": "bytes", "configuration": {
        "endian": "little"}}, {"name": "nonsense"}, {"name": "crc32c"}])), 2, "not a Zarr group"),
    "sizes disagree": (lambda p: _edit_root(p, _metadata_of("seed", "shape", [5])), 2, "seed"),
    "not consolidated": (lambda p: _edit_root(p, lambda m: m.pop("consolidated_metadata")), 0, ""),
    "Zarr 2 metadata beside": (lambda p: open(os.path.join(p, ".zgroup"), "w").write('{"zarr_format": 2}'), 0, ""),
    "a group with members": (lambda p: _edit_root(p, _metadata_of("actstats_manifest", "consolidated_metadata", {
        "kind": "inline", "must_understand": False, "metadata": {"x": {"node_type": "nonsense"}}})),
        2, "not a Zarr group"),
}


@pytest.mark.filterwarnings("ignore:Both zarr.json")  # zarr-python's, on the Zarr 2 metadata beside
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_or_malformed_store_goes_through_open_store(stopped_store, tmp_path, capsys, monkeypatch, damage):
    path = _copy(stopped_store, tmp_path)
    make, expected_code, said = DAMAGE[damage]
    make(path)
    with pytest.raises(NotServed):
        store_summary(path)
    for options in ((), ("--format", "json")):
        fast, slow = both(capsys, monkeypatch, path, *options)
        assert fast == slow
        code, _, err = fast
        assert code == expected_code and said in err, err
        if code:
            assert err.startswith(f"actstats info: {path}: ") and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("where", ["missing", "file", "url"])
def test_what_is_not_a_local_store_gives_the_same_error(tmp_path, capsys, monkeypatch, where):
    path = {"missing": str(tmp_path / "nowhere.zarr"), "file": str(tmp_path / "file.txt"),
            "url": "memory://nowhere.zarr"}[where]
    if where == "file":
        open(path, "w").write("x")
    fast, slow = both(capsys, monkeypatch, path)
    assert fast == slow and fast[0] == 2 and fast[2].startswith("actstats info: ")


def test_an_absent_chunk_of_a_run_without_complete_records_is_padding(stopped_store, tmp_path, capsys, monkeypatch):
    """Run 2 has no complete record: its training chunks may be absent (fill values), as
    open_store's reads say; the direct reader still serves the store."""
    path = _copy(stopped_store, tmp_path)
    for name in ("train_accuracy", "train_loss", "diverged", "stopped"):
        os.remove(_chunk(path, name, 2, 0))
    (code, _, _), _ = assert_same_info(capsys, monkeypatch, path)
    assert code == 0


# ------------------------------------------------------------------------ random damage

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from test_fuzz import _apply  # noqa: E402  the same damage as the fuzz tests' (one place)

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2**40) | st.floats(allow_nan=False) | st.text(max_size=6)
    | st.sampled_from(["NaN", "little", "big", "crc32c", "bytes", "gzip", "regular", "default", "/", ".", "float64",
                       "int32", "bool", "run", "epoch", "actstats.store/1", "array", "group"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
_EDIT = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**31), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("delete")),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("json"), st.integers(0, 2**31), _JSON),
    st.tuples(st.just("json-delete"), st.integers(0, 2**31)),
)
#: The arrays info reads, whose chunks the damage goes to most often.
_READ = ("complete", "stopped", "step", "train_accuracy", "test_loss", "diverged", "seed", "depth", "width",
         "activation_fn", "config", "epoch", "lr", "run")


@st.composite
def _damages(draw):
    return [(draw(st.sampled_from(["root", "read", "any"])), draw(st.integers(0, 2**31)), draw(_EDIT))
            for _ in range(draw(st.integers(1, 3)))]


def _outcome(capsys, *args):
    try:
        return _main(capsys, *args)
    except Exception as exc:  # the same on both paths, whatever it is
        capsys.readouterr()
        return type(exc).__name__, str(exc)


def _check_random_damage(store, capsys, monkeypatch, changes, tmp) -> bool:
    """Damage a copy; info through the direct reader says what it says through open_store.
    True when the direct reader served the damaged store."""
    path = os.path.join(tmp, "damaged.zarr")
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(store, path)
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs)
    pools = {"root": [os.path.join(path, "zarr.json")],
             "read": [f for f in files if os.path.relpath(f, path).split(os.sep)[0] in _READ],
             "any": files}
    for pool, choice, change in changes:
        candidates = [f for f in pools[pool] if os.path.exists(f)]
        if candidates:
            _apply(candidates[choice % len(candidates)], change)
    try:
        store_summary(path)
        served = True
    except NotServed:
        served = False
    for options in ((), ("--format", "json")):
        fast = _outcome(capsys, "info", path, *options)
        with monkeypatch.context() as patched:
            patched.setattr(summary_module, "store_summary", _refuse)
            slow = _outcome(capsys, "info", path, *options)
        assert fast == slow, changes
    return served


def _random_damage_trials(store, capsys, monkeypatch, tmp_path, examples: int) -> list[bool]:
    served = []

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(changes=_damages())
    def check(changes):
        served.append(_check_random_damage(store, capsys, monkeypatch, changes, str(tmp_path)))

    check()
    return served


@pytest.mark.long  # ~0.3 s an example (each through open_store twice): run by make test-long
@pytest.mark.filterwarnings("ignore::UserWarning")  # zarr-python's, on damaged metadata
def test_randomly_damaged_stores_print_the_same(stopped_store, tmp_path, capsys, monkeypatch):
    served = _random_damage_trials(stopped_store, capsys, monkeypatch, tmp_path, 30)
    assert len(served) == 30


@pytest.mark.stress
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_stress_randomly_damaged_stores_print_the_same(stopped_store, tmp_path, capsys, monkeypatch):
    served = _random_damage_trials(stopped_store, capsys, monkeypatch, tmp_path, 1500)
    print(f"\nthe direct reader served {sum(served)} of {len(served)} damaged stores")
