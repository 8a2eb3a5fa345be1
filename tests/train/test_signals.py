"""Exit statuses a script can trust: ``deepmad train`` stopped by SIGTERM exits 143 and by SIGINT 130, each
after writing last.pt, and ``--resume`` then ends with the very weights of an uninterrupted run (all as
subprocesses, the way a scheduler or a shell sees the command)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")

from deepmad.train import checkpoint as ck  # noqa: E402

SPEC = """deepmad_spec: 1
resolution: 16
stem: {channels: 8, kernel: 3, stride: 1}
stages:
  - {block: basic, channels: 8, depth: 1, stride: 2}
  - {block: basic, channels: 16, depth: 1, stride: 2}
num_classes: 10
"""


def _argv(spec, out, *extra):
    return [sys.executable, "-m", "deepmad", "train", str(spec), "--data", "builtin:mnist", "--resolution", "16",
            "--epochs", "2", "--batch-size", "16", "--subset", "128", "--val-subset", "16", "--lr", "0.4",
            "--recipe", "basic", "--flip", "0.5", "--drop-rate", "0.1", "--drop-path-rate", "0.1",
            "--log-every", "1", "--progress", "off", "-o", str(out), *extra]


def _steps(out) -> int:
    try:
        text = (out / "metrics.jsonl").read_text()
    except FileNotFoundError:
        return 0
    return sum(1 for line in text.splitlines() if '"kind": "step"' in line)


def _stop_after(argv, out, sig, after: int) -> subprocess.CompletedProcess:
    """Start the command, send sig once it has logged `after` more optimizer steps, return its result."""
    before = _steps(out)
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while _steps(out) < before + after and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=300)
    return subprocess.CompletedProcess(argv, p.returncode, stdout, stderr)


def test_sigterm_143_sigint_130_then_resume_is_bit_exact(tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text(SPEC)
    full = subprocess.run(_argv(spec, tmp_path / "full", "--json"), capture_output=True, text=True)
    assert full.returncode == 0, full.stderr
    total = json.loads(full.stdout)["steps"]
    assert total == 2 * (128 // 16)

    cut = tmp_path / "cut"
    r = _stop_after(_argv(spec, cut), cut, signal.SIGTERM, after=2)
    assert r.returncode == 143, r.stderr  # 128 + SIGTERM, after the checkpoint
    first = ck.load(cut / "last.pt")["step"]
    assert 2 <= first < total

    r = _stop_after(_argv(spec, cut, "--resume"), cut, signal.SIGINT, after=2)
    assert r.returncode == 130, r.stderr  # 128 + SIGINT
    second = ck.load(cut / "last.pt")["step"]
    assert first < second < total

    r = subprocess.run(_argv(spec, cut, "--resume", "--json"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["steps"] == total
    a, b = ck.load(tmp_path / "full" / "last.pt"), ck.load(cut / "last.pt")
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])

