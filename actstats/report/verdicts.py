"""How a claim's estimate becomes a verdict: an interval over runs against a stated rule.

Every claim is decided the same way. Its estimate is the mean over the population's runs of
one number per run (the unit of replication is the run; each run's number already averages
its probe samples). Its interval is Student's t interval over runs (mean ± t₀.₉₇₅,ₙ₋₁ · s/√n)
when there are at least :data:`MIN_RUNS_FOR_INTERVAL` runs, else the probe-level interval of
the single run when the query gives one, else none. A bootstrap over runs was tried first and
rejected: with 5 runs its 95% interval missed a planted null 15% of the time on one side
(tests/test_report_verdicts.py measures the rule's type-I error); the t interval keeps it near
its nominal 2.5% for run-level values that are roughly normal, as means over many probes are. A :class:`Rule` with two thresholds (an
indifference zone between them) turns the interval into a verdict:

- ``supported`` when the whole interval lies beyond the "supported" threshold,
- ``not supported`` when the whole interval lies on the other side of the "not supported"
  threshold,
- ``mixed`` otherwise (the interval straddles a threshold, or lies between them).

The margin is how far the estimate and the interval's ends lie from the thresholds, so a
reader sees how close a verdict is to flipping; the sensitivity repeats the decision for
other eps and thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SUPPORTED, NOT_SUPPORTED, MIXED, NOT_TESTABLE = "supported", "not supported", "mixed", "not testable"

#: Fewer runs than this: no interval over runs.
MIN_RUNS_FOR_INTERVAL = 2


@dataclass(frozen=True)
class Rule:
    """``greater``: supported when the interval's lower end exceeds ``supported``, else not
    supported when its upper end is below ``not_supported``, else mixed. ``less``: the mirror
    image (supported when the upper end is below ``supported``, else not supported when the
    lower end exceeds ``not_supported``). ``not_supported`` may lie on the "supported" side of
    ``supported`` (C2: supported above 0.01, not supported below 0.02): an interval inside
    the overlap is supported, since "supported" is checked first."""

    supported: float
    not_supported: float
    direction: str = "greater"

    def __post_init__(self):
        if self.direction not in ("greater", "less"):
            raise ValueError(f"direction must be 'greater' or 'less', not {self.direction!r}")

    def describe(self, what: str) -> str:
        if self.direction == "greater":
            if self.supported == self.not_supported:
                return (f"Supported when the 95% interval of {what} lies above {self.supported:g}, not supported when "
                        f"it lies below, mixed when it contains {self.supported:g}")
            return (f"Supported when the 95% interval of {what} lies above {self.supported:g}, not supported when it "
                    f"lies below {self.not_supported:g}, mixed otherwise")
        if self.supported == self.not_supported:
            return (f"Supported when the 95% interval of {what} lies below {self.supported:g}, not supported when it "
                    f"lies above, mixed when it contains {self.supported:g}")
        return (f"Supported when the 95% interval of {what} lies below {self.supported:g}, not supported when it "
                f"lies above {self.not_supported:g}, mixed otherwise")

    def decide(self, estimate: float, low: float, high: float) -> str:
        if not np.isfinite(estimate):
            return NOT_TESTABLE
        if not (np.isfinite(low) and np.isfinite(high)):
            low = high = estimate  # no interval: the estimate alone (said in the evidence)
        if self.direction == "greater":
            if low > self.supported:
                return SUPPORTED
            if high < self.not_supported:
                return NOT_SUPPORTED
            return MIXED
        if high < self.supported:
            return SUPPORTED
        if low > self.not_supported:
            return NOT_SUPPORTED
        return MIXED

    def margin(self, estimate: float, low: float, high: float) -> dict[str, float]:
        """Signed distances: positive means on the "supported" side of the threshold."""
        sign = 1.0 if self.direction == "greater" else -1.0
        near, far = (low, high) if self.direction == "greater" else (high, low)
        return {
            "estimate_to_supported": sign * (estimate - self.supported),
            "interval_end_to_supported": sign * (near - self.supported),
            "estimate_to_not_supported": sign * (estimate - self.not_supported),
            "interval_end_to_not_supported": sign * (far - self.not_supported),
        }


def run_interval(values, *, fallback=(np.nan, np.nan)) -> tuple[float, float, float]:
    """Mean of per-run values and its 95% t interval over runs, or the
    ``fallback`` interval (e.g. the probe-level interval of a single run) with fewer than
    :data:`MIN_RUNS_FOR_INTERVAL` runs.

    Examples
    --------
    >>> estimate, low, high = run_interval([0.6, 0.7, 0.65, 0.8])
    >>> round(estimate, 4), round(low, 4), round(high, 4)  # t(0.975, 3) = 3.182, s = 0.0854
    (0.6875, 0.5516, 0.8234)
    """
    from scipy import stats

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, np.nan, np.nan
    if values.size < MIN_RUNS_FOR_INTERVAL:
        return float(values[0]), float(fallback[0]), float(fallback[1])
    estimate = float(values.mean())
    half = float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size))
    return estimate, estimate - half, estimate + half


def two_group_interval(first, second) -> tuple[float, float, float]:
    """Difference of the means of two groups of per-run values and its 95% Welch t interval
    (:func:`actstats.kernels.welch_interval`; a bootstrap over 4 runs a group was too narrow)."""
    from actstats.kernels import welch_interval

    return welch_interval(first, second)


@dataclass
class Stratum:
    """One stratum of a claim (an activation function, or the runs that did not train)."""

    name: str
    runs: list[int]
    verdict: str
    estimate: float = np.nan
    ci: tuple[float, float] = (np.nan, np.nan)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "runs": list(self.runs), "n_runs": len(self.runs), "verdict": self.verdict,
                "estimate": self.estimate, "ci": list(self.ci), "note": self.note}


@dataclass
class ClaimResult:
    """A decided claim: what findings.json holds for it."""

    id: str
    claim: str
    criterion: str
    verdict: str = NOT_TESTABLE
    summary: str = ""
    population: dict[str, Any] = field(default_factory=dict)
    estimate: float = np.nan
    ci: tuple[float, float] = (np.nan, np.nan)
    margin: dict[str, float] = field(default_factory=dict)
    sensitivity: dict[str, Any] = field(default_factory=dict)
    strata: list[Stratum] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)

    def not_testable(self, reason: str) -> "ClaimResult":
        self.verdict = NOT_TESTABLE
        self.evidence["missing"] = reason
        self.summary = f"Not testable: {reason}."
        return self

    def as_dict(self) -> dict[str, Any]:
        return jsonable({
            "id": self.id,
            "claim": self.claim,
            "criterion": self.criterion,
            "verdict": self.verdict,
            "evidence": {"summary": self.summary, **self.evidence},
            "population": self.population,
            "estimate": self.estimate,
            "ci": list(self.ci),
            "margin": self.margin,
            "sensitivity": self.sensitivity,
            "strata": [s.as_dict() for s in self.strata],
        })


def jsonable(value):
    """Plain JSON values: numpy scalars and arrays converted, non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.str_):
        return str(value)
    return value
