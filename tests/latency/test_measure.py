"""measure.measure_many: how many forward passes each model gets, and in which order (no timing asserted)."""
import pytest

torch = pytest.importorskip("torch")

from deepmad.latency import measure as ms  # noqa: E402


class Logged(torch.nn.Module):
    """A module that appends its name to a shared log on every forward pass."""

    def __init__(self, name: str, log: list) -> None:
        super().__init__()
        self.name, self.log = name, log

    def forward(self, x):
        self.log.append(self.name)
        return x


def test_interleaved_models_rewarm_before_each_share():
    log: list = []
    settings = ms.Settings(warmup=2, runs=6)
    timings = ms.measure_many([(Logged("a", log), (1, 3, 4, 4)), (Logged("b", log), (1, 3, 4, 4))], settings,
                              rounds=3)
    assert [t.runs for t in timings] == [6, 6]  # the re-warm runs are not timed
    assert ms.REWARM >= 1
    share = ms.REWARM + 2  # untimed re-warm runs, then 6 / 3 timed ones, each round
    assert log == ["a"] * 2 + ["b"] * 2 + (["a"] * share + ["b"] * share) * 3


def test_one_model_has_no_rewarm():
    log: list = []
    timing = ms.measure(Logged("a", log), (1, 3, 4, 4), ms.Settings(warmup=3, runs=5))
    assert timing.runs == 5 and log == ["a"] * 8
