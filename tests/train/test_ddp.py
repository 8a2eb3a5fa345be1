"""DistributedDataParallel with 2 CPU processes (gloo, launched by torchrun) follows the loss curve of one
process on the same global batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")

from deepmad import cli  # noqa: E402

SPEC = """deepmad_spec: 1
resolution: 16
stem: {channels: 16, kernel: 3, stride: 1}
stages:
  - {block: basic, channels: 16, depth: 1, stride: 1}
  - {block: basic, channels: 32, depth: 1, stride: 2}
num_classes: 10
"""


def _losses(run) -> list[float]:
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in recs if r["kind"] == "step"]


def test_two_process_ddp_matches_one_process(tmp_path, capsys):
    spec = tmp_path / "net.yaml"
    spec.write_text(SPEC)
    common = [str(spec), "--data", "builtin:mnist", "--epochs", "2", "--batch-size", "32", "--subset", "320",
              "--val-subset", "100", "--recipe", "none", "--log-every", "1", "--progress", "off"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "deepmad", "train", *common, "--out", str(tmp_path / "ddp"), "--json"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout)  # only rank 0 prints
    assert summary["steps"] == 20
    assert json.loads((tmp_path / "ddp" / "config.json").read_text())["world_size"] == 2

    # one process, 2 accumulation steps: the same micro-batches, so the same BN statistics
    assert cli.main(["train", *common, "--accum-steps", "2", "--out", str(tmp_path / "accum")]) == 0
    # one process, one micro-batch of 32: BN normalizes over 32 images instead of 16
    assert cli.main(["train", *common, "--out", str(tmp_path / "single")]) == 0
    capsys.readouterr()
    ddp, accum, single = (_losses(tmp_path / d) for d in ("ddp", "accum", "single"))
    assert len(ddp) == len(accum) == len(single) == 20
    assert max(abs(a - b) for a, b in zip(ddp, accum)) < 1e-5
    assert max(abs(a - b) / b for a, b in zip(ddp, single)) < 0.01
    assert ddp[-1] < ddp[0]
