"""The test bed's parts that run without booting a VM: pointer config, QEMU command line, image
layout helpers, load-scaled waits, the bucket server, the guestfwd relay and the QMP client
(against a real, machine-less QEMU). The stand-in's flatcar-reset and initramfs scripts have their
own contract tests in tests/testbed/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from flatcar_infra.errors import UserError
from flatcar_infra.testbed import image
from flatcar_infra.testbed.bucket import GUEST_BUCKET_HOST, LocalBucket, pointer_config
from flatcar_infra.testbed.machines import USER_DATA_SLOT, padded_pointer
from flatcar_infra.testbed.qmp import qmp_command
from flatcar_infra.testbed.vm import (
    EMERGENCY_TIMEOUT_FW_CFG,
    FLATCAR_FW_CFG,
    RELAY,
    STANDIN_FW_CFG,
    Deadline,
    VmSpec,
    qemu_command,
    time_scale,
)

FILES = Path(image.__file__).parent / "files"


# ---- pointer config -----------------------------------------------------------------------------


def test_pointer_config_is_stable_and_valid(tmp_path: Path) -> None:
    url = "http://10.0.2.100/bucket/web/config.ign"
    first = pointer_config(url)
    assert first == pointer_config(url)  # same bytes every time: user-data never changes
    assert json.loads(first) == {"ignition": {"version": "3.3.0", "config": {"replace": {"source": url}}}}
    assert b"sha512" not in first
    if shutil.which("ignition-validate"):
        (tmp_path / "p.ign").write_bytes(first)
        subprocess.run(["ignition-validate", str(tmp_path / "p.ign")], check=True)


# ---- QEMU command line --------------------------------------------------------------------------


def _spec(tmp_path: Path, **kw: object) -> VmSpec:
    base: dict[str, object] = dict(
        name="t",
        overlay=tmp_path / "o.qcow2",
        user_data_file=tmp_path / "u.json",
        ssh_port=2222,
        bucket_port=9000,
        serial_log=tmp_path / "s.log",
        qmp_socket=tmp_path / "q.sock",
        pidfile=tmp_path / "p",
    )
    base.update(kw)
    return VmSpec(**base)  # type: ignore[arg-type]


def test_qemu_network_is_restricted_with_one_forward_to_the_bucket(tmp_path: Path) -> None:
    cmd = qemu_command(_spec(tmp_path))
    netdev = cmd[cmd.index("-netdev") + 1]
    assert netdev.startswith("user,") and "restrict=on" in netdev.split(",")
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in netdev
    assert netdev.count("guestfwd=") == 1 and netdev.count("hostfwd=") == 1
    assert f"guestfwd=tcp:{GUEST_BUCKET_HOST}:80-cmd:" in netdev and netdev.endswith(f"{RELAY} 9000")
    assert cmd.count("-nic") == 0 and "-nodefaults" in cmd
    assert f"name={STANDIN_FW_CFG},file={tmp_path / 'u.json'}" in cmd
    assert "-daemonize" not in cmd and "-daemonize" in qemu_command(_spec(tmp_path), daemonize=True)


def test_qemu_command_for_a_real_flatcar_image(tmp_path: Path) -> None:
    cmd = qemu_command(_spec(tmp_path, bucket_port=None, fw_cfg_name=FLATCAR_FW_CFG, accel="kvm"))
    assert f"name=opt/org.flatcar-linux/config,file={tmp_path / 'u.json'}" in cmd
    assert "guestfwd" not in " ".join(cmd)
    assert cmd[cmd.index("-accel") + 1] == "kvm"


def test_qemu_command_carries_the_emergency_timeout_and_resumes_snapshots(tmp_path: Path) -> None:
    cmd = qemu_command(_spec(tmp_path))
    assert f"name={EMERGENCY_TIMEOUT_FW_CFG},string=000300" in cmd  # Flatcar's 300 s unless a test asks
    assert "-incoming" not in cmd and "vmgenid,guid=auto" in cmd
    cmd = qemu_command(_spec(tmp_path, emergency_timeout=20, incoming=tmp_path / "state.zst"))
    assert f"name={EMERGENCY_TIMEOUT_FW_CFG},string=000020" in cmd
    assert cmd[cmd.index("-incoming") + 1] == f"exec:zstd -q -d -c {tmp_path / 'state.zst'}"


def test_padded_pointer_is_one_size_and_still_a_valid_config(tmp_path: Path) -> None:
    url = "http://10.0.2.100/bucket/some-vm/config.ign"
    data = padded_pointer(url)
    assert len(data) == len(padded_pointer(url + "-longer")) == USER_DATA_SLOT
    assert json.loads(data) == json.loads(pointer_config(url)) and data.rstrip(b" ") == pointer_config(url)
    if shutil.which("ignition-validate") or os.environ.get("CI"):
        (tmp_path / "p.ign").write_bytes(data)
        subprocess.run(["ignition-validate", str(tmp_path / "p.ign")], check=True)


def test_waits_stretch_with_the_load_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLATCAR_INFRA_TIME_SCALE", "3")
    assert time_scale() == 3.0
    deadline = Deadline(10)
    assert 29 < deadline.remaining() <= 30 and not deadline.expired()
    monkeypatch.setenv("FLATCAR_INFRA_TIME_SCALE", "1")
    assert deadline.remaining() > 29  # the largest factor seen so far counts
    assert Deadline(0).expired()
    monkeypatch.delenv("FLATCAR_INFRA_TIME_SCALE")
    assert 1.0 <= time_scale() <= 6.0


# ---- image builder helpers ----------------------------------------------------------------------


def test_image_key_is_stable_and_names_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLATCAR_INFRA_CACHE", str(tmp_path))
    key = image.image_key()
    assert key == image.image_key() and len(key) == 16
    assert image.image_path() == tmp_path / "images" / key / image.IMAGE_NAME
    assert image.image_key(image.Layout(root_mib=4096)) != key


def test_apt_mirror_comes_from_the_hosts_apt_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLATCAR_INFRA_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d/debian.sources").write_text(
        "Types: deb\n# comment\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n"
    )
    assert image.apt_mirror(tmp_path) == "http://mirror.example/debian"
    monkeypatch.setenv("FLATCAR_INFRA_MIRROR", "http://other.example/debian")
    assert image.apt_mirror(tmp_path) == "http://other.example/debian"
    monkeypatch.delenv("FLATCAR_INFRA_MIRROR")
    with pytest.raises(UserError):
        image.apt_mirror(tmp_path / "nothing")


@pytest.mark.skipif(
    shutil.which("grub-mkimage") is None and not os.environ.get("CI"), reason="grub-common not installed"
)
def test_bios_grub_install_points_mbr_and_core_at_the_bios_partition(tmp_path: Path) -> None:
    core = tmp_path / "core.img"
    subprocess.run(
        ["grub-mkimage", "-O", "i386-pc", "-o", str(core), "-p", "/grub", "biosdisk", "part_gpt", "fat"],
        check=True,
    )
    raw = tmp_path / "disk.raw"
    raw.write_bytes(bytes(4 * 1024 * 1024))
    image.install_bios_grub(raw, core, 2048)
    data = raw.read_bytes()
    assert int.from_bytes(data[0x5C:0x64], "little") == 2048
    written = data[2048 * 512 : 2048 * 512 + core.stat().st_size]
    assert int.from_bytes(written[512 - 12 : 512 - 4], "little") == 2049
    assert written[512:] == core.read_bytes()[512:]


# ---- bucket server, relay, QMP ------------------------------------------------------------------


def test_local_bucket_serves_public_objects_to_anonymous_guests(local_bucket: LocalBucket) -> None:
    url = local_bucket.put("parts/public.ign", b'{"a":1}')
    assert url == f"http://{GUEST_BUCKET_HOST}/{local_bucket.bucket}/parts/public.ign"
    local_bucket.put("parts/private.ign", b"secret", public=False)

    def anonymous_get(key: str) -> int:
        req = urllib.request.Request(local_bucket.host_url(key), headers={"Host": GUEST_BUCKET_HOST})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert anonymous_get("parts/public.ign") == 200
    assert anonymous_get("parts/private.ign") == 403
    signed = local_bucket.presigned_url("parts/private.ign")
    assert signed.startswith(f"http://{GUEST_BUCKET_HOST}/") and "Signature" in signed
    assert local_bucket.get("parts/private.ign") == b"secret"


def test_relay_carries_a_whole_http_exchange(local_bucket: LocalBucket) -> None:
    local_bucket.put("parts/relayed.ign", b"relayed-body")
    request = f"GET /{local_bucket.bucket}/parts/relayed.ign HTTP/1.0\r\nHost: {GUEST_BUCKET_HOST}\r\n\r\n"
    for _ in range(2):  # one relay process per connection, as QEMU spawns them
        res = subprocess.run(
            [sys.executable, "-I", str(RELAY), str(local_bucket.port)],
            input=request.encode(),
            capture_output=True,
            timeout=30,
        )
        assert res.returncode == 0
        assert res.stdout.startswith(b"HTTP/1.") and res.stdout.endswith(b"relayed-body")


@pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None and not os.environ.get("CI"), reason="qemu not installed"
)
def test_qmp_client_talks_to_a_real_qemu(tmp_path: Path) -> None:
    sock = Path(os.environ.get("TMPDIR", "/tmp")) / f"fi-qmp-test-{os.getpid()}.sock"
    proc = subprocess.Popen(
        [
            "qemu-system-x86_64",
            "-machine",
            "none",
            "-nodefaults",
            "-display",
            "none",
            "-qmp",
            f"unix:{sock},server=on,wait=off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert qmp_command(sock, "query-status")["status"] == "running"
        qmp_command(sock, "stop")
        assert qmp_command(sock, "query-status")["status"] == "paused"
        with pytest.raises(UserError, match="CommandNotFound"):
            qmp_command(sock, "no-such-command")
        qmp_command(sock, "quit")
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.unlink(missing_ok=True)


def test_the_images_programs_are_executable() -> None:
    """dracut's inst_script and the image's tar copy keep the files' modes: a script without its
    exec bit fails in the initramfs with nothing on the console but the unit's failure."""
    programs = [*sorted((FILES / "dracut/50flatcar-standin").glob("*.sh")),
                *sorted((FILES / "rootfs").rglob("sbin/*")), FILES / "customize.sh"]
    sourced = {"emergency-timeout.sh"}  # an emergency hook: sourced by dracut-emergency
    for path in programs:
        if path.name not in sourced:
            assert os.access(path, os.X_OK), f"{path} is not executable"
