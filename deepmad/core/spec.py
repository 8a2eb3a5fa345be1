"""Architecture spec: a small, versioned, human-editable description of a CNN.

A network is a stem convolution, a list of stages (each ``depth`` identical blocks of one family, the first
block carrying the stage's stride), an optional 1x1 head convolution and a linear classifier. The spec is
the per-stage list of pycls' AnyNet: presets, reference networks and the solver produce specs; the counts,
the theory and the PyTorch builder only read them.

YAML and JSON round-trip exactly (``from_dict(to_dict(s)) == s``). Validation names the offending field.
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import tempfile
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

SPEC_VERSION = 1
BLOCKS = ("basic", "bottleneck", "mbconv")
ACTIVATIONS = ("relu", "relu6", "silu")


class SpecError(ValueError):
    """A spec (or spec file) that cannot describe a network; the message names the field."""


@dataclass(frozen=True)
class Stem:
    channels: int  # output channels of the stem conv
    kernel: int = 3  # kernel size
    stride: int = 2  # stride
    pool: bool = False  # 3x3 stride-2 max-pool after the stem (torchvision ResNet)


@dataclass(frozen=True)
class Stage:
    block: str  # block family: basic | bottleneck | mbconv
    channels: int  # output channels of every block
    depth: int  # number of blocks
    stride: int = 1  # stride of the first block
    kernel: int = 3  # kernel of the spatial (k x k) conv
    mid: int | None = None  # bottleneck / expansion channels, the same in every block
    expand: float | None = None  # mbconv only: expansion = round(block input channels * expand)
    groups: int = 1  # groups of the k x k conv (basic, bottleneck); mbconv is depthwise
    se: float = 0.0  # squeeze-excitation: squeeze = max(1, int(block input * se)); 0 = none


@dataclass(frozen=True)
class Spec:
    resolution: int  # input height = width
    stem: Stem
    stages: tuple[Stage, ...]
    head: int | None = None  # channels of a final 1x1 conv-BN-act, or None
    num_classes: int = 1000  # classifier outputs (weights + bias); 0 = backbone only
    in_channels: int = 3
    act: str = "relu"  # activation the builder uses (relu | relu6 | silu); no effect on counts
    name: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.stages, list):
            object.__setattr__(self, "stages", tuple(self.stages))
        validate(self)


# ---------------------------------------------------------------------------------------------- validation

# The largest network a spec may describe (far above any real CNN: a 4096-px input, 65,536 channels, 1,000
# blocks a stage); past them a spec is refused with one line instead of hours of counting or building.
MAX_RESOLUTION = 4096
MAX_CHANNELS = 65_536
MAX_DEPTH = 1_000
MAX_STAGES = 64
MAX_KERNEL = 31
MAX_CLASSES = 1_000_000
MAX_IN_CHANNELS = 1024
STRIDES = (1, 2)  # as the design spaces have them (budget.Space)


def _int(value: Any, where: str, lo: int = 1, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise SpecError(f"{where}: expected an integer >= {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise SpecError(f"{where}: {value} is above {hi:,}, the largest this version supports")


def _stride(value: Any, where: str) -> None:
    _int(value, where)
    if value not in STRIDES:
        raise SpecError(f"{where}: expected a stride of 1 or 2, got {value}")


def _odd_kernel(value: Any, where: str) -> None:
    _int(value, where, hi=MAX_KERNEL)
    if value % 2 == 0:
        raise SpecError(f"{where}: expected an odd kernel size (1, 3, 5, 7, ...), got {value}")


def _stage_mid(s: Stage, where: str) -> None:
    if s.block == "basic":
        if s.mid is not None or s.expand is not None:
            raise SpecError(f"{where}: a basic block has no mid/expand channels; remove them")
        return
    if s.block == "bottleneck":
        if s.expand is not None:
            raise SpecError(f"{where}.expand: only mbconv stages take an expansion ratio; give mid")
        if s.mid is None:
            raise SpecError(f"{where}.mid: a bottleneck stage needs its bottleneck channels (mid)")
        _int(s.mid, f"{where}.mid", hi=MAX_CHANNELS)
        return
    if (s.mid is None) == (s.expand is None):
        raise SpecError(f"{where}: an mbconv stage needs exactly one of mid (channels) or expand (ratio)")
    if s.mid is not None:
        _int(s.mid, f"{where}.mid", hi=MAX_CHANNELS)
    elif (isinstance(s.expand, bool) or not isinstance(s.expand, (int, float)) or not math.isfinite(s.expand)
          or not 1 <= s.expand <= 64):
        raise SpecError(f"{where}.expand: expected a ratio in [1, 64], got {s.expand!r}")


def validate(spec: Spec) -> None:
    """Raise SpecError naming the first field that cannot describe a buildable network."""
    _int(spec.resolution, "resolution", hi=MAX_RESOLUTION)
    _int(spec.in_channels, "in_channels", hi=MAX_IN_CHANNELS)
    _int(spec.num_classes, "num_classes", lo=0, hi=MAX_CLASSES)
    if spec.act not in ACTIVATIONS:
        raise SpecError(f"act: expected one of {', '.join(ACTIVATIONS)}, got {spec.act!r}")
    if not isinstance(spec.stem, Stem):
        raise SpecError("stem: expected a Stem")
    _int(spec.stem.channels, "stem.channels", hi=MAX_CHANNELS)
    _odd_kernel(spec.stem.kernel, "stem.kernel")
    _stride(spec.stem.stride, "stem.stride")
    if not isinstance(spec.stem.pool, bool):
        raise SpecError(f"stem.pool: expected true or false, got {spec.stem.pool!r}")
    if not isinstance(spec.name, str):
        raise SpecError(f"name: expected text, got {spec.name!r}")
    if not spec.stages:
        raise SpecError("stages: expected at least one stage")
    if len(spec.stages) > MAX_STAGES:
        raise SpecError(f"stages: {len(spec.stages)} stages is above {MAX_STAGES}, the most this version supports")
    c_in = spec.stem.channels
    for i, s in enumerate(spec.stages):
        where = f"stages[{i}]"
        if not isinstance(s, Stage):
            raise SpecError(f"{where}: expected a Stage")
        if s.block not in BLOCKS:
            raise SpecError(f"{where}.block: expected one of {', '.join(BLOCKS)}, got {s.block!r}")
        _int(s.channels, f"{where}.channels", hi=MAX_CHANNELS)
        _int(s.depth, f"{where}.depth", hi=MAX_DEPTH)
        _stride(s.stride, f"{where}.stride")
        _odd_kernel(s.kernel, f"{where}.kernel")
        _int(s.groups, f"{where}.groups")
        _stage_mid(s, where)
        if s.block == "mbconv" and s.groups != 1:
            raise SpecError(f"{where}.groups: an mbconv stage is depthwise; leave groups at 1")
        grouped = (c_in, s.channels) if s.block == "basic" else (s.mid,) if s.block == "bottleneck" else ()
        for c in grouped:
            if c % s.groups:
                raise SpecError(f"{where}.groups: {s.groups} does not divide the {c} channels it groups")
        if isinstance(s.se, bool) or not isinstance(s.se, (int, float)) or not 0 <= s.se <= 1:
            raise SpecError(f"{where}.se: expected a squeeze ratio in [0, 1], got {s.se!r}")
        if s.se and s.block != "mbconv":
            raise SpecError(f"{where}.se: squeeze-excitation is part of mbconv blocks only; set se to 0")
        c_in = s.channels
    if spec.head is not None:
        _int(spec.head, "head", hi=MAX_CHANNELS)


# ---------------------------------------------------------------------------------------------- files

_SECTIONS = {"stem": Stem, "stages": Stage}


def to_dict(spec: Spec) -> dict[str, Any]:
    """A plain dict (the file format), every field present, stages as a list."""
    d: dict[str, Any] = {"deepmad_spec": SPEC_VERSION}
    for f in fields(Spec):
        v = getattr(spec, f.name)
        if f.name == "stem":
            v = {g.name: getattr(v, g.name) for g in fields(Stem)}
        elif f.name == "stages":
            v = [{g.name: getattr(s, g.name) for g in fields(Stage)} for s in v]
        d[f.name] = v
    return d


def _section(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SpecError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")
    try:
        return cls(**data)
    except TypeError as e:  # a required field is missing
        missing = [f.name for f in fields(cls) if f.name not in data and f.default is MISSING]
        raise SpecError(f"{where}: missing field {missing[0]!r}" if missing else f"{where}: {e}") from None


def from_dict(data: Any) -> Spec:
    """Build and validate a Spec from the file format."""
    if not isinstance(data, dict):
        raise SpecError(f"spec: expected a mapping at the top level, got {type(data).__name__}")
    data = dict(data)
    version = data.pop("deepmad_spec", SPEC_VERSION)
    if isinstance(version, bool) or version != SPEC_VERSION:
        raise SpecError(f"deepmad_spec: this version reads spec version {SPEC_VERSION}, got {version!r}")
    for key in ("resolution", "stem", "stages"):
        if key not in data:
            raise SpecError(f"{key}: missing (a spec needs resolution, stem and stages)")
    data["stem"] = _section(Stem, data["stem"], "stem")
    stages = data["stages"]
    if not isinstance(stages, list):
        raise SpecError(f"stages: expected a list, got {type(stages).__name__}")
    data["stages"] = tuple(_section(Stage, s, f"stages[{i}]") for i, s in enumerate(stages))
    return _section(Spec, data, "spec")


def dumps(spec: Spec, fmt: str = "yaml") -> str:
    """The spec as YAML or JSON text."""
    d = to_dict(spec)
    if fmt == "json":
        return json.dumps(d, indent=2) + "\n"
    import yaml

    return yaml.safe_dump(d, sort_keys=False, default_flow_style=None, width=110)


def loads(text: str, fmt: str = "yaml") -> Spec:
    """Parse YAML (a superset of JSON) or JSON text into a validated Spec."""
    try:
        if fmt == "json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.load(text, Loader=_yaml_loader())
    except Exception as e:  # the parsers' own errors name line and column
        raise SpecError(f"not a valid {fmt.upper()} spec: {str(e).splitlines()[0]}") from None
    return from_dict(data)


_FLOAT = r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"""


@functools.lru_cache(maxsize=1)
def _yaml_loader():
    """PyYAML's safe loader, reading floats as YAML 1.2 and JSON do (``1e-09`` is a float, not text)."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(_FLOAT.replace("\n", ""), re.X),
                                 list("-+0123456789."))
    return Loader


def _fmt(path: Path) -> str:
    return "json" if path.suffix.lower() == ".json" else "yaml"


def load(path: str | os.PathLike) -> Spec:
    """Read a spec file (.yaml/.yml/.json)."""
    p = Path(path)
    text = read_text(p, SpecError)
    try:
        return loads(text, _fmt(p))
    except SpecError as e:
        raise SpecError(f"{p}: {e}") from None


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike):
    """A binary file that replaces path only once everything was written to it: a temporary file in the same
    directory (with the old file's mode, or the umask's), synced, then renamed over path. On any error the
    temporary file is removed and the old file is left as it was."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent or ".")
    try:
        if p.exists():
            mode = p.stat().st_mode & 0o777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def read_text(p: Path, error: type[Exception], what: str = "spec file",
              not_text: str = "not a text (UTF-8) spec file") -> str:
    """The UTF-8 text of file p; an error (one line naming the file) where it cannot be read, or is not text."""
    try:
        return p.read_text(encoding="utf-8")
    except OSError as e:
        raise error(f"{p}: cannot read {what} ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise error(f"{p}: {not_text}") from None


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write text to path atomically (``atomic_file``): the old file is never half-written."""
    with atomic_file(path) as f:
        f.write(text.encode())


def save(spec: Spec, path: str | os.PathLike) -> None:
    """Write the spec atomically, as JSON for .json paths and YAML otherwise."""
    write_atomic(path, dumps(spec, _fmt(Path(path))))


def out_resolution(r: int, stride: int) -> int:
    """Output side of a 'same'-padded conv or pool: ceil(r / stride)."""
    return (r - 1) // stride + 1


__all__ = ["Spec", "Stem", "Stage", "SpecError", "BLOCKS", "load", "save", "loads", "dumps", "to_dict",
           "from_dict", "validate", "write_atomic", "atomic_file", "out_resolution"]
