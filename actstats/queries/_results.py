"""Helpers that turn per-group numpy results into the queries' Datasets."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence

import numpy as np
import xarray as xr

from actstats import kernels
from actstats.errors import ActstatsWarning


def _sample_subsets(ds: xr.Dataset, by: Sequence[str]) -> list[tuple[str | None, np.ndarray | None]]:
    if "split" not in by:
        return [(None, None)]
    split = np.asarray(ds["split"].values).astype(str)
    labels = list(dict.fromkeys(split.tolist()))
    return [(label, np.flatnonzero(split == label)) for label in labels]


def _take(obj, index):
    return obj if index is None else obj.isel(sample=index)


def _concat_splits(parts: list[xr.Dataset], labels: list[str | None]) -> xr.Dataset:
    if labels == [None]:
        return parts[0]
    combined = xr.concat(parts, dim="split", coords="minimal", compat="override", join="outer")
    return combined.assign_coords(split=np.asarray(labels, dtype=str))


def _warn_nonfinite(n_nonfinite, variable: str, query: str) -> None:
    total = int(np.nansum(np.asarray(n_nonfinite)))
    if total:
        # attribute the warning to the first caller outside actstats (accessor, CLI, user code)
        frame, level = sys._getframe(), 1
        while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("actstats"):
            frame, level = frame.f_back, level + 1
        warnings.warn(
            f"{query}: {total} non-finite values of {variable} (inf, or NaN where a unit exists, "
            "e.g. from a diverged run) were excluded; see n_nonfinite",
            ActstatsWarning,
            stacklevel=level,
        )


def _divide(numerator, denominator) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def _like(template: xr.DataArray, values) -> xr.DataArray:
    return xr.DataArray(np.asarray(values), dims=template.dims, coords=template.coords)


def _to_bool(array: xr.DataArray) -> xr.DataArray:
    return (array.fillna(0) > 0.5).astype(bool)


def _to_int(array: xr.DataArray) -> xr.DataArray:
    return array.fillna(0).astype(np.int64)


def _bh(pvalues) -> np.ndarray:
    values = np.asarray(pvalues, dtype=float)
    if values.size == 0:
        return values
    return kernels.benjamini_hochberg(values, axis=None).reshape(values.shape)  # 0-d (by=()) stays 0-d


def _family_description(dims: Sequence[str], count: int, what: str) -> str:
    spanned = " x ".join(dims) if dims else "one group"
    return (
        f"Benjamini-Hochberg (false discovery rate) across all {count} groups of this result "
        f"({spanned}) on {what}"
    )


def _attrs(query: str, by: Sequence[str], pooled: Sequence[str], **extra) -> dict:
    attrs = {
        "query": query,
        "by": ",".join(by),
        "pooled_dims": ",".join(pooled),
        "excluded_values": (
            "NaN padding (units beyond width, absent layers, incomplete records) never enters; "
            "non-finite values where a unit exists are excluded and counted in n_nonfinite"
        ),
    }
    attrs.update({k: v for k, v in extra.items() if v is not None})
    return attrs


def _describe(result: xr.Dataset, descriptions: dict[str, str]) -> None:
    for name, text in descriptions.items():
        if name in result:
            result[name].attrs["description"] = text
