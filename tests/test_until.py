"""train.until: train until a condition holds (train.epochs the cap), then train.until_then epochs
more, stopping at the next recording moment; the store's `stopped` and `until_epoch`; resume;
`info` and `verify` on stopped runs; the config errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import textwrap

import numpy as np
import pytest

import actstats
from actstats.capture.config import ConfigError, parse_config, parse_until

from conftest import write_config
from reliability_tools import (
    assert_complete_records_match,
    assert_verify_names_what_is_incomplete,
    capture_process,
    cli,
    leftovers,
)
from test_capture import assert_stores_identical

#: Three runs of one network (same seed): run 0 holds its condition at epoch 2 and stops at
#: the first moment at or after 2.5 (epoch 3); run 1's condition never holds (it trains to the
#: cap); run 2 holds a held-out condition and stops at once (until_then = 0). Records at every
#: whole epoch, so the epoch before the condition held is recorded too.
UNTIL_CONFIG = textwrap.dedent(
    """
    [dataset]
    name = "digits"
    probe_train = 16
    probe_test = 8

    [model]
    depth = 1
    width = 8

    [train]
    lr = 0.5
    batch_size = 32
    epochs = 6
    seed = 0

    [record]
    epochs = [0, 0.5, 1, 2, 3, 4, 5, 6]

    [sweep]
    "train.until, train.until_then" = [["train_accuracy >= 0.5", 0.5], ["train_loss < 0", 0], ["test_accuracy > 0.5", 0]]
    """
)
EPOCHS = [0, 0.5, 1, 2, 3, 4, 5, 6]


@pytest.fixture(scope="module")
def until_config(tmp_path_factory) -> str:
    return write_config(tmp_path_factory.mktemp("until"), UNTIL_CONFIG, "until.toml")


@pytest.fixture(scope="module")
def until_store(until_config, tmp_path_factory):
    """The uninterrupted capture, and the furthest step each run's training was asked to reach."""
    from actstats.capture import capture
    from actstats.capture.recorder import RunTrainer

    path = str(tmp_path_factory.mktemp("until-store") / "until.zarr")
    furthest: dict[int, int] = {}
    original = RunTrainer.train_until

    def logged(self, step):
        furthest[self.run_index] = max(furthest.get(self.run_index, 0), step)
        return original(self, step)

    RunTrainer.train_until = logged
    try:
        summary = capture(until_config, path, progress=False)
    finally:
        RunTrainer.train_until = original
    return path, furthest, summary


def _stop_index(ds, run: int) -> int | None:
    stopped = ds["stopped"].values[run] & ds["complete"].values[run]
    return int(np.argmax(stopped)) if stopped.any() else None


def test_a_run_stops_at_the_first_moment_after_its_condition_and_terminal_phase(until_store):
    path, furthest, summary = until_store
    ds = actstats.open_store(path)
    complete, stopped, until_epoch = ds["complete"].values, ds["stopped"].values, ds["until_epoch"].values
    accuracy, loss = ds["train_accuracy"].values, ds["train_loss"].values
    test_accuracy = ds["test_accuracy"].values
    epochs = ds["epoch"].values.tolist()
    assert epochs == EPOCHS

    # run 0: the first whole epoch whose stored training accuracy is >= 0.5 is E; the one before is not
    whole = [e for e in EPOCHS if e >= 1 and e == int(e)]
    hit = next(e for e in whole if accuracy[0, epochs.index(e)] >= 0.5)
    assert hit == 2  # the config is chosen so; a change of training shows here
    assert accuracy[0, epochs.index(hit - 1)] < 0.5
    stop = _stop_index(ds, 0)
    assert epochs[stop] == 3  # the first moment at or after E + until_then = 2.5
    assert stopped[0].tolist() == [e == 3 for e in EPOCHS]
    assert complete[0].tolist() == [e <= 3 for e in EPOCHS]
    # until_epoch: NaN before the condition held, E from the record at E on; no data after the stop
    assert np.isnan(until_epoch[0, : epochs.index(hit)]).all()
    assert until_epoch[0, epochs.index(hit) : stop + 1].tolist() == [hit] * (stop + 1 - epochs.index(hit))
    assert np.isnan(until_epoch[0, stop + 1 :]).all() and np.isnan(accuracy[0, stop + 1 :]).all()
    assert np.isnan(ds["activation"].values[0, stop + 1 :]).all()

    # run 1: never holds; trains to the cap, every record written, stopped all false
    assert complete[1].all() and not stopped[1].any() and np.isnan(until_epoch[1]).all()
    assert (loss[1] >= 0).all()

    # run 2: test accuracy > 0.5 first at whole epoch E2, and the run stops right there
    hit2 = next(e for e in whole if test_accuracy[2, epochs.index(e)] > 0.5)
    assert hit2 == 1 or not test_accuracy[2, epochs.index(hit2 - 1)] > 0.5
    assert epochs[_stop_index(ds, 2)] == hit2 and until_epoch[2, epochs.index(hit2)] == hit2
    assert complete[2].tolist() == [e <= hit2 for e in EPOCHS]

    # checking the condition does not change training: the runs are one network until they stop
    for name in ("activation", "weight", "readout_weight", "train_loss", "test_accuracy"):
        values = ds[name].values
        for run in (0, 2):
            s = _stop_index(ds, run)
            assert values[run, : s + 1].tobytes() == values[1, : s + 1].tobytes(), (name, run)

    # nothing is trained past a stop (nor to the cap after it); a run that never stops reaches the cap
    steps = ds["step"].values
    assert furthest == {0: int(steps[0, stop]), 1: int(steps[1, -1]), 2: int(steps[2, _stop_index(ds, 2)])}
    assert summary["written"] == int(complete.sum())


def test_checkpoint_keeps_the_epoch_the_condition_held(until_store):
    from actstats.capture.recorder import load_checkpoint

    path, _, _ = until_store
    checkpoint = load_checkpoint(path, 0)  # torch.load(weights_only=True)
    assert checkpoint is not None and checkpoint["until_epoch"] == 2
    assert load_checkpoint(path, 1)["until_epoch"] == -1


def test_resume_of_a_stopped_run_writes_nothing(until_store, tmp_path):
    from actstats.capture import capture

    path, _, _ = until_store
    copy = str(tmp_path / "copy.zarr")
    shutil.copytree(path, copy)
    before = {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns for d, _, fs in os.walk(copy) for f in fs}
    summary = capture(write_config(tmp_path, UNTIL_CONFIG), copy, resume=True, progress=False)
    assert summary["written"] == 0
    after = {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns for d, _, fs in os.walk(copy) for f in fs}
    assert {k: v for k, v in after.items() if not k.endswith(".lock")} == \
        {k: v for k, v in before.items() if not k.endswith(".lock")}


def test_info_and_verify_count_no_record_after_a_stop_as_missing(until_store):
    path, _, _ = until_store
    code, out, err = cli("verify", path, "--no-progress")
    assert code == 0 and "intact" in out, (out, err)
    assert assert_verify_names_what_is_incomplete(path) == 0
    code, out, _ = cli("info", path, "--format", "json", "--no-progress")
    assert code == 0
    info = json.loads(out)
    assert [r["complete"] for r in info["runs"]] == ["5/5", "8/8", f"{EPOCHS.index(info['runs'][2]['stopped_at']) + 1}/"
                                                      f"{EPOCHS.index(info['runs'][2]['stopped_at']) + 1}"]
    assert [r["stopped_at"] for r in info["runs"]][:2] == [3.0, None]
    assert info["records_complete"] == info["records_scheduled"]
    code, out, _ = cli("info", path, "--no-progress")
    assert code == 0 and "stopped by train.until: 2 of 3 runs: run 0 at epoch 3, run 2 at epoch" in out


class _Interrupted(RuntimeError):
    pass


@pytest.mark.parametrize("where", ["before the stop record", "after the stop record's checkpoint"])
def test_interrupted_capture_resumes_to_the_same_stop(where, until_config, until_store, tmp_path, monkeypatch):
    """Stopped in run 0 before its stop record is written (resumed from the checkpoint of
    epoch 2, which must carry E = 2: the condition is not checked again at a step already
    passed), or after that record's data and checkpoint but before its `complete` flag."""
    import actstats.capture.recorder as recorder
    from actstats.capture import capture

    reference, _, _ = until_store
    store = str(tmp_path / "interrupted.zarr")
    records = []
    if where == "before the stop record":
        def fail():
            records.append(1)
            if len(records) == 5:  # run 0's fifth record: epoch 3, its stop
                raise _Interrupted(where)
        monkeypatch.setattr(recorder, "before_record", fail)
    else:
        original = recorder.write_record_manifest

        def fail(store_path, files, run, epoch_index, *args, **kwargs):
            if (run, epoch_index) == (0, EPOCHS.index(3)):
                raise _Interrupted(where)
            return original(store_path, files, run, epoch_index, *args, **kwargs)
        monkeypatch.setattr(recorder, "write_record_manifest", fail)
    with pytest.raises(_Interrupted):
        capture(until_config, store, progress=False)
    monkeypatch.undo()
    ds = actstats.open_store(store)
    assert ds["complete"].values[0].tolist() == [e < 3 for e in EPOCHS] and not ds["complete"].values[1:].any()
    if where != "before the stop record":
        assert recorder.load_checkpoint(store, 0)["epoch_index"] == EPOCHS.index(3)
    assert_complete_records_match(store, reference)
    capture(until_config, store, resume=True, progress=False)
    assert_stores_identical(reference, store)
    assert cli("verify", store, "--no-progress")[0] == 0


@pytest.mark.long
def test_killed_capture_resumes_to_the_uninterrupted_store(until_config, until_store, tmp_path):
    """SIGKILL inside chunk writes (reliability_tools): in run 0's stop record, at its
    `complete` flag (data and checkpoint written), and in run 2 after run 1 trained to the cap."""
    reference, _, _ = until_store
    # a depth-1 record writes 16 chunks (the last its `complete` flag): run 0 writes 5 records, run 1 eight
    puts = {"stop-record": 70, "stop-complete-flag": 80, "run-2": 13 * 16 + 3}
    processes = {name: capture_process(until_config, tmp_path / f"{name}.zarr",
                                       env={"ACTSTATS_FAULT_KILL_AFTER_PUTS": str(put)})
                 for name, put in puts.items()}
    for process in processes.values():
        process.communicate(timeout=600)
        assert process.returncode == -signal.SIGKILL
    for name in puts:
        store = str(tmp_path / f"{name}.zarr")
        complete = assert_complete_records_match(store, reference)
        if name == "run-2":
            assert complete[:2].sum() == 5 + 8 and not complete[2].any()
        else:
            assert complete[0].tolist() == [e < 3 for e in EPOCHS] and not complete[1:].any()
        if name == "stop-complete-flag":  # its data and checkpoint were written
            from actstats.capture.recorder import load_checkpoint

            assert load_checkpoint(store, 0)["epoch_index"] == EPOCHS.index(3)
        assert_verify_names_what_is_incomplete(store)
        code, _, err = cli("capture", until_config, "-o", store, "--resume", "--no-progress")
        assert code == 0, err
        assert_stores_identical(reference, store)
        assert not leftovers(store)
        assert cli("verify", store, "--no-progress")[0] == 0


def test_stores_without_until_have_no_until_variables(small_store):
    ds = actstats.open_store(small_store)
    assert "stopped" not in ds and "until_epoch" not in ds


def test_until_keys_absent_unless_given():
    whole = parse_config("[model]\ndepth = 1\nwidth = 4\n").sweep
    assert not {"until", "until_then"} & set(whole["train"])


# ---------------------------------------------------------------------------- the condition


@pytest.mark.parametrize("text, parsed", [
    ("train_accuracy >= 0.99", ("train_accuracy", ">=", 0.99)),
    ("  test_loss<0.5 ", ("test_loss", "<", 0.5)),
    ("train_loss <= 1e-3", ("train_loss", "<=", 1e-3)),
    ("test_accuracy > .5", ("test_accuracy", ">", 0.5)),
    ("train_loss < -2", ("train_loss", "<", -2.0)),
])
def test_parse_until(text, parsed):
    condition = parse_until(text)
    assert (condition.metric, condition.op, condition.threshold) == parsed


@pytest.mark.parametrize("text", [
    "", "train_accuracy", "train_accuracy >= ", ">= 0.9", "train_acc >= 0.9", "train_accuracy => 0.9",
    "train_accuracy == 0.9", "train_accuracy >= 0.9 and test_loss < 1", "train_accuracy >= 1e400",
    "train_accuracy >= nan", "train_accuracy >= inf", "__import__('os') >= 1", "train_accuracy >= 0.9.1",
])
def test_malformed_until_refused(text):
    assert parse_until(text) is None
    with pytest.raises(ConfigError) as info:
        parse_config(f'[train]\nuntil = "{text}"\n[record]\nepochs = "log:4"\n', source="c.toml")
    message = str(info.value)
    assert message.startswith("c.toml: train.until = ") and '"METRIC OP NUMBER"' in message
    assert "train_accuracy, train_loss, test_accuracy, test_loss" in message and ">=, <=, >, <" in message


@pytest.mark.parametrize("text, expected", [
    ('[train]\nuntil = 0.99\n', "train.until = 0.99: must be"),
    ('[train]\nuntil_then = 5\n', "train.until_then = 5: only used with train.until"),
    ('[train]\nuntil = "train_loss < 0.1"\nuntil_then = -1\n', "train.until_then = -1: must be a number"),
    ('[train]\nuntil = "train_loss < 0.1"\nuntil_then = "2"\n', "train.until_then = '2': must be a number"),
    ('[train]\nuntil = "train_loss < 0.1"\nepochs = 4\n[record]\nepochs = [0, 1, 2]\n',
     "record.epochs = [0, 1, 2]: with train.until it must contain train.epochs = 4"),
    ('[train]\nuntil = "train_loss < 0.1"\nuntil_then = 2e6\n', "train.until_then = 2000000.0: must be"),
])
def test_until_config_errors(text, expected):
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="c.toml")
    assert str(info.value).startswith("c.toml: ") and expected in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_until_accepted_with_a_log_schedule_and_in_a_sweep():
    config = parse_config('[train]\nepochs = 10\nuntil = "train_accuracy >= 0.9"\n[record]\nepochs = "log:5"\n'
                          '[sweep]\n"train.until_then" = [0, 2.5]\n')
    assert [r["train"]["until_then"] for r in config.runs] == [0, 2.5]
    assert all(r["record"]["epochs"][-1] == 10 for r in config.runs)
