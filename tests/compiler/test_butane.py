"""Butane flatcar 1.0.0/1.1.0 → Ignition 3.3.0/3.4.0, section by section (goldens)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.compiler.helpers import contents, messages, ok, run

V10 = "variant: flatcar\nversion: 1.0.0\n"
V11 = "variant: flatcar\nversion: 1.1.0\n"


def test_versions_map_to_ignition_specs() -> None:
    assert ok(V10) == {"ignition": {"version": "3.3.0"}}
    assert ok(V11) == {"ignition": {"version": "3.4.0"}}


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        ("variant: fcos\nversion: 1.0.0\n", "c.yaml:1:10: error: unsupported variant 'fcos'"),
        (
            "variant: flatcar\nversion: 1.3.0\n",
            "c.yaml:2:10: error: No translator exists for variant flatcar with version 1.3.0",
        ),
        ("variant: flatcar\n", "c.yaml:1:1: error: missing 'version'"),
    ],
)
def test_header_errors(head: str, expected: str) -> None:
    result = run(head)
    assert result.document is None
    assert messages(result)[0].startswith(expected)


def test_files_inline_source_mode_owner_append() -> None:
    doc = ok(
        V10
        + """\
storage:
  files:
    - path: /etc/motd
      mode: 0644
      overwrite: true
      user: {name: core}
      group: {id: 500}
      contents:
        inline: no
      append:
        - inline: "more\\n"
        - source: https://example.com/x
          verification:
            hash: sha256-"""
        + "a" * 64
        + """
    - path: /opt/big
      contents:
        inline: |
"""
        + "".join(f"          line {i % 3} of a repetitive file\n" for i in range(200))
        + """\
    - path: /opt/remote
      contents:
        source: https://example.com/x.gz
        compression: gzip
        http_headers:
          - name: Authorization
            value: Bearer x
"""
    )
    files = doc["storage"]["files"]
    assert files[0] == {
        "path": "/etc/motd",
        "mode": 0o644,
        "overwrite": True,
        "user": {"name": "core"},
        "group": {"id": 500},
        "contents": {"source": "data:,no", "compression": ""},  # a string field: `no` stays the string "no"
        "append": [
            {"source": "data:,more%0A", "compression": ""},
            {"source": "https://example.com/x", "verification": {"hash": "sha256-" + "a" * 64}},
        ],
    }
    big = files[1]["contents"]
    assert big["compression"] == "gzip"  # smaller compressed
    assert contents(big["source"], "gzip").startswith(b"line 0 of a repetitive file\nline 1")
    assert files[2]["contents"] == {
        "source": "https://example.com/x.gz",
        "compression": "gzip",
        "httpHeaders": [{"name": "Authorization", "value": "Bearer x"}],
    }


def test_local_contents_and_escape_attempts(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("hello\n")
    (tmp_path / "secret").write_text("no\n")
    os.symlink("../secret", tmp_path / "files" / "link")
    doc = ok(
        V10 + "storage:\n  files:\n    - path: /a\n      contents:\n        local: a.txt\n",
        files_dir=tmp_path / "files",
    )
    assert doc["storage"]["files"][0]["contents"] == {"source": "data:,hello%0A", "compression": ""}
    for local in ("../secret", "link", "/../secret"):
        result = run(
            V10 + f"storage:\n  files:\n    - path: /a\n      contents:\n        local: {local}\n",
            files_dir=tmp_path / "files",
        )
        assert result.document is None
        assert (
            f"c.yaml:7:16: error: local file path '{local}' traverses outside the files directory"
            in messages(result)[0]
        )
    result = run(V10 + "storage:\n  files:\n    - path: /a\n      contents:\n        local: a.txt\n")
    assert "must be specified with -d/--files-dir" in messages(result)[0]
    result = run(
        V10 + "storage:\n  files:\n    - path: /a\n      contents:\n        local: nope\n",
        files_dir=tmp_path / "files",
    )
    assert "c.yaml:7:16: error: cannot read local file 'nope'" in messages(result)[0]


def test_resource_sources_are_exclusive() -> None:
    result = run(
        V10 + "storage:\n  files:\n    - path: /a\n      contents:\n        inline: x\n"
        "        source: https://x\n"
    )
    # Butane reports at the last of local, inline, source that is set
    assert messages(result) == [
        "c.yaml:8:17: error: only one of the following can be set: inline, local, source "
        "(found inline, source) [$.storage.files.0.contents.source]"
    ]


def test_directories_links_and_decimal_mode_warning() -> None:
    result = run(
        V10
        + """\
storage:
  directories:
    - path: /opt/d
      mode: 755
  links:
    - path: /etc/l
      target: /opt/d
      hard: false
"""
    )
    assert result.document is not None
    assert result.document["storage"]["directories"] == [{"path": "/opt/d", "mode": 755}]
    assert result.document["storage"]["links"] == [{"path": "/etc/l", "target": "/opt/d", "hard": False}]
    assert messages(result) == [
        "c.yaml:6:13: warning: mode 755 is decimal (= 01363); did you mean 0755? It is an unreasonable "
        "mode that would be reasonable in octal: write modes with a leading zero "
        "[$.storage.directories.0.mode]"
    ]


def test_booleans_only_where_the_field_is_boolean() -> None:
    doc = ok(
        V10 + "systemd:\n  units:\n    - name: a.service\n      enabled: yes\n      mask: off\n"
        '      contents: "[Unit]\\n"\n'
    )
    assert doc["systemd"]["units"][0] == {
        "name": "a.service",
        "enabled": True,
        "mask": False,
        "contents": "[Unit]\n",
    }
    result = run(V10 + "systemd:\n  units:\n    - name: a.service\n      enabled: maybe\n")
    assert messages(result) == [
        "c.yaml:6:16: error: expected a boolean (true/false), found 'maybe' [$.systemd.units.0.enabled]"
    ]


def test_units_dropins_and_contents_local(tmp_path: Path) -> None:
    (tmp_path / "u.service").write_text("[Service]\nExecStart=/bin/true\n")
    (tmp_path / "d.conf").write_text("[Service]\nRestart=always\n")
    src = """\
systemd:
  units:
    - name: u.service
      enabled: true
      contents_local: u.service
      dropins:
        - name: 10-x.conf
          contents_local: d.conf
"""
    doc = ok(V11 + src, files_dir=tmp_path)
    assert doc["systemd"]["units"] == [
        {
            "name": "u.service",
            "enabled": True,
            "contents": "[Service]\nExecStart=/bin/true\n",
            "dropins": [{"name": "10-x.conf", "contents": "[Service]\nRestart=always\n"}],
        }
    ]
    result = run(V10 + src, files_dir=tmp_path)
    assert messages(result) == [
        "c.yaml:7:7: error: 'contents_local' is not supported in flatcar 1.0.0; it needs version 1.1.0 "
        "or newer [$.systemd.units.0.contents_local]",
        "c.yaml:10:11: error: 'contents_local' is not supported in flatcar 1.0.0; it needs version 1.1.0 "
        "or newer [$.systemd.units.0.dropins.0.contents_local]",
    ]


def test_passwd_all_fields_and_local_keys(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text("ssh-ed25519 AAAA one\r\n\nssh-ed25519 BBBB two\n")
    doc = ok(
        V11
        + """\
passwd:
  users:
    - name: core
      password_hash: "$6$x"
      ssh_authorized_keys: ["ssh-ed25519 CCCC three"]
      ssh_authorized_keys_local: [keys]
      uid: 1001
      gecos: Core
      home_dir: /home/core
      no_create_home: false
      primary_group: core
      groups: [docker, sudo]
      no_user_group: true
      no_log_init: true
      shell: /bin/bash
      should_exist: true
      system: false
  groups:
    - name: docker
      gid: 233
      password_hash: "!"
      should_exist: true
      system: true
kernel_arguments:
  should_exist: [quiet]
  should_not_exist: [splash]
""",
        files_dir=tmp_path,
    )
    assert doc["passwd"] == {
        "users": [
            {
                "name": "core",
                "passwordHash": "$6$x",
                "sshAuthorizedKeys": [
                    "ssh-ed25519 CCCC three",
                    "ssh-ed25519 AAAA one",
                    "ssh-ed25519 BBBB two",
                ],
                "uid": 1001,
                "gecos": "Core",
                "homeDir": "/home/core",
                "noCreateHome": False,
                "primaryGroup": "core",
                "groups": ["docker", "sudo"],
                "noUserGroup": True,
                "noLogInit": True,
                "shell": "/bin/bash",
                "shouldExist": True,
                "system": False,
            }
        ],
        "groups": [{"name": "docker", "gid": 233, "passwordHash": "!", "shouldExist": True, "system": True}],
    }
    assert doc["kernelArguments"] == {"shouldExist": ["quiet"], "shouldNotExist": ["splash"]}


def test_luks_11_only_fields() -> None:
    src = """\
storage:
  luks:
    - name: data
      device: /dev/sdb
      discard: true
      open_options: [--perf-no_read_workqueue]
      wipe_volume: true
      key_file:
        inline: secret
"""
    doc = ok(V11 + src)
    assert doc["storage"]["luks"] == [
        {
            "name": "data",
            "device": "/dev/sdb",
            "discard": True,
            "openOptions": ["--perf-no_read_workqueue"],
            "wipeVolume": True,
            "keyFile": {"source": "data:,secret", "compression": ""},
        }
    ]
    errs = [m for m in messages(run(V10 + src)) if "error" in m]
    assert errs == [
        "c.yaml:7:7: error: 'discard' is not supported in flatcar 1.0.0; it needs version 1.1.0 or newer "
        "[$.storage.luks.0.discard]",
        "c.yaml:8:7: error: 'open_options' is not supported in flatcar 1.0.0; it needs version 1.1.0 or "
        "newer [$.storage.luks.0.open_options]",
    ]


def test_disks_raid_filesystems_and_mount_units() -> None:
    doc = ok(
        V10
        + """\
storage:
  disks:
    - device: /dev/sdb
      wipe_table: true
      partitions:
        - label: data-1
          number: 1
          size_mib: 1024
          start_mib: 0
          type_guid: 0FC63DAF-8483-4772-8E79-3D69D8477DE4
          guid: 11111111-2222-3333-4444-555555555555
          wipe_partition_entry: true
          should_exist: true
          resize: false
        - label: swap
  raid:
    - name: md0
      level: raid1
      devices: [/dev/sdc, /dev/sdd]
      spares: 0
      options: [--assume-clean]
  filesystems:
    - device: /dev/disk/by-partlabel/data-1
      format: xfs
      path: /var/lib/data
      wipe_filesystem: true
      label: DATA
      uuid: 11111111-2222-3333-4444-555555555555
      options: [-m, reflink=1]
      mount_options: [noatime]
      with_mount_unit: true
    - device: /dev/disk/by-partlabel/swap
      format: swap
      with_mount_unit: true
systemd:
  units:
    - name: var-lib-data.mount
      enabled: false
"""
    )
    st = doc["storage"]
    assert st["disks"][0]["partitions"][0] == {
        "label": "data-1",
        "number": 1,
        "sizeMiB": 1024,
        "startMiB": 0,
        "typeGuid": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
        "guid": "11111111-2222-3333-4444-555555555555",
        "wipePartitionEntry": True,
        "shouldExist": True,
        "resize": False,
    }
    assert st["raid"] == [
        {
            "name": "md0",
            "level": "raid1",
            "devices": ["/dev/sdc", "/dev/sdd"],
            "spares": 0,
            "options": ["--assume-clean"],
        }
    ]
    assert st["filesystems"][0]["mountOptions"] == ["noatime"]
    assert "with_mount_unit" not in st["filesystems"][0]
    units = doc["systemd"]["units"]
    assert [u["name"] for u in units] == ["var-lib-data.mount", r"dev-disk-by\x2dpartlabel-swap.swap"]
    # the user's own unit of the same name is merged over the generated one
    assert units[0]["enabled"] is False
    assert (
        "Where=/var/lib/data\nWhat=/dev/disk/by-partlabel/data-1\nType=xfs\nOptions=noatime"
        in units[0]["contents"]
    )


def test_with_mount_unit_needs_path_and_format() -> None:
    result = run(
        V10 + "storage:\n  filesystems:\n    - device: /dev/sdb\n      format: ext4\n"
        "      with_mount_unit: true\n"
    )
    assert messages(result) == [
        "c.yaml:7:24: error: path is required if with_mount_unit is true and format is not swap "
        "[$.storage.filesystems.0.path]"
    ]


def test_ignition_section() -> None:
    doc = ok(
        V11
        + """\
ignition:
  config:
    merge:
      - source: arn:aws:s3:us-east-1::bucket/key
      - inline: '{"ignition": {"version": "3.4.0"}}'
    replace:
      source: https://example.com/c.ign
      http_headers: [{name: X, value: y}]
      verification: {hash: sha512-"""
        + "0" * 128
        + """}
  timeouts:
    http_response_headers: 20
    http_total: 600
  security:
    tls:
      certificate_authorities:
        - inline: "-----BEGIN CERTIFICATE-----\\n"
  proxy:
    http_proxy: http://proxy:3128
    https_proxy: http://proxy:3128
    no_proxy: [localhost, .internal]
"""
    )
    ign = doc["ignition"]
    assert ign["version"] == "3.4.0"
    assert ign["config"]["merge"][0] == {"source": "arn:aws:s3:us-east-1::bucket/key"}
    assert contents(ign["config"]["merge"][1]["source"]) == b'{"ignition": {"version": "3.4.0"}}'
    assert ign["config"]["replace"]["httpHeaders"] == [{"name": "X", "value": "y"}]
    assert ign["timeouts"] == {"httpResponseHeaders": 20, "httpTotal": 600}
    assert ign["proxy"] == {
        "httpProxy": "http://proxy:3128",
        "httpsProxy": "http://proxy:3128",
        "noProxy": ["localhost", ".internal"],
    }
    assert contents(ign["security"]["tls"]["certificateAuthorities"][0]["source"]).startswith(b"-----BEGIN")


def test_arn_is_34_only_and_embedded_configs_are_checked() -> None:
    result = run(V10 + "ignition:\n  config:\n    merge:\n      - source: arn:aws:s3:::b/k\n")
    assert messages(result) == [
        "c.yaml:6:17: error: invalid url scheme 'arn': it needs Ignition spec 3.4.0 or newer "
        "[$.ignition.config.merge.0.source]"
    ]
    result = run(V10 + "ignition:\n  config:\n    replace:\n      inline: '{\"ignition\": {}}'\n")
    assert messages(result) == [
        "c.yaml:6:15: warning: skipping validation for the merge/replace ignition config due to an "
        "unknown version None (flatcar 1.0.0 validates Ignition 3.3.0) [$.ignition.config.replace.version]"
    ]


def test_unknown_keys_warn_and_clc_syntax_is_an_error() -> None:
    result = run(V10 + "storage:\n  files:\n    - path: /a\n      filesystem: root\n      colour: red\n")
    assert messages(result) == [
        "c.yaml:6:7: error: 'filesystem' is Container Linux Config syntax; Butane files have no filesystem "
        "(paths are absolute in the real root) [$.storage.files.0.filesystem]",
        "c.yaml:7:7: warning: unused key 'colour' (not part of flatcar 1.0.0) [$.storage.files.0.colour]",
    ]


def test_trees_expand_sorted_with_modes_and_overrides(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "b.txt").write_text("b\n")
    (tree / "sub" / "run.sh").write_text("#!/bin/sh\n")
    (tree / "sub" / "run.sh").chmod(0o755)
    (tree / "a.txt").write_text("a\n")
    os.symlink("a.txt", tree / "lnk")
    doc = ok(
        V10
        + """\
storage:
  trees:
    - local: tree
      path: /etc/app
  files:
    - path: /etc/app/b.txt
      mode: 0600
""",
        files_dir=tmp_path,
    )
    files = {f["path"]: f for f in doc["storage"]["files"]}
    assert [f["path"] for f in doc["storage"]["files"]] == [
        "/etc/app/b.txt",
        "/etc/app/a.txt",
        "/etc/app/sub/run.sh",
    ]
    assert files["/etc/app/b.txt"] == {
        "path": "/etc/app/b.txt",
        "mode": 0o600,
        "contents": {"source": "data:,b%0A", "compression": ""},
    }
    assert files["/etc/app/a.txt"]["mode"] == 0o644
    assert files["/etc/app/sub/run.sh"]["mode"] == 0o755
    assert doc["storage"]["links"] == [{"path": "/etc/app/lnk", "target": "a.txt"}]
    # an explicit file WITH contents at a tree path is a conflict
    result = run(
        V10 + "storage:\n  trees:\n    - local: tree\n  files:\n    - path: /a.txt\n"
        "      contents: {inline: x}\n",
        files_dir=tmp_path,
    )
    assert (
        "c.yaml:5:7: error: matching filesystem node has existing contents or different type: /a.txt"
        in messages(result)[0]
    )


def test_output_is_deterministic(tmp_path: Path) -> None:
    from flatcar_infra.compiler import compile_config

    src = (
        V10
        + "storage:\n  files:\n"
        + "".join(f"    - path: /f{i}\n      contents: {{inline: '{i}'}}\n" for i in range(30))
    )
    first = compile_config(src).canonical
    assert all(compile_config(src).canonical == first for _ in range(3))


def test_local_fifo_and_directory_are_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    for name, what in (("fifo", "not a regular file"), ("dir", "a directory")):
        result = run(
            V10 + f"storage:\n  files:\n    - path: /a\n      contents:\n        local: {name}\n",
            files_dir=tmp_path,
        )
        assert messages(result) == [
            f"c.yaml:7:16: error: local file '{name}' is {what} [$.storage.files.0.contents.local]"
        ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "systemd:\n  units:\n    - name: a.service\n      contents: x\n      contents_local: a\n",
            "c.yaml:7:7: error: only one of the following can be set: contents, contents_local "
            "[$.systemd.units.0.contents_local]",
        ),
        (
            "storage:\n  trees:\n    - path: /x\n",
            "c.yaml:5:7: error: local is required [$.storage.trees.0]",
        ),
        (
            "storage:\n  trees:\n    - local: a\n",
            "c.yaml:5:7: error: root of tree must be a directory [$.storage.trees.0]",
        ),
        (
            "passwd:\n  users:\n    - name: core\n      uid: abc\n",
            "c.yaml:6:12: error: expected an integer, found 'abc' [$.passwd.users.0.uid]",
        ),
        (
            "passwd:\n  users: {name: core}\n",
            "c.yaml:4:10: error: expected a list, found a mapping [$.passwd.users]",
        ),
        (
            "passwd:\n  users:\n    - name: core\n      ssh_authorized_keys_local: [nope]\n",
            "c.yaml:6:35: error: cannot read local file 'nope': No such file or directory "
            "[$.passwd.users.0.ssh_authorized_keys_local.0]",
        ),
    ],
)
def test_more_error_goldens(tmp_path: Path, body: str, expected: str) -> None:
    (tmp_path / "a").write_text("[Unit]\n")
    result = run(V11 + body, files_dir=tmp_path)
    assert result.document is None
    assert messages(result) == [expected]


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "variant: flatcar\nversion: [1]\n"])
def test_non_mapping_configs(text: str) -> None:
    result = run(text)
    assert result.document is None and any(d.is_error and d.line > 0 for d in result.diagnostics)


def test_setuid_bits_warn_before_spec_36() -> None:
    """Ignition before spec 3.6.0 does not apply setuid/setgid/sticky bits (coreos/ignition#2042):
    Ignition 2.26 warns for every spec we emit, so do we."""
    src = "storage:\n  files:\n    - path: /opt/bin/x\n      mode: 04755\n"
    warning = (
        "c.yaml:6:13: warning: setuid/setgid/sticky bits are not supported or functional in spec versions "
        "older than 3.6.0 (mode 04755): Ignition may not apply them [$.storage.files.0.mode]"
    )
    assert messages(run(V10 + src)) == [warning]
    assert messages(run(V11 + src)) == [warning]
    assert ok(V11 + src)["storage"]["files"][0]["mode"] == 0o4755


# --- Butane's exact decisions where users see them ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("True", True),
        ("yes", True),
        ("ON", True),
        ("'yes'", True),  # go-yaml v3 takes the YAML 1.1 words into a boolean field, quoted or not
        ("n", False),
        ("Off", False),
        ("tRuE", None),  # but not any other spelling
        ("'true'", None),  # and a quoted YAML 1.2 boolean is a string
        ("1", None),
    ],
)
def test_boolean_fields_take_what_go_yaml_v3_takes(value: str, expected: bool | None) -> None:
    result = run(V10 + f"systemd:\n  units:\n    - name: a.service\n      mask: {value}\n")
    if expected is None:
        assert result.document is None
        assert "expected a boolean" in messages(result)[0]
    else:
        assert result.document is not None
        assert result.document["systemd"]["units"][0]["mask"] is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0644", 0o644), ("0o644", 0o644), ("0x1a4", 0o644), ("420", 0o644), ("0_644", 0o644), ("'0644'", None)],
)
def test_integer_fields_take_what_go_yaml_v3_takes(value: str, expected: int | None) -> None:
    result = run(V10 + f"storage:\n  files:\n    - path: /a\n      mode: {value}\n")
    if expected is None:
        assert "expected an integer" in messages(result)[0]
    else:
        assert result.document is not None and result.document["storage"]["files"][0]["mode"] == expected


def test_string_fields_take_any_scalar_text() -> None:
    doc = ok(V10 + "passwd:\n  users:\n    - name: core\n      gecos: 0644\n      shell: no\n")
    assert doc["passwd"]["users"][0] == {"name": "core", "gecos": "0644", "shell": "no"}


def test_yaml_merge_keys() -> None:
    doc = ok(
        V10
        + """\
defaults: &unit
  enabled: true
  contents: "[Service]\\nExecStart=/bin/true\\n[Install]\\nWantedBy=multi-user.target"
systemd:
  units:
    - <<: *unit
      name: a.service
    - <<: *unit
      name: b.service
      enabled: false
"""
    )
    units = doc["systemd"]["units"]
    assert [(u["name"], u["enabled"]) for u in units] == [("a.service", True), ("b.service", False)]


@pytest.mark.parametrize(
    ("mode", "warns"),
    [(420, False), (644, True), (400, True), (600, True), (755, True), (2755, True), (4755, True),
     (777, True), (0, False), (7, False), (1000, False), (888, False)],
)  # fmt: skip
def test_decimal_mode_warning_is_butanes_heuristic(mode: int, warns: bool) -> None:
    """420 (= 0644, what every YAML serializer writes) is a reasonable mode: no warning; 644 is not."""
    result = run(V11 + f"storage:\n  files:\n    - path: /a\n      mode: {mode}\n")
    decimal = [m for m in messages(result) if "is decimal" in m]
    assert bool(decimal) is warns, messages(result)


def test_flatcar_1_2_0_experimental_takes_clevis_and_tang_advertisements() -> None:
    src = (
        "variant: flatcar\nversion: 1.2.0-experimental\nstorage:\n  luks:\n    - name: data\n"
        "      device: /dev/sdb\n      clevis:\n        tang:\n          - url: https://tang.example.com\n"
        '            thumbprint: abc\n            advertisement: \'{"payload": "x"}\'\n'
        "  filesystems:\n    - device: /dev/mapper/data\n      format: xfs\n      path: /srv\n"
        "      with_mount_unit: true\n"
    )
    result = run(src)
    assert result.document is not None, messages(result)
    assert result.document["ignition"]["version"] == "3.5.0-experimental"
    tang = result.document["storage"]["luks"][0]["clevis"]["tang"][0]
    assert tang["advertisement"] == '{"payload": "x"}'
    (unit,) = result.document["systemd"]["units"]
    assert "Options=_netdev" in unit["contents"] and "RequiredBy=remote-fs.target" in unit["contents"]
    bad = run(src.replace('\'{"payload": "x"}\'', "'{not json'"))
    assert messages(bad) == [
        "c.yaml:11:28: error: advertisement is not valid JSON [$.storage.luks.0.clevis.tang.0.advertisement]"
    ]
    older = run(src.replace("1.2.0-experimental", "1.1.0"))
    assert [d.path for d in older.diagnostics if d.is_error] == ["$.storage.luks.0.clevis"]


def test_tree_order_is_go_walk_order(tmp_path: Path) -> None:
    """Go's filepath.Walk visits ``b`` (a directory) and its contents before ``b.txt``: a plain
    sort of the relative paths would not ('.' < '/')."""
    tree = tmp_path / "t"
    (tree / "b").mkdir(parents=True)
    (tree / "b" / "c").write_text("c")
    (tree / "b.txt").write_text("b")
    (tree / "a").write_text("a")
    doc = ok(V10 + "storage:\n  trees:\n    - local: t\n", files_dir=tmp_path)
    assert [f["path"] for f in doc["storage"]["files"]] == ["/a", "/b/c", "/b.txt"]


def test_versions_come_from_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new Butane version is one row: it translates, and errors name it."""
    from flatcar_infra.compiler import versions

    row = versions.ButaneVersion("1.9.0", "3.4.0", added=frozenset({"storage.luks.discard"}))
    monkeypatch.setitem(versions.BUTANE_VERSIONS, "1.9.0", row)
    doc = ok("variant: flatcar\nversion: 1.9.0\n")
    assert doc == {"ignition": {"version": "3.4.0"}}
    assert "1.9.0 (Ignition 3.4.0)" in messages(run("variant: flatcar\nversion: 7.0.0\n"))[0]
