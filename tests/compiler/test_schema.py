"""The fast schema pre-check must agree with ``jsonschema`` on every document: it only decides
whether ``jsonschema`` needs to run, so a disagreement would hide an error."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flatcar_infra.compiler.schema import SUPPORTED_VERSIONS, quick_check, validator

BUTANE_34 = {
    "ignition": {
        "version": "3.4.0",
        "config": {"merge": [{"source": "https://x", "httpHeaders": [{"name": "a"}]}]},
        "timeouts": {"httpTotal": 5},
        "proxy": {"noProxy": ["a"]},
    },
    "storage": {
        "files": [
            {
                "path": "/a",
                "mode": 420,
                "user": {"id": 0},
                "contents": {"source": "data:,x", "compression": ""},
                "append": [{"source": "data:,y"}],
            }
        ],
        "directories": [{"path": "/d", "group": {"name": "g"}}],
        "links": [{"path": "/l", "target": "/a", "hard": False}],
        "disks": [{"device": "/dev/sda", "partitions": [{"number": 1, "sizeMiB": 10, "label": "x"}]}],
        "raid": [{"name": "md", "level": "raid1", "devices": ["/dev/sdb"]}],
        "filesystems": [{"device": "/dev/sdb", "format": "ext4", "mountOptions": ["ro"]}],
        "luks": [
            {
                "name": "l",
                "device": "/dev/sdc",
                "discard": True,
                "openOptions": ["x"],
                "clevis": {
                    "tang": [{"url": "http://t", "thumbprint": "x", "advertisement": "{}"}],
                    "tpm2": True,
                    "custom": {"pin": "p", "config": "{}", "needsNetwork": False},
                },
            }
        ],
    },
    "systemd": {
        "units": [{"name": "a.service", "enabled": True, "dropins": [{"name": "x.conf", "contents": "x"}]}]
    },
    "passwd": {
        "users": [{"name": "core", "uid": 500, "sshAuthorizedKeys": ["k"]}],
        "groups": [{"name": "g"}],
    },
    "kernelArguments": {"shouldExist": ["a"], "shouldNotExist": ["b"]},
}

VALUES: list[Any] = [None, "", "s", 0, 1, 1.0, 1.5, True, False, [], ["x"], [1], {}, {"x": 1}, {"name": "n"}]
VALUES.append({"source": "data:,"})
REPLACEMENTS = st.sampled_from(VALUES)


def base_doc(version: str) -> dict[str, Any]:
    """A valid document using every field of ``version``."""
    doc: dict[str, Any] = json.loads(json.dumps(BUTANE_34).replace('"3.4.0"', f'"{version}"'))
    if version == "3.3.0":
        luks = doc["storage"]["luks"][0]
        del luks["discard"], luks["openOptions"], luks["clevis"]["tang"][0]["advertisement"]
    assert validator(version).is_valid(doc)
    return doc


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += paths(v, (*prefix, i))
    return out


def mutate(doc: Any, path: tuple[Any, ...], action: str, value: Any) -> Any:
    doc = copy.deepcopy(doc)
    if not path:
        return value if action == "set" else doc
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if action == "delete" and isinstance(parent, dict):
        del parent[last]
    elif action == "add" and isinstance(parent[last], dict):
        parent[last]["extra"] = value
    else:
        parent[last] = value
    return doc


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_quick_check_agrees_with_jsonschema(version: str, data: st.DataObject) -> None:
    base = base_doc(version)
    doc = base
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths(doc)))
        action = data.draw(st.sampled_from(["set", "delete", "add"]))
        doc = mutate(doc, path, action, data.draw(REPLACEMENTS))
    assert quick_check(version)(doc) == validator(version).is_valid(doc)


def test_quick_check_agrees_on_the_corpus_outputs() -> None:
    from flatcar_infra.compiler import compile_file

    corpus = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "butane"
    for src in sorted(corpus.glob("*.yaml")):
        if not src.with_suffix(".butane-v0.29.ign.json").exists():
            continue  # real Butane rejects it (09-*-INVALID, 34-*'s clevis): so do we
        doc = compile_file(src, files_dir=corpus / "files").ignition
        v = doc["ignition"]["version"]
        assert quick_check(v)(doc) is True and validator(v).is_valid(doc)


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_quick_check_agrees_for_every_single_edit(version: str) -> None:
    """Exhaustive: every node of a full document replaced by every sample value, deleted, or
    given an extra key."""
    base = base_doc(version)
    checked = 0
    for path in paths(base):
        for action in ("set", "delete", "add"):
            for value in VALUES:
                doc = mutate(base, path, action, value)
                assert quick_check(version)(doc) == validator(version).is_valid(doc), (path, action, value)
                checked += 1
    assert checked > 1000
