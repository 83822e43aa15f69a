"""docs/findings.md (tools/findings.py): the answer sweeps and the helpers of the document.

:class:`Sweep` holds one answer store's report (its verdicts) and the per-run numbers the
breakdowns use; the helpers format means with bootstrap intervals and markdown tables.
Public actstats API only.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings

import numpy as np

ANSWER_SWEEPS = (("answer", "digits"), ("answer_mnist1d", "mnist1d"))
EPS = 0.05


# ----------------------------------------------------------------------------- helpers


def fmt(x, digits=2):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def mean_interval(values, seed=0):
    """Mean and 95% BCa bootstrap interval over runs (NaN skipped)."""
    from actstats.kernels import bootstrap_mean_interval

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, np.nan, np.nan
    if values.size == 1 or np.ptp(values) == 0:
        return float(values[0]), float(values[0]), float(values[0])
    estimate, low, high = bootstrap_mean_interval(values, seed=seed)
    return float(estimate), float(low), float(high)


def interval_cell(values):
    mean, low, high = mean_interval(values)
    return f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]" if np.isfinite(mean) else "–"


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------- answer sweeps


class Sweep:
    """One answer store: its report's verdicts and per-run numbers for the breakdowns."""

    def __init__(self, name, dataset, store, work, reuse=False):
        import xarray as xr

        from actstats import queries
        from actstats.report import build_report, init_labels, last_complete
        from actstats.store import open_store

        self.name, self.dataset, self.store = name, dataset, store
        started = time.perf_counter()
        existing = os.path.join(work, name, "findings.json")
        self.reused = bool(reuse and os.path.exists(existing) and os.path.getmtime(existing) >= newest_write(store))
        if self.reused:
            with open(existing) as f:  # a report of this store as it is now
                self.findings = json.load(f)
        else:
            self.findings = build_report(store, os.path.join(work, name), eps=EPS, progress=False)
        self.report_seconds = time.perf_counter() - started
        self.figures = os.path.join(work, name, "figures")
        ds = open_store(store)
        last = last_complete(ds)
        keep = np.flatnonzero(last >= 0)
        ds, last = ds.isel(run=keep), last[keep]
        self.ds, self.last = ds, last
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saturation = queries.saturation(ds, eps=EPS, by=("run", "epoch", "layer", "split")).compute()
        runs = np.arange(ds.sizes["run"])
        at_last = saturation.isel(epoch=xr.DataArray(last, dims="run"))
        self.layer_fraction = at_last["fraction"].sel(split="train").transpose("run", "layer").values
        self.layer_fraction_test = at_last["fraction"].sel(split="test").transpose("run", "layer").values
        self.initial_fraction = saturation["fraction"].sel(split="train").isel(epoch=0).mean("layer", skipna=True).values
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.run_fraction = np.nanmean(self.layer_fraction, axis=1)
            self.run_fraction_test = np.nanmean(self.layer_fraction_test, axis=1)
        self.factors = {
            "activation": ds["activation_fn"].values.astype(str),
            "init": init_labels(ds),
            "depth": ds["depth"].values.astype(int),
            "optimizer": ds["optimizer"].values.astype(str),
        }
        accuracy = ds["test_accuracy"].values if "test_accuracy" in ds else np.full(ds["complete"].shape, np.nan)
        self.accuracy = accuracy[runs, last]
        self.diverged = (
            ds["diverged"].values[runs, last] if "diverged" in ds else np.zeros(len(runs), dtype=bool)
        ) | ~np.isfinite(self.run_fraction)
        self.n_runs = len(runs)
        self.epochs = float(ds["epoch"].values[-1])
        # weights at initialisation and at each run's last epoch (histogram CDF path: fast)
        ends = sorted(set(last.tolist()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            normality = queries.weight_normality(ds.isel(epoch=sorted({0, *ends})), by=("run", "epoch", "layer"),
                                                 families=("normal",), method="histogram").compute()
        self.kurtosis_init = normality["excess_kurtosis"].isel(epoch=0).transpose("run", "layer").values
        positions = np.searchsorted(sorted({0, *ends}), last)
        end = normality.isel(epoch=xr.DataArray(positions, dims="run"))
        self.kurtosis_end = end["excess_kurtosis"].transpose("run", "layer").values
        self.gaussian_end = end["gaussian"].transpose("run", "layer").values.astype(float)
        self.gaussian_end[~np.isfinite(self.kurtosis_end)] = np.nan

    def claim(self, claim_id):
        return next(c for c in self.findings["claims"] if c["id"] == claim_id)

    def by(self, factor, values, where=None, levels=None):
        """Rows ``level, runs, mean [95% CI]`` of ``values`` over runs, by ``factor``."""
        labels = self.factors[factor]
        where = np.ones(self.n_runs, dtype=bool) if where is None else where
        rows = []
        for level in levels if levels is not None else sorted(set(labels[where].tolist()), key=str):
            pick = where & (labels == level)
            rows.append((level, int(pick.sum()), interval_cell(values[pick])))
        return rows


def two_way_table(sweep, values, row_factor, column_factor, where=None):
    where = np.ones(sweep.n_runs, dtype=bool) if where is None else where
    rows_levels = sorted(set(sweep.factors[row_factor][where].tolist()), key=str)
    column_levels = sorted(set(sweep.factors[column_factor][where].tolist()), key=str)
    rows = []
    for r in rows_levels:
        row = [r]
        for c in column_levels:
            pick = where & (sweep.factors[row_factor] == r) & (sweep.factors[column_factor] == c)
            row.append(fmt(np.nanmean(values[pick])) if pick.any() and np.isfinite(values[pick]).any() else "–")
        rows.append(row)
    return markdown_table([f"{row_factor} \\ {column_factor}"] + [str(c) for c in column_levels], rows)


def copy_figure(sweep, name, out_dir, new_name):
    source = os.path.join(sweep.figures, name)
    if not os.path.exists(source):
        return None
    shutil.copyfile(source, os.path.join(out_dir, new_name))
    return new_name


def newest_write(store) -> float:
    """The modification time of the newest file in a store."""
    newest = 0.0
    for root, _, files in os.walk(store):
        for name in files:
            newest = max(newest, os.path.getmtime(os.path.join(root, name)))
    return newest
