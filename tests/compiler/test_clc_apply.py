"""CLC configs applied by the REAL Ignition (``-stage files``) into a scratch root: what ends up on
disk is what Flatcar would get (update.conf, drop-ins, networkd files, users, presets, masks)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from flatcar_infra.compiler import compile_config, compile_file
from tests.support.ignition import CORE_USER, User, apply_config, preset_lines, requires_ignition

pytestmark = [pytest.mark.ignition, requires_ignition]

CLC = (
    Path(os.environ["FLATCAR_INFRA_CORPUS"])
    if os.environ.get("FLATCAR_INFRA_CORPUS")
    else Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
) / "clc"
PLATFORMS = {"11": "custom", "12": "ec2"}


def corpus(prefix: str) -> Path:
    (path,) = sorted(CLC.glob(f"{prefix}-*.yaml"))
    return path


def apply_corpus(prefix: str, root: Path, users: list[User]) -> Path:
    compiled = compile_file(corpus(prefix), files_dir=CLC / "files", platform=PLATFORMS.get(prefix))
    return apply_config(compiled.canonical, root, users)


def test_update_and_locksmith(tmp_path: Path) -> None:
    root = apply_corpus("10", tmp_path / "root", [CORE_USER])
    conf = root / "etc/flatcar/update.conf"
    assert conf.read_text() == (
        'GROUP=beta\nREBOOT_STRATEGY="etcd-lock"\nLOCKSMITHD_REBOOT_WINDOW_START="Sun 1:00"\n'
        'LOCKSMITHD_REBOOT_WINDOW_LENGTH="2h"'
    )
    assert oct(conf.stat().st_mode & 0o777) == "0o644"


def test_networkd_unit_file(tmp_path: Path) -> None:
    root = apply_corpus("09", tmp_path / "root", [CORE_USER])
    text = (root / "etc/systemd/network/static.network").read_text()
    assert text.startswith("[Match]\nName=enp2s0\n\n[Network]\nAddress=192.168.0.15/24\n")


def test_users_local_file_ownership_and_preset(tmp_path: Path) -> None:
    # The scratch root only has groups of existing accounts: a "docker" account provides the group
    # the config adds caddy to.
    root = apply_corpus("17", tmp_path / "root", [CORE_USER, User("caddy", 1001), User("docker", 233)])
    png = root / "srv/www/html/froscon.png"
    assert png.read_bytes() == (CLC / "files/froscon_logo_print_color.png").read_bytes()
    assert (png.stat().st_uid, png.stat().st_gid) == (1001, 1001)
    assert "docker:x:233:caddy" in (root / "etc/group").read_text().splitlines()
    assert "enable froscon-demo-webserver.service" in preset_lines(root)
    assert (root / "etc/flatcar/update.conf").read_text() == '\nREBOOT_STRATEGY="off"'


def test_dynamic_data_dropins_and_user_dropins(tmp_path: Path) -> None:
    # clc/11 without its remote file (Ignition would fetch it from example.com; tests stay on loopback)
    text = corpus("11").read_text()
    text = text[text.index("systemd:") :]
    compiled = compile_config(text, filename="11.yaml", platform="custom")
    root = apply_config(compiled.canonical, tmp_path / "root", [CORE_USER])
    dropin = (root / "etc/systemd/system/etcd-member.service.d/20-clct-etcd-member.conf").read_text()
    assert "EnvironmentFile=/run/metadata/flatcar" in dropin
    assert '--initial-cluster="${COREOS_CUSTOM_HOSTNAME}=http://${COREOS_CUSTOM_PRIVATE_IPV4}:2380"' in dropin
    assert (
        (root / "etc/systemd/system/coreos-metadata.service.d/use-script.conf")
        .read_text()
        .endswith("ExecStart=/opt/get-metadata.sh\n")
    )
    assert "enable etcd-member.service" in preset_lines(root)


def test_masks_and_legacy_enable_and_ssh_keys(tmp_path: Path) -> None:
    root_dir = tmp_path / "root"
    compiled = compile_file(corpus("01"))
    root = apply_config(compiled.canonical, root_dir, [CORE_USER])
    assert os.readlink(root / "etc/systemd/system/locksmithd.service") == "/dev/null"
    keys = (root / "home/core/.ssh/authorized_keys.d/ignition").read_text()
    assert keys.startswith("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGf9o2J4lXc7y9x1w3m3pQ0b2oT0cQq3Qm8y2Jv7g4uK")
    assert oct((root / "var/lib/etcd").stat().st_mode & 0o777) == "0o700"
    legacy = compile_file(corpus("14"))
    root14 = apply_config(legacy.canonical, tmp_path / "root14", [CORE_USER])
    assert "enable docker-redis.service" in preset_lines(root14)


def test_rerun_over_an_existing_root_succeeds(tmp_path: Path) -> None:
    """Files are overwrite: true (spec 2's default), so Ignition can run again over the same root,
    as reprovisioning in place does."""
    text = textwrap.dedent("""
        storage:
          files:
            - path: /etc/motd.d/hello.conf
              mode: 0644
              contents: {inline: "hello\\n"}
        docker:
          flags: [--log-level=warn]
    """)
    compiled = compile_config(text, filename="cl.yaml")
    root = apply_config(compiled.canonical, tmp_path / "root", [CORE_USER], work=tmp_path / "w1")
    (root / "etc/motd.d/hello.conf").write_text("changed\n")
    apply_config(compiled.canonical, root, [CORE_USER], work=tmp_path / "w2")
    assert (root / "etc/motd.d/hello.conf").read_text() == "hello\n"
    assert (root / "etc/systemd/system/docker.service.d/20-clct-docker.conf").read_text() == (
        '[Service]\nEnvironment="DOCKER_OPTS=--log-level=warn"'
    )
