"""Schema and semantic validation: one golden per error class, located in the source."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flatcar_infra.compiler.validate import validate_document
from tests.compiler.helpers import messages, run

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
            "error: path '/etc//x/' is not normalized (use '/etc/x') [$.storage.files.0.path]",
        ),
        (
            {"storage": {"files": [{"path": "/a"}], "directories": [{"path": "/a"}]}},
            "error: duplicate path '/a' (also at $.storage.files.0.path) [$.storage.directories.0.path]",
        ),
        (
            {"storage": {"files": [{"path": "/a/b"}], "links": [{"path": "/a", "target": "/x"}]}},
            "error: '/a/b' is inside '/a', which is a link [$.storage.files.0.path]",
        ),
        (
            {"storage": {"files": [{"path": "/a", "mode": 0o17777}]}},
            "error: mode 8191 is outside 0..07777 [$.storage.files.0.mode]",
        ),
        (
            {
                "storage": {
                    "files": [
                        {"path": "/a", "contents": {"source": "https://x", "verification": {"hash": "md5-1"}}}
                    ]
                }
            },
            "error: hash must be sha512-<128 hex digits> or sha256-<64 hex digits> "
            "[$.storage.files.0.contents.verification.hash]",
        ),
        (
            {"storage": {"files": [{"path": "/a", "contents": {"source": "ftp://x"}}]}},
            "error: unsupported URL scheme 'ftp': use one of data, gs, http, https, s3, tftp "
            "[$.storage.files.0.contents.source]",
        ),
        (
            {"storage": {"files": [{"path": "/a", "overwrite": True}]}},
            "error: overwrite: true needs contents with a source [$.storage.files.0.overwrite]",
        ),
        (
            {"storage": {"files": [{"path": "/a", "append": [{}]}]}},
            "warning: an append entry without a source appends nothing [$.storage.files.0.append.0]",
        ),
        (
            {"ignition": {"version": "3.3.0", "config": {"merge": [{"compression": "gzip"}]}}},
            "error: missing required field: 'source' is a required property [$.ignition.config.merge.0]",
        ),
        (
            {"storage": {"files": [{"path": "/a", "mode": 0o4755}]}},
            "warning: setuid/setgid/sticky bits need Ignition spec 3.4.0 (Butane flatcar 1.1.0); spec 3.3.0 "
            "may not apply them [$.storage.files.0.mode]",
        ),
        (
            {
                "storage": {
                    "luks": [
                        {
                            "name": "a",
                            "device": "/dev/sda",
                            "clevis": {"custom": {"pin": "p", "config": "{}"}},
                        }
                    ]
                }
            },
            "error: unsupported clevis pin 'p' (use tpm2, tang or sss) [$.storage.luks.0.clevis.custom.pin]",
        ),
        (
            {"storage": {"files": [{"path": "/a", "user": {"id": 1, "name": "x"}}]}},
            "error: user has both id and name; give one [$.storage.files.0.user]",
        ),
        (
            {"systemd": {"units": [{"name": "foo"}]}},
            "error: invalid unit name 'foo': it needs a unit type suffix (.service, .timer, .mount, ...) "
            "and no '/' or spaces [$.systemd.units.0.name]",
        ),
        (
            {"systemd": {"units": [{"name": "a.service", "dropins": [{"name": "x.txt"}]}]}},
            "error: invalid drop-in name 'x.txt': it must end in .conf [$.systemd.units.0.dropins.0.name]",
        ),
        (
            {"systemd": {"units": [{"name": "a.service", "contents": "ExecStart=/x\n"}]}},
            "warning: line 1 of the unit: 'ExecStart=/x' is outside any [Section]; systemd ignores it "
            "[$.systemd.units.0.contents]",
        ),
        (
            {"systemd": {"units": [{"name": "a.service"}, {"name": "a.service"}]}},
            "error: duplicate unit 'a.service' (also at $.systemd.units.0) [$.systemd.units.1.name]",
        ),
        (
            {"passwd": {"users": [{"name": "bad name"}]}},
            "error: invalid account name 'bad name' [$.passwd.users.0.name]",
        ),
        (
            {"passwd": {"users": [{"name": "core", "sshAuthorizedKeys": ["k", "k"]}]}},
            "error: duplicate SSH key [$.passwd.users.0.sshAuthorizedKeys.1]",
        ),
        (
            {"storage": {"filesystems": [{"device": "/dev/sda", "format": "ntfs"}]}},
            "error: unsupported format 'ntfs' (use ext4, btrfs, xfs, vfat, swap, none) "
            "[$.storage.filesystems.0.format]",
        ),
        (
            {"storage": {"disks": [{"device": "sda"}]}},
            "error: device 'sda' must be an absolute path [$.storage.disks.0.device]",
        ),
        (
            {"kernelArguments": {"shouldExist": ["quiet"], "shouldNotExist": ["quiet"]}},
            "error: kernel argument 'quiet' is both in shouldExist and shouldNotExist [$.kernelArguments]",
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
            {"storage": {"files": [{"mode": 420}]}},
            "error: missing required field: 'path' is a required property [$.storage.files.0]",
        ),
        (
            {"storage": {"files": [{"path": "/a", "colour": 1}]}},
            "warning: unknown key 'colour' [$.storage.files.0.colour]",
        ),
        (
            {"storage": {"luks": [{"name": "a", "device": "/dev/sda", "discard": True}]}},
            "warning: unknown key 'discard' [$.storage.luks.0.discard]",
        ),
        (
            {"ignition": {"version": "3.3.0", "config": {"merge": [{"source": "arn:aws:s3:::b/k"}]}}},
            "error: arn: URLs need Ignition spec 3.4.0 (Butane flatcar 1.1.0) "
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


@pytest.mark.parametrize("version", ["2.3.0", "3.2.0", "3.5.0"])
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


def test_butane_schema_errors_point_at_the_yaml_line() -> None:
    # `path` missing: the schema error on the output is blamed on the YAML entry that produced it
    result = run("variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - mode: 0644\n")
    assert messages(result) == [
        "c.yaml:5:7: error: missing required field: 'path' is a required property [$.storage.files.0]"
    ]


def test_several_problems_at_once_never_a_traceback() -> None:
    result = run(
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: a\n      mode: x\n"
        "systemd:\n  units:\n    - name: nosuffix\n      enabled: 3\n"
    )
    assert len([m for m in messages(result) if ": error:" in m]) == 2  # type errors stop before validation
    result = run(
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: a\n"
        "systemd:\n  units:\n    - name: nosuffix\n"
    )
    assert messages(result) == [
        "c.yaml:5:13: error: path 'a' must be absolute [$.storage.files.0.path]",
        "c.yaml:8:13: error: invalid unit name 'nosuffix': it needs a unit type suffix (.service, .timer, "
        ".mount, ...) and no '/' or spaces [$.systemd.units.0.name]",
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
