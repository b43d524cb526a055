"""Read-only host facts, gathered in ONE SSH round trip (a small POSIX shell script as root).

Flatcar has no Python, so the script is plain ``sh`` + coreutils. Every value is printed as
``key=-`` (absent) or ``key=+<base64>`` so arbitrary bytes survive; ``parse_facts`` is pure.
``root`` prefixes every file path (but not /proc's boot_id): it lets the same reads run against a
scratch tree in tests; on a real host it is empty.
"""

from __future__ import annotations

import base64
import binascii
import re
import shlex

from flatcar_infra.compiler.api import STAMP_PATH
from flatcar_infra.reprovision.plan import (
    FIRST_BOOT,
    IGNITION_RESULT,
    LOCK_FILE,
    OEM_CONFIG,
    RESET_MARKER,
    STATE_FILE,
    HostFacts,
    Staging,
)
from flatcar_infra.ssh import SshError, SshSession

_SCRIPT = r"""
R=__ROOT__
f() { if [ -e "$2" ]; then printf '%s=+%s\n' "$1" "$(base64 -w0 < "$2" 2>/dev/null)"
      else printf '%s=-\n' "$1"; fi; }
v() { if [ -n "$2" ]; then printf '%s=+%s\n' "$1" "$(printf '%s' "$2" | base64 -w0)"
      else printf '%s=-\n' "$1"; fi; }
v boot_id "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"
f os_release "$R/etc/os-release"
f flatcar_release "$R/usr/share/flatcar/release"
tool=
if [ -x "$R/usr/sbin/flatcar-reset" ]; then tool="$R/usr/sbin/flatcar-reset";
elif [ -z "$R" ]; then tool=$(command -v flatcar-reset 2>/dev/null); fi
v reset_tool "$tool"
f stamp "$R__STAMP__"
if [ -e "$R__OEM__" ]; then v oem_sha512 "$(sha512sum < "$R__OEM__" | cut -d' ' -f1)"
else v oem_sha512 ""; fi
f grub_cfg "$R/oem/grub.cfg"
if [ -n "$R" ]; then f cmdline "$R/proc/cmdline"; else f cmdline /proc/cmdline; fi
f lock "$R__LOCK__"
if [ -e "$R__LOCK__" ]; then v lock_mtime "$(stat -c %Y "$R__LOCK__")"; else v lock_mtime ""; fi
v now "$(date +%s)"
if [ -e "$R__MARKER__" ]; then v reset_staged 1; else v reset_staged ""; fi
if [ -e "$R__FIRSTBOOT__" ]; then v first_boot 1; else v first_boot ""; fi
f state "$R__STATE__"
if [ -e "$R__RESULT__" ]; then v result_mtime "$(stat -c %Y "$R__RESULT__")"; else v result_mtime ""; fi
f machine_id "$R/etc/machine-id"
"""


def facts_script(root: str = "") -> str:
    return (_SCRIPT.replace("__ROOT__", shlex.quote(root)).replace("__STAMP__", STAMP_PATH)
            .replace("__OEM__", OEM_CONFIG).replace("__LOCK__", LOCK_FILE)
            .replace("__MARKER__", RESET_MARKER).replace("__FIRSTBOOT__", FIRST_BOOT)
            .replace("__STATE__", STATE_FILE).replace("__RESULT__", IGNITION_RESULT))


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


def parse_facts(text: str) -> HostFacts:
    """Pure: the facts script's output → ``HostFacts``."""
    kv = parse_kv(text)
    osr = parse_os_release(kv.get("os_release"))
    release = parse_os_release(kv.get("flatcar_release"))
    version = osr.get("VERSION_ID") or release.get("FLATCAR_RELEASE_VERSION") or ""
    now = _num(kv.get("now")) or 0.0
    lock_mtime = _num(kv.get("lock_mtime"))
    oem = _text(kv.get("oem_sha512"))
    return HostFacts(
        boot_id=_text(kv.get("boot_id")) or "",
        os_id=osr.get("ID", ""),
        version=version,
        reset_tool=_text(kv.get("reset_tool")) or None,
        stamp=_text(kv.get("stamp")) or None,
        oem_config_hash=f"sha512-{oem}" if oem else None,
        grub_config_url=config_url_in(kv.get("grub_cfg")),
        cmdline_config_url=config_url_in(kv.get("cmdline")),
        lock_text=_text(kv.get("lock")),
        lock_age=(now - lock_mtime) if lock_mtime is not None else None,
        now=now,
        reset_staged=bool(kv.get("reset_staged")),
        first_boot=bool(kv.get("first_boot")),
        staging=Staging.parse(kv.get("state")),
        ignition_result_mtime=_num(kv.get("result_mtime")),
        machine_id=_text(kv.get("machine_id")) or None,
    )


def as_root(session: SshSession, argv: list[str]) -> list[str]:
    """Prefix ``sudo -n`` unless we logged in as root (``-n``: never wait for a password)."""
    return argv if session.target.user == "root" else ["sudo", "-n", *argv]


async def gather_facts(session: SshSession, *, root: str = "") -> HostFacts:
    res = await session.run(as_root(session, ["sh", "-s"]), input=facts_script(root).encode(), timeout=60)
    if not res.ok:
        err = res.stderr.decode("utf-8", errors="replace").strip()
        raise SshError(f"cannot read the host's state on {session.target.host} (exit {res.exit_status}): "
                       f"{err}", f"{session.target.user} needs passwordless sudo (Flatcar's 'core' has it)")
    return parse_facts(res.text)
