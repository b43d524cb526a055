"""Property test: no config we accept is one the REAL Ignition rejects.

Hypothesis generates Ignition 3.3.0 configs full of the values Ignition's validation is about
(relative and unclean paths, odd modes, bad URLs and data URLs, duplicate entries, partition and
filesystem labels of every length, RAID levels and spares, unit text systemd cannot read, ...),
and the same configs written as Butane ``flatcar`` 1.0.0. Each goes through our compiler; every
one we accept also goes through Debian's real ``ignition-validate`` (Ignition 2.14, which knows spec
3.3.0), which must accept it too. Configs we reject are counted; where Ignition accepts them we are
stricter on purpose (``docs/compiler-conformance.md``).

Bounded and derandomized (``FLATCAR_INFRA_FUZZ=N`` runs N times more, randomized, for a bug hunt),
so CI spends well under a minute here. ``python -m pytest -s -k agreement`` prints the counts.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flatcar_infra.compiler import compile_config
from flatcar_infra.errors import ConfigError
from tests.support.ignition import IgnitionFailed, ignition_validate, requires_ignition

FUZZ = int(os.environ.get("FLATCAR_INFRA_FUZZ", "1"))
SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=FUZZ == 1,
    max_examples=120 * FUZZ,
)
COUNTS: Counter[str] = Counter()
STRICTER: list[tuple[str, list[str]]] = []  # configs only we reject, with our reasons


def often(common: list[Any], rare: list[Any]) -> st.SearchStrategy[Any]:
    """Mostly valid values, sometimes the edge cases: so both verdicts are exercised."""
    return st.one_of(st.sampled_from(common), st.sampled_from(common), st.sampled_from(rare))


def opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


PATHS = often(
    ["/etc/a", "/etc/b", "/opt/c", "/var/lib/d", "/etc/e/f"],
    ["etc/rel", "/etc//x", "/etc/./y", "/etc/z/", "", "/", "/etc/a/g", "/etc/systemd/system/u.service"],
)
URLS = often(
    ["https://example.com/x", "http://example.com/x", "s3://bucket/key", "data:,hello", "data:;base64,aGk="],
    [
        "ftp://example.com/x",
        "s3://b/k?versionId=",
        "s3://b/k?versionId=3",
        "gs://b/o",
        "tftp://h/f",
        "data:,%zz",
        "data:,a b",
        "data:;base64,aGk",
        "data:text/plain;charset=utf-8,x",
        "data:foo/bar,x",
        "http://a b/",
        "http://h:abc/",
        "http://[::1/",
        "https://h/%zz",
        "http://u p@h/",
        "arn:aws:s3:::b/k",
        "oem:///x",
        "",
        "x",
    ],
)
HASHES = st.sampled_from(
    ["sha512-" + "0" * 128, "sha256-" + "ab" * 32, "sha1-abc", "md5", "sha512-00", "sha256-" + "G" * 64]
)
HEADER = st.fixed_dictionaries(
    {"name": often(["Authorization", "X-A"], ["", "X-A"]), "value": opt(often(["v"], [""]))}
)
RESOURCE = st.fixed_dictionaries(
    {},
    optional={
        "source": URLS,
        "compression": st.sampled_from(["", "gzip", "xz"]),
        "verification": st.fixed_dictionaries({"hash": HASHES}),
        "httpHeaders": st.lists(HEADER, max_size=2),
    },
)
MODES = st.one_of(
    st.sampled_from([0o644, 0o755, 0o600, 0o4755, 0o2755, 0o1777, 644, 755, 0o7777, 0o10000, -1]),
    st.integers(0, 0o7777),
)
OWNER = st.fixed_dictionaries(
    {}, optional={"id": st.integers(0, 2000), "name": st.sampled_from(["core", ""])}
)
NODE = {"path": PATHS}
NODE_OPT = {"overwrite": st.booleans(), "user": OWNER, "group": OWNER}
FILE = st.fixed_dictionaries(
    NODE, optional={**NODE_OPT, "mode": MODES, "contents": RESOURCE, "append": st.lists(RESOURCE, max_size=2)}
)
DIRECTORY = st.fixed_dictionaries(NODE, optional={**NODE_OPT, "mode": MODES})
LINK = st.fixed_dictionaries(
    NODE, optional={**NODE_OPT, "target": often(["/etc/a", "../x"], ["", "/opt/c"]), "hard": st.booleans()}
)
LABELS = st.one_of(st.text("abcXYZ-", min_size=0, max_size=20), st.sampled_from(["a:b", "x" * 37, "é" * 20]))
GUIDS = often(["0FC63DAF-8483-4772-8E79-3D69D8477DE4", ""], ["0fc63daf", "not-a-guid"])
PARTITION = st.fixed_dictionaries(
    {},
    optional={
        "number": st.integers(0, 3),
        "label": LABELS,
        "sizeMiB": st.integers(0, 20),
        "startMiB": st.integers(0, 20),
        "typeGuid": GUIDS,
        "guid": GUIDS,
        "shouldExist": st.booleans(),
        "wipePartitionEntry": st.booleans(),
    },
)
DEVICES = often(["/dev/sda", "/dev/sdb", "/dev/vdb"], ["sda", "", "/dev//sdc"])
DISK = st.fixed_dictionaries(
    {"device": DEVICES},
    optional={"wipeTable": st.booleans(), "partitions": st.lists(PARTITION, max_size=3)},
)
RAID = st.fixed_dictionaries(
    {"name": often(["md0", "md1"], ["", "a/b"]), "devices": st.lists(DEVICES, max_size=3)},
    optional={
        "level": often(["raid1", "raid5", "raid0", "linear"], ["raid7", "", "stripe", "10"]),
        "spares": st.integers(0, 2),
        "options": st.lists(st.sampled_from(["--x", "--x"]), max_size=2),
    },
)
FILESYSTEM = st.fixed_dictionaries(
    {"device": DEVICES},
    optional={
        "format": often(["ext4", "xfs", "vfat", "swap", "btrfs", "none"], ["", "ntfs"]),
        "path": PATHS,
        "label": LABELS,
        "uuid": st.sampled_from(["", "1234"]),
        "wipeFilesystem": st.booleans(),
        "options": st.lists(st.sampled_from(["-m", "0"]), max_size=2),
        "mountOptions": st.lists(st.sampled_from(["noatime"]), max_size=2),
    },
)
TANG = st.fixed_dictionaries({}, optional={"url": URLS, "thumbprint": st.sampled_from(["", "abc"])})
CLEVIS = st.fixed_dictionaries(
    {},
    optional={
        "tpm2": st.booleans(),
        "threshold": st.integers(0, 2),
        "tang": st.lists(TANG, max_size=2),
        "custom": st.fixed_dictionaries(
            {},
            optional={
                "pin": st.sampled_from(["tpm2", "tang", "sss", "nope", ""]),
                "config": st.sampled_from(["{}", ""]),
                "needsNetwork": st.booleans(),
            },
        ),
    },
)
LUKS = st.fixed_dictionaries(
    {"name": often(["data", "swap"], ["a/b", ""])},
    optional={
        "device": DEVICES,
        "label": st.text("ab", max_size=50),
        "keyFile": RESOURCE,
        "wipeVolume": st.booleans(),
        "clevis": CLEVIS,
        "options": st.lists(st.sampled_from(["--x"]), max_size=2),
    },
)
UNIT_TEXTS = often(
    [
        "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
        "[Service]\nExecStart=/bin/true\n",
        "# comment\n[Service]\nExecStart=/bin/sh -c 'a \\\n  b'\n",
    ],
    [
        "[bad",
        "[A] x\nB=1",
        "[A]\nFoo\n",
        "[A]\nFoo",
        "garbage\n[A]\nx=1",
        "[A]\nB=" + "y" * 2045,
        "[A]\nB=" + "y" * 2046,
        "[A]\n" + "".join(f"K{i}=1\n" for i in range(600)) + "X=" + "y" * 2100 + "\n",
        "",
        "[A]\r\nB=1\r\n",
        "[A]\n# c \\\nFoo\n",
    ],
)
DROPIN = st.fixed_dictionaries(
    {"name": often(["10-a.conf", "20-b.conf"], ["x.txt", ""])}, optional={"contents": UNIT_TEXTS}
)
UNIT = st.fixed_dictionaries(
    {"name": often(["a.service", "b.timer", "e@.service", "e@x.service"], ["c", "d.mount.d", ""])},
    optional={
        "enabled": st.booleans(),
        "mask": st.booleans(),
        "contents": UNIT_TEXTS,
        "dropins": st.lists(DROPIN, max_size=2),
    },
)
USER = st.fixed_dictionaries(
    {"name": often(["core", "app"], ["", "a b"])},
    optional={
        "uid": st.one_of(st.integers(0, 70000), st.just(2**63)),
        "groups": st.lists(st.sampled_from(["sudo", "docker"]), max_size=3),
        "sshAuthorizedKeys": st.lists(st.sampled_from(["ssh-ed25519 AAAA a", "ssh-rsa B b"]), max_size=3),
        "homeDir": PATHS,
        "shouldExist": st.booleans(),
    },
)
GROUP = st.fixed_dictionaries({"name": often(["ops", "dev"], [""])}, optional={"gid": st.integers(0, 70000)})
PROXY = st.fixed_dictionaries(
    {},
    optional={
        "httpProxy": often(["http://p:3128"], ["https://p", "ftp://p", "", "http://[::1"]),
        "httpsProxy": often(["https://p:3128"], ["http://p", "ftp://p"]),
        "noProxy": st.lists(st.sampled_from(["localhost", ".internal"]), max_size=3),
    },
)


def _lists(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(strategy, max_size=3)


CONFIG = st.fixed_dictionaries(
    {},
    optional={
        "ignition": st.fixed_dictionaries(
            {},
            optional={
                "config": st.fixed_dictionaries(
                    {}, optional={"merge": st.lists(RESOURCE, max_size=2), "replace": RESOURCE}
                ),
                "proxy": PROXY,
                "security": st.fixed_dictionaries(
                    {"tls": st.fixed_dictionaries({"certificateAuthorities": st.lists(RESOURCE, max_size=2)})}
                ),
            },
        ),
        "storage": st.fixed_dictionaries(
            {},
            optional={
                "files": _lists(FILE),
                "directories": _lists(DIRECTORY),
                "links": _lists(LINK),
                "disks": st.lists(DISK, max_size=2),
                "raid": st.lists(RAID, max_size=2),
                "filesystems": _lists(FILESYSTEM),
                "luks": st.lists(LUKS, max_size=2),
            },
        ),
        "systemd": st.fixed_dictionaries({"units": _lists(UNIT)}),
        "passwd": st.fixed_dictionaries({}, optional={"users": _lists(USER), "groups": _lists(GROUP)}),
        "kernelArguments": st.fixed_dictionaries(
            {},
            optional={
                "shouldExist": st.lists(st.sampled_from(["a", "b"]), max_size=2),
                "shouldNotExist": st.lists(st.sampled_from(["b", "c"]), max_size=2),
            },
        ),
    },
)


def _snake(key: str) -> str:
    return re.sub(r"(MiB|[A-Z])", lambda m: "_" + m[1].lower(), key)


def as_butane(doc: Any) -> Any:
    """The same config in Butane's spelling (snake_case keys; Ignition's fields are Butane's)."""
    if isinstance(doc, dict):
        return {_snake(k): as_butane(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [as_butane(v) for v in doc]
    return doc


def _clc_resource(res: dict[str, Any]) -> dict[str, Any]:
    source = res.get("source", "")
    if source.startswith("data:") and "," in source:
        return {"inline": source.partition(",")[2]}
    remote: dict[str, Any] = {"url": source}
    if res.get("compression"):
        remote["compression"] = res["compression"]
    function, _, digest = res.get("verification", {}).get("hash", "").partition("-")
    if function:
        remote["verification"] = {"hash": {"function": function, "sum": digest}}
    return {"remote": remote}


def as_clc(doc: dict[str, Any]) -> dict[str, Any]:
    """The same config as a Container Linux Config (ct's spelling and structure)."""
    st_ = doc.get("storage", {})
    out: dict[str, Any] = {}

    def node(n: dict[str, Any]) -> dict[str, Any]:
        keep = {k: n[k] for k in ("path", "mode", "overwrite", "user", "group", "target", "hard") if k in n}
        return {"filesystem": "root", **keep}

    storage: dict[str, Any] = {
        "files": [
            {**node(f), **({"contents": _clc_resource(f["contents"])} if "contents" in f else {})}
            for f in st_.get("files", [])
        ],
        "directories": [node(d) for d in st_.get("directories", [])],
        "links": [node(lk) for lk in st_.get("links", []) if lk.get("target")],
        "disks": [
            {
                "device": d["device"],
                "wipe_table": d.get("wipeTable", False),
                "partitions": [
                    {
                        **{k: p[k] for k in ("number", "label", "guid") if k in p},
                        **({"type_guid": p["typeGuid"]} if "typeGuid" in p else {}),
                        **({"size": f"{p['sizeMiB']}MiB"} if "sizeMiB" in p else {}),
                        **({"start": f"{p['startMiB']}MiB"} if "startMiB" in p else {}),
                    }
                    for p in d.get("partitions", [])
                ],
            }
            for d in st_.get("disks", [])
        ],
        "raid": st_.get("raid", []),
        "filesystems": [
            {
                "name": f"fs{i}",
                "mount": {
                    "device": fs["device"],
                    "format": fs.get("format", "ext4") or "ext4",
                    **{_snake(k): fs[k] for k in ("label", "uuid", "wipeFilesystem", "options") if k in fs},
                },
            }
            for i, fs in enumerate(st_.get("filesystems", []))
        ],
    }
    out["storage"] = storage
    units = doc.get("systemd", {}).get("units", [])
    out["systemd"] = {"units": units}
    networkd = [u for u in units if u.get("name", "").endswith(".service") and "contents" in u]
    out["networkd"] = {
        "units": [{"name": f"n{i}.network", "contents": u["contents"]} for i, u in enumerate(networkd)]
    }
    pw = doc.get("passwd", {})
    out["passwd"] = {
        "users": [
            {
                **{k: u[k] for k in ("name", "uid", "groups") if k in u},
                **({"ssh_authorized_keys": u["sshAuthorizedKeys"]} if "sshAuthorizedKeys" in u else {}),
                **({"home_dir": u["homeDir"]} if "homeDir" in u else {}),
            }
            for u in pw.get("users", [])
        ],
        "groups": pw.get("groups", []),
    }
    return out


def agree(source: str, kind: str) -> None:
    """Ours accepts -> the real Ignition accepts; count what each does."""
    try:
        compiled = compile_config(source, filename=f"gen.{kind}", files_dir=None)
    except ConfigError as exc:
        COUNTS[f"{kind}: rejected by us"] += 1
        if kind == "ign":  # the input is Ignition: ask the real one too (we may be stricter)
            try:
                ignition_validate(source.encode(), allow_warnings=True)
            except IgnitionFailed:
                COUNTS["ign: rejected by both"] += 1
            else:
                COUNTS["ign: rejected by us only"] += 1
                STRICTER.append((source, [str(d) for d in exc.diagnostics if d.is_error]))
        return
    assert compiled.version in ("3.3.0", "3.4.0")
    try:
        ignition_validate(compiled.canonical, allow_warnings=True)
    except IgnitionFailed as exc:  # pragma: no cover - the failure this test exists to find
        raise AssertionError(
            f"we accept a config the real Ignition rejects:\n{source}\n--- ignition-validate ---\n{exc.log}"
        ) from None
    COUNTS[f"{kind}: accepted by both"] += 1


@pytest.mark.ignition
@requires_ignition
@SETTINGS
@given(doc=CONFIG)
def test_ignition_accepts_every_raw_ignition_config_we_accept(doc: dict[str, Any]) -> None:
    agree(json.dumps({**doc, "ignition": {"version": "3.3.0", **doc.get("ignition", {})}}), "ign")


@pytest.mark.ignition
@requires_ignition
@SETTINGS
@given(doc=CONFIG, version=st.sampled_from(["1.0.0", "1.1.0"]))
def test_ignition_accepts_every_butane_config_we_accept(doc: dict[str, Any], version: str) -> None:
    """Butane 1.1.0 emits spec 3.4.0, which Ignition 2.14 checks as its ``3.4.0-experimental``."""
    body = as_butane(doc)
    agree(yaml.safe_dump({"variant": "flatcar", "version": version, **body}, sort_keys=False), "bu")


@pytest.mark.ignition
@requires_ignition
@SETTINGS
@given(doc=CONFIG)
def test_ignition_accepts_every_clc_we_accept(doc: dict[str, Any]) -> None:
    agree(yaml.safe_dump(as_clc(doc), sort_keys=False), "clc")


@pytest.mark.ignition
@requires_ignition
def test_agreement_counts_cover_both_verdicts() -> None:
    """Both verdicts were exercised (else the generators drifted into all-valid or all-invalid)."""
    if not COUNTS:  # run on its own: run the properties first
        test_ignition_accepts_every_raw_ignition_config_we_accept()
        test_ignition_accepts_every_butane_config_we_accept()
        test_ignition_accepts_every_clc_we_accept()
    print("\nagreement with ignition-validate:", dict(sorted(COUNTS.items())))
    for kind in ("ign", "bu", "clc"):
        assert COUNTS[f"{kind}: accepted by both"] >= 10, COUNTS
        assert COUNTS[f"{kind}: rejected by us"] >= 10, COUNTS
