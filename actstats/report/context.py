"""What the claims read: the store, its runs' populations, and query results computed once.

Claims never compute statistics themselves: they ask this object for query results (each
computed at most once per argument set and cached) and decide on them.
"""

from __future__ import annotations

import warnings
from functools import cached_property

import numpy as np
import xarray as xr

from actstats.activations import get_activation
from actstats.queries.training import last_complete
from actstats.report.population import Runs

#: The band widths every verdict on saturation is repeated at (the sensitivity).
EPS_GRID = (0.01, 0.02, 0.05, 0.1)


def at_last(result: xr.Dataset, last: np.ndarray) -> xr.Dataset:
    """``result`` (with ``run`` and ``epoch`` dims) at each run's last complete epoch."""
    return result.isel(epoch=xr.DataArray(np.maximum(last, 0), dims="run"))


class Context:
    """Query results for the claims, computed on first use and cached.

    Parameters
    ----------
    ds : xarray.Dataset
        A store (runs with no complete record already removed).
    eps : float
        The report's band width.
    """

    def __init__(self, ds: xr.Dataset, eps: float):
        self.ds = ds
        self.eps = float(eps)
        self.last = last_complete(ds)
        self.labels = np.asarray(ds["run"].values)
        self.activation = np.asarray(ds["activation_fn"].values).astype(str)
        self._saturation: dict[float, xr.Dataset] = {}

    def positions(self, runs) -> np.ndarray:
        """Positions on the ``run`` dim of run labels."""
        index = {int(label): i for i, label in enumerate(self.labels)}
        return np.array([index[int(r)] for r in runs], dtype=int)

    @cached_property
    def training(self) -> xr.Dataset:
        import actstats

        return actstats.training(self.ds).compute()

    @cached_property
    def runs(self) -> Runs:
        minimum = self.training.attrs.get("min_accuracy")
        rule = (f"training accuracy at least {float(minimum):g} at the last record, not diverged"
                if minimum is not None else "")
        return Runs(self.labels, self.training["status"].values, self.activation, rule)

    def saturation(self, eps: float | None = None) -> xr.Dataset:
        """saturation by (run, epoch, layer, split) at band ``eps``, all epochs."""
        from actstats import queries

        eps = self.eps if eps is None else float(eps)
        if eps not in self._saturation:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                self._saturation[eps] = queries.saturation(
                    self.ds, eps=eps, by=("run", "epoch", "layer", "split")).compute()
        return self._saturation[eps]

    def saturation_last(self, eps: float | None = None) -> xr.Dataset:
        return at_last(self.saturation(eps), self.last)

    def run_saturation(self, eps: float | None = None, split: str = "train", variable: str = "fraction",
                       layer: str = "mean") -> np.ndarray:
        """One number per run at its last epoch: ``variable`` on ``split`` probes, the mean
        over the run's hidden layers (``layer="mean"``) or its top hidden layer (``"top"``)."""
        values = self.saturation_last(eps)[variable].sel(split=split)
        return self._per_run(values, layer)

    def _per_run(self, values: xr.DataArray, layer: str) -> np.ndarray:
        values = values.transpose("run", "layer").values
        if layer == "mean":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return np.nanmean(values, axis=1)
        depth = np.asarray(self.ds["depth"].values).astype(int)
        return values[np.arange(values.shape[0]), np.clip(depth - 1, 0, values.shape[1] - 1)]

    @cached_property
    def comparison(self) -> xr.Dataset | None:
        """compare_splits at each run's last complete epoch (run, layer), or None without both splits."""
        from actstats import queries

        if not {"train", "test"} <= set(np.asarray(self.ds["split"].values).astype(str)):
            return None
        parts = []
        for index in np.unique(self.last):
            runs = np.flatnonzero(self.last == index)
            part = queries.compare_splits(self.ds.isel(run=runs, epoch=[int(index)]), eps=self.eps,
                                          by=("run", "epoch", "layer"))
            parts.append(part.compute().isel(epoch=0, drop=True))
        result = xr.concat(parts, dim="run") if len(parts) > 1 else parts[0]
        return result.sortby("run")

    def bimodality_last(self, runs) -> xr.Dataset:
        """bimodality (dip test, U-shaped Beta; no mixture) per (run, layer, split) at each of
        ``runs``' last complete epoch (run labels)."""
        from actstats import queries

        positions = self.positions(runs)
        parts = []
        for index in np.unique(self.last[positions]):
            chosen = positions[self.last[positions] == index]
            part = queries.bimodality(self.ds.isel(run=chosen, epoch=[int(index)]), by=("run", "epoch", "layer", "split"),
                                      mixture="never")
            parts.append(part.compute().isel(epoch=0, drop=True))
        return (xr.concat(parts, dim="run") if len(parts) > 1 else parts[0]).sortby("run")

    @cached_property
    def normality(self) -> xr.Dataset:
        from actstats import queries

        return queries.weight_normality(self.ds, by=("run", "epoch", "layer")).compute()

    @cached_property
    def constant_inputs(self) -> np.ndarray:
        """Features that take one value on every probe (e.g. digits' blank border pixels): the
        first layer's weights on them get no gradient, so they keep their initial distribution."""
        x = np.asarray(self.ds["input"].values, dtype=float)
        return np.flatnonzero(np.nanstd(x, axis=0) == 0)

    def _weights_at(self, weight: xr.DataArray) -> xr.Dataset:
        """weight_normality of ``weight`` at epoch 0 and at each run's last epoch, the first
        layer's columns on constant inputs excluded (set to NaN: the query skips and counts
        them as non-finite, which here is deliberate)."""
        from actstats import queries
        from actstats.errors import ActstatsWarning

        epochs = sorted(set(np.unique(self.last).tolist()) | ({0} if 0.0 in self.ds["epoch"].values else set()))
        constant = self.constant_inputs
        if constant.size:
            mask = (weight["layer"] == self.ds["layer"].values[0]) & weight["fan_in"].isin(constant)
            weight = weight.where(~mask)
        ds = self.ds.assign(weight=weight).isel(epoch=epochs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ActstatsWarning)
            result = queries.weight_normality(ds, by=("run", "epoch", "layer")).compute()
        return result.reindex(epoch=self.ds["epoch"].values)

    @cached_property
    def weights_varying_inputs(self) -> xr.Dataset:
        """weight_normality without the first layer's columns on constant inputs."""
        return self._weights_at(self.ds["weight"])

    @cached_property
    def weight_updates(self) -> xr.Dataset | None:
        """weight_normality of ΔW = W − W₀ (the update since initialisation), or None without epoch 0."""
        if 0.0 not in self.ds["epoch"].values:
            return None
        return self._weights_at(self.ds["weight"] - self.ds["weight"].sel(epoch=0.0))

    @cached_property
    def gradients(self) -> xr.Dataset | None:
        from actstats import queries

        return queries.gradient_flow(self.ds).compute() if "weight_grad" in self.ds else None

    @property
    def missing_for_attenuation(self) -> list[str]:
        """What the store lacks of what C4's attenuation reads (delta, preactivation)."""
        return [name for name in ("delta", "preactivation") if name not in self.ds]

    @cached_property
    def attenuation(self) -> xr.Dataset | None:
        import actstats

        if self.missing_for_attenuation:
            return None
        return actstats.attenuation(self.ds).compute()

    @cached_property
    def units(self) -> xr.Dataset:
        """unit_states at each run's last epoch, per (run, layer)."""
        import actstats

        return at_last(actstats.unit_states(self.ds, eps=self.eps, by=("run", "epoch", "layer")).compute(), self.last)

    def bounded(self) -> np.ndarray:
        return np.array([get_activation(a).saturation == "bounds" for a in self.activation])
