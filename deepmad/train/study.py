"""The effectiveness study of Section 5.3 (Figures 2 and 3): accuracy and entropy against ρ at a fixed budget.

At the FLOPs and params of a reference network (ResNet-20 for CIFAR: 0.04 G multiply-accumulates, 0.27 M
params in the paper), N networks of one block family are placed by the designer at effectiveness targets
spread evenly over [0.1, 1.0]: network i solves the DeepMAD program (Eq. 5) with ρ0 = target_i, in the CIFAR
ResNet layout (3 stages with strides 1, 2, 2, a 3x3 stride-1 stem, no max-pool). When two targets give the
same network, the later one takes the best feasible neighbour of the solution (one or two variables moved) that
is new, else the evolutionary search's design (seeded by its index) under the same budget and target
(``_placements``), so the networks differ (a repeat is kept, and marked, only when none of these is new). Each is trained with the same recipe; the study reports
accuracy vs ρ, entropy vs ρ, the best ρ, and Kendall's τ between entropy and accuracy within ρ groups
(networks whose ρ lies within ``group_width`` of 0.1, 0.5 and 1.0), as a table (printed, CSV, JSON) and a PNG.

Resumable: the designs are cached in OUT/designs.json; network i trains in OUT/models/NNN (its own
resumable run); a network with a summary.json is done and is not trained again.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..core.spec import Spec, Stage, Stem, from_dict, save, to_dict, write_atomic
from .config import ConfigError, TrainConfig, check

CIFAR_RESNETS = {f"resnet{6 * n + 2}-cifar": n for n in (1, 3, 5, 7, 9, 18)}  # 8, 20, 32, 44, 56, 110


def resnet_cifar(depth: int = 20, num_classes: int = 100, resolution: int = 32) -> Spec:
    """He et al.'s CIFAR ResNet-(6n+2): 3x3 stem (16, stride 1), 3 stages of n basic blocks with 16/32/64
    channels and strides 1/2/2, no max-pool. Shortcuts are 1x1 projections (option B) where the shape
    changes, as ``deepmad.core.blocks`` counts them (ResNet-20: 278,324 params for 100 classes)."""
    if (depth - 2) % 6 or depth < 8:
        raise ConfigError(f"resnet-cifar depth: expected 6n+2 (20, 32, 44, 56, 110), got {depth}")
    n = (depth - 2) // 6
    stages = (Stage("basic", 16, n, 1), Stage("basic", 32, n, 2), Stage("basic", 64, n, 2))
    return Spec(resolution, Stem(16, 3, 1, False), stages, num_classes=num_classes, name=f"resnet{depth}-cifar")


def budget_spec(name: str, num_classes: int, resolution: int) -> Spec:
    """The network whose costs set the budget: resnetNN-cifar, a reference or preset name, or a spec file."""
    if name in CIFAR_RESNETS:
        return resnet_cifar(6 * CIFAR_RESNETS[name] + 2, num_classes, resolution)
    from ..core.exact import resolve

    try:
        s = resolve(name)
    except ValueError as e:
        raise ConfigError(f"--budget-of {name}: {e}; or one of {', '.join(CIFAR_RESNETS)}") from None
    return replace(s, num_classes=num_classes, resolution=resolution)


@dataclass(frozen=True)
class StudyConfig:
    out: str  # study directory
    train: TrainConfig  # the recipe every network is trained with (model and out are set per network)
    models: int = 65
    block: str = "basic"  # basic | bottleneck (ResNet blocks, as in the paper)
    budget_of: str | None = "resnet20-cifar"
    flops: float | None = None  # explicit budgets instead of budget_of
    params: float | None = None
    rho_range: tuple[float, float] = (0.1, 1.0)
    groups: tuple[float, ...] = (0.1, 0.5, 1.0)  # centres of the ρ groups of Figure 3
    group_width: float = 0.1  # a network belongs to a group when |ρ - centre| <= group_width
    resolution: int = 32
    kernels: tuple[int, ...] = (3,)
    max_depth: int = 30
    max_channels: int = 512
    solver: str = "lns"  # lns (re-placed by evolution when a design repeats) | evolution
    num_classes: int | None = None  # default: the data's

    def check(self) -> None:
        check(replace(self.train, model="study", out=self.out))
        if isinstance(self.models, bool) or not isinstance(self.models, int) or self.models < 1:
            raise ConfigError(f"--models: expected an integer >= 1, got {self.models!r}")
        if self.block not in ("basic", "bottleneck"):
            raise ConfigError(f"--block: the study uses ResNet blocks: basic or bottleneck, got {self.block!r}")
        lo, hi = self.rho_range
        if not 0 < lo <= hi:
            raise ConfigError(f"--rho-range: expected LOW,HIGH with 0 < LOW <= HIGH, got {lo},{hi}")
        if (self.flops is None) != (self.params is None):
            raise ConfigError("--flops/--params: give both, or neither and --budget-of")
        if self.flops is None and not self.budget_of:
            raise ConfigError("--budget-of: give a network (e.g. resnet20-cifar) or --flops and --params")
        if self.flops is None:
            from ..core.presets import PRESETS
            from ..core.reference import REFERENCE

            b = self.budget_of
            if b not in CIFAR_RESNETS and b not in REFERENCE and b not in PRESETS and not os.path.isfile(b):
                raise ConfigError(f"--budget-of {b}: unknown network; expected one of {', '.join(CIFAR_RESNETS)}, "
                                  f"a reference network ({', '.join(REFERENCE)}), a preset, or a spec file")
        if self.group_width <= 0:
            raise ConfigError(f"--group-width: expected a number > 0, got {self.group_width}")
        if self.solver not in ("lns", "evolution"):
            raise ConfigError(f"--solver: expected lns or evolution, got {self.solver!r}")
        if not isinstance(self.resolution, int) or self.resolution < 8:
            raise ConfigError(f"--resolution: expected an integer >= 8, got {self.resolution!r}")


def _space(sc: StudyConfig, num_classes: int):
    from ..core.budget import Space

    ratio = (0.0, 1.0)
    return Space(block=sc.block, strides=(1, 2, 2), resolution=sc.resolution, stem_channels=(8, 32),
                 stem_kernel=3, stem_stride=1, kernels=sc.kernels, max_depth=sc.max_depth,
                 max_channels=sc.max_channels, ratio=ratio, num_classes=num_classes)


def budgets(sc: StudyConfig, num_classes: int) -> tuple[float, float, str]:
    """(FLOPs, params, where they come from) of the study."""
    if sc.flops is not None:
        return float(sc.flops), float(sc.params), "given"
    from ..core.analysis import analyze_spec

    a = analyze_spec(budget_spec(sc.budget_of, num_classes, sc.resolution))
    return float(a.flops), float(a.params), sc.budget_of


def _placements(prob, index: int, solver: str):
    """Candidate designs for one ρ target, best first: the search's solution, then its feasible neighbours (every
    move of one or two variables, ``solver.neighbours``) by objective, then the evolutionary search with seeds
    derived from the index. All meet the budgets and ρ <= target; the neighbours stay next to the solution."""
    from ..core.budget import evaluate, to_spec
    from ..core.evolution import evolve
    from ..core.solver import Design, merit, neighbours, solve

    if solver == "lns":
        d = solve(prob, seed_candidates=50_000)
        yield d, "lns"
        X = np.unique(neighbours(prob, np.asarray(d.x)), axis=0)
        m = merit(prob, X)
        ok = evaluate(prob, X).feasible & np.isfinite(m)
        for j in np.argsort(-np.where(ok, m, -np.inf), kind="stable")[:ok.sum()]:
            x = tuple(int(v) for v in X[j])
            yield Design(prob, x, to_spec(prob, x), float(m[j]), None, None, 0.0, "lns", len(X)), "lns neighbour"
    for seed in range(8):
        yield evolve(prob, candidates=100_000, seed=1000 * index + seed), "evolution"


def design_models(sc: StudyConfig, num_classes: int) -> list[dict[str, Any]]:
    """The N networks of the study: one per ρ target, each placed at the budget (deterministic); a target
    whose solution repeats an earlier network takes the next candidate of ``_placements`` that does not."""
    from ..core.analysis import analyze_spec
    from ..core.budget import Budget, Problem
    from ..core.result import Infeasible

    flops, params, source = budgets(sc, num_classes)
    space = _space(sc, num_classes)
    targets = np.linspace(sc.rho_range[0], sc.rho_range[1], sc.models) if sc.models > 1 else [sc.rho_range[0]]
    seen: dict[tuple[int, ...], int] = {}
    out = []
    for i, target in enumerate(targets):
        prob = Problem(space, Budget(flops, params, float(target)), name=f"rho-{i:03d}")
        first = None
        try:
            for d, how in _placements(prob, i, sc.solver):
                first = first or (d, how)
                if d.x not in seen:
                    break
            else:
                d, how = first
                how += f", same network as #{seen[d.x]}"
        except Infeasible as e:
            raise ConfigError(f"study: no {sc.block} network meets rho <= {target:.3g} within {flops:.4g} FLOPs "
                              f"and {params:.4g} params ({e}); narrow --rho-range or raise the budget") from None
        seen.setdefault(d.x, i)
        a = analyze_spec(d.spec)
        out.append({"index": i, "name": prob.name, "target_rho": float(target), "rho": a.rho, "rho_max": a.rho_max,
                    "entropy": a.entropy, "objective": a.objective, "params": a.params, "flops": a.flops,
                    "layers": a.layers, "depths": [s.depth for s in d.spec.stages],
                    "widths": [d.spec.stem.channels] + [s.channels for s in d.spec.stages], "placed_by": how,
                    "spec": to_dict(d.spec), "budget": {"flops": flops, "params": params, "source": source}})
    return out


def kendall_groups(rows: list[dict[str, Any]], centres, width: float) -> list[dict[str, Any]]:
    """Kendall's τ between entropy and top-1 within each ρ group (and over all networks)."""
    from scipy.stats import kendalltau

    res = []
    for c in list(centres) + [None]:
        g = [r for r in rows if r.get("top1") is not None and (c is None or abs(r["rho"] - c) <= width)]
        tau = p = float("nan")
        if len(g) >= 3 and len({r["entropy"] for r in g}) > 1 and len({r["top1"] for r in g}) > 1:
            t = kendalltau([r["entropy"] for r in g], [r["top1"] for r in g])
            tau, p = float(t.statistic), float(t.pvalue)
        res.append({"centre": c, "n": len(g), "tau": tau, "p": p})
    return res


COLUMNS = ("index", "target_rho", "rho", "entropy", "params", "flops", "layers", "depths", "widths", "placed_by",
           "top1", "top5", "epochs")


def table_text(rows: list[dict[str, Any]], taus: list[dict[str, Any]], budget: dict[str, Any]) -> str:
    lines = [f"effectiveness study: {len(rows)} networks at {budget['flops'] / 1e6:.2f} M FLOPs (MACs), "
             f"{budget['params'] / 1e6:.3f} M params ({budget['source']})",
             f"{'#':>3} {'target':>6} {'rho':>6} {'entropy':>9} {'params':>8} {'MFLOPs':>7} {'layers':>6} "
             f"{'depths':>10} {'widths':>16} {'top-1':>7} {'top-5':>7}"]
    for r in rows:
        t1 = f"{100 * r['top1']:6.2f}%" if r.get("top1") is not None else "      -"
        t5 = f"{100 * r['top5']:6.2f}%" if r.get("top5") is not None else "      -"
        lines.append(f"{r['index']:>3} {r['target_rho']:>6.3f} {r['rho']:>6.3f} {r['entropy']:>9.1f} "
                     f"{r['params']:>8,} {r['flops'] / 1e6:>7.2f} {r['layers']:>6} "
                     f"{','.join(map(str, r['depths'])):>10} {','.join(map(str, r['widths'])):>16} {t1} {t5}")
    done = [r for r in rows if r.get("top1") is not None]
    if done:
        b = max(done, key=lambda r: (r["top1"], -r["index"]))
        ties = [f"#{r['index']} (rho {r['rho']:.3f})" for r in done if r["top1"] == b["top1"] and r is not b]
        lines.append(f"best: #{b['index']} at rho {b['rho']:.3f} (target {b['target_rho']:.3f}): top-1 "
                     f"{100 * b['top1']:.2f}%, entropy {b['entropy']:.1f}"
                     + (f"; tied with {', '.join(ties)}" if ties else "") + "   (paper, CIFAR-100: best rho 0.5)")
    parts = []
    for t in taus:
        where = f"rho {t['centre']:g}" if t["centre"] is not None else "all"
        tau = "n/a" if math.isnan(t["tau"]) else f"{t['tau']:+.3f}"
        parts.append(f"{where}: {tau} (n={t['n']})")
    lines.append("Kendall tau(entropy, top-1): " + "; ".join(parts) + "   (paper: 0.77 near rho 0.5)")
    return "\n".join(lines) + "\n"


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([";".join(map(str, r[c])) if isinstance(r.get(c), list) else r.get(c, "") for c in COLUMNS])
    return buf.getvalue()


def plot_study(rows: list[dict[str, Any]], taus: list[dict[str, Any]], centres, width: float, path: Path,
               title: str = "") -> None:
    """Figure 2 (top-1 and entropy vs ρ, best marked by a star) and Figure 3 (top-1 vs entropy per ρ group)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.get("top1") is not None]
    fig, (a, c) = plt.subplots(1, 2, figsize=(12, 4.5))
    rho = [r["rho"] for r in done]
    a.scatter(rho, [100 * r["top1"] for r in done], c="tab:blue", label="top-1")
    if done:
        b = max(done, key=lambda r: (r["top1"], -r["index"]))
        a.scatter([b["rho"]], [100 * b["top1"]], marker="*", s=300, c="gold", edgecolors="k", zorder=3,
                  label=f"best (rho {b['rho']:.2f})")
    a.set_xlabel("effectiveness rho")
    a.set_ylabel("top-1 (%)", color="tab:blue")
    e = a.twinx()
    e.scatter([r["rho"] for r in rows], [r["entropy"] for r in rows], c="tab:red", marker="x", label="entropy")
    e.set_ylabel("entropy", color="tab:red")
    h1, l1 = a.get_legend_handles_labels()
    h2, l2 = e.get_legend_handles_labels()
    a.legend(h1 + h2, l1 + l2, loc="lower right")
    a.set_title("accuracy and entropy vs effectiveness (Fig. 2)")
    a.grid(alpha=0.3)
    for t, colour in zip(taus, ("tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink")):
        if t["centre"] is None:
            continue
        g = [r for r in done if abs(r["rho"] - t["centre"]) <= width]
        tau = "n/a" if math.isnan(t["tau"]) else f"{t['tau']:+.2f}"
        c.scatter([r["entropy"] for r in g], [100 * r["top1"] for r in g], c=colour,
                  label=f"rho~{t['centre']:g}: tau {tau} (n={t['n']})")
    c.set_xlabel("entropy")
    c.set_ylabel("top-1 (%)")
    c.set_title("accuracy vs entropy within rho groups (Fig. 3)")
    c.legend(loc="best")
    c.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


@dataclass
class StudyResult:
    out: str
    rows: list[dict[str, Any]]
    taus: list[dict[str, Any]]
    budget: dict[str, Any]
    complete: bool  # every network trained (False: stopped by a signal; run the same command again)
    text: str = field(default="")
    signal: int | None = None  # the signal that stopped it (SIGTERM, SIGINT), if one did


def run_study(sc: StudyConfig, *, log=None) -> StudyResult:
    """Design, train (resumably) and report the study; log(text) receives progress lines."""
    from . import data as datamod
    from . import distributed
    from .engine import train

    sc.check()
    kind, _ = datamod.source_kind(sc.train.data)
    out = Path(sc.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output {out}: is a file, expected a study directory")
    num_classes = sc.num_classes or _num_classes(sc.train)
    d = distributed.setup(sc.train.device)
    say = log if (log is not None and d.main) else (lambda s: None)
    try:
        if d.main:
            try:
                (out / "models").mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"--output {out}: cannot create the study directory ({e.strerror or e})") from None
        distributed.barrier(d)
        designs_path = out / "designs.json"
        key = {"models": sc.models, "block": sc.block, "budget_of": sc.budget_of, "flops": sc.flops,
               "params": sc.params, "rho_range": list(sc.rho_range), "resolution": sc.resolution,
               "kernels": list(sc.kernels), "max_depth": sc.max_depth, "max_channels": sc.max_channels,
               "solver": sc.solver, "num_classes": num_classes}
        designs = None
        if designs_path.exists():
            saved = json.loads(designs_path.read_text())
            if saved.get("key") != key:
                diff = next(k for k in key if saved.get("key", {}).get(k) != key[k])
                raise ConfigError(f"--output {out}: holds a study designed with a different {diff} "
                                  f"({saved.get('key', {}).get(diff)!r}, now {key[diff]!r}); use another --output")
            designs = saved["designs"]
        if designs is None:
            say(f"designing {sc.models} {sc.block}-block networks, rho targets {sc.rho_range[0]:g}..{sc.rho_range[1]:g}")
            designs = distributed.broadcast(d, design_models(sc, num_classes) if d.main else None)
            if d.main:
                write_atomic(designs_path, json.dumps({"key": key, "designs": designs}, indent=1) + "\n")
        rows: list[dict[str, Any]] = []
        complete = True
        stopped_by = None
        for r in designs:
            row = {k: v for k, v in r.items() if k not in ("spec", "budget")}
            run = out / "models" / f"{r['index']:03d}"
            summary = run / "summary.json"
            if not summary.exists():
                spec_path = run / "spec.yaml"
                if d.main:
                    run.mkdir(parents=True, exist_ok=True)
                    if not spec_path.exists():
                        save(from_dict(r["spec"]), spec_path)
                distributed.barrier(d)
                say(f"[{r['index'] + 1}/{len(designs)}] training {r['name']}: rho {r['rho']:.3f}, entropy "
                    f"{r['entropy']:.1f}, depths {r['depths']}, widths {r['widths']}")
                res = train(replace(sc.train, model=str(spec_path), out=str(run), resolution=sc.resolution),
                            resume="auto")
                if res.interrupted:
                    complete, stopped_by = False, res.signal
                    rows.append(row)
                    break
            s = json.loads(summary.read_text())
            best = s.get("best") or {}
            row.update(top1=best.get("top1"), top5=best.get("top5"), epochs=s.get("epochs"))
            rows.append(row)
        for r in designs[len(rows):]:
            rows.append({k: v for k, v in r.items() if k not in ("spec", "budget")})
        budget = designs[0]["budget"] if designs else {"flops": 0, "params": 0, "source": ""}
        taus = kendall_groups(rows, sc.groups, sc.group_width)
        text = table_text(rows, taus, budget)
        if d.main:
            write_atomic(out / "results.csv", _csv(rows))
            write_atomic(out / "results.json", json.dumps({"budget": budget, "rows": rows, "kendall": taus,
                                                           "complete": complete}, indent=1) + "\n")
            write_atomic(out / "results.txt", text)
            plot_study(rows, taus, sc.groups, sc.group_width, out / "study.png",
                       title=f"{sc.block} blocks at {budget['flops'] / 1e6:.1f} M FLOPs, "
                             f"{budget['params'] / 1e6:.3f} M params, {sc.train.data}")
        distributed.barrier(d)
    finally:
        distributed.teardown(d)
    return StudyResult(str(out), rows, taus, budget, complete, text, stopped_by)


def _num_classes(cfg: TrainConfig) -> int:
    """Classes of the study's data (read once, before any design)."""
    from . import data as datamod

    kind, heldout = datamod.source_kind(cfg.data)
    ds = datamod.open_data(cfg.data, val_split=cfg.val_split or (0.0 if heldout else 0.2),
                           resolution=cfg.resolution or 32, split="eval")
    return ds.num_classes


__all__ = ["StudyConfig", "StudyResult", "run_study", "resnet_cifar", "budget_spec", "design_models",
           "kendall_groups", "budgets", "CIFAR_RESNETS"]
