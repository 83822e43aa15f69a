"""Who a claim is about: the runs of each stratum, named before any claim's data are read.

A claim about trained networks is answered on runs that trained. The rule comes from the
``training`` query (the last complete record's training accuracy against the option
``trained_accuracy``; diverged runs apart). Every run is put in exactly one group, and the
groups left out are counted with their reason, never dropped silently. Where the store does
not record training accuracy, no run can be called trained: the claims then use all runs and
say so in their population.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from actstats.activations import ACTIVATIONS, get_activation

#: The question's own activation function: the primary population when the store has it.
PRIMARY_ACTIVATION = "sigmoid"


@dataclass
class Population:
    """A set of runs (labels on the store's ``run`` dim) and what was excluded, by reason."""

    definition: str
    runs: list[int]
    excluded: dict[str, list[int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "definition": self.definition,
            "runs": [int(r) for r in self.runs],
            "n_runs": len(self.runs),
            "excluded": {reason: [int(r) for r in runs] for reason, runs in self.excluded.items() if runs},
        }


class Runs:
    """The runs of a store grouped by training status and activation function.

    ``status`` is the training query's per-run status ("trained", "not trained", "diverged",
    "not known"); ``activation`` each run's activation function.
    """

    def __init__(self, labels, status, activation, rule: str):
        self.labels = np.asarray(labels)
        self.status = np.asarray(status).astype(str)
        self.activation = np.asarray(activation).astype(str)
        self.rule = rule  # a short form of the training query's rule
        self.known = bool((self.status != "not known").any())

    def eligible(self) -> np.ndarray:
        """Runs a claim about trained networks may use: trained ones, or every non-diverged
        run when the store does not say whether any trained."""
        if self.known:
            return self.status == "trained"
        return self.status != "diverged"

    def activations(self, bounded_only: bool = False) -> list[str]:
        """The activation functions of the store, the primary one first, then registry order."""
        present = [name for name in ACTIVATIONS if name in set(self.activation)]
        present += sorted(set(self.activation) - set(present))
        if bounded_only:
            present = [a for a in present if a in ACTIVATIONS and get_activation(a).saturation == "bounds"]
        return sorted(present, key=lambda a: a != PRIMARY_ACTIVATION)

    def population(self, activation: str | None = None, *, extra=None, extra_reason: str = "",
                   what: str = "") -> Population:
        """The eligible runs (of one activation function, and where ``extra`` — a boolean per
        run — holds), with every other run of that activation counted by reason."""
        mine = np.ones(self.labels.size, dtype=bool) if activation is None else self.activation == activation
        eligible = self.eligible()
        keep = mine & eligible
        excluded: dict[str, list[int]] = {}
        for reason in ("not trained", "diverged", "no complete record"):
            excluded[reason] = self.labels[mine & ~eligible & (self.status == reason)].tolist()
        if extra is not None:
            extra = np.asarray(extra, dtype=bool)
            excluded[extra_reason or "outside the claim's population"] = self.labels[keep & ~extra].tolist()
            keep &= extra
        who = f"{activation} runs" if activation else "runs"
        trained = (f"that trained ({self.rule})" if self.known and self.rule
                   else "that trained" if self.known else "(the store does not record training accuracy: every run that did not diverge counts)")
        definition = f"{who} {trained}" + (f", {what}" if what else "")
        return Population(definition, self.labels[keep].tolist(), excluded)

    def untrained(self, activation: str | None = None) -> list[int]:
        mine = np.ones(self.labels.size, dtype=bool) if activation is None else self.activation == activation
        return self.labels[mine & (self.status == "not trained")].tolist()
