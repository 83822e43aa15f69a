"""The decided claims as one object that renders itself: json, markdown, html, notebooks."""

from __future__ import annotations

import json
import os

import numpy as np

from actstats.report.verdicts import jsonable


class Findings:
    """The verdicts on a store's claims, with the runs' training status.

    ``as_dict()`` is findings.json's content; ``as_json()``, ``as_markdown()``, ``as_html()``
    render it (``_repr_html_`` shows it in a notebook); ``write(directory)`` writes the three
    files.
    """

    def __init__(self, claims, context, store: str = ""):
        self.claims = list(claims)
        self.context = context
        self.store = store
        self.figures: dict[str, str] = {}
        self.figure_runs: dict[str, list[str]] = {}

    def training_summary(self) -> dict:
        training = self.context.training
        status = np.asarray(training["status"].values).astype(str)
        labels = np.asarray(self.context.labels)
        summary = {
            "rule": training.attrs.get("rule", ""),
            "runs_by_status": {s: labels[status == s].tolist() for s in dict.fromkeys(status)},
        }
        if "at_chance" in training:
            at_chance = np.asarray(training["at_chance"].values, dtype=bool)
            summary["runs_at_chance"] = labels[at_chance].tolist()
        return summary

    def as_dict(self) -> dict:
        return jsonable({
            "store": self.store,
            "eps": self.context.eps,
            "training": self.training_summary(),
            "claims": [c.as_dict() for c in self.claims],
        })

    def as_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, allow_nan=False)

    def _render_context(self, output: str | None = None) -> dict:
        ds = self.context.ds
        from actstats.report.figures import run_label

        return {
            "store": self.store,
            "attrs": dict(ds.attrs),
            "sizes": {k: int(v) for k, v in ds.sizes.items()},
            "runs": [run_label(ds, r) for r in range(ds.sizes["run"])],
            "eps": self.context.eps,
            "claims": self.claims,
            "training": self.training_summary(),
            "training_table": _training_table(ds),
            "figures": self.figures,
            "figure_runs": self.figure_runs,
            "claim_figures": {c.id: c.figures for c in self.claims},
        }

    def as_markdown(self, output: str = ".") -> str:
        from actstats.report.render import render_markdown

        return render_markdown(self._render_context(), output)

    def as_html(self) -> str:
        from actstats.report.render import render_html

        return render_html(self._render_context())

    def _repr_html_(self) -> str:
        return self.as_html()

    def write(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "findings.json"), "w") as f:
            f.write(self.as_json())
        with open(os.path.join(directory, "findings.md"), "w") as f:
            f.write(self.as_markdown(directory))
        with open(os.path.join(directory, "index.html"), "w") as f:
            f.write(self.as_html())


def _training_table(ds) -> list[dict]:
    try:
        from actstats.report.training_figures import training_table
    except ImportError:
        return []
    return training_table(ds)
