"""Measured inference latency of a built model: what ``deepmad bench`` prints and what calibration fits.

How a model is timed (``Settings``):

- torch: the module in eval mode, under ``torch.inference_mode``, random weights (seeded), a fixed random input of
  shape (batch, C, H, W); optionally both in ``channels_last``. Denormal floats are flushed to zero while timing
  (random weights through deep stacks can reach them; trained networks do not, and x86 cores run them ~100x
  slower). The thread count is pinned with ``torch.set_num_threads`` and restored afterwards.
- onnxruntime: the module exported to ONNX (``torch.onnx.export``, fixed shapes, opset 17) into a temporary file
  and run by an ``InferenceSession`` with ``intra_op_num_threads = threads``, ``inter_op_num_threads = 1``,
  sequential execution, all graph optimizations.
- CUDA (``device="cuda"``; unverified: no GPU was available when this was written): the module and input on the
  GPU; each run is bracketed by two CUDA events and the end event is synchronised, so the time is the GPU's
  (``Event.elapsed_time``), not the launch's; warm-up ends with ``torch.cuda.synchronize()``.

Clock: ``wall`` (the default: ``time.perf_counter``, what a user waits) or ``cpu`` (``time.thread_time``, the CPU
time of the calling thread: with one thread on a CPU, torch and onnxruntime run the whole forward pass on it, so
on a quiet machine it equals the wall time; on a shared one it leaves out the time the thread waited for a
core, and is the steadier measure of the same work, though caches and memory bandwidth stay shared).

Allocator: ``keep`` (the default) tells glibc's malloc, for the rest of the process, to keep the memory it
frees (``mallopt``: no mmap, no trimming), as caching allocators (jemalloc, tcmalloc; onnxruntime's arena) do.
Under glibc's default settings an eager forward pass at batch 1 allocates its large activations with fresh
pages and gives them back, paying a page fault per 4 KiB touched, a cost that depends on the allocation history
of the process (measured here: a residual add of 256x56x56 took 3.5 ms instead of 0.27 ms; a thin-bottleneck
block twice its time). ``system`` leaves the allocator as it is. Other platforms than glibc: nothing to do.

Warm-up: ``warmup`` untimed runs, then ``runs`` timed ones; the result has their median, 90th percentile and minimum
(``Timing``). A latency model fits one of them, its ``statistic`` (``STATISTICS``): the median (the default: what a
user waits, typically) or the minimum (the runs least disturbed by other work: on a shared machine it repeats
better, measured in docs/latency.md). ``measure_many`` interleaves several models (round-robin, a few runs each per
round), so a slow spell on a shared machine hits them all alike; every comparison the benchmark prints is measured
that way. Each time it comes back to a model it first runs it ``REWARM`` times untimed: the first run after another
model's is cold (measured here, 32 calibration parts interleaved, 3 rounds of 4 runs: the first run of a round took
1.12x the item's median (the median over 3 repeats of 3 rounds; 1.02-1.29x), the others 0.98x; with one re-warm run,
1.03x (0.97-1.09x) and 1.00x).
"""
from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from ..core.latency import STATISTICS  # what a latency model fits of an item's timed runs (``Timing.value``)

DEVICES = ("cpu", "cuda")
BACKENDS = ("torch", "onnxruntime")
CLOCKS = ("wall", "cpu")
ALLOCATORS = ("keep", "system")


@dataclass(frozen=True)
class Settings:
    """How a model is run and timed."""

    device: str = "cpu"  # cpu | cuda
    backend: str = "torch"  # torch | onnxruntime
    threads: int = 1  # intra-op threads (torch.set_num_threads; onnxruntime intra_op_num_threads)
    batch: int = 1
    channels_last: bool = False  # torch only
    warmup: int = 3  # untimed runs first
    runs: int = 10  # timed runs
    clock: str = "wall"  # wall (perf_counter) | cpu (the calling thread's CPU time; one thread on a CPU only)
    allocator: str = "keep"  # keep (glibc keeps freed memory, as caching allocators do) | system (as it is)

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device: expected one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {self.backend!r}")
        for name, lo in (("threads", 1), ("batch", 1), ("warmup", 0), ("runs", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name}: expected an integer >= {lo}, got {v!r}")
        if self.channels_last and self.backend != "torch":
            raise ValueError("channels_last: applies to the torch backend only (ONNX graphs are NCHW)")
        if self.allocator not in ALLOCATORS:
            raise ValueError(f"allocator: expected one of {', '.join(ALLOCATORS)}, got {self.allocator!r}")
        if self.clock not in CLOCKS:
            raise ValueError(f"clock: expected one of {', '.join(CLOCKS)}, got {self.clock!r}")
        if self.clock == "cpu" and (self.device != "cpu" or self.threads != 1):
            raise ValueError("clock cpu: measures the calling thread, so it needs --device cpu and --threads 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Timing:
    """Timed runs of one model: milliseconds per forward pass of one batch."""

    samples: tuple[float, ...] = field(repr=False)  # every timed run, in ms, in order
    batch: int = 1

    @property
    def runs(self) -> int:
        return len(self.samples)

    @property
    def median_ms(self) -> float:
        return float(statistics.median(self.samples))

    @property
    def p90_ms(self) -> float:
        return percentile(self.samples, 90)

    @property
    def min_ms(self) -> float:
        return float(min(self.samples))

    def value(self, statistic: str = "median") -> float:
        """The runs' median or minimum (``STATISTICS``), in ms."""
        if statistic not in STATISTICS:
            raise ValueError(f"statistic: expected one of {', '.join(STATISTICS)}, got {statistic!r}")
        return self.median_ms if statistic == "median" else self.min_ms

    @property
    def images_per_s(self) -> float:
        return 1e3 * self.batch / self.median_ms

    def to_dict(self) -> dict[str, Any]:
        return {"median_ms": self.median_ms, "p90_ms": self.p90_ms, "min_ms": self.min_ms, "runs": self.runs,
                "batch": self.batch, "images_per_s": self.images_per_s}


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile, linear between order statistics (numpy's default)."""
    v = sorted(values)
    if not v:
        raise ValueError("percentile: no values")
    pos = (len(v) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))


# ---------------------------------------------------------------------------------------------- environment

def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what platform reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: str) -> str:
    """What the device is: the CPU's model name, or the CUDA device's name."""
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    return cpu_name()


def versions(backend: str) -> dict[str, str | None]:
    """torch's version, and onnxruntime's for that backend (from the installed packages' metadata: no import)."""
    from importlib import metadata

    def v(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {"torch": v("torch"), "onnxruntime": v("onnxruntime") if backend == "onnxruntime" else None}


def check_device(settings: Settings) -> None:
    """A one-line ValueError when the settings cannot run here."""
    try:
        import torch
    except ImportError:
        raise ValueError("measuring latency needs PyTorch: pip install 'deepmad[torch]'") from None
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda was asked for, but torch sees no CUDA device here (use --device cpu)")
    if settings.backend == "onnxruntime":
        try:
            import onnx  # noqa: F401
            import onnxruntime as ort
        except ImportError:
            raise ValueError("backend onnxruntime: needs onnx and onnxruntime: pip install 'deepmad[export]'") from None
        if settings.device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ValueError("backend onnxruntime: this onnxruntime has no CUDAExecutionProvider "
                             "(pip install onnxruntime-gpu, or use --backend torch)")


_KEPT: bool | None = None  # whether glibc was told to keep freed memory (None: not asked yet)


def keep_freed_memory() -> bool:
    """Tell glibc's malloc, for the rest of the process, to keep the memory it frees: no mmap for large blocks
    (M_MMAP_MAX 0) and no trimming of the heap (M_TRIM_THRESHOLD 2 GiB). False where there is no glibc."""
    global _KEPT
    if _KEPT is None:
        import ctypes
        import ctypes.util

        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
            _KEPT = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
        except (OSError, AttributeError):
            _KEPT = False
    return _KEPT


@contextlib.contextmanager
def pinned_threads(threads: int):
    """torch's intra-op thread count set to threads and denormals flushed, both restored on exit."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------- runners

class Runner:
    """One model ready to run: ``run()`` does one forward pass and returns its time in ms."""

    def __init__(self, module, input_shape: Sequence[int], settings: Settings, seed: int = 0) -> None:
        import torch

        self.settings = s = settings
        self.shape = tuple(int(v) for v in input_shape)
        self.clock = time.thread_time if s.clock == "cpu" else time.perf_counter
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(*self.shape, generator=g)
        module = module.eval()
        self._tmp = None
        if s.backend == "onnxruntime":
            self._ort(module, x)
            return
        dev = torch.device(s.device)
        fmt = torch.channels_last if s.channels_last else torch.contiguous_format
        self.module = module.to(dev).to(memory_format=fmt)
        self.x = x.to(dev).to(memory_format=fmt)
        if s.device == "cuda":
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)
            self.run = self._run_cuda
        else:
            self.run = self._run_cpu

    def _run_cpu(self) -> float:
        t0 = self.clock()
        self.module(self.x)
        return 1e3 * (self.clock() - t0)

    def _run_cuda(self) -> float:  # unverified on a GPU (see the module docstring)
        self._start.record()
        self.module(self.x)
        self._end.record()
        self._end.synchronize()
        return float(self._start.elapsed_time(self._end))

    def _ort(self, module, x) -> None:
        import onnxruntime as ort
        import torch

        s = self.settings
        fd, self._tmp = tempfile.mkstemp(prefix="deepmad-bench-", suffix=".onnx")
        os.close(fd)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), self._tmp, dynamo=False, input_names=["input"],
                              output_names=["output"], opset_version=17, do_constant_folding=True)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = s.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        providers = ["CUDAExecutionProvider"] if s.device == "cuda" else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(self._tmp, opts, providers=providers)
        self.feed = {"input": x.numpy()}
        self.run = self._run_ort

    def _run_ort(self) -> float:
        t0 = self.clock()
        self.session.run(None, self.feed)
        return 1e3 * (self.clock() - t0)

    def warm(self, runs: int) -> None:
        for _ in range(runs):
            self.run()
        if self.settings.device == "cuda" and self.settings.backend == "torch":
            import torch

            torch.cuda.synchronize()

    def close(self) -> None:
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            self._tmp = None

    def __del__(self) -> None:
        self.close()


@contextlib.contextmanager
def running(settings: Settings):
    """The context every timing runs in: threads pinned, inference mode, denormals flushed."""
    import torch

    check_device(settings)
    if settings.allocator == "keep":
        keep_freed_memory()
    with pinned_threads(settings.threads), torch.inference_mode():
        yield


REWARM = 1  # untimed runs each time measure_many returns to a model: its first run after another model's is cold


def measure_many(models: Sequence[tuple[Any, Sequence[int]]], settings: Settings, *, rounds: int | None = None,
                 progress: Callable[[int], None] | None = None, seed: int = 0) -> list[Timing]:
    """Time several (module, input shape) pairs interleaved: each is warmed up, then ``rounds`` rounds
    (default: runs, up to 5) run every model runs/rounds times in turn; ``progress(k)`` after each model's
    share of a round, after ``REWARM`` untimed runs (the first run after another model's is cold: the other
    model's weights and activations hold the caches). Every model gets ``settings.runs`` timed runs (rounded up
    to a multiple of rounds)."""
    rounds = rounds or min(settings.runs, 5)
    per = max(1, math.ceil(settings.runs / rounds))
    with running(settings):
        runners = [Runner(m, shape, settings, seed) for m, shape in models]
        try:
            for r in runners:
                r.warm(settings.warmup)
            samples: list[list[float]] = [[] for _ in runners]
            rewarm = REWARM if len(runners) > 1 else 0
            for _ in range(rounds):
                for j, r in enumerate(runners):
                    r.warm(rewarm)
                    samples[j] += [r.run() for _ in range(per)]
                    if progress is not None:
                        progress(1)
        finally:
            for r in runners:
                r.close()
    return [Timing(tuple(s), settings.batch) for s in samples]


def measure(module, input_shape: Sequence[int], settings: Settings, seed: int = 0) -> Timing:
    """Time one module on a random input of input_shape (see the module docstring)."""
    return measure_many([(module, input_shape)], settings, rounds=1, seed=seed)[0]


def build(spec, seed: int = 0):
    """The spec's network as a ``DeepMADNet`` with seeded random weights, in eval mode."""
    import torch

    from ..models import DeepMADNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DeepMADNet(spec).eval()


def input_shape(spec, batch: int, resolution: int | None = None) -> tuple[int, int, int, int]:
    r = resolution or spec.resolution
    return (batch, spec.in_channels, r, r)


def environment(settings: Settings) -> dict[str, Any]:
    """What a measurement depends on: device name, backend, threads, batch, layout, versions, CPUs."""
    return {"device": settings.device, "device_name": device_name(settings.device), "backend": settings.backend,
            "threads": settings.threads, "batch": settings.batch, "channels_last": settings.channels_last,
            "clock": settings.clock, "allocator": settings.allocator,
            "versions": versions(settings.backend), "cpu": cpu_name(), "cpus": os.cpu_count(),
            "machine": platform.machine()}


def describe(env: dict[str, Any]) -> str:
    """One line: 'cpu (AMD EPYC), torch 2.13.0, 1 thread, batch 1, NCHW'."""
    v = env.get("versions") or {}
    back = f"onnxruntime {v.get('onnxruntime')}" if env.get("backend") == "onnxruntime" else f"torch {v.get('torch')}"
    threads = env.get("threads")
    return (f"{env.get('device')} ({env.get('device_name')}), {back}, {threads} thread{'s' if threads != 1 else ''}, "
            f"batch {env.get('batch')}, {'channels-last' if env.get('channels_last') else 'NCHW'}"
            + (", thread CPU time" if env.get("clock") == "cpu" else "")
            + (", system allocator" if env.get("allocator") == "system" else ""))


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not a POSIX system
        return None


def pin_cpu(core: int | None) -> None:
    """Restrict this process to one CPU core (Linux), e.g. to keep timings off a busy core."""
    if core is None:
        return
    if not hasattr(os, "sched_setaffinity"):
        raise ValueError("--pin-cpu: this system cannot pin a process to a core")
    cores = sorted(os.sched_getaffinity(0))
    if core not in cores:
        raise ValueError(f"--pin-cpu: core {core} is not available to this process (cores {cores})")
    os.sched_setaffinity(0, {core})


__all__ = ["Settings", "Timing", "STATISTICS", "Runner", "measure", "measure_many", "build", "input_shape",
           "environment", "describe", "percentile", "cpu_name", "versions", "check_device", "load_average", "pin_cpu",
           "DEVICES", "BACKENDS"]
