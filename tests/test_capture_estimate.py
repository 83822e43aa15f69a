"""The capture's estimate: one line before training naming the work left and its time, from a
calibration that changes nothing the capture writes; the progress counted in training steps."""

from __future__ import annotations

import io
import re
import time

import numpy as np
import pytest

from conftest import small_config_text, write_config
from test_capture import assert_stores_identical

#: Four runs (depth 1 and 3, sigmoid and tanh, width 12), four records each.
FOUR_RUNS = small_config_text(**{'"model.width" = [12, 8]': '"model.width" = [12]'})

LINE = re.compile(
    r"capture: (?P<most>at most )?(?P<records>[\d,]+) records \((?P<runs>[\d,]+) runs?, (?:at most )?"
    r"(?P<steps>[\d,]+) training steps.*\) to write; about (?P<value>[\d.]+) (?P<unit>s|min|h) "
)


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def _seconds(match) -> float:
    return float(match["value"]) * {"s": 1, "min": 60, "h": 3600}[match["unit"]]


def _cli(capsys, monkeypatch, *args):
    """`actstats ARGS` in this process with the one-line progress log on (stderr is not a
    terminal) and a period long enough that it writes no line of its own."""
    from actstats import cli

    monkeypatch.setenv("ACTSTATS_PROGRESS_LOG", "1000")
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_one_line_names_the_work_a_hand_count_gives_and_the_store_is_unchanged(tmp_path, capsys, monkeypatch):
    from actstats.capture import capture

    config = write_config(tmp_path, FOUR_RUNS)
    code, out, err = _cli(capsys, monkeypatch, "capture", config, "-o", tmp_path / "a.zarr")
    assert code == 0, err
    lines = err.splitlines()
    assert len(lines) == 1, err  # the estimate, and no progress line within 1000 s
    match = LINE.match(lines[0])
    assert match, lines[0]
    # By hand: digits has 1797 rows, 20% (359) held out: 1438 training rows, ceil(1438 / 32) = 45
    # steps an epoch, 2 epochs = 90 steps a run; 4 runs of 4 records each.
    assert (_number(match["runs"]), _number(match["records"]), _number(match["steps"])) == (4, 16, 360)
    assert match["most"] is None  # no train.until: exact counts
    assert _seconds(match) > 0
    assert "measured here:" in lines[0] and "in one process" in lines[0]

    # The calibration trains copies: the store is the one a capture without it writes.
    capture(config, str(tmp_path / "b.zarr"), progress=False)
    assert_stores_identical(str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr"))

    # Nothing left to capture: nothing said.
    code, out, err = _cli(capsys, monkeypatch, "capture", config, "-o", tmp_path / "a.zarr", "--resume")
    assert code == 0 and err == "", err
    # Progress switched off: no estimate either (and no calibration).
    code, out, err = _cli(capsys, monkeypatch, "capture", config, "-o", tmp_path / "c.zarr", "--no-progress")
    assert code == 0 and err == "", err


def test_work_left_honours_resume_and_until():
    """run_work, by hand: spe = 45; records at epochs [0, 0.25, 1, 2] are steps [0, 11, 45, 90]."""
    from actstats.capture.sweep import run_work

    run = {"train": {"batch_size": 32, "epochs": 2}, "record": {"epochs": [0, 0.25, 1, 2]}}
    indices = [0, 1, 2, 3]
    none, first_two = np.zeros(4, bool), np.array([True, True, False, False])
    assert run_work(run, indices, none, 1438) == run_work(run, indices, none, 1438)
    fresh = run_work(run, indices, none, 1438)
    assert (fresh.records, fresh.steps, fresh.until) == (4, 90, False)
    resumed = run_work(run, indices, first_two, 1438)  # from the checkpoint of the record at step 11
    assert (resumed.records, resumed.steps) == (2, 90 - 11)
    assert run_work(run, indices, np.ones(4, bool), 1438).records == 0
    until = run_work({**run, "train": {**run["train"], "until": "train_accuracy >= 0.9"}}, indices, none, 1438)
    assert until.until and (until.records, until.steps) == (4, 90)


def test_until_says_at_most(tmp_path, capsys, monkeypatch):
    text = FOUR_RUNS.replace("seed = 3", 'seed = 3\nuntil = "train_accuracy >= 0.5"')
    config = write_config(tmp_path, text.replace('"model.depth" = [1, 3]', '"model.depth" = [1]'))
    code, out, err = _cli(capsys, monkeypatch, "capture", config, "-o", tmp_path / "u.zarr")
    assert code == 0, err
    match = LINE.match(err.splitlines()[0])
    assert match and match["most"] == "at most " and "train.until may end runs sooner" in err, err
    assert (_number(match["runs"]), _number(match["records"]), _number(match["steps"])) == (2, 8, 180)


def test_the_log_takes_its_time_left_from_the_steps():
    """Records crowd into the first epochs: after 3 of 4 records but a quarter of the steps,
    three quarters of the work are left, not one quarter; the rate counts from the first
    work reported (a worker's start-up before it is not slow work)."""
    from actstats.capture.sweep import _Progress
    from actstats.options import ProgressLog

    out = io.StringIO()
    log = ProgressLog(total=4, desc="capture", unit="record", interval=0, file=out)
    now = [0.0]
    log._clock = lambda: now[0]
    log._start = log._last = 0.0
    progress = _Progress(log, records=4, steps=1000, record_steps=10)
    for _ in range(3):
        progress.add(records=1)
    now[0] = 60.0
    progress.add(steps=220)  # 250 of 1040 units, 240 of them in the minute since the first record
    line = out.getvalue().splitlines()[-1]
    assert line.startswith("capture: 3/4 records (75%), 1.0 min elapsed, about 3.3 min left"), line  # 790 units left at 4 a second
    progress.add(steps=780, records=1)
    progress.finish()
    assert "about" not in out.getvalue().splitlines()[-1]


@pytest.mark.long
def test_the_estimate_is_within_a_factor_of_the_time_taken(tmp_path, monkeypatch):
    """The estimate against the wall time from the line to the end of a capture of ~10 s.

    Between 0.25x and 4x: the calibration times a fraction of a second of work and the
    capture then runs for seconds on a machine whose load and disk latency change meanwhile
    (measured on a shared, loaded two-core machine: ratios of 0.5 to 2.8 with the same code);
    a wrong model (records counted as training, workers not dividing, a missing factor of the
    step count) is off by more than that."""
    from actstats.capture import capture, sweep

    returned = []
    estimate = sweep.estimate_capture

    def timed(*args, **kwargs):
        result = estimate(*args, **kwargs)
        returned.append(time.perf_counter())
        return result

    monkeypatch.setattr(sweep, "estimate_capture", timed)
    config = write_config(tmp_path, FOUR_RUNS.replace("epochs = 2", "epochs = 12"))
    summary = capture(config, str(tmp_path / "t.zarr"), progress=True)
    taken = time.perf_counter() - returned[0]
    ratio = taken / summary["estimated_seconds"]
    assert 0.25 <= ratio <= 4, (taken, summary["estimated_seconds"])
