"""The paper's tables (DeepMAD, CVPR 2023, Tables 1-8 and Section 5), transcribed as data.

``data/paper_tables.json``: per table, one record per printed row (model, params in M, FLOPs in G MACs, ρ,
top-1 accuracy, ...). Tests check the reference networks against them; studies print the paper's accuracy
beside a design.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("data") / "paper_tables.json"


@functools.lru_cache(maxsize=1)
def tables() -> dict[str, Any]:
    """Every table, by key (table1_resnet_family, table2_mobile, ...)."""
    return json.loads(DATA.read_text(encoding="utf-8"))


def table(name: str) -> list[dict[str, Any]]:
    """The rows of one table; a clear error for an unknown one."""
    t = tables()
    if name not in t or name.startswith("_"):
        raise KeyError(f"no paper table {name!r}; known: {', '.join(k for k in t if not k.startswith('_'))}")
    return t[name]
