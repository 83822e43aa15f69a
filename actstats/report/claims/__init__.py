"""The claim registry: one :class:`ClaimSpec` per claim; the report iterates it.

Adding a claim is one function ``decide(ctx) -> ClaimResult`` (in a module of this package)
and one entry in :data:`CLAIMS`: its statement, criterion, population, verdict, figures and
strata all come from the function; the report, findings.json and the rendering need nothing
else.

Examples
--------
>>> from actstats.report.claims import CLAIMS
>>> list(CLAIMS)
['C1', 'C2', 'C3', 'C4', 'C5', 'C6']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from actstats.report.claims.factors import c5, init_labels
from actstats.report.claims.gradients import c4
from actstats.report.claims.saturation import c1, c2, c6
from actstats.report.claims.weights import c3
from actstats.report.context import Context
from actstats.report.verdicts import ClaimResult

__all__ = ["CLAIMS", "ClaimSpec", "init_labels"]


@dataclass(frozen=True)
class ClaimSpec:
    """A claim: its id and the function that decides it on a :class:`Context`."""

    id: str
    decide: Callable[[Context], ClaimResult]


CLAIMS: dict[str, ClaimSpec] = {spec.id: spec for spec in (
    ClaimSpec("C1", c1),
    ClaimSpec("C2", c2),
    ClaimSpec("C3", c3),
    ClaimSpec("C4", c4),
    ClaimSpec("C5", c5),
    ClaimSpec("C6", c6),
)}
