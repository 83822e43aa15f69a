"""The report's figures: :mod:`actstats.plot` draws each one; this module picks matplotlib's Agg
backend and the report's style, and saves what was drawn as a PNG."""

from __future__ import annotations

import os

import numpy as np

from actstats.plot import run_label

__all__ = ["pyplot", "run_label", "save"]


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, with the report's style (small fonts, no top
    or right spines, no legend frames); figures of the report and of docs/findings.md use it.

    Examples
    --------
    >>> plt = pyplot()
    >>> plt.get_backend().lower()
    'agg'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "figure.dpi": 110, "axes.spines.top": False, "axes.spines.right": False,
        "axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
        "legend.fontsize": 8, "legend.frameon": False,
    })
    return plt


def save(axes, directory: str, name: str) -> str:
    """Save the figure of ``axes`` (what an :mod:`actstats.plot` function returned) as
    ``directory/name``, close it, and return the path."""
    figure = np.asarray(axes, dtype=object).flat[0].figure
    path = os.path.join(directory, name)
    figure.savefig(path, bbox_inches="tight")
    pyplot().close(figure)
    return path
