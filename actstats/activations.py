"""The activation registry: every activation function actstats and capture know, declared once.

Each :class:`Activation` entry holds everything the rest of the project reads about an
activation function: its numpy form, derivative and inverse, its range, what "saturated"
means for it, the ``torch.nn`` module capture builds networks with, and the Kaiming gain.
Capture's config validation, ``actstats.capture.model``'s networks and Kaiming initialisation,
synthetic stores' pre-activations, the queries' bounds and derivatives, and (through
:func:`describe_saturation`) the prose that states the bounds derive from :data:`ACTIVATIONS`.

Saturation semantics (the field ``saturation``):

- ``"bounds"``: saturated means within ``eps`` (a share of the range) of a finite bound:
  sigmoid towards 0 and 1, tanh and softsign towards -1 and 1.
  hardtanh towards -1 and 1 (where it is flat: f' = 0 beyond them).
- ``"lower_bound"``: one-sided, a finite lower bound and no upper one. Saturated means
  within ``eps`` of the lower bound, ``eps`` a share of the distance from the lower bound to
  f(0) (the function's own scale on that side): ELU towards -1 (alpha 1), softplus towards
  0, where in both the band is the flat tail (ELU: z <= ln eps, f' <= eps; softplus:
  f' <= ~eps); SiLU and GELU towards their minimum (SiLU -W(1/e) = -0.2785 at z = -1.2785,
  GELU -0.1700 at z = -0.7518), where f' = 0 — their tail towards 0⁻ as z -> -inf, also
  flat, is not counted. There is no "high".
- ``"dead_at_zero"``: ReLU-like, range ``[0, inf)``. A value is "low" when it is exactly
  0, and a *dead unit* is 0 on every probe; ``eps`` does not apply and there is no "high".
- ``"none"``: saturation has no meaning: no finite bound and no dead value (leaky ReLU).
  Queries do not count such layers (their values are in no total): a group of only such
  layers has a NaN fraction, and the result says so (``attrs["not_applicable"]``).

How to add an activation function: add one entry to ``_ENTRIES`` below, e.g. for ELU::

    Activation(
        name="elu", function=_elu, derivative=_elu_derivative, inverse=_elu_inverse,
        lower=-1.0, upper=np.inf, saturation="lower_bound",
        torch_module="ELU", kaiming_nonlinearity="linear", derivative_max=1.0,
    ),

The torch module is the one with its default arguments (``nn.ELU()``: alpha 1): the entry's
function, bounds and derivative are those of the defaults, and ``capture.Recorder`` refuses a
module built with other arguments.

Every field is required (a missing one is a ``TypeError`` when this module is imported)
and :meth:`Activation.__post_init__` checks the values (a ``ValueError`` at import). Then
``tests/test_activations.py`` checks the new entry's derivative, inverse, torch module and
Kaiming gain by itself (it is parametrised over the registry); ``tests/queries_reference.py``
keeps an independent table of bounds on purpose, to be extended by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np


def expit(z):
    """The logistic function (scipy.special.expit; scipy is imported at the first call, so that
    opening a store does not load scipy.special: 0.3 s)."""
    from scipy.special import expit as function

    return function(z)


def ndtr(z):
    """The standard normal CDF (scipy.special.ndtr, imported at the first call)."""
    from scipy.special import ndtr as function

    return function(z)


__all__ = ["ACTIVATIONS", "Activation", "KAIMING_GAINS", "SATURATION_KINDS", "describe_saturation", "get_activation"]

Array = np.ndarray

#: The values of :attr:`Activation.saturation`.
SATURATION_KINDS = ("bounds", "lower_bound", "dead_at_zero", "none")

#: Gains of ``torch.nn.init.calculate_gain`` for the nonlinearities it names without a
#: parameter (torch 2.x; checked against torch in tests/test_activations.py). actstats
#: imports no torch, so the gain is restated here for the docs and the report.
KAIMING_GAINS = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0), "selu": 3.0 / 4.0,
                 "leaky_relu": math.sqrt(2.0 / (1 + 0.01 ** 2))}


@dataclass(frozen=True, slots=True)
class Activation:
    """An activation function f: its numpy form, derivative, inverse, range and semantics.

    Attributes
    ----------
    name : str
        The name used in configs and stores (``activation_fn``).
    function, derivative : callable
        f and f' on numpy arrays (elementwise, dtype kept for floats).
    inverse : callable or None
        f⁻¹ on the open range ``(lower, upper)``; None when f is not invertible (ReLU: every
        z <= 0 gives 0). Synthetic stores use it to give drawn activations their
        pre-activations (NaN without an inverse).
    lower, upper : float
        The range of f; ``np.inf`` / ``-np.inf`` where unbounded.
    saturation : {"bounds", "lower_bound", "dead_at_zero", "none"}
        What "saturated" means for f (see the module docstring).
    torch_module : str
        The name of f's module in ``torch.nn`` (e.g. ``"Sigmoid"``); capture builds it.
    kaiming_nonlinearity : str
        The ``nonlinearity`` argument capture passes to ``torch.nn.init.kaiming_normal_``,
        a key of :data:`KAIMING_GAINS`.
    derivative_max : float
        The largest value of f' (sigmoid 1/4, tanh 1): the scale of ``attenuation``'s
        derivative factor (mean f'(z) relative to it). Positive and finite.

    Examples
    --------
    >>> sigmoid = get_activation("sigmoid")
    >>> sigmoid.lower, sigmoid.upper, sigmoid.saturation, sigmoid.torch_module
    (0.0, 1.0, 'bounds', 'Sigmoid')
    >>> round(float(sigmoid.inverse(sigmoid.function(np.array(2.0)))), 9)
    2.0
    """

    name: str
    function: Callable[[Array], Array]
    derivative: Callable[[Array], Array]
    inverse: Callable[[Array], Array] | None
    lower: float
    upper: float
    saturation: str
    torch_module: str
    kaiming_nonlinearity: str
    derivative_max: float

    def __post_init__(self):
        where = f"activation {self.name!r}"
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"activation name {self.name!r}: must be a non-empty identifier")
        for field in ("function", "derivative"):
            if not callable(getattr(self, field)):
                raise ValueError(f"{where}: {field} must be callable")
        if self.inverse is not None and not callable(self.inverse):
            raise ValueError(f"{where}: inverse must be callable or None (not invertible)")
        if not (isinstance(self.lower, float) and isinstance(self.upper, float) and self.lower < self.upper):
            raise ValueError(f"{where}: lower, upper must be floats with lower < upper (got {self.lower!r}, {self.upper!r})")
        if self.saturation not in SATURATION_KINDS:
            raise ValueError(f"{where}: saturation {self.saturation!r} must be one of {', '.join(SATURATION_KINDS)}")
        if self.saturation == "bounds" and not self.bounded:
            raise ValueError(f"{where}: saturation 'bounds' needs finite lower and upper bounds")
        if self.saturation == "dead_at_zero" and (self.lower, self.upper) != (0.0, np.inf):
            raise ValueError(f"{where}: saturation 'dead_at_zero' needs the range [0, inf)")
        if self.saturation == "lower_bound" and not (np.isfinite(self.lower) and self.upper == np.inf):
            raise ValueError(f"{where}: saturation 'lower_bound' needs a finite lower bound and upper = inf")
        if self.saturation == "lower_bound" and not float(self.function(np.array(0.0))) > self.lower:
            raise ValueError(f"{where}: saturation 'lower_bound' needs f(0) above the lower bound (the band's scale)")
        if not (isinstance(self.torch_module, str) and self.torch_module.isidentifier()):
            raise ValueError(f"{where}: torch_module must name a module in torch.nn, e.g. 'Sigmoid'")
        if self.kaiming_nonlinearity not in KAIMING_GAINS:
            raise ValueError(
                f"{where}: kaiming_nonlinearity {self.kaiming_nonlinearity!r} must be one of {', '.join(KAIMING_GAINS)}"
            )
        if not (isinstance(self.derivative_max, float) and 0 < self.derivative_max < np.inf):
            raise ValueError(f"{where}: derivative_max must be a positive finite float (the largest value of f')")

    @property
    def bounded(self) -> bool:
        """Whether both bounds are finite."""
        return bool(np.isfinite(self.lower) and np.isfinite(self.upper))

    @property
    def kaiming_gain(self) -> float:
        """``torch.nn.init.calculate_gain(self.kaiming_nonlinearity)``, without torch."""
        return KAIMING_GAINS[self.kaiming_nonlinearity]

    @property
    def band_upper(self) -> float:
        """The top of the range that ``eps`` is a share of: ``upper`` for ``"bounds"``, f(0)
        for ``"lower_bound"`` (the saturated band is ``x <= lower + eps (band_upper - lower)``);
        NaN where ``eps`` does not apply.

        Examples
        --------
        >>> get_activation("elu").band_upper, get_activation("tanh").band_upper
        (0.0, 1.0)
        """
        if self.saturation == "bounds":
            return self.upper
        if self.saturation == "lower_bound":
            return float(self.function(np.array(0.0)))
        return math.nan

    @property
    def saturation_description(self) -> str:
        """What counts as saturated for this function, in words (without its name).

        Examples
        --------
        >>> get_activation("tanh").saturation_description
        '[-1, 1]'
        >>> get_activation("relu").saturation_description
        'exact zeros count as low, eps unused'
        >>> get_activation("softplus").saturation_description
        'one-sided: near the lower bound 0, eps a share of its distance to f(0) (0.6931)'
        >>> get_activation("leaky_relu").saturation_description
        'saturation has no meaning (no bound, no dead value): not counted'
        """
        if self.saturation == "bounds":
            return f"[{self.lower:g}, {self.upper:g}]"
        if self.saturation == "lower_bound":
            return (f"one-sided: near the lower bound {self.lower:.4g}, eps a share of its distance to f(0) "
                    f"({self.band_upper - self.lower:.4g})")
        if self.saturation == "dead_at_zero":
            return "exact zeros count as low, eps unused"
        return "saturation has no meaning (no bound, no dead value): not counted"


def describe_saturation(names=None) -> str:
    """One sentence on what saturation means for each activation, as queries and reports say it.

    Activations with the same description are listed together, in registry order.

    Parameters
    ----------
    names : iterable of str, optional
        The activations to describe (default: all of :data:`ACTIVATIONS`).

    Examples
    --------
    >>> describe_saturation(["sigmoid", "tanh", "softsign", "relu"])
    'sigmoid [0, 1]; tanh, softsign [-1, 1]; relu: exact zeros count as low, eps unused'
    >>> describe_saturation(["tanh"])
    'tanh [-1, 1]'
    """
    chosen = list(ACTIVATIONS) if names is None else [get_activation(n).name for n in names]
    groups: dict[str, list[str]] = {}
    for name in ACTIVATIONS:
        if name in chosen:
            groups.setdefault(ACTIVATIONS[name].saturation_description, []).append(name)
    parts = []
    for description, members in groups.items():
        separator = " " if description.startswith("[") else ": "
        parts.append(f"{', '.join(members)}{separator}{description}")
    return "; ".join(parts)


# ------------------------------------------------------------------------------ entries


def _sigmoid_derivative(z):
    s = expit(z)
    return s * (1 - s)


def _logit(h):
    return np.log(h) - np.log1p(-h)


def _softsign(z):
    return z / (1 + np.abs(z))


_ENTRIES = (
    Activation(
        name="sigmoid", function=expit, derivative=_sigmoid_derivative, inverse=_logit,
        lower=0.0, upper=1.0, saturation="bounds", torch_module="Sigmoid", kaiming_nonlinearity="sigmoid",
        derivative_max=0.25,
    ),
    Activation(
        name="tanh", function=np.tanh, derivative=lambda z: 1 - np.tanh(z) ** 2, inverse=np.arctanh,
        lower=-1.0, upper=1.0, saturation="bounds", torch_module="Tanh", kaiming_nonlinearity="tanh",
        derivative_max=1.0,
    ),
    Activation(
        name="relu", function=lambda z: np.maximum(z, 0), derivative=lambda z: (z > 0).astype(z.dtype), inverse=None,
        lower=0.0, upper=np.inf, saturation="dead_at_zero", torch_module="ReLU", kaiming_nonlinearity="relu",
        derivative_max=1.0,
    ),
    # torch has no Kaiming gain for softsign; gain 1 ("linear") is what capture has always used
    Activation(
        name="softsign", function=_softsign, derivative=lambda z: 1 / (1 + np.abs(z)) ** 2,
        inverse=lambda h: h / (1 - np.abs(h)),
        lower=-1.0, upper=1.0, saturation="bounds", torch_module="Softsign", kaiming_nonlinearity="linear",
        derivative_max=1.0,
    ),
)


def _elu(z):
    return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))


def _softplus(z):  # torch's: z itself above the threshold 20
    return np.where(z > 20, z, np.log1p(np.exp(np.minimum(z, 20))))


def _softplus_inverse(h):
    return np.where(h > 20, h, np.log(np.expm1(np.minimum(h, 20))))


def _silu(z):
    return z * expit(z)


def _silu_derivative(z):
    s = expit(z)
    return s * (1 + z * (1 - s))


def _gelu(z):  # torch's nn.GELU() (approximate="none"): z Φ(z), Φ without cancellation for z < 0
    return z * ndtr(z)


def _gelu_derivative(z):
    return ndtr(z) + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


#: SiLU's minimum, -W(1/e) (W: Lambert's; the omega-like constant W(1/e) = 0.27846454276107380),
#: at z = -(1 + W(1/e)); equal to float(-scipy.special.lambertw(exp(-1)).real), checked in
#: tests/test_activations.py.
SILU_MINIMUM = -0.2784645427610738
#: GELU's minimum (no closed form: minimize z Φ(z); at z = -0.75179), checked in tests/test_activations.py.
GELU_MINIMUM = -0.16997120747990366

_ENTRIES += (
    # one-sided: a finite lower bound, none above (torch names no Kaiming gain: 1)
    Activation(
        name="elu", function=_elu, derivative=lambda z: np.where(z > 0, 1.0, np.exp(np.minimum(z, 0))).astype(
            np.result_type(z, np.float32)), inverse=lambda h: np.where(h > 0, h, np.log1p(np.minimum(h, 0))),
        lower=-1.0, upper=np.inf, saturation="lower_bound", torch_module="ELU", kaiming_nonlinearity="linear",
        derivative_max=1.0,
    ),
    Activation(
        name="softplus", function=_softplus, derivative=lambda z: np.where(z > 20, 1.0, expit(z)),
        inverse=_softplus_inverse, lower=0.0, upper=np.inf, saturation="lower_bound", torch_module="Softplus",
        kaiming_nonlinearity="linear", derivative_max=1.0,
    ),
    Activation(
        name="silu", function=_silu, derivative=_silu_derivative, inverse=None,
        lower=SILU_MINIMUM, upper=np.inf, saturation="lower_bound", torch_module="SiLU",
        kaiming_nonlinearity="linear", derivative_max=1.0998393201288670,
    ),
    Activation(
        name="gelu", function=_gelu, derivative=_gelu_derivative, inverse=None,
        lower=GELU_MINIMUM, upper=np.inf, saturation="lower_bound", torch_module="GELU",
        kaiming_nonlinearity="linear", derivative_max=1.1289041451851550,
    ),
    # bounded, flat beyond its bounds
    Activation(
        name="hardtanh", function=lambda z: np.clip(z, -1.0, 1.0),
        derivative=lambda z: ((z > -1) & (z < 1)).astype(np.result_type(z, np.float32)), inverse=None,
        lower=-1.0, upper=1.0, saturation="bounds", torch_module="Hardtanh", kaiming_nonlinearity="linear",
        derivative_max=1.0,
    ),
    # no bound, no dead value: saturation has no meaning
    Activation(
        name="leaky_relu", function=lambda z: np.where(z > 0, z, 0.01 * z),
        derivative=lambda z: np.where(z > 0, 1.0, 0.01).astype(np.result_type(z, np.float32)),
        inverse=lambda h: np.where(h > 0, h, h / 0.01), lower=-np.inf, upper=np.inf, saturation="none",
        torch_module="LeakyReLU", kaiming_nonlinearity="leaky_relu", derivative_max=1.0,
    ),
)


def _registry(entries) -> dict[str, Activation]:
    registry: dict[str, Activation] = {}
    for entry in entries:
        if entry.name in registry:
            raise ValueError(f"activation {entry.name!r} is declared twice")
        registry[entry.name] = entry
    return registry


#: name -> :class:`Activation`, in declaration order.
ACTIVATIONS: dict[str, Activation] = _registry(_ENTRIES)


def get_activation(name: str) -> Activation:
    """Return the :class:`Activation` called `name`.

    Examples
    --------
    >>> get_activation("sigmoid").upper
    1.0
    """
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation function {name!r}; known: {', '.join(ACTIVATIONS)}"
        ) from None
