"""Render the findings as one self-contained HTML page and as Markdown.

Every string that comes from a store (attributes, run labels, configs) goes through
html.escape: a store is untrusted input.
"""

from __future__ import annotations

import base64
import json
import os
from html import escape

VERDICT_COLOURS = {
    "supported": "#1b7f3b",
    "not supported": "#b3261e",
    "mixed": "#a05a00",
    "not testable": "#5f6368",
}

FIGURE_CAPTIONS = {
    "mean_std": "Mean ± std of each layer's activations on training probes over training (Glorot & Bengio 2010, Fig. 2 style), one panel per activation function.",
    "histograms": "Activation histograms per layer at several epochs; bins even in logit space so that both bounds are resolved.",
    "heatmap": "Saturated fraction on training probes, layer × epoch.",
    "trajectories": "Tracked probes of the most saturated run: training (solid) and held-out (dashed) samples' top-layer hidden vectors over training.",
    "qq": "Each layer's weights at the last epoch against the fitted normal (QQ plot).",
    "kurtosis": "Excess kurtosis of each layer's weights over training, from the initialisation (0 = normal, −1.2 = uniform).",
    "gradients": "Weight-gradient norm ‖∂L/∂W‖ and mean f′(z) per layer over training.",
    "sweep": "Saturated fraction at the last epoch per run (training probes, mean over layers), by each swept factor; bars are means.",
    "activation": "Saturated fraction at the last epoch per run (training probes, mean over layers), by activation function; bars are means.",
    "training": "Training and held-out accuracy and loss over training, per run; the dashed line is chance.",
}


def caption(context: dict, key: str) -> str:
    """The figure's caption, with the runs it shows (each figure uses its verdict's population)."""
    runs = context.get("figure_runs", {}).get(key)
    if not runs:
        return FIGURE_CAPTIONS[key]
    rule = " (per activation function, the run of the verdict's population with the highest training accuracy)"
    return FIGURE_CAPTIONS[key] + f" Runs shown{rule if key not in ('sweep', 'activation', 'training') else ''}: " \
        + "; ".join(runs) + "."


def _number(value, fmt="{:.3g}") -> str:
    try:
        return fmt.format(value) if value is not None and value == value else "—"
    except (TypeError, ValueError):
        return str(value)


def _decision_rows(claim) -> str:
    """Population, estimate, interval, margin, sensitivity and strata of a claim, as HTML."""
    population = claim.population or {}
    excluded = "; ".join(f"{reason}: {len(runs)}" for reason, runs in population.get("excluded", {}).items() if runs)
    rows = [
        f"<tr><th>population</th><td>{escape(str(population.get('definition', '—')))} — "
        f"{population.get('n_runs', 0)} runs" + (f"; excluded: {escape(excluded)}" if excluded else "") + "</td></tr>",
        f"<tr><th>estimate</th><td>{_number(claim.estimate)} (95% interval {_number(claim.ci[0])} to "
        f"{_number(claim.ci[1])})</td></tr>",
    ]
    if claim.margin:
        margin = "; ".join(f"{k.replace('_', ' ')} {_number(v, '{:+.3g}') if isinstance(v, float) else escape(str(v))}"
                           for k, v in claim.margin.items())
        rows.append(f"<tr><th>margin</th><td>{escape(margin)} (positive: on the supported side)</td></tr>")
    if claim.sensitivity:
        rows.append(f"<tr><th>sensitivity</th><td>{escape(sensitivity_text(claim.sensitivity))}</td></tr>")
    table = "<table>" + "".join(rows) + "</table>"
    if claim.strata:
        table += "<table><tr><th>stratum</th><th>runs</th><th>estimate</th><th>95% interval</th><th>verdict</th></tr>"
        for s in claim.strata:
            table += (f"<tr><td>{escape(s.name)}</td><td>{len(s.runs)}</td><td>{_number(s.estimate)}</td>"
                      f"<td>{_number(s.ci[0])} to {_number(s.ci[1])}</td><td>{_badge(s.verdict)}</td></tr>")
        table += "</table>"
    return table


def sensitivity_text(sensitivity: dict) -> str:
    """``eps 0.01: not supported (0.026 [0.005, 0.046]); …; thresholds …; the verdict survives: no``."""
    parts = []
    for eps, entry in sensitivity.get("eps", {}).items():
        detail = ""
        if "ci" in entry:
            detail = (f" ({_number(entry.get('estimate'))} [{_number(entry['ci'][0])}, "
                      f"{_number(entry['ci'][1])}])")
        parts.append(f"eps {eps}: {entry['verdict']}{detail}")
    parts += [f"{rule}: {verdict}" for rule, verdict in sensitivity.get("thresholds", {}).items()]
    survives = sensitivity.get("verdict_survives")
    if survives is not None:
        parts.append(f"the verdict survives every variant: {'yes' if survives else 'no'}")
    if sensitivity.get("note"):
        parts.append(str(sensitivity["note"]))
    return "; ".join(parts)


def _training_html(context: dict) -> list[str]:
    training = context.get("training", {})
    parts = ["<h2 id=\"training\">Did the networks learn?</h2>",
             f"<p>Rule: {escape(str(training.get('rule', '')))}.</p><table>"]
    for status, runs in training.get("runs_by_status", {}).items():
        parts.append(f"<tr><th>{escape(str(status))}</th><td>{len(runs)} runs</td></tr>")
    parts.append("</table>")
    at_chance = training.get("runs_at_chance", [])
    if at_chance:
        parts.append(f"<p><b>Warning:</b> {len(at_chance)} runs sit at chance accuracy; no claim counts them "
                     f"among trained networks.</p>")
    rows = context.get("training_table") or []
    if rows:
        keys = list(rows[0])
        parts.append("<details><summary>Per run</summary><table><tr>"
                     + "".join(f"<th>{escape(str(k))}</th>" for k in keys) + "</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{escape(_format(row[k]))}</td>" for k in keys) + "</tr>")
        parts.append("</table></details>")
    path = context["figures"].get("training")
    if path:
        parts.append(f'<figure><img alt="{escape(caption(context, "training"))}" src="{_image(path)}">'
                     f"<figcaption>{escape(caption(context, 'training'))}</figcaption></figure>")
    return parts

CSS = """
body { font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f1f1f;
       max-width: 1100px; margin: 0 auto; padding: 24px 28px 64px; background: #fff; }
h1 { font-size: 26px; margin-bottom: 4px; }
h2 { font-size: 20px; margin-top: 40px; border-top: 1px solid #e3e3e3; padding-top: 22px; }
.sub { color: #5f6368; margin-top: 0; }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 12px; color: #fff; font-weight: 600;
           font-size: 13px; vertical-align: middle; margin-left: 8px; }
table { border-collapse: collapse; margin: 10px 0; font-size: 14px; }
td, th { border-bottom: 1px solid #eee; padding: 4px 10px; text-align: left; vertical-align: top; }
th { color: #5f6368; font-weight: 600; }
.summary-table td:first-child { font-weight: 600; white-space: nowrap; }
.criterion { background: #f7f7f8; border-left: 3px solid #c4c7c5; padding: 8px 12px; font-size: 14px; }
.claim { font-size: 16px; }
figure { margin: 18px 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #5f6368; font-size: 13px; }
details { margin: 8px 0; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12.5px; }
pre { background: #f7f7f8; padding: 10px; overflow-x: auto; white-space: pre-wrap; }
"""


def _badge(verdict: str) -> str:
    colour = VERDICT_COLOURS.get(verdict, "#5f6368")
    return f'<span class="verdict" style="background:{colour}">{escape(verdict)}</span>'


def _image(path: str) -> str:
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    return f"data:image/png;base64,{data}"


def _evidence_rows(evidence: dict) -> str:
    rows = []
    for key, value in evidence.items():
        if key == "summary":
            continue
        rows.append(f"<tr><th>{escape(str(key).replace('_', ' '))}</th><td>{escape(_format(value))}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_format(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return str(value)


def render_html(context: dict) -> str:
    claims = context["claims"]
    attrs = context["attrs"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>actstats report — {escape(str(context['store']))}</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Are hidden activations on training points saturated?</h1>",
        f'<p class="sub">actstats report on <code>{escape(str(context["store"]))}</code> — '
        f"{context['sizes'].get('run', 0)} runs, {context['sizes'].get('epoch', 0)} recorded epochs, "
        f"{context['sizes'].get('sample', 0)} probes; saturation means within eps = {context['eps']:g} of a bound "
        f"(as a share of the activation's range).</p>",
        '<table class="summary-table"><tr><th>claim</th><th>verdict</th><th>in numbers</th></tr>',
    ]
    for claim in claims:
        parts.append(
            f'<tr><td><a href="#{escape(claim.id)}">{escape(claim.id)}</a></td><td>{_badge(claim.verdict)}</td>'
            f"<td>{escape(claim.summary)}</td></tr>"
        )
    parts.append("</table>")
    for claim in claims:
        parts.append(f'<h2 id="{escape(claim.id)}">{escape(claim.id)} {_badge(claim.verdict)}</h2>')
        parts.append(f'<p class="claim">{escape(claim.claim)}</p>')
        parts.append(f'<div class="criterion"><b>Criterion.</b> {escape(claim.criterion)}</div>')
        parts.append(f"<p><b>Result.</b> {escape(claim.summary)}</p>")
        parts.append(_decision_rows(claim))
        parts.append("<details><summary>All numbers</summary>" + _evidence_rows(claim.evidence) + "</details>")
        for key in context["claim_figures"].get(claim.id, []):
            path = context["figures"].get(key)
            if path:
                parts.append(
                    f'<figure><img alt="{escape(caption(context, key))}" src="{_image(path)}">'
                    f"<figcaption>{escape(caption(context, key))}</figcaption></figure>"
                )
    parts.extend(_training_html(context))
    parts.append("<h2>The store</h2><table>")
    for key in ("schema", "created_at", "creation_library", "creation_library_version", "torch_version"):
        parts.append(f"<tr><th>{escape(key)}</th><td>{escape(str(attrs.get(key, '')))}</td></tr>")
    parts.append("</table><details><summary>Runs</summary><ol start=\"0\">")
    parts.extend(f"<li>{escape(label)}</li>" for label in context["runs"])
    parts.append("</ol></details>")
    sweep = attrs.get("sweep", "")
    try:
        sweep = json.dumps(json.loads(sweep), indent=2)
    except (TypeError, ValueError):
        sweep = str(sweep)
    parts.append(f"<details><summary>Config of the sweep</summary><pre>{escape(sweep)}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(context: dict, output: str) -> str:
    lines = [
        "# Are hidden activations on training points saturated?",
        "",
        f"actstats report on `{context['store']}`: {context['sizes'].get('run', 0)} runs, "
        f"{context['sizes'].get('epoch', 0)} recorded epochs, {context['sizes'].get('sample', 0)} probes; "
        f"saturation means within eps = {context['eps']:g} of a bound.",
        "",
        "| claim | verdict | in numbers |",
        "|---|---|---|",
    ]
    at_chance = context.get("training", {}).get("runs_at_chance", [])
    if at_chance:
        lines[4:4] = [f"**Warning:** {len(at_chance)} runs sit at chance accuracy; no claim counts them among "
                      f"trained networks.", ""]
    for claim in context["claims"]:
        lines.append(f"| {claim.id} | **{claim.verdict}** | {claim.summary.replace('|', '/')} |")
    for claim in context["claims"]:
        lines += ["", f"## {claim.id}: {claim.verdict}", "", f"*{claim.claim}*", "", f"**Criterion.** {claim.criterion}", "",
                  f"**Result.** {claim.summary}", "",
                  f"**Population.** {(claim.population or {}).get('definition', '—')} "
                  f"({(claim.population or {}).get('n_runs', 0)} runs). **Estimate** {_number(claim.estimate)}, "
                  f"95% interval {_number(claim.ci[0])} to {_number(claim.ci[1])}.", ""]
        if claim.strata:
            lines += ["| stratum | runs | estimate | 95% interval | verdict |", "|---|---|---|---|---|"]
            lines += [f"| {s.name} | {len(s.runs)} | {_number(s.estimate)} | {_number(s.ci[0])} to {_number(s.ci[1])} "
                      f"| {s.verdict} |" for s in claim.strata]
            lines.append("")
        for key in context["claim_figures"].get(claim.id, []):
            path = context["figures"].get(key)
            if path:
                lines.append(f"![{caption(context, key)}]({os.path.relpath(path, output)})")
                lines.append("")
    return "\n".join(lines) + "\n"
