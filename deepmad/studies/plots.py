"""Pictures: a network as a diagram (``diagram``, ``draw``) and a sweep's curves (``sweep_png``), with matplotlib.

matplotlib is optional (``pip install 'deepmad[plot]'``) and imported only here, only when a picture is drawn
(Agg backend: no display needed). Every number drawn comes from an ``Analysis`` (``deepmad.core.analysis``) or a
sweep's points; sizes are fixed (``SIZE`` inches at ``DPI``), so a PNG has a known size in pixels.
"""
from __future__ import annotations

import io
import math
import os
from typing import Any

PLOT_MISSING = "pictures need matplotlib: pip install 'deepmad[plot]'"
DPI = 100
SIZE = (12.0, 7.0)  # inches of a diagram: 1200 x 700 pixels at DPI
SWEEP_SIZE = (16.0, 5.0)  # inches of a sweep plot: 1600 x 500 pixels
FORMATS = ("png", "svg")


def _plt():
    """matplotlib.pyplot on the Agg backend; a one-line ValueError when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError(PLOT_MISSING) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def fmt_of(path: str) -> str:
    """'png' or 'svg' from a path's suffix; a one-line error otherwise."""
    ext = os.path.splitext(str(path))[1].lower().lstrip(".")
    if ext not in FORMATS:
        raise ValueError(f"-o {path}: expected a .png or .svg file name")
    return ext


def _save(fig, path: str | None, fmt: str) -> bytes:
    """The figure's bytes (PNG or SVG, fixed size, no timestamps in the metadata); written atomically to path."""
    from ..core.spec import atomic_file

    buf = io.BytesIO()
    meta = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
    fig.savefig(buf, format=fmt, dpi=DPI, metadata=meta)
    data = buf.getvalue()
    if path is not None:
        with atomic_file(path) as f:
            f.write(data)
    return data


# ---------------------------------------------------------------------------------------------- networks

def _units(a) -> list[dict[str, Any]]:
    """One box per row of the analysis (stem, stages, head) with its label."""
    out = []
    for r in a.rows:
        lines = [r.name, r.block if r.block != "conv" else f"{r.kernel}x{r.kernel} conv"]
        lines.append(f"c {r.channels}" + ("" if r.mid is None else f"  mid {r.mid}"))
        if r.block != "conv":
            lines.append(f"k {r.kernel}  s {r.stride}  x{r.depth}")
        else:
            lines.append(f"s {r.stride}")
        lines.append(f"{r.resolution}x{r.resolution}")
        out.append(dict(name=r.name, channels=r.channels, depth=r.depth, label="\n".join(lines),
                        entropy=r.entropy, rho=r.rho))
    return out


def diagram(a, title: str | None = None):
    """A matplotlib Figure of the analyzed network: one box per stage (stem, stages, head; width by channels,
    height by depth), labelled with block, channels, mid, kernel, stride, depth and output resolution; below,
    the entropy H and ρ of the prefix ending at each box."""
    plt = _plt()
    units = _units(a)
    cmax = max(u["channels"] for u in units)
    dmax = max(u["depth"] for u in units)
    fig = plt.figure(figsize=SIZE, dpi=DPI)
    top = fig.add_axes((0.04, 0.40, 0.92, 0.48))
    low = fig.add_axes((0.06, 0.08, 0.86, 0.24))
    xs = []
    x = 0.0
    for u in units:
        w = 0.35 + 0.9 * math.sqrt(u["channels"] / cmax)
        h = 0.4 + 2.6 * u["depth"] / dmax
        colour = "#dbe8f6" if u["name"] not in ("stem", "head") else "#eeeeee"
        top.add_patch(plt.Rectangle((x, 0), w, h, facecolor=colour, edgecolor="#2b5d8a", linewidth=1.2))
        top.text(x + w / 2, h + 0.08, u["label"], ha="center", va="bottom", fontsize=7.5, family="monospace")
        xs.append(x + w / 2)
        x += w + 0.25
    top.set_xlim(-0.2, x)
    top.set_ylim(0, 3.0 + 1.9)
    top.axis("off")
    name = title or a.name or "network"
    fig.suptitle(f"{name}: {a.params / 1e6:.3g} M params, {a.flops / 1e9:.3g} G MACs, rho {a.rho:.3f} "
                 f"(largest prefix {a.rho_max:.3f}), entropy {a.entropy:,.0f}, objective {a.objective:,.0f}",
                 fontsize=10)
    top.set_title("boxes: width by channels, height by depth", fontsize=8, color="#555555")
    labels = [u["name"] for u in units]
    pos = list(range(len(units)))
    low.plot(pos, [u["entropy"] for u in units], "o-", color="#2b5d8a", label="H of the prefix (Eq. 4)")
    low.set_ylabel("entropy H", color="#2b5d8a", fontsize=8)
    low.set_xticks(pos, labels, fontsize=8)
    low.tick_params(axis="y", labelsize=7)
    low.grid(alpha=0.3)
    r = low.twinx()
    r.plot(pos, [u["rho"] for u in units], "s--", color="#c0504d", label="rho of the prefix (Eq. 2-3)")
    r.set_ylabel("rho", color="#c0504d", fontsize=8)
    r.tick_params(axis="y", labelsize=7)
    lines = low.get_lines() + r.get_lines()
    low.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="upper left")
    return fig


def draw(a, path: str | None = None, fmt: str | None = None, title: str | None = None) -> bytes:
    """The diagram of an analysis as PNG or SVG bytes (fmt, default from path's suffix), written to path if given."""
    plt = _plt()
    fmt = fmt or fmt_of(path)
    fig = diagram(a, title)
    try:
        return _save(fig, path, fmt)
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------------------------- sweeps

def sweep_png(sweep, path: str) -> None:
    """The sweep's curves: entropy and objective vs the swept value (the paper's accuracy, where it prints one, on
    the right axis), then the depth and the channels of every stage, one line per design."""
    from .sweep import profile

    plt = _plt()
    pts = [p for p in sweep.points if p.design is not None]
    numeric = sweep.quantity != "guidelines"
    xs = [p.value if numeric else i for i, p in enumerate(sweep.points)]
    x_of = dict(zip((p.label for p in sweep.points), xs))
    fig, (ax, ad, aw) = plt.subplots(1, 3, figsize=SWEEP_SIZE, dpi=DPI)
    px = [x_of[p.label] for p in pts]
    ax.plot(px, [p.analysis.entropy for p in pts], "o-", label="entropy")
    ax.plot(px, [p.design.objective for p in pts], "s--", label="objective")
    ax.set_xlabel(sweep.quantity)
    ax.set_title(f"{sweep.name}: entropy and objective", fontsize=10)
    if not numeric:
        ax.set_xticks(xs, [p.label for p in sweep.points])
    elif sweep.quantity == "flops":
        ax.set_xscale("log")
    acc = [(x_of[p.label], p.paper[0]["acc"]) for p in sweep.points if p.paper]
    handles = ax.get_lines()
    if acc:
        ar = ax.twinx()
        ar.plot([a for a, _ in acc], [b for _, b in acc], "^:", color="#2ca02c", label="paper top-1 (%)")
        ar.set_ylabel("paper top-1 (%)")
        handles = handles + ar.get_lines()
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8)
    ax.grid(alpha=0.3)
    for p in pts:
        pr = profile(p)
        stages = list(range(1, len(pr["depths"]) + 1))
        ad.plot(stages, pr["depths"], "o-", label=p.label)
        aw.plot([0] + stages, [pr["stem"]] + pr["channels"], "o-", label=p.label)
        ad.set_xticks(stages)
        aw.set_xticks([0] + stages)
    ad.set_title("depth per stage", fontsize=10)
    ad.set_xlabel("stage")
    aw.set_title("channels per stage (0: stem)", fontsize=10)
    aw.set_xlabel("stage")
    aw.set_yscale("log")
    for a_ in (ad, aw):
        a_.grid(alpha=0.3)
        a_.legend(fontsize=7, title=sweep.quantity, title_fontsize=7)
    fig.tight_layout()
    try:
        _save(fig, path, "png")
    finally:
        plt.close(fig)


__all__ = ["diagram", "draw", "sweep_png", "fmt_of", "PLOT_MISSING", "SIZE", "DPI", "SWEEP_SIZE"]
