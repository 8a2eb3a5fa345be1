"""``deepmad design``, ``analyze`` and ``presets``: the design commands (no torch, but for ``analyze --torch``)."""
from __future__ import annotations

import argparse
import contextlib
import math
import os

EPILOG_DESIGN = """examples:
  deepmad design --preset deepmad-r50
  deepmad design --block bottleneck --flops 1.8G --params 11.7M --rho 0.3 -o my-net.yaml
  deepmad design --preset deepmad-r18 --latency 30ms --latency-model cpu.latency.json"""


def _alpha(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(a) for a in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 1,1,1,1,8, got {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(a) for a in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 3,5, got {text!r}") from None


def int_at_least(text: str, lo: int) -> int:
    """An integer argument >= lo (argparse type: ``type=lambda t: int_at_least(t, 1)``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}") from None
    if value < lo:
        raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {value}")
    return value


def add_commands(sub) -> None:
    """Add design, analyze and presets to the ``deepmad`` parser's subparsers."""
    d = sub.add_parser("design", help="solve the DeepMAD program for a preset or given budgets",
                       epilog=EPILOG_DESIGN, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--preset", help="a built-in problem (see 'deepmad presets'); budget flags override it")
    d.add_argument("--block", help="block family: basic, bottleneck or mbconv; or mlp (Section 3: with --inputs, "
                                   "--outputs, --params, --rho)")
    d.add_argument("--inputs", type=int, help="mlp only: input dimension")
    d.add_argument("--outputs", type=int, help="mlp only: output dimension")
    d.add_argument("--flops", help="multiply-accumulate budget, e.g. 1.8G")
    d.add_argument("--params", help="parameter budget, e.g. 11.7M")
    d.add_argument("--rho", type=float, help="effectiveness bound rho0, e.g. 0.3 (ResNet blocks), 0.5 (MBConv)")
    d.add_argument("--resolution", type=int, help="input side in pixels (default: the preset's, or 224)")
    d.add_argument("--strides", type=_ints, help="stride of each stage, e.g. 2,2,2,2")
    d.add_argument("--kernels", type=_ints, help="kernel choices, e.g. 3,5")
    d.add_argument("--max-depth", type=int, help="most blocks per stage (default 30)")
    d.add_argument("--max-channels", type=int, help="most channels of a stage (default 2048)")
    d.add_argument("--solver", choices=("lns", "evolution"), default="lns",
                   help="lns: our deterministic search (default); evolution: the authors' evolutionary search")
    d.add_argument("--seed", type=int, default=None, help="evolution only: its seed (default 0)")
    d.add_argument("--candidates", type=int, default=None,
                   help="evolution only: candidates it scores (default 500000)")
    d.add_argument("--time-limit", type=float,
                   help="seconds the search and the proof may take together (default: no limit; the design then "
                        "depends on the machine's speed, and the status says time_limit if it stopped the proof)")
    d.add_argument("--bound-nodes", type=int, default=None,
                   help="node budget of the branch and bound that proves the design optimal (default 5000; every "
                        "preset needs under 1,100; 0 skips the proof: the full search alone, gap 'not proven')")
    d.add_argument("--gap-tol", type=float, default=0.0,
                   help="stop the proof once the gap is at most this (relative, e.g. 0.001 for 0.1%%; default 0: "
                        "until the design is proven optimal)")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar on stderr during a long proof")
    d.add_argument("--latency", metavar="T", help="latency budget, e.g. 30ms, 0.03s or 30 (milliseconds), under "
                   "--latency-model")
    d.add_argument("--latency-model", metavar="FILE",
                   help="a latency model of the target device (deepmad latency calibrate); with it the report shows "
                        "the design's predicted latency")
    d.add_argument("--latency-margin", metavar="M", default="auto",
                   help="hold designs this far below --latency: auto (default: the model's design margin, how much "
                        "slower than predicted designs under latency budgets ran at calibration), 5%%, 0.05, or 0")
    _scoring(d)
    guideline_flags(d)
    d.add_argument("-o", "--output", help="write the designed spec here (.yaml/.yml or .json)")
    d.add_argument("--report", metavar="FILE.html", help="write the design as one self-contained HTML page "
                   "(diagram, stages, budget bars, gap; needs matplotlib: deepmad[plot])")
    d.add_argument("--force", action="store_true", help="overwrite the -o / --report file if it exists")
    d.add_argument("--json", action="store_true", help="print one JSON object instead of the report")

    a = sub.add_parser("analyze", help="entropy, rho, FLOPs and params of a network, preset or spec file",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog="examples:\n"
                       "  deepmad analyze resnet50\n  deepmad analyze my-net.yaml --json\n"
                       "  deepmad analyze --torch mypkg.models:build_net --resolution 224\n"
                       "  deepmad analyze my-net.yaml --latency-model cpu.latency.json")
    a.add_argument("target", nargs="?", help="reference network (resnet50, ...), preset name, or spec file path")
    a.add_argument("--torch", metavar="MODULE:CALLABLE",
                   help="analyze a PyTorch model instead: MODULE:CALLABLE (or file.py:CALLABLE) returning an "
                        "nn.Module (or naming one), traced with one forward pass; needs deepmad[torch]")
    a.add_argument("--resolution", metavar="N",
                   help="with --torch: input side in pixels, or HxW (default 224)")
    a.add_argument("--in-chans", type=int, metavar="N", help="with --torch: input channels (default 3)")
    a.add_argument("--latency-model", metavar="FILE",
                   help="also show the latency this model (deepmad latency calibrate) predicts, per stage and in total")
    _scoring(a)
    a.add_argument("--json", action="store_true", help="print one JSON object instead of the report")

    s = sub.add_parser("presets", help="list the built-in presets and their budgets")
    s.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def guideline_flags(p: argparse.ArgumentParser) -> None:
    """--no-multiscale and --allow-decreasing (guidelines 1 and 3 off; --beta 0 is guideline 2 off)."""
    p.add_argument("--no-multiscale", action="store_true",
                   help="guideline 1 off: the entropy of the last scale only (alpha 0,...,0,1: Eq. 4 of the whole "
                        "network)")
    p.add_argument("--allow-decreasing", action="store_true",
                   help="guideline 3 off: channels need not grow from stage to stage (--beta 0: guideline 2 off)")


def _scoring(p: argparse.ArgumentParser) -> None:
    p.add_argument("--alpha", type=_alpha, help="one weight per down-sampling scale (default 1,...,1,8)")
    p.add_argument("--beta", type=float, help="depth-penalty weight (default 10)")
    p.add_argument("--no-classifier", action="store_true",
                   help="leave the classifier out of params and FLOPs (backbone-only budgets)")


def check_output(path: str, force: bool, flag: str = "-o", what: str = "a spec file path") -> None:
    """Refuse an output path that is a directory, exists (unless force), or cannot be written."""
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path}: is a directory, expected {what}")
    if os.path.exists(path) and not force:
        raise ValueError(f"{flag} {path}: file exists; use --force to overwrite it")
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        raise ValueError(f"{flag} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{flag} {path}: directory {parent} is not writable")


def write_spec(args, spec, out: str, save=None) -> str:
    """Write the designed spec to -o with save (default: ``spec.save``), checked again: the file may have appeared
    during the solve; the report text then says where."""
    if save is None:
        from ..core.spec import save
    if not args.output:
        return out
    check_output(args.output, args.force)
    try:
        save(spec, args.output)
    except OSError as e:
        raise ValueError(f"-o {args.output}: cannot write ({e.strerror or e})") from None
    return out if args.json else out + f"\nspec written to {args.output}\n"


@contextlib.contextmanager
def _proof_progress(enabled: bool):
    """A progress callback for the branch and bound: a tqdm bar on stderr (nodes, bound, best design, gap), shown
    only once the proof has run for a second (``deepmad.progress``: off a terminal, a line a minute); None when
    disabled."""
    if not enabled:
        yield None
        return
    from ..progress import bar as progress_bar

    bar = None

    def progress(nodes: int, bound: float, incumbent: float) -> None:
        nonlocal bar
        if bar is None:
            bar = progress_bar(desc="proving", unit=" nodes", delay=1.0)
        bar.update(nodes - bar.n)
        gap = (bound - incumbent) / abs(incumbent) if incumbent not in (0.0, -math.inf) else math.inf
        bar.set_postfix_str(f"best {incumbent:,.2f}  bound {bound:,.2f}  gap {100 * gap:.3g}%", refresh=False)

    try:
        yield progress
    finally:
        if bar is not None:
            bar.close()


def _design(args) -> str:
    from .. import api, report

    if args.block == "mlp":
        from . import mlp

        return mlp.design(args)
    for flag, value in (("--inputs", args.inputs), ("--outputs", args.outputs)):
        if value is not None:
            raise ValueError(f"{flag}: applies to --block mlp only")
    if args.output:
        check_output(args.output, args.force)
    if args.report:
        from ..studies.plots import _plt

        check_output(args.report, args.force, "--report", "an .html file path")
        _plt()  # matplotlib missing: one line before the solve
    if args.preset is None and args.block is None:
        raise ValueError("design: give --preset NAME, or --block with --flops, --params and --rho")
    if args.latency is not None and args.latency_model is None:
        raise ValueError("--latency: needs --latency-model FILE (a model of the target device, written by "
                         "'deepmad latency calibrate')")
    with _proof_progress(enabled=not (args.json or args.quiet)) as progress:
        d = api.design(args.preset, block=args.block, flops=args.flops, params=args.params, rho=args.rho,
                       resolution=args.resolution, strides=args.strides, alpha=args.alpha, beta=args.beta,
                       classifier=False if args.no_classifier else None, max_depth=args.max_depth,
                       max_channels=args.max_channels, kernels=args.kernels, solver=args.solver, seed=args.seed,
                       candidates=args.candidates, time_limit=args.time_limit, bound_nodes=args.bound_nodes,
                       gap_tol=args.gap_tol, progress=progress, multiscale=not args.no_multiscale,
                       allow_decreasing=args.allow_decreasing, latency=args.latency,
                       latency_model=args.latency_model, latency_margin=args.latency_margin)
    an = api.analyze_design(d)
    latency = _latency_of(d.spec, d.problem.budget.latency_model, d.problem.budget.classifier)
    out = (report.dumps(report.design_json(d, an, latency)) if args.json
           else report.design_text(d, an, latency))
    out = write_spec(args, d.spec, out)
    if args.report:
        from ..core.spec import write_atomic
        from ..studies.page import design_page

        check_output(args.report, args.force, "--report", "an .html file path")
        try:
            write_atomic(args.report, design_page(d, an))
        except OSError as e:
            raise ValueError(f"--report {args.report}: cannot write ({e.strerror or e})") from None
        if not args.json:
            out += f"\nreport written to {args.report}\n"
    return out


def _analyze(args) -> str:
    from .. import api, report

    if args.torch is None:
        if args.target is None:
            raise ValueError("analyze: give a network, preset or spec file, or --torch MODULE:CALLABLE")
        for flag, value in (("--resolution", args.resolution), ("--in-chans", args.in_chans)):
            if value is not None:
                raise ValueError(f"{flag}: applies to --torch models only (a spec sets its own resolution and "
                                 f"input channels)")
        model = None
        if args.latency_model is not None:
            from ..latency.model import load

            model = load(args.latency_model, warn=False)
        an = api.analyze(args.target, alpha=args.alpha, beta=args.beta, classifier=not args.no_classifier)
        if not hasattr(an, "stem"):  # an MLP spec file (Section 3)
            from . import mlp

            if model is not None:
                raise ValueError("--latency-model: the latency model covers CNN block families, not MLPs")
            return mlp.analysis(an, args)
        latency = _latency_of(an.spec, model, not args.no_classifier)
        if model is not None:
            from ..latency.model import warn_if_foreign

            warn_if_foreign(model)
        return (report.dumps(report.analysis_json(an, latency)) if args.json
                else report.analysis_text(an, latency))

    # --torch MODULE:CALLABLE: trace the module (deepmad.models.trace); torch is imported here only
    if args.latency_model is not None:
        raise ValueError("--latency-model: applies to networks, presets and spec files (not --torch modules)")
    if args.target is not None:
        raise ValueError(f"analyze: give either a network ({args.target!r}) or --torch, not both")
    size: int | tuple[int, int] = 224
    if args.resolution is not None:
        try:
            parts = [int(v) for v in args.resolution.lower().split("x")]
        except ValueError:
            parts = []
        if len(parts) not in (1, 2) or min(parts) < 1:
            raise ValueError(f"--resolution: expected a side like 224 or HxW like 256x192, "
                             f"got {args.resolution!r}")
        size = parts[0] if len(parts) == 1 else (parts[0], parts[1])
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ValueError("--torch: PyTorch is not installed; pip install 'deepmad[torch]'") from None
    from ..models.trace import load_module, text, to_json, trace

    model = load_module(args.torch)
    an = trace(model, size, 3 if args.in_chans is None else args.in_chans, alpha=args.alpha, beta=args.beta,
               classifier=not args.no_classifier, name=args.torch)
    return report.dumps(to_json(an)) if args.json else text(an)


def _latency_of(spec, model, classifier: bool):
    """(Prediction, model) for the reports, or None without a latency model."""
    if model is None:
        return None
    from ..core.latency import predict

    return predict(model, spec, classifier), model


def _presets(args) -> str:
    from .. import report
    from ..core.presets import PRESETS

    problems = list(PRESETS.values())
    return report.dumps(report.presets_json(problems)) if args.json else report.presets_text(problems)


COMMANDS = {"design": _design, "analyze": _analyze, "presets": _presets}
