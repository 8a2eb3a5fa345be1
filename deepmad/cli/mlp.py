"""The MLP branch of ``deepmad design`` (``--block mlp``) and ``deepmad analyze`` (an MLP spec file): Section 3."""
from __future__ import annotations

# design flags that do not apply to an MLP design (MACs of an MLP are its weights: the params bound them)
_CNN_ONLY = ("preset", "flops", "resolution", "strides", "kernels", "alpha", "beta", "time_limit", "report")
_CNN_SWITCHES = ("no_classifier", "no_multiscale", "allow_decreasing")


def design(args) -> str:
    """``deepmad design --block mlp --inputs N --outputs N --params P --rho X``."""
    from .. import api, report
    from ..core.mlp import analyze, save
    from .design import check_output, write_spec

    for k in _CNN_ONLY:
        if getattr(args, k, None) is not None:
            raise ValueError(f"--{k.replace('_', '-')}: does not apply to --block mlp (an MLP design takes --inputs, "
                             f"--outputs, --params, --rho, --max-depth, --max-channels as the widest hidden layer)")
    for k in _CNN_SWITCHES:
        if getattr(args, k, False):
            raise ValueError(f"--{k.replace('_', '-')}: does not apply to --block mlp")
    if args.solver != "lns":
        raise ValueError("--solver: an MLP design is solved exactly by enumeration over depth; leave --solver out")
    missing = [f"--{k}" for k in ("inputs", "outputs", "params", "rho") if getattr(args, k) is None]
    if missing:
        raise ValueError(f"{missing[0]}: an MLP design needs --inputs, --outputs, --params and --rho")
    if args.output:
        check_output(args.output, args.force)
    d = api.design_mlp(args.inputs, args.outputs, args.params, args.rho, max_depth=args.max_depth,
                       max_width=args.max_channels)
    a = analyze(d.spec)
    out = report.dumps(report.mlp_json(a, d)) if args.json else report.mlp_text(a, d)
    return write_spec(args, d.spec, out, save)


def analysis(a, args) -> str:
    """``deepmad analyze`` of an MLP spec."""
    from .. import report

    for k, flag in (("alpha", "--alpha"), ("beta", "--beta")):
        if getattr(args, k, None) is not None:
            raise ValueError(f"{flag}: applies to CNNs only (an MLP's entropy is Eq. 1, no scales, no depth penalty)")
    if getattr(args, "no_classifier", False):
        raise ValueError("--no-classifier: applies to CNNs only (every layer of an MLP counts)")
    return report.dumps(report.mlp_json(a)) if args.json else report.mlp_text(a)
