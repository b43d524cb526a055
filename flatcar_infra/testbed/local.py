"""The built-in local target: Flatcar(-like) machines on this host that outlive the CLI.

Like the talk's demo (``flatcar_production_qemu.sh -i ignition.json``) but with the cloud's
shape: the compiled config goes to a bucket on a local S3 server (a detached moto behind a SigV4
check, ``python -m flatcar_infra.testbed.bucket serve`` on 127.0.0.1), the VM gets the
never-changing pointer config as user-data, and its QEMU runs
daemonized. State lives in ``$FLATCAR_INFRA_HOME/local`` (default ``~/.local/share/flatcar-infra``):

- ``bucket.json``: the bucket server's pid, port and bucket (reused while it is alive);
- ``bucket.credentials``: the only credentials that server accepts for writes (mode 0600);
- ``<name>.json``: what ``local up`` printed plus pid, overlay, ports, serial log and QMP socket;
- ``<name>/``: the machine's client key, overlay, user-data and logs.

``load_machine(name)`` is the reading side used by the Pulumi ``local`` stack.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flatcar_infra.compiler.api import CompiledConfig
from flatcar_infra.errors import UserError
from flatcar_infra.procs import pid_alive
from flatcar_infra.testbed.bucket import (
    DEFAULT_BUCKET,
    LocalBucket,
    free_port,
    pointer_config,
    read_credentials,
)
from flatcar_infra.testbed.s3auth import Credentials
from flatcar_infra.testbed.vm import (
    FLATCAR_FW_CFG,
    STANDIN_FW_CFG,
    ClientKey,
    Vm,
    VmSpec,
    generate_client_key,
)

Progress = Callable[[str, str], None]
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")


def home() -> Path:
    env = os.environ.get("FLATCAR_INFRA_HOME")
    base = Path(env) if env else Path.home() / ".local" / "share" / "flatcar-infra"
    return base / "local"


def credentials_path() -> Path:
    """The bucket server's credentials (JSON, mode 0600); not ``*.json``, which are machines."""
    return home() / "bucket.credentials"


def check_name(name: str) -> str:
    if name == "bucket":
        raise UserError("'bucket' is reserved for the local bucket server's state", "choose another name")
    if not NAME_RE.match(name):
        raise UserError(f"invalid machine name {name!r}",
                        "use 1-40 lowercase letters, digits and dashes, e.g. 'web-1'")
    return name


def object_key(name: str) -> str:
    return f"local/{name}/config.ign"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically, readable by the owner only from the first byte (state may hold secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


# ---- the bucket server -------------------------------------------------------------------------

@dataclass(frozen=True)
class BucketServer:
    """The detached local S3 server: moto behind the SigV4 check, accepting only ``credentials``
    (created with the server, kept in ``bucket.credentials``, mode 0600)."""

    pid: int
    port: int
    bucket: str
    credentials: Credentials

    def alive(self) -> bool:
        return pid_alive(self.pid) and _port_open(self.port)

    def client(self) -> LocalBucket:
        return LocalBucket.attach(self.port, self.credentials, self.bucket)


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def bucket_server(progress: Progress) -> BucketServer:
    """The running local bucket server, started (detached) when there is none."""
    state = home() / "bucket.json"
    cred_file = credentials_path()
    if state.is_file() and cred_file.is_file():
        data = json.loads(state.read_text())
        server = BucketServer(int(data["pid"]), int(data["port"]), str(data["bucket"]),
                              read_credentials(cred_file))
        if server.alive():
            return server
        progress("bucket", "the previous bucket server is gone: starting a new one (configs are re-uploaded)")
    creds = Credentials.generate()
    _write_json(cred_file, {"access_key": creds.access_key, "secret_key": creds.secret_key})
    port = free_port()
    log = home() / "bucket-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        serve = [sys.executable, "-m", "flatcar_infra.testbed.bucket", "serve", "--port", str(port),
                 "--credentials", str(cred_file)]
        proc = subprocess.Popen(serve, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 60
    while not _port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise UserError(f"the local bucket server did not start (see {log})")
        time.sleep(0.2)
    server = BucketServer(proc.pid, port, DEFAULT_BUCKET, creds)
    server.client()  # creates the bucket
    _write_json(state, {"pid": server.pid, "port": server.port, "bucket": server.bucket})
    progress("bucket", f"local S3 server on 127.0.0.1:{port} (pid {proc.pid})")
    return server


def machine_bucket(state: dict[str, Any]) -> LocalBucket:
    """The bucket holding a local machine's config object, signed with the credentials of the
    bucket server (only they may write)."""
    cred_file = credentials_path()
    if not cred_file.is_file():
        raise UserError(f"no credentials for the local bucket server ({cred_file} is missing)",
                        f"run `flatcar-infra local up --name {state['name']}` again")
    return LocalBucket.attach(int(state["bucket_port"]), read_credentials(cred_file), str(state["bucket"]))


def stop_bucket_server() -> bool:
    state = home() / "bucket.json"
    if not state.is_file():
        return False
    data = json.loads(state.read_text())
    _terminate(int(data["pid"]))
    state.unlink()
    credentials_path().unlink(missing_ok=True)
    return True


def _terminate(pid: int, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 15)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


# ---- machines ----------------------------------------------------------------------------------

def state_path(name: str) -> Path:
    return home() / f"{check_name(name)}.json"


def load_machine(name: str) -> dict[str, Any]:
    """A local machine's state: ``name, host, port, user, identity_file, host_key, config_url,
    config_hash`` (the fields ``local up`` prints) plus ``pid``, ``overlay``, ``serial_log``, ..."""
    path = state_path(name)
    if not path.is_file():
        raise UserError(f"no local machine named {name!r}", "start it with `flatcar-infra local up`")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def list_machines() -> list[dict[str, Any]]:
    out = []
    for path in sorted(home().glob("*.json")):
        if path.name == "bucket.json":
            continue
        data = json.loads(path.read_text())
        data["running"] = pid_alive(int(data.get("pid", 0) or 0)) if data.get("pid") else False
        out.append(data)
    return out


PUBLIC_FIELDS = ("name", "host", "port", "user", "identity_file", "host_key", "config_url", "config_hash")


def public_view(state: dict[str, Any]) -> dict[str, Any]:
    return {k: state[k] for k in PUBLIC_FIELDS}


@dataclass(frozen=True)
class UpResult:
    machine: dict[str, Any]
    created: bool
    config_changed: bool


def _vm_from_state(state: dict[str, Any]) -> Vm:
    spec = VmSpec(name=state["name"], overlay=Path(state["overlay"]),
                  user_data_file=Path(state["user_data_file"]), ssh_port=int(state["port"]),
                  bucket_port=int(state["bucket_port"]), serial_log=Path(state["serial_log"]),
                  qmp_socket=Path(state["qmp_socket"]), pidfile=Path(state["pidfile"]),
                  accel=state["accel"], fw_cfg_name=state["fw_cfg_name"])
    key = ClientKey(Path(state["identity_file"]), state["client_public_key"])
    return Vm(spec=spec, client_key=key, host_key=state.get("host_key"))


def up(name: str, config: CompiledConfig, *, image: Path | None, progress: Progress,
       timeout: float = 900.0) -> UpResult:
    """Start (or reuse) the machine ``name`` with ``config`` delivered through the local bucket.

    ``config`` must already contain the machine's login key (``machine_key`` gives it); ``image``
    is a real Flatcar qemu image, or ``None`` for the stand-in (built and cached on first use).
    """
    check_name(name)
    server = bucket_server(progress)
    bucket = server.client()
    path = state_path(name)
    if path.is_file():
        state = json.loads(path.read_text())
        if pid_alive(int(state["pid"])) and int(state["bucket_port"]) == server.port:
            changed = state["config_hash"] != config.hash
            bucket.put(object_key(name), config.canonical)
            if changed:
                state["config_hash"] = config.hash
                _write_json(path, state)
            return UpResult(state, created=False, config_changed=changed)
        progress("machine", f"{name} is not running any more: booting it again from scratch")
        down(name, progress)

    workdir = home() / name
    key = machine_key(name)
    url = bucket.put(object_key(name), config.canonical)
    if image is None:
        from flatcar_infra.testbed.image import build_image

        base, fw_cfg = build_image(progress), STANDIN_FW_CFG
    else:
        if not image.is_file():
            raise UserError(f"image not found: {image}")
        base, fw_cfg = image, FLATCAR_FW_CFG
    # a real Flatcar image wants 2 GiB (its initramfs is unpacked into RAM)
    vm = Vm.create(name, image=base, workdir=workdir, user_data=pointer_config(url), client_key=key,
                   bucket_port=server.port, fw_cfg_name=fw_cfg, memory_mib=1024 if image is None else 2048)
    # sockets of a daemonized VM live with its state, not in a temp dir
    run_dir = workdir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(vm.spec.qmp_socket.parent, ignore_errors=True)
    spec = VmSpec(**{**vm.spec.__dict__, "qmp_socket": run_dir / "qmp.sock", "pidfile": run_dir / "qemu.pid"})
    if len(str(spec.qmp_socket)) > 100:
        raise UserError(f"state directory path too long for a Unix socket: {run_dir}",
                        "set FLATCAR_INFRA_HOME to a shorter directory")
    vm = Vm(spec=spec, client_key=key)
    state = {
        "name": name, "host": "127.0.0.1", "port": spec.ssh_port, "user": "core",
        "identity_file": str(key.private_path), "client_public_key": key.public_line, "host_key": None,
        "config_url": url, "config_hash": config.hash, "bucket_port": server.port,
        "bucket": server.bucket, "object_key": object_key(name), "overlay": str(spec.overlay),
        "user_data_file": str(spec.user_data_file), "serial_log": str(spec.serial_log),
        "qmp_socket": str(spec.qmp_socket), "pidfile": str(spec.pidfile), "accel": spec.accel,
        "fw_cfg_name": spec.fw_cfg_name, "image": str(base), "pid": None,
    }
    progress("machine", f"booting {name} ({spec.accel}; serial log {spec.serial_log})")
    t0 = time.monotonic()
    vm.start(daemonize=True)
    state["pid"] = vm.pid
    _write_json(path, state)
    try:
        host_key = _wait_with_progress(vm, timeout, progress, t0)
    except UserError:
        progress("machine", f"{name} did not come up; it is left running for inspection "
                 f"(`flatcar-infra local down --name {name}` removes it)")
        raise
    state["host_key"] = host_key
    _write_json(path, state)
    progress("machine", f"{name} answers SSH on 127.0.0.1:{spec.ssh_port} after {time.monotonic() - t0:.0f}s")
    return UpResult(state, created=True, config_changed=False)


def _wait_with_progress(vm: Vm, timeout: float, progress: Progress, t0: float) -> str:
    """Wait for SSH, reporting the boot's stage from the serial console every few seconds."""
    import threading

    done = threading.Event()

    def report() -> None:
        last = ""
        while not done.wait(10):
            stage = _boot_stage(vm.console_since_boot())
            if stage != last:
                progress("boot", f"{stage} ({time.monotonic() - t0:.0f}s)")
                last = stage

    thread = threading.Thread(target=report, daemon=True)
    thread.start()
    try:
        return vm.wait_ssh(timeout)
    finally:
        done.set()
        thread.join(1)
        vm.close_ssh()


def _boot_stage(console: str) -> str:
    stages = [("login:", "login prompt"), ("Reached target", "starting services"),
              ("Ignition (files)", "Ignition writing files"),
              ("Ignition (fetch)", "Ignition fetching the config"),
              ("Linux version", "kernel booting"), ("GRUB", "boot loader")]
    for marker, label in stages:
        if marker in console:
            return label
    return "firmware"


def machine_key(name: str) -> ClientKey:
    """The machine's login key, created once and kept with its state."""
    keydir = home() / check_name(name) / "keys"
    private = keydir / "id_ed25519"
    public = keydir / "id_ed25519.pub"
    if private.is_file() and public.is_file():
        return ClientKey(private, public.read_text().strip())
    return generate_client_key(keydir)


def down(name: str, progress: Progress) -> bool:
    """Stop the machine and remove its overlay and state. False when there was none."""
    path = state_path(name)
    workdir = home() / name
    if not path.is_file():
        if workdir.is_dir():
            shutil.rmtree(workdir)
        return False
    state = json.loads(path.read_text())
    if state.get("pid"):
        vm = _vm_from_state(state)
        vm.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    path.unlink()
    progress("machine", f"{name} stopped and removed")
    return True
