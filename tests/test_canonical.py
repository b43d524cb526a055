"""The hash is the identity of a config: it must not depend on key order, process or hash seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from flatcar_infra.canonical import canonical_bytes, config_hash, pretty_bytes

DOC = {"storage": {"files": [{"path": "/etc/ä", "mode": 420}]}, "ignition": {"version": "3.3.0"}}


def test_sorted_compact_utf8() -> None:
    assert canonical_bytes(DOC) == (
        '{"ignition":{"version":"3.3.0"},"storage":{"files":[{"mode":420,"path":"/etc/ä"}]}}'
    ).encode()


def test_key_order_does_not_matter() -> None:
    reordered = json.loads(json.dumps(DOC, sort_keys=False))
    reordered = {"storage": reordered["storage"], "ignition": reordered["ignition"]}
    assert canonical_bytes(reordered) == canonical_bytes(DOC)


def test_hash_syntax() -> None:
    h = config_hash(b"x")
    assert h.startswith("sha512-") and len(h) == 7 + 128


def test_same_hash_across_processes_and_hash_seeds() -> None:
    code = (
        "from flatcar_infra.canonical import canonical_bytes, config_hash;"
        f"print(config_hash(canonical_bytes({DOC!r})))"
    )
    hashes = set()
    for seed in ("0", "1", "12345", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True)
        hashes.add(out.stdout.strip())
    assert hashes == {config_hash(canonical_bytes(DOC))}


def test_pretty_is_the_same_document() -> None:
    assert json.loads(pretty_bytes(DOC)) == DOC
