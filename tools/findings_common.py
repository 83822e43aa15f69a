"""docs/findings.md (tools/findings.py): one experiment's store, its report, and the shared helpers.

:class:`Experiment` opens one store, runs :func:`actstats.report.build_report` on it (the
verdicts C1–C6 are the report's), writes its findings.json next to the document, and
computes on first use what the sections read: each run's sweep cell, the training curves,
per-unit saturation (low and high bounds apart) against epoch, each layer's weight norm and
the mean activation per layer. The helpers format intervals and markdown tables. Public
actstats API only.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from functools import cached_property

import numpy as np

EPS = 0.05
#: A training accuracy at or above this is "the training points are fitted" (the terminal phase starts).
FIT_ACCURACY = 0.99
#: An MLP's test accuracy on mnist1d (its README): below it, an mnist1d experiment's networks are
#: partly trained and stay out of the headline.
MNIST1D_MLP_LEVEL = 0.68
#: findings.json above this many characters loses its per-run lists (kept in the full report).
JSON_LIMIT = 30_000


# ----------------------------------------------------------------------------- helpers


def fmt(x, digits=2):
    if x is None or not np.isfinite(x):
        return "–"
    return f"{x:.{digits}f}"


def t_interval(values):
    """Mean of ``values`` (NaN skipped) and its 95% Student t interval over them (the unit
    is the run), the report's own (NaN interval with fewer than two values)."""
    from actstats.report.verdicts import run_interval

    return run_interval(values)


def welch_interval(first, second):
    """Difference of means (first − second) and its 95% Welch t interval, the report's own."""
    from actstats.kernels import welch_interval as welch

    return welch(first, second)


def cell(values, digits=2, signed=False):
    """``mean [low, high]`` of a t interval, or the mean alone with fewer than two values."""
    mean, low, high = t_interval(values)
    return interval_text(mean, low, high, digits, signed)


def interval_text(mean, low, high, digits=2, signed=False):
    if not np.isfinite(mean):
        return "–"
    form = (lambda v: f"{v:+.{digits}f}") if signed else (lambda v: f"{v:.{digits}f}")
    return form(mean) + (f" [{form(low)}, {form(high)}]" if np.isfinite(low) else "")


def direction(low, high, grows="grows", falls="falls", neither="shows no change the interval can tell from zero"):
    """The word an interval earns: above zero, below zero, or neither."""
    if np.isfinite(low) and low > 0:
        return grows
    if np.isfinite(high) and high < 0:
        return falls
    if not (np.isfinite(low) and np.isfinite(high)):
        return "cannot be judged (too few runs for an interval)"
    return neither


def spread(values, digits=2, form="f"):
    """``median (min–max)`` over runs; ``form="g"``: ``digits`` significant digits."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "–"
    text = (lambda v: f"{v:.{digits}{form}}")
    if values.size == 1 or np.ptp(values) == 0:
        return text(values[0])
    return f"{text(np.median(values))} ({text(values.min())}–{text(values.max())})"


def markdown_table(header, rows):
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def newest_write(store) -> float:
    """The modification time of the newest file in a store."""
    newest = 0.0
    for root, _, files in os.walk(store):
        for name in files:
            newest = max(newest, os.path.getmtime(os.path.join(root, name)))
    return newest


def timing_seconds(data_dir, name):
    """(seconds, pieces) of a capture: the sum of data/timings/NAME.seconds.log (one integer per
    capture piece, appended by `make findings-data`), else the older NAME.seconds; None if neither."""
    directory = os.path.join(data_dir, "timings")
    log = os.path.join(directory, f"{name}.seconds.log")
    if os.path.exists(log):
        with open(log) as f:
            values = [float(v) for v in f.read().split() if v.strip()]
        if values:
            return sum(values), len(values)
    old = os.path.join(directory, f"{name}.seconds")
    if os.path.exists(old):
        with open(old) as f:
            return float(f.read().strip()), 1
    return None


def trimmed(findings: dict, limit: int = JSON_LIMIT) -> dict:
    """findings.json as committed: whole when short, else every list of more than 12 values
    (the per-run lists) replaced by its length; claims, verdicts, estimates, intervals,
    margins, sensitivity and the training summary stay."""
    if len(json.dumps(findings)) <= limit:
        return findings

    def walk(value):
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            if len(value) > 12 and all(isinstance(v, (int, float)) or v is None for v in value):
                return {"dropped": f"{len(value)} per-run values (in the full report: actstats report)"}
            return [walk(v) for v in value]
        return value

    return walk(findings)


# ------------------------------------------------------------------------- experiment


def _short(key: str) -> str:
    return key.strip().split(".")[-1]


class Experiment:
    """One experiment's store: the report's verdicts and what the sections compute from it.

    Only runs with a complete record are kept. ``factors`` maps each sweep key of the config
    (but the seed) to its value per run; ``cell_labels`` is one label per run for the cell
    (the runs that differ only in their seed).
    """

    def __init__(self, name, store, work, out_dir=None, reuse=False):
        from actstats.report import build_report, last_complete
        from actstats.store import open_store

        self.name, self.store = name, store
        started = time.perf_counter()
        existing = os.path.join(work, name, "findings.json")
        self.reused = bool(reuse and os.path.exists(existing) and os.path.getmtime(existing) >= newest_write(store))
        if self.reused:
            with open(existing) as f:
                self.findings = json.load(f)
        else:
            self.findings = build_report(store, os.path.join(work, name), eps=EPS, progress=False)
        self.report_seconds = time.perf_counter() - started
        if out_dir is not None:
            os.makedirs(out_dir, exist_ok=True)
            with open(os.path.join(out_dir, f"{name}.findings.json"), "w") as f:
                json.dump(trimmed(self.findings), f, indent=1, allow_nan=False)
                f.write("\n")
        ds = open_store(store)
        self.n_runs_stored = ds.sizes["run"]
        last = last_complete(ds)
        keep = np.flatnonzero(last >= 0)
        self.ds, self.last = ds.isel(run=keep), last[keep]
        self.n_runs = keep.size
        self.epochs = np.asarray(self.ds["epoch"].values, dtype=float)
        self.complete = np.asarray(self.ds["complete"].transpose("run", "epoch").values, dtype=bool)
        self.configs = [json.loads(c) for c in np.asarray(self.ds["config"].values).astype(str)]
        self.sweep = json.loads(self.ds.attrs.get("sweep", "{}")).get("sweep", {}) if "sweep" in self.ds.attrs else {}
        self.factors = self._factors()
        self.activation = np.asarray(self.ds["activation_fn"].values).astype(str)

    # -- who is who

    def _factors(self) -> dict[str, np.ndarray]:
        factors = {}
        for key in self.sweep:
            paths = [p.strip() for p in key.split(",")]
            if paths == ["train.seed"]:
                continue
            values = []
            for config in self.configs:
                parts = []
                for path in paths:
                    value = config
                    for step in path.split("."):
                        value = value.get(step, {}) if isinstance(value, dict) else {}
                    parts.append(value)
                text = [f"{v:g}" if isinstance(v, float) else str(v) for v in parts]
                label = text[0]
                for path, value in zip(paths[1:], text[1:]):
                    label += f"({value})" if _short(path) == "init_scale" else f" {_short(path)} {value}"
                values.append(label)
            factors[", ".join(_short(p) for p in paths)] = np.array(values)
        return factors

    @cached_property
    def cell_labels(self) -> np.ndarray:
        if not self.factors:
            return np.array(["all runs"] * self.n_runs)
        return np.array([" · ".join(str(v[r]) for v in self.factors.values()) for r in range(self.n_runs)])

    def cells(self) -> list[str]:
        """The cells, ordered factor by factor (each factor's values in their order in the store)."""
        ranks = []
        for values in self.factors.values():
            order = {v: i for i, v in enumerate(dict.fromkeys(values.tolist()))}
            ranks.append([order[v] for v in values])
        first = {}
        for r, label in enumerate(self.cell_labels.tolist()):
            first.setdefault(label, tuple(rank[r] for rank in ranks))
        return sorted(first, key=first.get)

    def value_of(self, factor_prefix: str) -> np.ndarray:
        """The values of the first factor whose name starts with ``factor_prefix`` (e.g.
        "optimizer" for "optimizer, lr"), or of the store coordinate of that name."""
        for name, values in self.factors.items():
            if name.startswith(factor_prefix):
                return values
        coordinate = {"activation": "activation_fn"}.get(factor_prefix, factor_prefix)
        return np.asarray(self.ds[coordinate].values).astype(str)

    @cached_property
    def training(self):
        import actstats

        return actstats.training(self.ds).compute()

    @cached_property
    def trained(self) -> np.ndarray:
        return np.asarray(self.training["trained"].values, dtype=bool)

    @property
    def trained_rule(self) -> str:
        return f"training accuracy at least {float(self.training.attrs['min_accuracy']):g} at the last record, not diverged"

    @cached_property
    def dataset(self) -> str:
        return str(np.asarray(self.ds["dataset"].values)[0]) if "dataset" in self.ds.coords else "?"

    @cached_property
    def partly_trained(self) -> bool:
        """An mnist1d experiment whose median test accuracy is below an MLP's level."""
        return self.dataset == "mnist1d" and not np.nanmedian(self.final("test_accuracy")) >= MNIST1D_MLP_LEVEL

    @cached_property
    def optimizer_labels(self) -> np.ndarray:
        """Per run: optimizer, learning rate and (when not 0) momentum, e.g. ``sgd lr 0.1 momentum 0.9``."""
        labels = []
        for c in self.configs:
            train = c.get("train", {})
            momentum = train.get("momentum") or 0
            labels.append(f"{train.get('optimizer')} lr {train.get('lr'):g}"
                          + (f" momentum {momentum:g}" if momentum and train.get("optimizer") == "sgd" else ""))
        return np.array(labels)

    def claim(self, claim_id):
        return next((c for c in self.findings.get("claims", []) if c["id"] == claim_id), None)

    # -- curves over epochs (run, epoch); NaN where a record is not complete

    def metric(self, name) -> np.ndarray:
        if name not in self.ds:
            return np.full(self.complete.shape, np.nan)
        values = np.asarray(self.ds[name].transpose("run", "epoch").values, dtype=float)
        return np.where(self.complete, values, np.nan)

    def final(self, name) -> np.ndarray:
        return self.metric(name)[np.arange(self.n_runs), self.last]

    @cached_property
    def steps(self) -> np.ndarray:
        """(run, epoch) optimizer steps at each complete record (NaN elsewhere: a run stopped by
        train.until keeps the scheduled steps of the records it never reached)."""
        values = np.asarray(self.ds["step"].transpose("run", "epoch").values, dtype=float)
        return np.where((values >= 0) & self.complete, values, np.nan)

    @cached_property
    def fit_index(self) -> np.ndarray:
        """Per run, the first record with training accuracy ≥ FIT_ACCURACY (−1: never)."""
        reached = self.metric("train_accuracy") >= FIT_ACCURACY
        return np.where(reached.any(axis=1), np.argmax(reached, axis=1), -1)

    # -- per-unit saturation on the training probes: (run, epoch, layer, unit)

    @cached_property
    def _unit_shares(self) -> dict:
        """Per split: each unit's share of probes at the low and at the high bound (ReLU: exactly 0)."""
        from actstats import queries

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = queries.saturation(self.ds, eps=EPS, by=("run", "epoch", "layer", "unit", "split")).compute()
        shares = {}
        for split in np.asarray(result["split"].values).astype(str):
            part = result.sel(split=split).transpose("run", "epoch", "layer", "unit")
            shares[split] = tuple(np.where(self.complete[:, :, None, None], part[name].values, np.nan)
                                  for name in ("fraction_low", "fraction_high"))
        return shares

    @cached_property
    def unit_low(self) -> np.ndarray:
        """(run, epoch, layer, unit): each unit's share of training probes at the low bound (ReLU: exactly 0)."""
        return self._unit_shares["train"][0]

    @cached_property
    def unit_high(self) -> np.ndarray:
        return self._unit_shares["train"][1]

    def layer_fraction(self, split="train") -> np.ndarray:
        """(run, epoch, layer): fraction of the activations on ``split`` probes near a bound."""
        low, high = self._unit_shares[split]
        return self._layer_mean(low) + self._layer_mean(high)

    def _layer_mean(self, values):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(values, axis=-1)

    @cached_property
    def fraction_low(self) -> np.ndarray:
        """(run, epoch, layer): fraction of activations on training probes near the low bound."""
        return self._layer_mean(self.unit_low)

    @cached_property
    def fraction_high(self) -> np.ndarray:
        return self._layer_mean(self.unit_high)

    @cached_property
    def fraction(self) -> np.ndarray:
        return self.fraction_low + self.fraction_high

    @cached_property
    def units_saturated(self) -> np.ndarray:
        """(run, epoch, layer): share of units at a bound (either) on more than half the
        training probes (ReLU: units at exactly 0 on more than half)."""
        either = self.unit_low + self.unit_high
        with np.errstate(invalid="ignore"):
            return self._layer_mean(np.where(np.isfinite(either), either > 0.5, np.nan))

    @cached_property
    def units_dead(self) -> np.ndarray:
        """(run, epoch, layer): share of units exactly 0 on every training probe (ReLU)."""
        with np.errstate(invalid="ignore"):
            return self._layer_mean(np.where(np.isfinite(self.unit_low), self.unit_low >= 1.0, np.nan))

    def mean_over_layers(self, values) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(values, axis=-1)

    # -- weights and activations

    @cached_property
    def weight_norm(self) -> np.ndarray:
        """(run, epoch, layer): Frobenius norm of each hidden layer's W (padding skipped)."""
        squares = (self.ds["weight"].astype("float64") ** 2).sum(["unit", "fan_in"], skipna=True)
        values = np.sqrt(squares.transpose("run", "epoch", "layer").values)
        depth = np.asarray(self.ds["depth"].values).astype(int)
        exists = np.arange(values.shape[2])[None, None, :] < depth[:, None, None]
        return np.where(self.complete[:, :, None] & exists, values, np.nan)

    def activation_moments(self, split="train"):
        """(run, epoch, layer) mean and standard deviation of the activations on ``split``
        probes (over probes and units), and the 99th percentile of their absolute values."""
        index = np.flatnonzero(np.asarray(self.ds["split"].values).astype(str) == split)
        mean = np.full(self.complete.shape + (self.ds.sizes["layer"],), np.nan)
        std, q99 = mean.copy(), mean.copy()
        for r in range(self.n_runs):
            values = np.asarray(self.ds["activation"].isel(run=r, sample=index).values, dtype=float)
            for e in np.flatnonzero(self.complete[r]):
                for layer in range(values.shape[1]):
                    v = values[e, layer]
                    v = v[np.isfinite(v)]
                    if v.size:
                        mean[r, e, layer], std[r, e, layer] = v.mean(), v.std()
                        q99[r, e, layer] = np.quantile(np.abs(v), 0.99)
        return mean, std, q99

    def at(self, values, index) -> np.ndarray:
        """``values`` (run, epoch, ...) at one record index per run (NaN where −1)."""
        index = np.asarray(index)
        picked = values[np.arange(self.n_runs), np.maximum(index, 0)]
        return np.where((index >= 0).reshape((-1,) + (1,) * (picked.ndim - 1)), picked, np.nan)
