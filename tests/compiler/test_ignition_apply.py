"""Compiled Butane applied by the REAL Ignition (fetch + files stages) into a scratch root, and the
resulting tree checked: contents, modes, owners, links, units, drop-ins, presets, SSH keys."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from flatcar_infra.compiler import compile_config
from tests.support.ignition import (
    CORE_USER,
    IgnitionFailed,
    User,
    apply_config,
    assert_applied,
    ignition_validate,
    preset_lines,
    requires_ignition,
)

pytestmark = [pytest.mark.ignition, requires_ignition]

BIG = "".join(f"line {i % 5} of a compressible file\n" for i in range(300))


def files_dir(tmp_path: Path) -> Path:
    d = tmp_path / "files"
    (d / "tree" / "bin").mkdir(parents=True)
    (d / "motd").write_text("welcome\n")
    (d / "keys.pub").write_text("ssh-ed25519 AAAAlocal1 one@x\nssh-ed25519 AAAAlocal2 two@x\n")
    (d / "app.service").write_text(
        "[Unit]\nDescription=app\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
    )
    (d / "tree" / "README").write_text("tree file\n")
    (d / "tree" / "bin" / "tool").write_text("#!/bin/sh\necho tool\n")
    (d / "tree" / "bin" / "tool").chmod(0o755)
    os.symlink("bin/tool", d / "tree" / "tool-link")
    return d


CONFIG = """\
variant: flatcar
version: {version}
passwd:
  users:
    - name: core
      ssh_authorized_keys: ["ssh-ed25519 AAAAinline core@x"]
      {keys_local}
    - name: alice
      uid: 1500
      groups: [wheel]
  groups:
    - name: wheel
      gid: 1600
storage:
  directories:
    - path: /opt/app
      mode: 0750
      user: {{name: core}}
      group: {{id: 500}}
  files:
    - path: /etc/motd
      mode: 0600
      overwrite: true
      contents:
        local: motd
      append:
        - inline: "appended\\n"
    - path: /opt/app/big.txt
      contents:
        inline: |
{big}
      user: {{id: 1500}}
    - path: /etc/flatcar/update.conf
      mode: 0420
      contents:
        inline: REBOOT_STRATEGY=off
  links:
    - path: /etc/motd-link
      target: /etc/motd
    - path: /opt/app/hard
      target: /etc/flatcar/update.conf
      hard: true
  filesystems:
    - device: /dev/disk/by-label/data-disk
      format: ext4
      path: /var/lib/data
      with_mount_unit: true
  trees:
    - local: tree
      path: /opt/tree
systemd:
  units:
    - name: app.service
      enabled: true
      {unit_contents}
      dropins:
        - name: 10-env.conf
          contents: "[Service]\\nEnvironment=A=1\\n"
    - name: locksmithd.service
      mask: true
"""


def render(version: str) -> str:
    big = "".join("          " + line + "\n" for line in BIG.splitlines())
    if version == "1.1.0":
        return CONFIG.format(
            version=version,
            keys_local="ssh_authorized_keys_local: [keys.pub]",
            unit_contents="contents_local: app.service",
            big=big.rstrip("\n"),
        )
    return CONFIG.format(
        version=version,
        keys_local="",
        unit_contents='contents: "[Unit]\\nDescription=app\\n[Service]\\nExecStart=/bin/true\\n'
        '[Install]\\nWantedBy=multi-user.target\\n"',
        big=big.rstrip("\n"),
    )


def mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_apply_representative_config(tmp_path: Path, version: str) -> None:
    compiled = compile_config(render(version), filename="c.yaml", files_dir=files_dir(tmp_path))
    assert compiled.version == {"1.0.0": "3.3.0", "1.1.0": "3.4.0"}[version]
    ignition_validate(compiled.canonical)
    big = next(f for f in compiled.ignition["storage"]["files"] if f["path"] == "/opt/app/big.txt")
    assert big["contents"]["compression"] == "gzip"

    root = apply_config(compiled.canonical, tmp_path / "root", users=[CORE_USER])

    motd = root / "etc/motd"
    assert motd.read_text() == "welcome\nappended\n"
    assert mode(motd) == 0o600
    assert (root / "opt/app/big.txt").read_text() == BIG
    assert (root / "opt/app/big.txt").stat().st_uid == 1500
    assert mode(root / "etc/flatcar/update.conf") == 0o420
    app_dir = root / "opt/app"
    assert mode(app_dir) == 0o750 and app_dir.stat().st_uid == 500 and app_dir.stat().st_gid == 500
    assert os.readlink(root / "etc/motd-link") == "/etc/motd"
    assert (root / "opt/app/hard").stat().st_ino == (root / "etc/flatcar/update.conf").stat().st_ino
    # trees: modes from the executable bit, symlinks kept
    assert (root / "opt/tree/README").read_text() == "tree file\n"
    assert mode(root / "opt/tree/README") == 0o644
    assert mode(root / "opt/tree/bin/tool") == 0o755
    assert os.readlink(root / "opt/tree/tool-link") == "bin/tool"
    # units, drop-ins, masks, presets, generated mount unit
    sysd = root / "etc/systemd/system"
    assert "ExecStart=/bin/true" in (sysd / "app.service").read_text()
    assert (sysd / "app.service.d/10-env.conf").read_text() == "[Service]\nEnvironment=A=1\n"
    assert os.readlink(sysd / "locksmithd.service") == "/dev/null"
    mount = (sysd / "var-lib-data.mount").read_text()
    assert "Where=/var/lib/data\nWhat=/dev/disk/by-label/data-disk\nType=ext4" in mount
    assert sorted(preset_lines(root)) == ["enable app.service", "enable var-lib-data.mount"]
    # users, groups, SSH keys
    keys = (root / "home/core/.ssh/authorized_keys.d/ignition").read_text().splitlines()
    expected = ["ssh-ed25519 AAAAinline core@x"]
    if version == "1.1.0":
        expected += ["ssh-ed25519 AAAAlocal1 one@x", "ssh-ed25519 AAAAlocal2 two@x"]
    assert keys == expected
    assert (root / "home/core/.ssh/authorized_keys.d/ignition").stat().st_uid == 500
    passwd = (root / "etc/passwd").read_text()
    assert "alice:x:1500:" in passwd
    assert "wheel:x:1600:alice" in (root / "etc/group").read_text()
    # the generic checker agrees, and it notices a difference
    assert assert_applied(compiled.ignition, root) >= 12
    (root / "opt/tree/README").chmod(0o600)
    with pytest.raises(AssertionError, match="/opt/tree/README"):
        assert_applied(compiled.ignition, root)


def test_rerun_without_overwrite_fails_like_on_a_host(tmp_path: Path) -> None:
    """The harness reports Ignition's failures (with the log), e.g. a file that already exists."""
    compiled = compile_config(
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/x\n"
        "      contents: {inline: x}\n"
    )
    root = apply_config(compiled.canonical, tmp_path / "root", users=[User("core", 500)])
    with pytest.raises(IgnitionFailed, match="overwrite is false"):
        apply_config(compiled.canonical, root, users=[User("core", 500)], work=tmp_path / "w2")
