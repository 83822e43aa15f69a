"""`actstats report STORE -o DIR`: a verdict on each registered claim, with the numbers and figures.

Each claim (:mod:`actstats.report.claims`) names its population before reading the data (the
runs of one activation function that trained: :mod:`actstats.report.population`), estimates
one number per run, takes its 95% interval over runs and turns it into a verdict with a stated
rule, a margin and a sensitivity (:mod:`actstats.report.verdicts`). Writes DIR/index.html
(self-contained: figures embedded as data URIs, no external URL), DIR/findings.md,
DIR/findings.json and DIR/figures/*.png.
"""

from __future__ import annotations

from actstats.report.build import assess, build_report, representative_run
from actstats.report.claims import CLAIMS, init_labels
from actstats.report.context import last_complete
from actstats.report.findings import Findings

__all__ = ["CLAIMS", "Findings", "assess", "build_report", "init_labels", "last_complete", "representative_run"]
