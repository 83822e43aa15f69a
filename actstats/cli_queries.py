"""The statistical query sub-commands (saturation, bimodality, fit, weights, gradients, compare)."""

from __future__ import annotations


def register(add, commands: dict) -> None:
    """Add the query sub-commands with `add(name, help) -> parser` and their handlers to `commands`."""
