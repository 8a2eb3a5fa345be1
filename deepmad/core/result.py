"""What a solver returns: a ``Design`` (the row, its network, objective and proof), or ``Infeasible``.

Shared by the search (``solver``), the evolutionary baseline (``evolution``) and the branch and bound
(``bound``), so none of them imports another for its result type.
"""
from __future__ import annotations

from dataclasses import dataclass

from .budget import Problem
from .spec import Spec


class Infeasible(ValueError):
    """Proven: no point of the space meets the budgets; the message names the binding constraint and the value
    of it the space can meet."""


class NotFound(ValueError):
    """A solver found no design within the budgets, without a proof that none exists (the message says how to
    look further)."""


class DeepMADWarning(UserWarning):
    """An option the solver ignores, or a budget that cannot bind: the design is still computed."""


STATUSES = ("optimal", "gap_limit", "node_limit", "time_limit", "infeasible")


@dataclass(frozen=True)
class Design:
    """A solver's result: the row, its network and objective, and the proof status."""

    problem: Problem
    x: tuple[int, ...]  # the row (budget.columns layout)
    spec: Spec
    objective: float  # Σ α_j H_j − β exp(Var L)
    bound: float | None  # proven upper bound on the optimum of the space, None when none was proven
    gap: float | None  # (bound − objective) / objective; 0 when proven optimal, None when not proven
    seconds: float  # wall time of the solve
    solver: str  # lns | evolution
    evaluated: int  # candidates scored
    bound_nodes: int = 0  # branch-and-bound nodes behind ``bound`` (deepmad.core.bound); 0: no proof attempted
    status: str = "node_limit"  # how the proof ended (STATUSES); node_limit with bound_nodes 0: none was run
    lp_solves: int = 0  # linear programs the proof solved
    proof_seconds: float = 0.0  # of ``seconds``, the proof's
    proof_workers: int = 1  # processes the proof's tree search ran in (deepmad.core.bound.default_workers)
