"""``deepmad design ... --report design.html``: a design as one self-contained HTML page.

The page holds everything inline (the diagram as SVG, CSS, no script, no font, image or style sheet from
anywhere else), so it opens offline: the diagram (``plots.diagram``), the per-stage table, one bar per budget
(share used), the optimality gap and how it was proven (branch and bound nodes, bound), and the problem
(block, resolution, α, β, guidelines). Every number comes from the design and its analysis.
"""
from __future__ import annotations

import html
import re

from ..core.analysis import Analysis, usage

_CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1250px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #eef3f8; } td.l, th.l { text-align: left; }
.bar { width: 420px; height: 16px; background: #eee; border: 1px solid #aaa; display: inline-block;
       vertical-align: middle; }
.fill { height: 100%; background: #4a7fb0; }
.over { background: #c0504d; }
.diagram svg { width: 100%; height: auto; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; } dt { font-weight: bold; }
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _svg(a: Analysis, title: str) -> str:
    """The diagram as inline SVG markup (no XML prolog, no DOCTYPE)."""
    from .plots import draw

    svg = draw(a, fmt="svg", title=title).decode("utf-8")
    start = svg.find("<svg")
    svg = svg[start:] if start >= 0 else svg
    return re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)  # matplotlib's RDF block: nothing to show


def _bars(a: Analysis, budget) -> str:
    use = usage(a, budget)
    rows = []
    for key, what, used, limit in (("flops", "FLOPs (MACs)", f"{a.flops:,}", f"{budget.flops:,.0f}"),
                                   ("params", "params", f"{a.params:,}", f"{budget.params:,.0f}"),
                                   ("rho", "rho (largest prefix)", f"{a.rho_max:.4f}", f"{budget.rho0:g}")):
        share = use[key]
        cls = "fill over" if share > 1 + 1e-12 else "fill"
        rows.append(f"<tr><td class='l'>{_e(what)}</td><td>{_e(used)}</td><td>{_e(limit)}</td>"
                    f"<td class='l'><span class='bar'><span class='{cls}' style='display:block;width:"
                    f"{min(share, 1.0) * 100:.2f}%'></span></span> {share * 100:.1f}%</td></tr>")
    return ("<table><tr><th class='l'>budget</th><th>used</th><th>limit</th><th class='l'>share</th></tr>"
            + "".join(rows) + "</table>")


def _stages(a: Analysis) -> str:
    from ..report import _COLUMNS, _map, num

    head = "".join(f"<th{' class=l' if i < 2 else ''}>{_e(c)}</th>" for i, c in enumerate(_COLUMNS))
    body = []
    for r in a.rows:
        cells = [r.name, r.block, r.channels, "-" if r.mid is None else r.mid, f"{r.kernel}x{r.kernel}", r.depth,
                 r.stride, _map(r.resolution), r.layers, num(r.entropy, 1), num(r.rho, 3)]
        body.append("<tr>" + "".join(f"<td{' class=l' if i < 2 else ''}>{_e(c)}</td>" for i, c in enumerate(cells))
                    + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _proof(d) -> str:
    from ..report import gap_text, num

    if d.bound is None:
        how = ("no bound was proven (--bound-nodes 0, or the evolutionary baseline without a proof): the gap is "
               "unknown")
    else:
        how = (f"branch and bound over convex relaxations (deepmad/core/bound.py) explored "
               f"{d.bound_nodes:,} boxes and proved that no network of the space scores above "
               f"{num(d.bound)}; the design scores {num(d.objective)}")
    extra = f"<dt>status</dt><dd>{_e(d.status)}</dd>" if d.bound is not None else ""
    return (f"<dl><dt>gap</dt><dd>{_e(gap_text(d.gap, d.status))}</dd><dt>how</dt><dd>{_e(how)}</dd>{extra}"
            f"<dt>solver</dt><dd>{_e(d.solver)}, {d.seconds:.2f} s, {d.evaluated:,} candidates scored</dd></dl>")


def _problem(d, a: Analysis) -> str:
    sp, bu = d.problem.space, d.problem.budget
    alpha = d.problem.alpha
    guide = []
    guide.append("1 multi-scale entropy: " + ("on" if sum(1 for x in alpha if x) > 1 else "off (last scale only)"))
    guide.append("2 uniform stage depth: " + (f"on (beta {bu.beta:g})" if bu.beta > 0 else "off (beta 0)"))
    guide.append("3 non-decreasing channels: " + ("on" if sp.ordered else "off"))
    items = [("problem", d.problem.name or "design"), ("block", sp.block), ("input", f"{sp.resolution} px"),
             ("strides", ",".join(map(str, sp.strides))), ("kernels", ",".join(map(str, sp.kernels))),
             ("alpha", ",".join(f"{x:g}" for x in alpha)), ("guidelines", "; ".join(guide)),
             ("objective", f"{a.objective:,.2f} = entropy {a.entropy:,.2f} - depth penalty {a.penalty:,.2f}")]
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items) + "</dl>"


def design_page(d, a: Analysis) -> str:
    """The HTML text of a design's page (see the module docstring)."""
    name = d.problem.name or "design"
    svg = _svg(a, name)
    assert not re.search(r"(?:href|src)\s*=\s*['\"](?:https?:)?//", svg), "the diagram must not link outside"
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_e(name)}: DeepMAD design</title><style>{_CSS}</style></head><body>"
            f"<h1>{_e(name)}: DeepMAD design</h1>{_problem(d, a)}"
            f"<h2>Network</h2><div class='diagram'>{svg}</div>"
            f"<h2>Stages</h2>{_stages(a)}"
            f"<h2>Budgets</h2>{_bars(a, d.problem.budget)}"
            f"<h2>Optimality</h2>{_proof(d)}"
            "</body></html>\n")


__all__ = ["design_page"]
