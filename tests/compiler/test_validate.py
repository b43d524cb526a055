"""Schema and semantic validation: one golden per error class, located in the source."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from flatcar_infra.compiler.validate import check_document, validate_document
from flatcar_infra.errors import Severity
from tests.compiler.helpers import messages, run
from tests.support.ignition import requires_ignition

H = "sha512-" + "ab" * 64


def problems(doc: dict[str, Any], version: str = "3.3.0") -> list[str]:
    doc = {"ignition": {"version": version}, **doc}
    return [f"{d.severity.value}: {d.message} [{d.path}]" for d in validate_document(doc, filename="x")]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {"storage": {"files": [{"path": "etc/x"}]}},
            "error: path 'etc/x' must be absolute [$.storage.files.0.path]",
        ),
        (
            {"storage": {"files": [{"path": "/etc//x/"}]}},
            "error: path '/etc//x/' is not fully simplified (use '/etc/x') [$.storage.files.0.path]",
        ),
        (
            {"storage": {"files": [{"mode": 420}]}},
            "error: path not specified [$.storage.files.0.path]",
        ),
        (
            # files, directories and links share one key space; directories are checked first
            {"storage": {"files": [{"path": "/a"}], "directories": [{"path": "/a"}]}},
            "error: duplicate entry defined: path '/a' (also at $.storage.directories.0) [$.storage.files.0]",
        ),
        (
            {"storage": {"files": [{"path": "/a/b"}], "links": [{"path": "/a", "target": "/x"}]}},
            "error: file path '/a/b' includes link '/a' in config [$.storage.files.0]",
        ),
        (
            {"storage": {"files": [{"path": "/a", "mode": 0o17777}]}},
            "error: illegal file mode 8191 (017777): it must be between 0 and 07777 [$.storage.files.0.mode]",
        ),
        (
            {
                "storage": {
                    "files": [
                        {"path": "/a", "contents": {"source": "https://x", "verification": {"hash": "md5-1"}}}
                    ]
                }
            },
            "error: unrecognized hash function 'md5' (sha512 or sha256) "
            "[$.storage.files.0.contents.verification.hash]",
        ),
        (
            {"storage": {"files": [{"path": "/a", "contents": {"source": "ftp://x"}}]}},
            "error: invalid url scheme 'ftp' (use one of data, gs, http, https, s3, tftp) "
            "[$.storage.files.0.contents.source]",
        ),
        (
            {"storage": {"files": [{"path": "/a", "contents": {"source": "data:,%zz"}}]}},
            "error: invalid data URL: rfc2396: invalid char 0x25 in unescape sequence "
            "[$.storage.files.0.contents.source]",
        ),
        (
            {"storage": {"files": [{"path": "/a", "contents": {"source": "s3://b/k?versionId="}}]}},
            "error: invalid S3 object VersionId (empty versionId) [$.storage.files.0.contents.source]",
        ),
        (
            {"storage": {"files": [{"path": "/a", "contents": {"source": "http://a b/"}}]}},
            "error: unable to parse url 'http://a b/': invalid character ' ' in host name "
            "[$.storage.files.0.contents.source]",
        ),
        (
            {"storage": {"files": [{"path": "/a", "overwrite": True}]}},
            "error: overwrite must be false if source is unspecified [$.storage.files.0.overwrite]",
        ),
        (
            {"ignition": {"version": "3.3.0", "config": {"merge": [{"compression": "gzip"}]}}},
            "error: missing required field: 'source' is a required property [$.ignition.config.merge.0]",
        ),
        (
            {"storage": {"files": [{"path": "/a", "mode": 0o4755}]}},
            "warning: setuid/setgid/sticky bits are not supported or functional in spec versions older than "
            "3.6.0 (mode 04755): Ignition may not apply them [$.storage.files.0.mode]",
        ),
        (
            {"storage": {"luks": [{"name": "a", "device": "/dev/sda", "clevis": {"custom": {"pin": "p"}}}]}},
            "error: unsupported clevis pin 'p' (tpm2, tang or sss) [$.storage.luks.0.clevis.custom.pin]",
        ),
        (
            {"storage": {"luks": [{"name": "a/b", "device": "/dev/sda"}]}},
            "error: device names cannot contain slashes ('a/b') [$.storage.luks.0.name]",
        ),
        (
            {"storage": {"files": [{"path": "/a", "user": {"id": 1, "name": "x"}}]}},
            "error: cannot set both id and name of the user [$.storage.files.0.user]",
        ),
        (
            {"systemd": {"units": [{"name": "foo"}]}},
            "error: invalid systemd unit extension in 'foo' (.service, .socket, .timer, .mount, ...) "
            "[$.systemd.units.0.name]",
        ),
        (
            {"systemd": {"units": [{"name": "a.service", "dropins": [{"name": "x.txt"}]}]}},
            "error: invalid systemd drop-in extension in 'x.txt' (use .conf) "
            "[$.systemd.units.0.dropins.0.name]",
        ),
        (
            {"systemd": {"units": [{"name": "a.service", "contents": "[Service]\nExecStart"}]}},
            "error: invalid unit content: EOF [$.systemd.units.0.contents]",
        ),
        (
            {"systemd": {"units": [{"name": "a.service", "contents": "[Service]\nX=" + "y" * 2046}]}},
            "error: invalid unit content: line too long (max 2048 bytes) [$.systemd.units.0.contents]",
        ),
        (
            {"systemd": {"units": [{"name": "a.service", "enabled": True, "contents": "[Service]\nX=1"}]}},
            "warning: unit 'a.service' is enabled, but has no install section so enable does nothing "
            "[$.systemd.units.0.contents]",
        ),
        (
            {"systemd": {"units": [{"name": "a.service"}, {"name": "a.service"}]}},
            "error: duplicate entry defined: unit 'a.service' (also at $.systemd.units.0) "
            "[$.systemd.units.1]",
        ),
        (
            {"passwd": {"users": [{"name": "core", "sshAuthorizedKeys": ["k", "k"]}]}},
            "error: duplicate entry defined: SSH key 'k' (also at $.passwd.users.0.sshAuthorizedKeys.0) "
            "[$.passwd.users.0.sshAuthorizedKeys.1]",
        ),
        (
            {"storage": {"filesystems": [{"device": "/dev/sda", "format": "ntfs"}]}},
            "error: invalid filesystem format 'ntfs' (one of ext4, btrfs, xfs, swap, vfat, none) "
            "[$.storage.filesystems.0.format]",
        ),
        (
            {"storage": {"filesystems": [{"device": "/dev/sda", "format": "vfat", "label": "TWELVE-CHARS"}]}},
            "error: filesystem labels cannot be longer than 11 characters when using vfat ('TWELVE-CHARS') "
            "[$.storage.filesystems.0.label]",
        ),
        (
            {"storage": {"disks": [{"device": "sda"}]}},
            "error: path 'sda' must be absolute [$.storage.disks.0.device]",
        ),
        (
            {"storage": {"raid": [{"name": "md", "level": "raid0", "devices": ["/dev/a"], "spares": 1}]}},
            "error: spares unsupported for linear and raid0 arrays [$.storage.raid.0.level]",
        ),
        (
            {"kernelArguments": {"shouldExist": ["quiet"], "shouldNotExist": ["quiet"]}},
            "error: duplicate entry defined: kernel argument 'quiet' "
            "(also at $.kernelArguments.shouldExist.0) [$.kernelArguments.shouldNotExist.0]",
        ),
        (
            {"ignition": {"version": "3.3.0", "proxy": {"httpsProxy": "http://p"}}},
            "warning: insecure plaintext HTTP proxy specified for HTTPS resources "
            "[$.ignition.proxy.httpsProxy]",
        ),
        (
            {"storage": {"files": [{"path": "/a", "mode": "0644"}]}},
            "error: expected integer, found string '0644' [$.storage.files.0.mode]",
        ),
        (
            {"storage": {"files": [{"path": "/a", "mode": 420.0}]}},
            "error: expected an integer, found 420.0 [$.storage.files.0.mode]",
        ),
        (
            {"passwd": {"users": [{"name": "a", "uid": 2**64}]}},
            "error: 18446744073709551616 does not fit in a 64-bit integer [$.passwd.users.0.uid]",
        ),
        (
            {"storage": {"files": [{"path": "/a", "colour": 1}]}},
            "warning: unused key 'colour' (Ignition ignores it) [$.storage.files.0.colour]",
        ),
        (
            {"storage": {"luks": [{"name": "a", "device": "/dev/sda", "discard": True}]}},
            "warning: unused key 'discard' (Ignition ignores it) [$.storage.luks.0.discard]",
        ),
        (
            {"ignition": {"version": "3.3.0", "config": {"merge": [{"source": "arn:aws:s3:::b/k"}]}}},
            "error: invalid url scheme 'arn': it needs Ignition spec 3.4.0 or newer "
            "[$.ignition.config.merge.0.source]",
        ),
    ],
)
def test_error_classes(doc: dict[str, Any], expected: str) -> None:
    assert expected in problems(doc)


def test_valid_34_fields_and_hash() -> None:
    doc = {
        "storage": {
            "luks": [{"name": "a", "device": "/dev/sda", "discard": True, "openOptions": ["--x"]}],
            "files": [
                {"path": "/a", "contents": {"source": "arn:aws:s3:::b/k", "verification": {"hash": H}}}
            ],
        }
    }
    assert problems(doc, "3.4.0") == []


@pytest.mark.parametrize("version", ["2.3.0", "3.2.0", "3.5.0", "3.4.0-experimental"])
def test_unsupported_versions(version: str) -> None:
    assert problems({"ignition": {"version": version}})[0].startswith(
        f"error: unsupported Ignition spec version '{version}'"
    )


def test_raw_json_errors_are_located_by_line() -> None:
    text = json.dumps(
        {"ignition": {"version": "3.3.0"}, "storage": {"files": [{"path": "relative", "mode": 420}]}},
        indent=2,
    )
    result = run(text, filename="c.ign")
    assert result.kind == "ignition"
    assert messages(result) == [
        "c.ign:8:17: error: path 'relative' must be absolute [$.storage.files.0.path]"
    ]


def test_butane_output_errors_point_at_the_yaml_line() -> None:
    # `path` missing: Ignition's error on the output is blamed on the YAML entry that produced it
    result = run("variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - mode: 0644\n")
    assert messages(result) == ["c.yaml:5:7: error: path not specified [$.storage.files.0.path]"]


def test_several_problems_at_once_never_a_traceback() -> None:
    result = run(
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: a\n      mode: x\n"
        "systemd:\n  units:\n    - name: nosuffix\n      enabled: 3\n"
    )
    # type errors and the output's problems, all at once
    assert [m.split(": error: ")[0] for m in messages(result) if ": error:" in m] == [
        "c.yaml:5:13",
        "c.yaml:6:13",
        "c.yaml:9:13",
        "c.yaml:10:16",
    ]
    result = run(
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: a\n"
        "systemd:\n  units:\n    - name: nosuffix\n"
    )
    assert messages(result) == [
        "c.yaml:5:13: error: path 'a' must be absolute [$.storage.files.0.path]",
        "c.yaml:8:13: error: invalid systemd unit extension in 'nosuffix' (.service, .socket, .timer, "
        ".mount, ...) [$.systemd.units.0.name]",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "{",
        "[1, 2]",
        ":\n- a: [",
        "variant: flatcar\nversion: 1.0.0\nstorage: 3\n",
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  files: {a: 1}\n",
        "[" * 5000 + "]" * 5000,
        "variant: flatcar\nversion: 1.0.0\nstorage: {files: [{path: /a, contents: {inline: [1]}}]}\n",
    ],
)
def test_garbage_is_diagnosed(text: str) -> None:
    result = run(text)
    assert result.document is None
    assert any(d.is_error for d in result.diagnostics)


# --- the rules against the real Ignition, value by value -------------------------------------------

TRICKY_URLS = [
    "https://example.com/x",
    "http://example.com:8080/x?y=1#z",
    "ftp://example.com/x",
    "s3://b/k?versionId=",
    "s3://b/k?versionId=3",
    "s3://b/k?versionId",
    "gs://b/o",
    "tftp://h/f",
    "data:,hello",
    "data:,%zz",
    "data:,%4",
    "data:,a b",
    "data:,é",
    "data:;base64,aGk=",
    "data:;base64,aGk",
    "data:;base64,QQ==QQ==",
    "data:text/plain;charset=utf-8,x",
    'data:text/plain;charset="utf-8",x',
    "data:foo/bar,x",
    "data:x-foo/bar,x",
    "data:text/,x",
    "data:;base63,x",
    "data:hello",
    "http://a b/",
    "http://h:abc/",
    "http://[::1/",
    "http://[::1]:80/",
    "https://h/%zz",
    "https://h/#%zz",
    "http://u p@h/",
    "http://u:p@h/",
    "http://%41/",
    "HTTP://EXAMPLE.COM/",
    ":foo",
    "x:y",
    "1http://x",
    "http://h/\x01",
    "arn:aws:s3:::b/k",
    "oem:///x",
    "",
]

TRICKY_UNITS = [
    "[Unit]\nA=b\n[Install]\nWantedBy=x",
    "[not valid",
    "[A] x\nB=1",
    "[A]\nFoo\n",
    "[A]\nFoo",
    "garbage\n[A]\nx=1",
    "[A]\n# c \\\nFoo\n",
    "[A]\nB=1\\",
    "[A]\r\nB=1\r\n",
    "[A]\n=x\n",
    "  [A]\n\n  x = 1 \\\n  y\n#c\n[B]\n",
    "[A]\nB=" + "y" * 2045,
    "[A]\nB=" + "y" * 2046,
    "[A]\n" + "".join(f"K{i}=1\n" for i in range(600)) + "X=" + "y" * 2100 + "\n",
    "[A]\n" + "x" * 3000 + "=1\n",
    "#" + "y" * 3000 + "\n[A]\n",
    "\n" * 3000 + "[A]\nB=" + "y" * 2100,
]


def _real_errors(doc: dict[str, Any]) -> set[str]:
    from tests.support.ignition import IgnitionFailed, ignition_validate

    try:
        ignition_validate(json.dumps(doc).encode(), allow_warnings=True)
    except IgnitionFailed as exc:
        return {m[1] for m in re.finditer(r"^error at (\$[^,]*),", exc.log, re.M)}
    return set()


@pytest.mark.ignition
@requires_ignition
@pytest.mark.parametrize(
    "doc",
    [
        {
            "storage": {
                "files": [{"path": f"/f{i}", "contents": {"source": u}} for i, u in enumerate(TRICKY_URLS)]
            }
        },
        {
            "systemd": {
                "units": [{"name": f"u{i}.service", "contents": t} for i, t in enumerate(TRICKY_UNITS)]
            }
        },
        {
            "storage": {
                "filesystems": [
                    {"device": f"/dev/d{i}", "format": fmt, "label": "L" * n}
                    for i, (fmt, n) in enumerate(
                        (f, n)
                        for f in ("ext4", "xfs", "vfat", "swap", "btrfs")
                        for n in (11, 12, 13, 15, 16, 17)
                    )
                ],
                "disks": [
                    {
                        "device": "/dev/sdx",
                        "partitions": [{"number": 1, "label": "x" * 36}, {"number": 2, "label": "é" * 18}],
                    },
                    {
                        "device": "/dev/sdy",
                        "partitions": [{"number": 1, "label": "é" * 19}, {"label": "a:b"}],
                    },
                    {
                        "device": "/dev/sdz",
                        "partitions": [
                            {"number": 1, "startMiB": 1, "sizeMiB": 10},
                            {"number": 2, "startMiB": 10, "sizeMiB": 5},
                        ],
                    },
                ],
                "raid": [
                    {"name": f"md{i}", "level": lvl, "devices": ["/dev/a"], "spares": 1}
                    for i, lvl in enumerate(
                        ("linear", "raid0", "0", "stripe", "raid1", "mirror", "raid10", "raid7", "")
                    )
                ],
                "luks": [
                    {"name": "l", "device": "/dev/l", "label": "x" * 47},
                    {"name": "m", "device": "/dev/m", "label": "x" * 48},
                ],
            }
        },
        {
            "storage": {
                "files": [{"path": p} for p in ("/a", "a", "/a/", "/a//b", "/a/./c", "/a/../d", "", "/")],
                "links": [
                    {"path": "/l", "target": "/a", "hard": True},
                    {"path": "/m"},
                    {"path": "/n", "target": ""},
                ],
                "directories": [{"path": "/d", "mode": m} for m in (0o755, 0o7777, 0o10000, -1)],
            }
        },
    ],
    ids=["urls", "units", "storage-labels-and-levels", "paths-links-modes"],
)
def test_errors_are_exactly_the_real_ignitions(doc: dict[str, Any]) -> None:
    """Each value's verdict (by the entry it lands on) equals Debian's real ignition-validate's."""
    full = {"ignition": {"version": "3.3.0"}, **doc}
    ours = {p for s, p, _ in check_document(full) if s is Severity.ERROR}

    def entries(paths: set[str]) -> set[str]:
        return {".".join(p.split(".")[:4]) for p in paths}

    assert entries(ours) == entries(_real_errors(full))
