"""Argument checks of the queries: one place for each rule, raising one error type.

Every check raises :class:`~actstats.errors.ActstatsValueError` — a ``ValueError`` for
Python users and an :class:`~actstats.errors.ActstatsError` for the command line, which
therefore does not check again — with one line that names the argument and the value, or
:class:`~actstats.errors.ActstatsError` when the dataset lacks what a query needs.
Defaults that users tune (``eps``, ``exact_max_size``) are read from
:data:`actstats.options.OPTIONS` when a query is called.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import xarray as xr

from actstats import kernels
from actstats.errors import ActstatsError, ActstatsValueError, shorten
from actstats.options import OPTIONS

__all__ = [
    "ACTIVATION_DIMS",
    "ACTIVATION_FAMILIES",
    "DEFAULT_ACTIVATION_BY",
    "DEFAULT_WEIGHT_BY",
    "FAST_ACTIVATION_FAMILIES",
    "NORMALITY_FAMILIES",
    "WEIGHT_DIMS",
    "WEIGHT_FAMILIES",
    "require_variables",
    "validate_by",
    "validate_choice",
    "validate_confidence_level",
    "validate_eps",
    "validate_families",
    "validate_method",
]

ACTIVATION_DIMS = ("run", "epoch", "layer", "sample", "unit")
WEIGHT_DIMS = ("run", "epoch", "layer", "unit", "fan_in")
DEFAULT_ACTIVATION_BY = ("run", "epoch", "layer", "split")
DEFAULT_WEIGHT_BY = ("run", "epoch", "layer")

#: Families of :func:`actstats.fit` for activations (rescaled to [0, 1]).
ACTIVATION_FAMILIES = ("beta", "logit_normal", "beta_mixture")
#: Activation families :func:`actstats.fit` uses by default: closed-form or Newton fits,
#: milliseconds per group. The Beta mixture (EM, 20-300 ms per group) is fitted when named.
FAST_ACTIVATION_FAMILIES = ("beta", "logit_normal")
#: Families of :func:`actstats.fit` for weights (those of :func:`actstats.kernels.fit_families`).
WEIGHT_FAMILIES = kernels.FAMILIES
#: Families :func:`actstats.weight_normality` compares for ``best_family`` by default: the
#: ones fitted in closed form or by a fast score equation (a few ms per group). ``t`` and
#: ``gennorm`` need scipy's numerical optimisation (0.1–1 s per group); ask for them
#: with ``families=`` or use :func:`actstats.fit`.
NORMALITY_FAMILIES = ("normal", "laplace", "logistic", "uniform")


def validate_by(by, dims: Sequence[str], *, split: bool) -> tuple[str, ...]:
    """``by`` as a tuple of known names (``split`` dropped when ``sample`` is kept)."""
    allowed = tuple(dims) + (("split",) if split else ())
    if isinstance(by, str):  # "layer,split" as on the command line, or one name
        names: tuple[Any, ...] = tuple(n.strip() for n in by.split(",")) if "," in by else (by,)
    elif isinstance(by, Iterable):
        names = tuple(by)
    else:
        _bad("by", f"expected a dimension name or a sequence of names, got {shorten(by)}")
    for name in names:
        if name not in allowed:
            _bad("by", f"unknown dimension {shorten(name)}; choose from {', '.join(allowed)}")
    if len(set(names)) != len(names):
        _bad("by", f"repeated dimension in {shorten(names)}")
    if "sample" in names and "split" in names:  # split is then a coordinate of sample
        names = tuple(n for n in names if n != "split")
    return names


def _bad(argument: str, problem: str):
    """Raise the one-line error ``"<argument>: <problem>"``."""
    raise ActstatsValueError(f"{argument}: {problem}", argument=argument, problem=problem)


def validate_choice(name: str, value, choices: Sequence[str], what: str = "") -> str:
    """``value`` if it is one of ``choices``; else one line naming the argument and the choices."""
    if value not in choices:
        listed = " or ".join(repr(c) for c in choices) if len(choices) < 3 else (
            ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}")
        note = f" ({what})" if what else ""
        raise ActstatsValueError(f"{name} must be {listed}{note}, got {shorten(value)}", argument=name,
                                 problem=f"must be {listed}{note}")
    return value


def validate_eps(eps=None) -> float:
    """``eps`` as a float in (0, 0.5) — the width of each saturated band as a fraction of the
    activation's range; ``None``: ``OPTIONS["eps"]``."""
    if eps is None:
        eps = OPTIONS["eps"]
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise ActstatsValueError(f"eps must be a number in (0, 0.5), got {shorten(eps)}", argument="eps",
                                 problem="must be a number between 0 and 0.5") from None
    if not 0 < value < 0.5:
        problem = "must be between 0 and 0.5, exclusive (a fraction of the activation's range)"
        raise ActstatsValueError(f"eps {problem}, got {shorten(eps)}", argument="eps", problem=problem)
    return value


def validate_confidence_level(level) -> float:
    """``level`` as a float in (0, 1)."""
    value = float(level)
    if not 0 < value < 1:
        raise ActstatsValueError(f"confidence_level must be in (0, 1), got {shorten(level)}")
    return value


def validate_families(family, variable) -> tuple[str, ...]:
    """The families to fit: ``None`` the fast defaults, ``"all"`` every known one, else the names checked."""
    known = ACTIVATION_FAMILIES if variable == "activation" else WEIGHT_FAMILIES
    if family is None:
        return FAST_ACTIVATION_FAMILIES if variable == "activation" else NORMALITY_FAMILIES
    if isinstance(family, str) and family == "all":
        return tuple(known)
    names = (family,) if isinstance(family, str) else tuple(family)
    if not names:
        _bad("family", "give at least one family")
    for name in names:
        if name not in known:
            _bad("family", f"unknown family {shorten(name)} for {variable}s; choose from {', '.join(known)}")
    return tuple(dict.fromkeys(names))


def require_variables(ds: xr.Dataset, names: Sequence[str], query: str) -> None:
    """Refuse, naming what is missing, a dataset without the variables or dimensions ``query`` needs."""
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        listed = " and ".join(repr(n) for n in missing)
        raise ActstatsError(f"{query} needs the variable {listed}, which this store does not have")
    for name in ("width", "complete", "activation_fn"):
        if name not in ds.variables:
            raise ActstatsError(f"{query} needs {shorten(name)}, which this dataset does not have")
    from actstats.store import VARIABLES

    for name in names:
        lost = [d for d in VARIABLES[name][0] if d not in ds[name].dims]
        if lost:
            raise ActstatsError(
                f"{query}: {shorten(name)} has no {lost[0]!r} dimension (selected away?); select with a list, "
                f"e.g. ds.isel({lost[0]}=[0]), to keep it"
            )


def validate_method(method: str, query: str, group_size: int, exact_max_size: int | None) -> str:
    """``"exact"`` or ``"histogram"`` for ``method`` (``"auto"``: by the group size and
    ``exact_max_size``, default ``OPTIONS["exact_max_size"]``)."""
    if method not in ("auto", "exact", "histogram"):
        raise ActstatsValueError(f"{query}: method must be 'auto', 'exact' or 'histogram', got {shorten(method)}")
    if exact_max_size is None:
        exact_max_size = OPTIONS["exact_max_size"]
    if method == "auto":
        return "exact" if group_size <= exact_max_size else "histogram"
    return method
