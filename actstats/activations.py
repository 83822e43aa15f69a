"""Activation functions known to actstats: their numpy form, bounds and derivative.

The bounds decide what "saturated" means: sigmoid saturates towards 0 and 1, tanh and
softsign towards -1 and 1; ReLU has no upper bound and its "saturation" is a dead unit
(exactly 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.special import expit


@dataclass(frozen=True, slots=True)
class Activation:
    """An activation function f, its derivative f' and its range."""

    name: str
    function: Callable[[np.ndarray], np.ndarray]
    derivative: Callable[[np.ndarray], np.ndarray]
    lower: float
    upper: float  # np.inf when unbounded above

    @property
    def bounded(self) -> bool:
        return bool(np.isfinite(self.lower) and np.isfinite(self.upper))


def _sigmoid_derivative(z):
    s = expit(z)
    return s * (1 - s)


def _softsign(z):
    return z / (1 + np.abs(z))


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation("sigmoid", expit, _sigmoid_derivative, 0.0, 1.0),
    "tanh": Activation("tanh", np.tanh, lambda z: 1 - np.tanh(z) ** 2, -1.0, 1.0),
    "relu": Activation("relu", lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(z.dtype), 0.0, np.inf),
    "softsign": Activation("softsign", _softsign, lambda z: 1 / (1 + np.abs(z)) ** 2, -1.0, 1.0),
}


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
