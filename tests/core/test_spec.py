"""deepmad.core.spec: exact YAML/JSON round trips, validation that names the field, atomic save.

``valid_specs`` (a hypothesis strategy for random valid specs) lives in tests/shared.py.
"""
from __future__ import annotations

import copy
import json
import math
import os
import stat
from functools import reduce

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepmad.core import spec as S
from deepmad.core.reference import REFERENCE, reference
from deepmad.core.spec import ACTIVATIONS, BLOCKS, Spec, SpecError, Stage, Stem
from shared import valid_specs

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

def _round_trips(s: Spec, tmp_path) -> None:
    assert S.from_dict(S.to_dict(s)) == s
    for fmt in ("yaml", "json"):
        assert S.loads(S.dumps(s, fmt), fmt) == s
    assert S.loads(S.dumps(s, "json"), "yaml") == s  # YAML reads JSON too
    for suffix in (".yaml", ".yml", ".json"):
        p = tmp_path / f"spec{suffix}"
        S.save(s, p)
        assert S.load(p) == s
        assert S.load(str(p)) == s


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_round_trip(name, tmp_path):
    _round_trips(reference(name), tmp_path)


@SETTINGS
@given(valid_specs(names=True))
def test_random_spec_round_trip_in_memory(s):
    assert S.from_dict(S.to_dict(s)) == s
    assert S.loads(S.dumps(s, "yaml"), "yaml") == s
    assert S.loads(S.dumps(s, "json"), "json") == s
    assert S.loads(S.dumps(s), "yaml") == s


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(valid_specs())
def test_random_spec_round_trip_files(tmp_path, s):
    _round_trips(s, tmp_path)


def test_file_format_follows_suffix(tmp_path):
    s = reference("efficientnet_b0")
    S.save(s, tmp_path / "a.json")
    d = json.loads((tmp_path / "a.json").read_text())
    assert d["deepmad_spec"] == S.SPEC_VERSION and d["resolution"] == 224
    S.save(s, tmp_path / "a.YAML")
    import yaml

    assert yaml.safe_load((tmp_path / "a.YAML").read_text()) == S.to_dict(s)


def test_to_dict_has_every_field_and_version():
    d = S.to_dict(reference("resnet50"))
    assert d["deepmad_spec"] == S.SPEC_VERSION
    assert set(d) == {"deepmad_spec", "resolution", "stem", "stages", "head", "num_classes", "in_channels",
                      "act", "name"}
    assert set(d["stem"]) == {"channels", "kernel", "stride", "pool"}
    assert isinstance(d["stages"], list) and len(d["stages"]) == 4
    assert set(d["stages"][0]) == {"block", "channels", "depth", "stride", "kernel", "mid", "expand", "groups",
                                   "se"}


def test_version_key_optional():
    d = S.to_dict(reference("resnet18"))
    del d["deepmad_spec"]
    assert S.from_dict(d) == reference("resnet18")


def test_stages_list_becomes_tuple():
    s = Spec(32, Stem(8), [Stage("basic", 8, 1)])
    assert isinstance(s.stages, tuple)
    assert s == Spec(32, Stem(8), (Stage("basic", 8, 1),))


# ---------------------------------------------------------------------------------------------- validation

def _base() -> dict:
    """A valid spec dict with one stage of each family (stage 0 basic, 1 bottleneck, 2 mbconv)."""
    return S.to_dict(Spec(64, Stem(16), (
        Stage("basic", 32, 1, stride=2, groups=2),
        Stage("bottleneck", 64, 2, stride=2, mid=32, groups=4),
        Stage("mbconv", 64, 1, expand=4.0, se=0.25),
    ), head=128, num_classes=10))


def _set(d: dict, path: tuple, value) -> dict:
    d = copy.deepcopy(d)
    node = reduce(lambda n, k: n[k], path[:-1], d)
    node[path[-1]] = value
    return d


def _delete(d: dict, path: tuple) -> dict:
    d = copy.deepcopy(d)
    node = reduce(lambda n, k: n[k], path[:-1], d)
    del node[path[-1]]
    return d


def test_base_is_valid():
    S.from_dict(_base())


BAD_VALUES = [
    # (path, value, field the message must name)
    (("resolution",), 0, "resolution"),
    (("resolution",), "224", "resolution"),
    (("resolution",), 224.0, "resolution"),
    (("resolution",), None, "resolution"),
    (("resolution",), True, "resolution"),
    (("in_channels",), 0, "in_channels"),
    (("num_classes",), -1, "num_classes"),
    (("num_classes",), 1.5, "num_classes"),
    (("act",), "gelu", "act"),
    (("head",), 0, "head"),
    (("head",), "wide", "head"),
    (("stem",), 16, "stem"),
    (("stem",), None, "stem"),
    (("stem", "channels"), 0, "stem.channels"),
    (("stem", "kernel"), 4, "stem.kernel"),
    (("stem", "kernel"), 0, "stem.kernel"),
    (("stem", "kernel"), 3.0, "stem.kernel"),
    (("stem", "stride"), 0, "stem.stride"),
    (("stem", "pool"), "yes", "stem.pool"),
    (("stem", "pool"), 1, "stem.pool"),
    (("stages",), [], "stages"),
    (("stages",), {"block": "basic"}, "stages"),
    (("stages",), None, "stages"),
    (("stages", 1), [1, 2], "stages[1]"),
    (("stages", 0, "block"), "dense", "stages[0].block"),
    (("stages", 1, "channels"), 0, "stages[1].channels"),
    (("stages", 1, "channels"), "64", "stages[1].channels"),
    (("stages", 1, "channels"), 64.0, "stages[1].channels"),
    (("stages", 1, "channels"), False, "stages[1].channels"),
    (("stages", 0, "depth"), 0, "stages[0].depth"),
    (("stages", 0, "stride"), 0, "stages[0].stride"),
    (("stages", 2, "kernel"), 2, "stages[2].kernel"),
    (("stages", 1, "kernel"), -3, "stages[1].kernel"),
    (("stages", 1, "mid"), None, "stages[1].mid"),
    (("stages", 1, "mid"), 0, "stages[1].mid"),
    (("stages", 1, "mid"), 32.5, "stages[1].mid"),
    (("stages", 1, "expand"), 4.0, "stages[1].expand"),
    (("stages", 2, "expand"), 0.5, "stages[2].expand"),
    (("stages", 2, "expand"), "six", "stages[2].expand"),
    (("stages", 2, "expand"), float("nan"), "stages[2].expand"),
    (("stages", 2, "expand"), float("inf"), "stages[2].expand"),
    (("stages", 2, "mid"), 256, "stages[2]"),  # mbconv with both mid and expand
    (("stages", 2, "expand"), None, "stages[2]"),  # mbconv with neither
    (("stages", 2, "mid"), 0, "stages[2]"),
    (("stages", 2, "groups"), 2, "stages[2].groups"),
    (("stages", 1, "groups"), 3, "stages[1].groups"),  # 3 does not divide mid = 32
    (("stages", 1, "groups"), 0, "stages[1].groups"),
    (("stages", 0, "groups"), 32, "stages[0].groups"),  # divides 32 out but not the 16 in
    (("stages", 0, "mid"), 16, "stages[0]"),  # a basic block has no mid
    (("stages", 2, "se"), 1.5, "stages[2].se"),
    (("stages", 2, "se"), -0.25, "stages[2].se"),
    (("stages", 2, "se"), True, "stages[2].se"),
    (("stages", 2, "se"), "0.25", "stages[2].se"),
]


@pytest.mark.parametrize("path,value,field", BAD_VALUES,
                         ids=[f"{'.'.join(map(str, p))}={v!r}" for p, v, _ in BAD_VALUES])
def test_bad_field_names_the_field(path, value, field):
    with pytest.raises(SpecError) as e:
        S.from_dict(_set(_base(), path, value))
    assert field in str(e.value)


@pytest.mark.parametrize("path,value,field", BAD_VALUES[:12],
                         ids=[f"{'.'.join(map(str, p))}" for p, _, _ in BAD_VALUES[:12]])
def test_bad_field_through_yaml_and_json_text(path, value, field):
    d = _set(_base(), path, value)
    for fmt in ("yaml", "json"):
        text = json.dumps(d) if fmt == "json" else __import__("yaml").safe_dump(d)
        with pytest.raises(SpecError, match=field.replace("[", r"\[").replace("]", r"\]")):
            S.loads(text, fmt)


def test_constructor_validates_too():
    with pytest.raises(SpecError, match=r"stages\[1\]\.channels"):
        Spec(32, Stem(8), (Stage("basic", 8, 1), Stage("basic", 0, 1)))
    with pytest.raises(SpecError, match=r"stem\.kernel"):
        Spec(32, Stem(8, kernel=2), (Stage("basic", 8, 1),))
    with pytest.raises(SpecError, match="resolution"):
        Spec(0, Stem(8), (Stage("basic", 8, 1),))
    with pytest.raises(SpecError, match=r"stages\[0\]\.mid"):
        Spec(32, Stem(8), (Stage("bottleneck", 8, 1),))
    with pytest.raises(SpecError, match="stem"):
        Spec(32, {"channels": 8}, (Stage("basic", 8, 1),))
    with pytest.raises(SpecError, match=r"stages\[0\]"):
        Spec(32, Stem(8), ({"block": "basic"},))


def test_spec_error_is_value_error():
    assert issubclass(SpecError, ValueError)


@pytest.mark.parametrize("section,path,field", [
    ("top", (), "depthz"),
    ("stem", ("stem",), "chanels"),
    ("stages[1]", ("stages", 1), "dept"),
])
def test_unknown_field(section, path, field):
    d = _base()
    node = reduce(lambda n, k: n[k], path, d)
    node[field] = 1
    with pytest.raises(SpecError) as e:
        S.from_dict(d)
    assert repr(field) in str(e.value)
    if section != "top":
        assert str(e.value).startswith(section)


@pytest.mark.parametrize("path,names", [
    (("resolution",), ["resolution"]),
    (("stem",), ["stem"]),
    (("stages",), ["stages"]),
    (("stem", "channels"), ["stem", "'channels'"]),
    (("stages", 1, "block"), ["stages[1]", "'block'"]),
    (("stages", 0, "channels"), ["stages[0]", "'channels'"]),
    (("stages", 2, "depth"), ["stages[2]", "'depth'"]),
])
def test_missing_field(path, names):
    with pytest.raises(SpecError) as e:
        S.from_dict(_delete(_base(), path))
    for n in names:
        assert n in str(e.value)


@pytest.mark.parametrize("data", [[1, 2], "resnet", None, 3, 2.5])
def test_wrong_top_level_type(data):
    with pytest.raises(SpecError, match="top level"):
        S.from_dict(data)


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "just a string\n", "", "42\n"])
def test_wrong_top_level_type_yaml(text):
    with pytest.raises(SpecError, match="spec"):
        S.loads(text)


def test_wrong_top_level_type_json():
    with pytest.raises(SpecError, match="top level"):
        S.loads("[1, 2]", "json")


@pytest.mark.parametrize("version", [2, 0, -1, "1", None, 1.5])
def test_bad_version(version):
    with pytest.raises(SpecError, match="deepmad_spec"):
        S.from_dict(_set(_base(), ("deepmad_spec",), version))


def test_bool_version_rejected():
    """`deepmad_spec: true` is not version 1 (bools are rejected everywhere else)."""
    with pytest.raises(SpecError, match="deepmad_spec"):
        S.from_dict(_set(_base(), ("deepmad_spec",), True))


@pytest.mark.parametrize("text", ["resolution: 224\nstem: {channels: 8\n", "stages: [\n", "a: b: c\n",
                                  "\tresolution: 1\n"])
def test_malformed_yaml(text):
    with pytest.raises(SpecError, match="YAML"):
        S.loads(text, "yaml")


@pytest.mark.parametrize("text", ['{"resolution": 224,', "resolution: 224\n", "{'a': 1}", ""])
def test_malformed_json(text):
    with pytest.raises(SpecError, match="JSON"):
        S.loads(text, "json")


def test_malformed_file_names_path(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("stages: [\n")
    with pytest.raises(SpecError) as e:
        S.load(p)
    assert str(p) in str(e.value) and "YAML" in str(e.value)
    q = tmp_path / "broken.json"
    q.write_text(S.dumps(reference("resnet18"), "yaml"))  # YAML text in a .json file
    with pytest.raises(SpecError, match="JSON"):
        S.load(q)


def test_bad_field_in_file_names_path_and_field(tmp_path):
    p = tmp_path / "bad.yml"
    p.write_text(S.dumps(S.from_dict(_base())).replace("kernel: 3", "kernel: 4", 1))
    with pytest.raises(SpecError) as e:
        S.load(p)
    assert str(p) in str(e.value) and "stem.kernel" in str(e.value)


def test_unreadable_paths(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as e:
        S.load(missing)
    assert str(missing) in str(e.value)
    with pytest.raises(SpecError) as e:
        S.load(tmp_path)  # a directory
    assert str(tmp_path) in str(e.value)


def test_non_utf8_file_is_spec_error(tmp_path):
    """A file that is not text is an unreadable spec file: SpecError naming the path, not UnicodeDecodeError."""
    p = tmp_path / "binary.yaml"
    p.write_bytes(b"\xff\xfe\x00\x80resolution: 224\n")
    with pytest.raises(SpecError) as e:
        S.load(p)
    assert str(p) in str(e.value)


# ---------------------------------------------------------------------------------------------- atomic save

def test_save_replaces_existing_file_fully(tmp_path):
    p = tmp_path / "net.yaml"
    p.write_text("x" * 100_000)  # much longer than the spec: nothing of it may survive
    s = reference("resnet18")
    S.save(s, p)
    assert p.read_text() == S.dumps(s, "yaml")
    assert S.load(p) == s
    S.save(reference("mobilenet_v2"), p)
    assert S.load(p) == reference("mobilenet_v2")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["net.yaml"]


def test_save_leaves_no_temp_files(tmp_path):
    for i, name in enumerate(sorted(REFERENCE)):
        S.save(reference(name), tmp_path / f"{name}.json")
        S.save(reference(name), tmp_path / f"{name}.json")  # over itself
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted(f"{n}.json" for n in REFERENCE)


def test_failed_save_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "net.json"
    S.save(reference("resnet50"), p)
    before = p.read_bytes()

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        S.save(reference("efficientnet_b0"), p)
    monkeypatch.undo()
    assert p.read_bytes() == before
    assert S.load(p) == reference("resnet50")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["net.json"]


def test_failed_write_keeps_old_file(tmp_path, monkeypatch):
    """A failure while writing the temporary file (not only at the rename) leaves the old file intact."""
    p = tmp_path / "net.yaml"
    S.save(reference("resnet18"), p)
    before = p.read_bytes()

    def boom(fd):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        S.save(reference("resnet152"), p)
    monkeypatch.undo()
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["net.yaml"]


def test_save_to_new_file(tmp_path):
    p = tmp_path / "fresh.yml"
    S.save(reference("resnet34"), p)
    assert S.load(p) == reference("resnet34")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["fresh.yml"]


def test_saved_file_mode_is_ordinary(tmp_path):
    """A saved spec gets the mode a plain open(path, 'w') would give it (0666 & ~umask), not mkstemp's 0600,
    and saving over an existing file keeps that file's mode."""
    umask = os.umask(0)
    os.umask(umask)
    fresh = tmp_path / "fresh.yaml"
    S.save(reference("resnet18"), fresh)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask
    old = tmp_path / "old.yaml"
    old.write_text("")
    old.chmod(0o644)
    S.save(reference("resnet18"), old)
    assert stat.S_IMODE(old.stat().st_mode) == 0o644
