"""Host facts: parsing what the host scripts (``scripts.py``) print, and running a script.

Every value arrives as ``key=-`` (absent) or ``key=+<base64>`` so arbitrary bytes survive;
``parse_facts`` is pure. ``run_script`` is the one way a script reaches the host (as root).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import shlex

from flatcar_infra.reprovision.hoststate import HostFacts, RollbackRecord, Staging, parse_kept
from flatcar_infra.reprovision.scripts import Script
from flatcar_infra.ssh import SshError, SshSession


def parse_kv(text: str) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[a-z_0-9]+", key):
            continue
        if value == "-":
            out[key] = None
        elif value.startswith("+"):
            try:
                out[key] = base64.b64decode(value[1:], validate=True)
            except (binascii.Error, ValueError):
                out[key] = None
    return out


def parse_os_release(data: bytes | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (data or b"").decode("utf-8", errors="replace").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and re.fullmatch(r"[A-Z_0-9]+", key):
            try:
                parts = shlex.split(value)
            except ValueError:
                parts = [value]
            out[key] = parts[0] if parts else ""
    return out


def config_url_in(text: bytes | None) -> str | None:
    """``ignition.config.url=...`` in a kernel cmdline or a grub.cfg (``set linux_append=...``)."""
    if not text:
        return None
    m = re.search(r"ignition\.config\.url=([^\s\"';]+)", text.decode("utf-8", errors="replace"))
    return m.group(1) if m else None


def _text(v: bytes | None) -> str | None:
    return None if v is None else v.decode("utf-8", errors="replace").strip()


def _num(v: bytes | None) -> float | None:
    t = _text(v)
    try:
        return float(t) if t else None
    except ValueError:
        return None


def parse_facts(kv: dict[str, bytes | None]) -> HostFacts:
    """Pure: a script's facts (``scripts._FACTS``), parsed by ``parse_kv``, → ``HostFacts``."""
    osr = parse_os_release(kv.get("os_release"))
    release = parse_os_release(kv.get("flatcar_release"))
    version = osr.get("VERSION_ID") or release.get("FLATCAR_RELEASE_VERSION") or ""
    now = _num(kv.get("now")) or 0.0
    lock_mtime = _num(kv.get("lock_mtime"))
    oem = kv.get("oem_config")
    return HostFacts(
        boot_id=_text(kv.get("boot_id")) or "",
        os_id=osr.get("ID", ""),
        version=version,
        reset_tool=_text(kv.get("reset_tool")) or None,
        stamp=_text(kv.get("stamp")) or None,
        oem_config_hash=f"sha512-{hashlib.sha512(oem).hexdigest()}" if oem is not None else None,
        grub_config_url=config_url_in(kv.get("grub_cfg")),
        cmdline_config_url=config_url_in(kv.get("cmdline")),
        lock_text=_text(kv.get("lock")),
        lock_age=(now - lock_mtime) if lock_mtime is not None else None,
        now=now,
        reset_staged=bool(kv.get("reset_staged")),
        first_boot=bool(kv.get("first_boot")),
        staging=Staging.parse(kv.get("state"), parse_kept(kv.get("kept_list"), kv.get("kept_sums"))),
        ignition_result_mtime=_num(kv.get("result_mtime")),
        machine_id=_text(kv.get("machine_id")) or None,
        applied_config=kv.get("applied_config"),
        oem_config=oem,
        deadman_armed=bool(kv.get("deadman")),
        confirmed=bool(kv.get("confirmed")),
        rollback_record=RollbackRecord.parse(kv.get("rollback")),
        uptime=_num(kv.get("uptime")) or 0.0,
        lock_taken=bool(kv.get("lock_taken")),
    )


def as_root(session: SshSession, argv: list[str]) -> list[str]:
    """Prefix ``sudo -n`` unless we logged in as root (``-n``: never wait for a password)."""
    return argv if session.target.user == "root" else ["sudo", "-n", *argv]


async def run_script(session: SshSession, script: Script) -> dict[str, bytes | None]:
    """Run a host script as root (``sudo -n sh -s``, the script on stdin) within its timeout.

    Returns its ``key=value`` answers; a script that stops with ``fail`` raises ``SshError``
    carrying the script's own message (what failed on the host, never a guess).
    """
    res = await session.run(as_root(session, ["sh", "-s"]), input=script.text().encode(),
                            timeout=script.timeout)
    kv = parse_kv(res.text)
    if not res.ok:
        err = kv.get("error")
        detail = (err.decode(errors="replace") if err else
                  res.stderr.decode("utf-8", errors="replace").strip()[-500:])
        raise SshError(f"{script.name} on {session.target.host} failed (exit {res.exit_status}): {detail}",
                       f"{session.target.user} needs passwordless sudo (Flatcar's 'core' has it)"
                       if "sudo" in detail else None)
    return kv
