"""``deepmad sweep`` (the paper's design studies) and ``deepmad draw`` (a network as a picture); no torch.

``sweep``: one quantity over a list (``--rho 0.1,0.3,0.5,0.7``, ``--alpha5 1,8,16``, ``--guidelines all,-1,-2,-3``,
``--flops 0.4G,1G,2G,4G``, ``--resolution 224,288``), the rest of a preset or of a block family's budgets fixed
(``deepmad.studies.sweep``). ``draw``: a preset, spec file or reference network as a PNG or SVG diagram
(``deepmad.studies.plots``; needs matplotlib).
"""
from __future__ import annotations

import argparse
import os
import sys

EPILOG_SWEEP = """examples:
  deepmad sweep --preset deepmad-r18 --rho 0.1,0.3,0.5,0.7
  deepmad sweep --preset deepmad-b0 --guidelines all,-1,-2,-3 -o b0-guidelines
  deepmad sweep --preset deepmad-r18 --alpha5 1,8,16 --json
  deepmad sweep --block bottleneck --flops 0.5G,1G,2G --params 10M --rho 0.3"""

SWEPT = ("rho", "alpha5", "guidelines", "flops", "resolution")


def add_commands(sub) -> None:
    """Add sweep and draw to the ``deepmad`` parser's subparsers."""
    from .design import _alpha, _ints, guideline_flags

    s = sub.add_parser("sweep", help="one quantity (rho0, alpha5, guidelines, a FLOPs family, resolution) over a list",
                       epilog=EPILOG_SWEEP, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--preset", help="a built-in problem (see 'deepmad presets'); the other flags override it")
    s.add_argument("--block", help="block family of a problem given by its budgets: basic, bottleneck or mbconv")
    s.add_argument("--rho", help="rho0, or the list swept: 0.1,0.3,0.5,0.7")
    s.add_argument("--alpha5", help="swept: the last scale's weight, the others 1 (Table 7: 1,8,16)")
    s.add_argument("--guidelines", help="swept: all, -1, -2, -3 (a guideline off; -1-3: two), e.g. all,-1,-2,-3")
    s.add_argument("--flops", help="multiply-accumulate budget, or the list swept: 0.4G,1G,2G,4G (params scaled "
                                   "with FLOPs unless --params is given)")
    s.add_argument("--params", help="parameter budget, e.g. 11.7M")
    s.add_argument("--resolution", help="input side, or the list swept: 224,288")
    s.add_argument("--strides", type=_ints, help="stride of each stage, e.g. 2,2,2,2")
    s.add_argument("--kernels", type=_ints, help="kernel choices, e.g. 3,5")
    s.add_argument("--max-depth", type=int, help="most blocks per stage (default 30)")
    s.add_argument("--max-channels", type=int, help="most channels of a stage (default 2048)")
    s.add_argument("--alpha", type=_alpha, help="one weight per down-sampling scale (default 1,...,1,8)")
    s.add_argument("--beta", type=float, help="depth-penalty weight (default 10)")
    s.add_argument("--no-classifier", action="store_true", help="leave the classifier out of params and FLOPs")
    guideline_flags(s)
    s.add_argument("--bound-nodes", type=int, help="node budget of each design's proof (as deepmad design)")
    s.add_argument("--jobs", type=int, help="processes solving designs in parallel (default: one per value, at "
                                            "most the CPUs over the two processes of each proof where it uses two; "
                                            "the designs do not depend on it)")
    s.add_argument("-o", "--output", "--out", dest="out", metavar="DIR",
                   help="directory for the specs, sweep.json and sweep.png (default sweep-NAME-QUANTITY); existing "
                        "files are kept unless --force")
    s.add_argument("--force", action="store_true", help="overwrite files in -o/--output")
    s.add_argument("--no-plot", action="store_true", help="write no sweep.png (no matplotlib needed)")
    s.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    s.add_argument("--json", action="store_true", help="print one JSON document instead of the table")

    d = sub.add_parser("draw", help="a network (preset, spec file or reference network) as a PNG or SVG diagram",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  deepmad draw deepmad-r50 -o r50.png\n  deepmad draw my-net.yaml -o net.svg")
    d.add_argument("target", help="reference network (resnet50, ...), preset name, or spec file path")
    d.add_argument("-o", "--output", required=True, help="the picture: .png or .svg")
    d.add_argument("--force", action="store_true", help="overwrite the -o file if it exists")


def _sweep(args) -> str:
    from .. import report
    from ..studies import sweep as S

    lists = {q: getattr(args, q) for q in SWEPT if getattr(args, q) is not None}
    multi = [q for q, v in lists.items() if q in ("alpha5", "guidelines") or "," in v]
    if len(multi) > 1:
        raise ValueError(f"sweep: one quantity at a time; got lists for {', '.join('--' + q for q in multi)}")
    if not multi:
        if len([q for q in lists if q in ("rho", "flops", "resolution")]) != 1 or args.preset is None:
            raise ValueError("sweep: give the swept quantity as a list: --rho 0.1,0.3, --alpha5 1,8,16, "
                             "--guidelines all,-1,-2,-3, --flops 0.4G,1G or --resolution 224,288")
        multi = [next(iter(lists))]
    quantity = multi[0]
    if args.preset is None and args.block is None:
        raise ValueError("sweep: give --preset NAME, or --block with the budgets")
    fixed = {}
    for q in ("rho", "flops", "resolution"):
        if q != quantity and q in lists:
            fixed[q] = S.parse_values(q, lists[q])[0] if "," not in lists[q] else None
            if fixed[q] is None:
                raise ValueError(f"--{q}: a single value unless it is the swept quantity")
    values = S.parse_values(quantity, lists[quantity])
    kw = dict(block=args.block, params=args.params, strides=args.strides, kernels=args.kernels,
              max_depth=args.max_depth, max_channels=args.max_channels, alpha=args.alpha, beta=args.beta,
              classifier=False if args.no_classifier else None,
              multiscale=False if args.no_multiscale else None,
              allow_decreasing=True if args.allow_decreasing else None, **fixed)
    S.problems(quantity, values, args.preset, **kw)  # bad input fails here, before anything is solved or written
    name = args.preset or f"deepmad-{args.block}"
    out = args.out or f"sweep-{name}-{quantity}"
    plot = not args.no_plot
    if plot:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:  # the designs and the JSON still come
            print("deepmad: note: no sweep.png without matplotlib (pip install 'deepmad[plot]'); --no-plot "
                  "silences this", file=sys.stderr)
            plot = False
    labels = [S.label(quantity, v) for v in values]
    paths = S.targets(name, quantity, labels, out, plot)
    S.check_out(paths, args.force)
    bar = None
    if not (args.quiet or args.json):
        from ..progress import bar as progress_bar

        bar = progress_bar(total=len(values), desc=f"sweep {quantity}", unit="design")

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    try:
        sw = S.run(quantity, values, args.preset, jobs=args.jobs, bound_nodes=args.bound_nodes, progress=progress,
                   **kw)
    finally:
        if bar is not None:
            bar.close()
    if all(p.design is None for p in sw.points):
        raise ValueError(f"sweep: no value has a feasible design; {sw.points[0].label}: {sw.points[0].error}")
    S.check_out(paths, args.force)  # again: a file may have appeared during the solves
    try:
        files = S.write(sw, out, plot=plot)
    except OSError as e:
        raise ValueError(f"-o/--output {out}: cannot write ({e.strerror or e})") from None
    return report.dumps(S.to_json(sw, files)) if args.json else S.text(sw, files)


def _check_picture(path: str, force: bool) -> None:
    from .design import check_output

    check_output(path, force, "-o", "a .png or .svg file path")


def _draw(args) -> str:
    from .. import api
    from ..studies.plots import _plt, draw, fmt_of

    fmt = fmt_of(args.output)
    _check_picture(args.output, args.force)
    _plt()
    a = api.analyze(args.target)
    if not hasattr(a, "stem"):
        raise ValueError(f"draw: {args.target} is an MLP spec; MLPs are not drawn (deepmad analyze shows their layers)")
    _check_picture(args.output, args.force)  # again: the file may have appeared meanwhile
    try:
        draw(a, args.output, fmt)
    except OSError as e:
        raise ValueError(f"-o {args.output}: cannot write ({e.strerror or e})") from None
    return f"{a.name or args.target}: diagram written to {args.output}\n"


COMMANDS = {"sweep": _sweep, "draw": _draw}

__all__ = ["add_commands", "COMMANDS"]
