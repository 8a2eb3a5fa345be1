"""Bad flags and bad paths of ``deepmad train / eval / study`` end in one line and exit status 2; the
training CLI module loads no torch."""
from __future__ import annotations

import subprocess
import sys

import pytest

from deepmad import cli

SPEC = """deepmad_spec: 1
resolution: 16
stem: {channels: 8, kernel: 3, stride: 1}
stages:
  - {block: basic, channels: 8, depth: 1, stride: 2}
num_classes: 10
"""


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys, *argv: str) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    assert out == ""
    assert err.startswith("deepmad: error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture()
def spec(tmp_path):
    p = tmp_path / "net.yaml"
    p.write_text(SPEC)
    return str(p)


def test_cli_module_loads_no_torch():
    code = ("import sys, deepmad.cli as c; c.parser(); import deepmad.cli.train, deepmad.train, "
            "deepmad.train.config; print(sorted(m for m in ('torch', 'kornia', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_commands_are_registered(capsys):
    for cmd in ("train", "eval", "study"):
        code, out, _ = run(capsys, cmd, "--help")
        assert code == 0 and "usage: deepmad " + cmd in out


@pytest.mark.parametrize("argv, needle", [
    (["--epochs", "0"], "--epochs: expected an integer >= 1, got 0"),
    (["--batch-size", "30", "--accum-steps", "4"], "--accum-steps: 4 does not divide --batch-size 30"),
    (["--lr", "-1"], "--lr: expected a number > 0"),
    (["--mixup-lambda", "0.5,0.2"], "--mixup-lambda: expected LOW,HIGH"),
    (["--mixup-lambda", "x"], "--mixup-lambda: expected two comma-separated numbers"),
    (["--label-smoothing", "1.5"], "--label-smoothing: expected a number >= 0 and <= 0.99"),
    (["--flip", "maybe"], "--flip: expected a probability or auto"),
    (["--amp", "fp8"], "argument --amp: invalid choice"),
    (["--warmup-epochs", "5", "--epochs", "3"], "--warmup-epochs: 5 leaves no epoch"),
    (["--val-split", "0.95"], "--val-split: expected a number >= 0 and <= 0.9"),
    (["--epochs", "two"], "argument --epochs: invalid int value"),
])
def test_bad_train_flags(capsys, spec, tmp_path, argv, needle):
    err = one_line_error(capsys, "train", spec, "--data", "builtin:mnist", "--out", str(tmp_path / "r"), *argv)
    assert needle in err
    assert not (tmp_path / "r").exists()


def test_bad_data(capsys, spec, tmp_path):
    err = one_line_error(capsys, "train", spec, "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r"))
    assert f"--data {tmp_path / 'nope'}: no such directory" in err
    err = one_line_error(capsys, "train", spec, "--data", "builtin:cifar", "--out", str(tmp_path / "r"))
    assert "unknown builtin dataset; known: builtin:mnist, builtin:digits" in err
    f = tmp_path / "file.txt"
    f.write_text("x")
    err = one_line_error(capsys, "train", spec, "--data", str(f), "--out", str(tmp_path / "r"))
    assert "is a file, expected a directory" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    err = one_line_error(capsys, "train", spec, "--data", str(empty), "--out", str(tmp_path / "r"))
    assert "has no class subdirectories" in err


def test_bad_model_and_out(capsys, spec, tmp_path):
    err = one_line_error(capsys, "train", "no-such-net", "--data", "builtin:mnist", "--out", str(tmp_path / "r"))
    assert "unknown model 'no-such-net'" in err
    err = one_line_error(capsys, "train", str(tmp_path / "missing.yaml"), "--data", "builtin:mnist",
                         "--out", str(tmp_path / "r"))
    assert "missing.yaml" in err
    err = one_line_error(capsys, "train", spec, "--data", "builtin:mnist", "--out", str(tmp_path / "r"), "--resume")
    assert "--resume: no checkpoint" in err and "last.pt" in err
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "last.pt").write_bytes(b"old run")
    err = one_line_error(capsys, "train", spec, "--data", "builtin:mnist", "--out", str(tmp_path / "r"))
    assert "already holds a run (last.pt); continue it with --resume, or start over with --force" in err
    err = one_line_error(capsys, "train", spec, "--data", "builtin:mnist", "--out", str(tmp_path / "r"), "--resume")
    assert "not a readable checkpoint" in err
    err = one_line_error(capsys, "train", spec, "--data", "builtin:mnist", "--out", str(tmp_path / "r"),
                         "--resume", "--auto-resume")
    assert "not allowed with argument" in err


def test_batch_larger_than_data(capsys, spec, tmp_path):
    err = one_line_error(capsys, "train", spec, "--data", "builtin:mnist", "--subset", "50", "--batch-size", "64",
                         "--out", str(tmp_path / "r"), "--quiet")  # (without --quiet, a status line may come first)
    assert "--batch-size 64: larger than the 50 training images" in err


def test_bad_eval(capsys, tmp_path):
    err = one_line_error(capsys, "eval", str(tmp_path / "none.pt"))
    assert "none.pt: no such checkpoint" in err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 10)
    err = one_line_error(capsys, "eval", str(junk))
    assert "junk.pt: not a readable checkpoint" in err
    err = one_line_error(capsys, "eval", str(tmp_path))
    assert "is a directory, expected a checkpoint file" in err


@pytest.mark.parametrize("argv, needle", [
    (["--models", "0"], "--models: expected an integer >= 1"),
    (["--flops", "1M"], "--flops/--params: give both"),
    (["--budget-of", "resnet20-cifar", "--flops", "1M", "--params", "1k"], "give one budget, not both"),
    (["--budget-of", "resnet21-cifar"], "--budget-of resnet21-cifar: unknown network; expected one of resnet8-cifar"),
    (["--rho-range", "1,0.1"], "--rho-range: expected LOW,HIGH with 0 < LOW <= HIGH"),
    (["--block", "mbconv"], "argument --block: invalid choice"),
    (["--flops", "lots", "--params", "1k"], "argument --flops: budget: expected a number like 1.8G"),
])
def test_bad_study_flags(capsys, tmp_path, argv, needle):
    err = one_line_error(capsys, "study", "rho", "--data", "builtin:mnist", "--out", str(tmp_path / "s"), *argv)
    assert needle in err


def _actions(command: str):
    p = cli.parser()
    sub = next(a for a in p._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    return sub.choices[command]._actions


@pytest.mark.parametrize("command", ["train", "eval", "study", "export", "summary"])
def test_every_flag_says_its_default(command):
    for a in _actions(command):
        if not a.option_strings or "--help" in a.option_strings:
            continue
        assert a.help, a.option_strings
        assert "default" in a.help or "required" in a.help, (a.option_strings, a.help)


def test_one_output_flag_style():
    for command in ("train", "study"):
        out = next(a for a in _actions(command) if a.dest == "out")
        assert out.option_strings[:2] == ["-o", "--output"] and "--out" in out.option_strings  # old spelling kept
    assert any(a.option_strings[:2] == ["-o", "--output"] for a in _actions("export"))
    assert any(a.option_strings[:2] == ["-o", "--output"] for a in _actions("design"))


def test_timm_spellings_are_accepted():
    from deepmad.cli.train import _resume_target, _train_config

    p = cli.parser()
    argv = ["train", "m.yaml", "--data", "builtin:mnist", "--lr-base", "0.2", "--mixup-prob", "0.5", "--smoothing",
            "0.1", "--drop", "0.2", "--drop-path", "0.05", "--reprob", "0.3", "--aa", "svhn", "-j", "3",
            "--device", "cuda:1", "--out", "runs/x"]
    cfg = _train_config(p.parse_args(argv), "m.yaml", "runs/x")
    assert (cfg.lr, cfg.mixup, cfg.label_smoothing, cfg.drop_rate, cfg.drop_path_rate, cfg.random_erasing,
            cfg.autoaugment, cfg.workers, cfg.device) == (0.2, 0.5, 0.1, 0.2, 0.05, 0.3, "svhn", 3, "cuda:1")
    args = p.parse_args(["train", "m.yaml", "--data", "builtin:mnist", "--resume", "runs/r/last.pt"])
    assert _resume_target(args) == ("runs/r", True)  # timm's --resume PATH
    args = p.parse_args(["train", "m.yaml", "--data", "builtin:mnist", "-o", "runs/r", "--resume"])
    assert _resume_target(args) == ("runs/r", True)


@pytest.mark.parametrize("argv, needle", [
    (["--device", "gpu"], "argument --device: expected auto, cpu, cuda or cuda:N"),
    (["--resume", "runs/r/best.pt"], "--resume runs/r/best.pt: expected a run's last.pt"),
])
def test_bad_device_and_resume(capsys, spec, argv, needle):
    err = one_line_error(capsys, "train", spec, "--data", "builtin:mnist", *argv)
    assert needle in err


def test_help_says_where_flags_depart_from_timm(capsys):
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0
    flat = " ".join(out.split())
    assert "timm's --lr-base" in flat and "timm's --mixup is" in flat and "--resume PATH" in flat
    assert "143 stopped by SIGTERM, 130 by SIGINT" in flat


def test_cuda_index_without_a_gpu_is_one_line(capsys, spec, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    err = one_line_error(capsys, "train", spec, "--data", "builtin:mnist", "--device", "cuda:1", "-o",
                         str(tmp_path / "r"))
    assert "--device cuda:1: no CUDA device is available" in err
    assert not (tmp_path / "r").exists()
