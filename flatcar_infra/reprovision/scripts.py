"""The shell scripts a reprovision runs on the host, built purely so the dry run can print them.

Every script runs as root through ``sudo -n sh -s`` with the script on standard input: its size is
not limited by the command line, and nothing it carries (a config, an HTTP header) shows in the
host's process list. Payloads travel inside the script as base64 here-documents; ``display()``
prints the script with each payload replaced by a one-line description. A script answers with
``key=+BASE64`` / ``key=-`` lines (``facts.parse_kv``). Flatcar has no Python: plain ``sh`` and
the tools Flatcar ships (coreutils, findutils, util-linux, curl, systemd).

``root`` prefixes every host path (never ``/proc``) so the read-only scripts run against a scratch
tree in tests; staging, the reboot and rollbacks refuse a root prefix (they act on the real host).
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from flatcar_infra.compiler.api import STAMP_PATH
from flatcar_infra.reprovision.desired import Remote
from flatcar_infra.reprovision.hoststate import (
    APPLIED_CONFIG,
    CONFIRMED,
    DEADMAN_SCRIPT,
    DEADMAN_SERVICE,
    DEADMAN_TIMER,
    DEADMAN_UNIT,
    DEADMAN_WANTS,
    FIRST_BOOT,
    IGNITION_RESULT,
    KEPT_LIST,
    KEPT_SUMS,
    LOCK_FILE,
    OEM_CONFIG,
    RESET_MARKER,
    ROLLBACK_RECORD,
    RUN_DIR,
    STAGED_CONFIG,
    STATE_FILE,
)
from flatcar_infra.reprovision.policy import STATE_DIR

ROLLBACK_STARTED = f"{RUN_DIR}/rollback-started"
DEADMAN_LOCK = f"{RUN_DIR}/deadman.lock"
FETCH_TIMEOUT = 20
"""Seconds per remote resource fetched from the host in preflight (curl --max-time)."""


@dataclass(frozen=True)
class Payload:
    data: bytes = field(repr=False)
    what: str

    def body(self, display: bool) -> str:
        if display:
            return f"<{self.what}: {len(self.data)} bytes>"
        b64 = base64.b64encode(self.data).decode()
        return "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76)) or ""


@dataclass(frozen=True)
class Script:
    """A script run as root on the host; ``timeout`` bounds it (seconds)."""

    name: str
    parts: tuple[str | Payload, ...]
    timeout: float = 120.0

    def text(self) -> str:
        return self._render(False)

    def display(self) -> str:
        return self._render(True)

    def _render(self, display: bool) -> str:
        # One brace group: the shell reads the whole script before running any of it, so no
        # command can swallow the rest of the script from standard input (which is /dev/null).
        body = "".join(p if isinstance(p, str) else p.body(display) for p in self.parts)
        return "{\nexec </dev/null\n" + body + "}\n"


def q(s: str) -> str:
    return shlex.quote(s)


def write_file(dest: str, data: bytes, what: str, mode: str = "600") -> tuple[str | Payload, ...]:
    """Atomically (temp file + rename) write ``data`` to the host path ``dest`` under ``$R``."""
    d = f'"$R"{q(dest)}'
    return (
        f"base64 -d > {d}.tmp <<'FI_EOF' || fail 'cannot write {dest}'\n",
        Payload(data, what),
        f"\nFI_EOF\nchmod {mode} {d}.tmp && mv -f {d}.tmp {d} || fail 'cannot write {dest}'\n",
    )


def _prologue(root: str) -> str:
    return f"""set -u
R={q(root)}
umask 077
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
export R T
f() {{ if [ -e "$2" ]; then printf '%s=+%s\\n' "$1" "$(base64 -w0 < "$2" 2>/dev/null)"
      else printf '%s=-\\n' "$1"; fi; }}
v() {{ if [ -n "$2" ]; then printf '%s=+%s\\n' "$1" "$(printf '%s' "$2" | base64 -w0)"
      else printf '%s=-\\n' "$1"; fi; }}
fail() {{ v error "$1"; exit 1; }}
"""


def _lock(owner_json: str, stale: str | None) -> str:
    """Take the host lock atomically (``ln`` of a complete file fails if a lock exists, and a lock
    never exists without its owner); ``stale``: the exact content of a dead run's lock to replace."""
    return f"""mkdir -p "$R{RUN_DIR}" || fail 'cannot create {RUN_DIR}'
tmp=$(mktemp "$R{RUN_DIR}/.lock.XXXXXX") || fail 'cannot create a lock file in {RUN_DIR}'
printf '%s\\n' {q(owner_json)} > "$tmp"
stale={q(stale or "")}
if [ -n "$stale" ] && [ "$(cat "$R{LOCK_FILE}" 2>/dev/null)" = "$stale" ]; then rm -f "$R{LOCK_FILE}"; fi
if ln "$tmp" "$R{LOCK_FILE}" 2>/dev/null; then v lock_taken 1; else v lock_taken ''; fi
rm -f "$tmp"
"""


_FACTS = f"""v boot_id "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"
v uptime "$(cut -d' ' -f1 /proc/uptime 2>/dev/null)"
f os_release "$R/etc/os-release"
f flatcar_release "$R/usr/share/flatcar/release"
tool=
if [ -x "$R/usr/sbin/flatcar-reset" ]; then tool="$R/usr/sbin/flatcar-reset"
elif [ -z "$R" ]; then tool=$(command -v flatcar-reset 2>/dev/null); fi
v reset_tool "$tool"
f stamp "$R{STAMP_PATH}"
f oem_config "$R{OEM_CONFIG}"
f grub_cfg "$R/oem/grub.cfg"
if [ -n "$R" ]; then f cmdline "$R/proc/cmdline"; else f cmdline /proc/cmdline; fi
f lock "$R{LOCK_FILE}"
if [ -e "$R{LOCK_FILE}" ]; then v lock_mtime "$(stat -c %Y "$R{LOCK_FILE}")"; else v lock_mtime ''; fi
v now "$(date +%s)"
if [ -e "$R{RESET_MARKER}" ]; then v reset_staged 1; else v reset_staged ''; fi
if [ -e "$R{FIRST_BOOT}" ]; then v first_boot 1; else v first_boot ''; fi
f state "$R{STATE_FILE}"
f kept_list "$R{KEPT_LIST}"
f kept_sums "$R{KEPT_SUMS}"
f applied_config "$R{APPLIED_CONFIG}"
f rollback "$R{ROLLBACK_RECORD}"
if [ -e "$R{DEADMAN_SCRIPT}" ]; then v deadman 1; else v deadman ''; fi
if [ -e "$R{CONFIRMED}" ]; then v confirmed 1; else v confirmed ''; fi
if [ -e "$R{IGNITION_RESULT}" ]; then v result_mtime "$(stat -c %Y "$R{IGNITION_RESULT}")"
else v result_mtime ''; fi
f machine_id "$R/etc/machine-id"
"""


def _root_view(body: str, output: str) -> str:
    """Run ``body`` with ROOT seen as flatcar-reset and the initramfs see it: on current Flatcar
    ``/etc`` is an overlay (lower dir on USR) and ROOT's own ``/etc`` (the upper dir, where the host
    keys live) shows only with the overlay unmounted, so the real host gets a private mount
    namespace (``unshare -m``) in which ``/etc`` is unmounted; the unmount never leaks out."""
    return f"""if [ -z "$R" ]; then NS="unshare -m --propagation private"; else NS=; fi
$NS sh -s > {output} 2>"$T/view.err" <<'FI_VIEW'
if [ -z "$R" ] && mountpoint -q /etc; then
    umount /etc || {{ echo "cannot unmount the /etc overlay in a private mount namespace" >&2; exit 3; }}
fi
{body}
FI_VIEW
view_rc=$?
"""


_LIST_KEPT = """find "${R:-/}" -xdev \\( -type f -o -type l \\) -regextype egrep -regex "$RX" \\
    -printf '%y\\t%s\\t%T@\\t%p\\0'"""


def ere_escape(text: str) -> str:
    return "".join("\\" + c if c in ".[]()*+?{}|^$\\" else c for c in text)


def _export_rx(root: str, regex: str) -> str:
    return f"RX={q(ere_escape(root) + regex)}; export R RX\n"


def _fetch(name: str, r: Remote) -> tuple[str | Payload, ...]:
    """Fetch one remote resource FROM THE HOST (its network and DNS are what Ignition uses at
    boot); report curl's exit status, the HTTP status and the digests, never a guess."""
    parts: list[str | Payload] = []
    hdr = ""
    if r.headers:
        text = "".join(f"{k}: {v}\r\n" for k, v in r.headers).encode()
        parts += [
            f"base64 -d > \"$T/{name}.h\" <<'FI_EOF'\n",
            Payload(text, f"HTTP headers of {r.where}"),
            "\nFI_EOF\n",
        ]
        hdr = f' -H @"$T/{name}.h"'
    parts.append(
        f"""code=$(curl -sS -L --max-time {FETCH_TIMEOUT} $CA{hdr} -o "$T/{name}" -w '%{{http_code}}' \\
    {q(r.url)} 2>"$T/{name}.err"); rc=$?
v {name}_rc "$rc"; v {name}_code "$code"; f {name}_err "$T/{name}.err"
if [ "$rc" = 0 ]; then
    v {name}_sha512 "$(sha512sum < "$T/{name}" | cut -d' ' -f1)"
    v {name}_sha256 "$(sha256sum < "$T/{name}" | cut -d' ' -f1)"
    {f'f {name}_body "$T/{name}"' if r.is_config else ":"}
fi
"""
    )
    return tuple(parts)


def fetchable(r: Remote) -> bool:
    """Schemes the host's curl fetches as Ignition would (s3/gs/arn are checked operator-side)."""
    return r.scheme in ("http", "https", "tftp")


def preflight(
    root: str,
    *,
    owner_json: str,
    take_lock: bool,
    stale: str | None,
    keep_entries: Sequence[str],
    keep_rx: str,
    candidates: Sequence[str],
    fetches: Sequence[tuple[str, Remote]],
    proxy: dict[str, str] | None = None,
    ca_bundle: bytes = b"",
    user: str = "core",
    key_b64: str = "",
) -> Script:
    """Lock (unless a dry run), facts, and the read-only checks, in ONE round trip:
    every keep entry compiled by the host's own ``find -regextype egrep``; the kept files as
    flatcar-reset sees them; which config paths the keep regex matches (``grep -E``, whole path);
    the config's remote resources and the pointer object fetched from the host; and which of the
    user's ``authorized_keys`` files hold the login key."""
    parts: list[str | Payload] = [_prologue(root)]
    if take_lock:
        parts.append(_lock(owner_json, stale))
    parts.append(_FACTS)
    parts.append(
        "i=0\nfor rx in "
        + " ".join(q(e) for e in keep_entries)
        + """; do
    v "rx_err_$i" "$(find /dev/null -maxdepth 0 -regextype egrep -regex "$rx" 2>&1 >/dev/null)"
    i=$((i + 1))
done
"""
    )
    parts.append(_export_rx(root, keep_rx))
    parts.append(_root_view(_LIST_KEPT, '"$T/kept"'))
    parts.append('v kept_rc "$view_rc"; f kept_err "$T/view.err"; f kept_listing "$T/kept"\n')
    if candidates:
        parts.append(
            f"KRX={q(keep_rx)}\ni=0\nfor p in "
            + " ".join(q(c) for c in candidates)
            + """; do
    if printf '%s\\n' "$p" | grep -Exq -e "$KRX"; then v "cand_$i" 1; else v "cand_$i" ''; fi
    i=$((i + 1))
done
"""
        )
    if key_b64:
        parts.append(f"""home=$(awk -F: -v u={q(user)} '$1 == u {{ print $6 }}' "$R/etc/passwd" 2>/dev/null)
: > "$T/keyfiles"
if [ -n "$home" ]; then
    for kf in "$R$home/.ssh/authorized_keys" "$R$home"/.ssh/authorized_keys.d/*; do
        [ -f "$kf" ] && grep -qF {q(key_b64)} "$kf" && printf '%s\\0' "${{kf#"$R"}}" >> "$T/keyfiles"
    done
fi
f key_files "$T/keyfiles"
""")
    if fetches:
        parts.append("CA=\n")
        for k, v in sorted((proxy or {}).items()):
            parts.append(f"{k}={q(v)}; export {k}\n")
        if ca_bundle:
            parts += [
                'cat /etc/ssl/certs/ca-certificates.crt > "$T/ca.pem" 2>/dev/null\n',
                "base64 -d >> \"$T/ca.pem\" <<'FI_EOF'\n",
                Payload(ca_bundle, "the config's TLS CAs"),
                "\nFI_EOF\nCA='--cacert '\"$T/ca.pem\"\n",
            ]
        for name, r in fetches:
            parts += _fetch(name, r)
    return Script("preflight", tuple(parts), timeout=120 + FETCH_TIMEOUT * len(fetches))


def hash_kept(dest: str | None) -> str:
    """sha256 of the listed kept files (NUL-separated absolute paths, in ``$T/hash.list``), in the
    root view; ``dest``: write the ``sha256sum -z`` output there too (the staging record)."""
    body = (
        'cd "${R:-/}" || exit 1\n'
        "sed -z 's|^|.|' \"$T/hash.list\" | xargs -0r sha256sum -z -- | sed -z 's|  \\./|  /|'"
    )
    out = _root_view(body, '"$T/sums"')
    out += 'v sums_rc "$view_rc"; f sums_err "$T/view.err"; f sums "$T/sums"\n'
    if dest:
        out += (
            f'[ "$view_rc" = 0 ] || fail "cannot hash the kept files: $(cat "$T/view.err")"\n'
            f'cp "$T/sums" "$R{dest}.tmp" && mv -f "$R{dest}.tmp" "$R{dest}" '
            f"|| fail 'cannot write {dest}'\n"
        )
    return out


def _path_list(name: str, paths: Sequence[str], what: str) -> tuple[str | Payload, ...]:
    """Absolute paths, NUL-separated, into ``$T/<name>``."""
    data = b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths)
    return (f"base64 -d > \"$T/{name}\" <<'FI_EOF'\n", Payload(data, f"{len(paths)} {what}"), "\nFI_EOF\n")


def deadman_files(
    *, new_hash: str, previous_hash: str, staged_boot: str, window: float, rollback_reset: Sequence[str]
) -> dict[str, tuple[bytes, str]]:
    """The dead-man switch for ONE new boot: a timer ``window`` seconds after it starts (with the
    other timers, once the basic system is up: the kernel, initramfs and Ignition time do not eat
    the window) starts a service that, unless this boot was confirmed over SSH (``CONFIRMED``,
    tmpfs) or runs the previous
    config anyway, records the rollback, re-applies the previous config (``flatcar-reset -F``
    the saved ``APPLIED_CONFIG``) and reboots. Its units live in kept paths, so they survive the
    reset; the rollback's own reset does not keep them. ``path → (content, mode)``."""
    reason = (
        f"the new boot was not confirmed over SSH within {window:g}s of starting up (SSH or the network "
        "broken by the new config, or its verification never finished)"
    )
    record = '{"at": %s, "boot_id": "%s", "by": "deadman", "from": "%s", "reason": "%s", "to": "%s"}\\n'
    script = f"""#!/bin/sh
# flatcar-infra dead-man switch, armed for the first boot into {new_hash[:19]}… (staged during boot
# {staged_boot}). Unless that boot is confirmed over SSH in time, go back to {previous_hash[:19]}….
set -u
log() {{ echo "flatcar-infra-rollback: $*" > /dev/kmsg 2>/dev/null; echo "flatcar-infra-rollback: $*"; }}
disarm() {{ rm -f {q(DEADMAN_WANTS)} {q(DEADMAN_TIMER)} {q(DEADMAN_SERVICE)} {q(DEADMAN_SCRIPT)}; }}
mkdir -p {RUN_DIR}
exec 9>{DEADMAN_LOCK}
flock 9
[ -e {CONFIRMED} ] && exit 0
[ -e {ROLLBACK_STARTED} ] && exit 0
boot=$(cat /proc/sys/kernel/random/boot_id)
[ "$boot" = {q(staged_boot)} ] && exit 0
if [ "$(cat {STAMP_PATH} 2>/dev/null)" = {q(previous_hash)} ]; then
    log "the host runs the previous config already: disarming"; disarm; exit 0
fi
touch {ROLLBACK_STARTED}
log {q("not confirmed: rolling back to " + previous_hash[:19])}
printf '{record}' "$(date +%s)" "$boot" {q(new_hash)} {q(reason)} {q(previous_hash)} \\
    > {STATE_DIR}/rollback.json.tmp
mv -f {STATE_DIR}/rollback.json.tmp {ROLLBACK_RECORD}
disarm
{shlex.join(rollback_reset)} || {{ log "flatcar-reset failed: not rolling back"; exit 1; }}
sync
systemctl reboot
"""
    service = f"""[Unit]
Description=flatcar-infra: roll back to the previous config (this boot was not confirmed)
ConditionPathExists={DEADMAN_SCRIPT}

[Service]
Type=oneshot
ExecStart=/bin/sh {DEADMAN_SCRIPT}
"""
    timer = f"""[Unit]
Description=flatcar-infra: confirm this boot over SSH within {window:g}s or it rolls back
ConditionPathExists={DEADMAN_SCRIPT}

[Timer]
OnActiveSec={window:g}s
AccuracySec=1s

[Install]
WantedBy=timers.target
"""
    return {
        DEADMAN_SCRIPT: (script.encode(), "700"),
        DEADMAN_SERVICE: (service.encode(), "644"),
        DEADMAN_TIMER: (timer.encode(), "644"),
    }


def _reboot(unit: str) -> str:
    """Detached, so the SSH command returns first; the 2 s let our answer leave the host."""
    return (
        f"systemd-run --no-block --collect --unit {q(unit)} sh -c 'sleep 2; systemctl reboot' "
        '>/dev/null 2>"$T/reboot.err" || fail "cannot schedule the reboot: $(cat "$T/reboot.err")"\n'
        "v reboot_scheduled 1\n"
    )


def _reset(argv: Sequence[str]) -> str:
    return (
        f'{shlex.join(argv)} > "$T/reset.out" 2>&1 || fail "flatcar-reset failed (exit $?): '
        '$(tail -c 600 "$T/reset.out")"\n'
    )


def stage(
    *,
    staging_json: bytes,
    kept_list: bytes,
    hash_paths: Sequence[str],
    config: bytes,
    config_sha512: str,
    delivery: str,
    reset_argv: Sequence[str],
    cancel_first: bool,
    remove_oem: bool,
    seed_applied: bytes | None,
    deadman: dict[str, tuple[bytes, str]] | None,
    reboot_unit: str,
) -> Script:
    """Everything between the preflight and the reboot, in ONE round trip: our records (staging,
    kept files with their hashes, the new config, the running config when the host had no copy),
    the dead-man switch for the new boot, cancelling a stale staged reset, ``flatcar-reset``, the
    check that ``/oem/config.ign`` holds the exact bytes (file delivery), and the detached reboot.
    Any failure stops before the reboot is scheduled."""
    parts: list[str | Payload] = [
        _prologue(""),
        f"mkdir -p -m 0700 {STATE_DIR} {RUN_DIR} || fail 'cannot create {STATE_DIR}'\n",
        # a dead-man switch armed for THIS boot by an earlier, unconfirmed run must not fire while
        # (or after) this run stages: this boot is superseded, so it counts as confirmed
        f"""exec 9>{DEADMAN_LOCK}
flock 9 || fail 'cannot lock {DEADMAN_LOCK}'
[ -e {ROLLBACK_STARTED} ] && fail 'the dead-man switch is rolling this host back: run again once it is back'
touch {CONFIRMED}
systemctl stop {DEADMAN_UNIT}.timer >/dev/null 2>&1
""",
    ]
    if cancel_first:
        parts.append(_reset(["flatcar-reset", "--stop"]))
    parts += _path_list("hash.list", hash_paths, "kept file path(s) to hash")
    parts.append(hash_kept(KEPT_SUMS))
    parts += write_file(KEPT_LIST, kept_list, "the kept-file listing")
    parts += write_file(STAGED_CONFIG, config, "the new config")
    if seed_applied is not None:
        parts += write_file(
            APPLIED_CONFIG, seed_applied, "the config the host runs now (the rollback target)"
        )
    if deadman:
        parts.append(f"mkdir -p {q(DEADMAN_WANTS.rsplit('/', 1)[0])}\n")
        for path, (data, mode) in deadman.items():
            parts += write_file(path, data, f"dead-man switch {path.rsplit('/', 1)[1]}", mode)
        parts.append(
            f"ln -sfn {q(DEADMAN_TIMER)} {q(DEADMAN_WANTS)} || fail 'cannot arm the dead-man switch'\n"
        )
    else:
        parts.append(
            f"rm -f {q(DEADMAN_WANTS)} {q(DEADMAN_TIMER)} {q(DEADMAN_SERVICE)} {q(DEADMAN_SCRIPT)}\n"
        )
    parts += write_file(STATE_FILE, staging_json, "the staging record")
    if remove_oem:
        parts.append(f"rm -f {OEM_CONFIG} || fail 'cannot remove {OEM_CONFIG}'\n")
    parts.append(_reset(reset_argv))
    if delivery == "file":
        parts.append(f"""got=$(sha512sum < {OEM_CONFIG} | cut -d' ' -f1)
[ "$got" = {config_sha512} ] || fail '{OEM_CONFIG} does not hold the exact bytes delivered'
""")
    parts.append(_reboot(reboot_unit))
    return Script("stage", tuple(parts), timeout=600)


def verify(
    root: str,
    *,
    owner_json: str,
    kept_paths: Sequence[str],
    hash_paths: Sequence[str],
    user: str,
    health_checks: Sequence[str],
    health_timeout: float,
) -> Script:
    """After the reboot, in ONE round trip: take the lock for this boot, the facts, the kept files
    recorded at staging (are they there, and their sha256), the system state, the failed units, and
    the health checks (run as ``user``, each bounded by ``health_timeout``).

    The kept files are checked in the running system's view, not flatcar-reset's: at boot Flatcar
    drops entries of ROOT's ``/etc`` that equal the ``/etc`` overlay's lower dir, and the running
    system then shows the lower dir's identical file; either way what the system reads is what
    was kept."""
    t = f"{health_timeout:g}"
    parts: list[str | Payload] = [_prologue(root), _lock(owner_json, None), _FACTS]
    parts += _path_list("kept.paths", kept_paths, "recorded kept path(s)")
    parts += _path_list("hash.list", hash_paths, "kept file path(s) to hash")
    parts.append(
        """sed -z "s|^|$R|" "$T/kept.paths" | xargs -0r sh -c 'exec find "$@" -maxdepth 0 \\
    -printf "%y\\t%s\\t%T@\\t%p\\0" 2>/dev/null' sh > "$T/kept"
f kept_listing "$T/kept"
sed -z "s|^|$R|" "$T/hash.list" | xargs -0r sha256sum -z -- > "$T/sums" 2>/dev/null
f sums "$T/sums"
"""
    )
    parts.append(f"""state=$(timeout {t} systemctl is-system-running --wait 2>/dev/null ||
    systemctl is-system-running 2>/dev/null)
v system_state "$state"
v failed_units "$(systemctl list-units --failed --plain --no-legend --no-pager 2>/dev/null | cut -d' ' -f1)"
""")
    for i, cmd in enumerate(health_checks):
        run = f"runuser -u {q(user)} -- " if user != "root" else ""
        parts.append(f"""{run}timeout -k 5 {t} sh -c {q(cmd)} > /dev/null 2> "$T/h{i}.err" < /dev/null
v health_rc_{i} "$?"; v health_err_{i} "$(tail -c 300 "$T/h{i}.err")"
""")
    return Script("verify", tuple(parts), timeout=health_timeout * (2 + len(health_checks)) + 300)


def confirm(root: str, *, lock_token: str, new_sha512: str, applied: bytes | None) -> Script:
    """Confirm this boot (over a FRESH connection, after verification passed): disarm the dead-man
    switch unless its rollback already started, make the staged config the applied one (or write
    ``applied`` when the host has no copy yet), release the lock."""
    parts: list[str | Payload] = [
        _prologue(root),
        f"""mkdir -p "$R{RUN_DIR}"
exec 9>"$R{DEADMAN_LOCK}"
flock 9 || fail 'cannot lock {DEADMAN_LOCK}'
touch "$R{CONFIRMED}"
if [ -e "$R{ROLLBACK_STARTED}" ]; then v confirm too-late; exit 0; fi
[ -n "$R" ] || systemctl stop {DEADMAN_UNIT}.timer >/dev/null 2>&1
rm -f "$R"{q(DEADMAN_WANTS)} "$R"{q(DEADMAN_TIMER)} "$R"{q(DEADMAN_SERVICE)} "$R"{q(DEADMAN_SCRIPT)}
mkdir -p -m 0700 "$R{STATE_DIR}"
if [ -e "$R{STAGED_CONFIG}" ] && [ "$(sha512sum < "$R{STAGED_CONFIG}" | cut -d' ' -f1)" = {new_sha512} ]; then
    mv -f "$R{STAGED_CONFIG}" "$R{APPLIED_CONFIG}" || fail 'cannot save the applied config'
fi
""",
    ]
    if applied is not None:
        parts += write_file(APPLIED_CONFIG, applied, "the config the host runs (the next rollback target)")
    parts.append(f"""grep -qF {q(lock_token)} "$R{LOCK_FILE}" 2>/dev/null && rm -f "$R{LOCK_FILE}"
v confirm done
""")
    return Script("confirm", tuple(parts), timeout=60)


def rollback(*, record: bytes, staging_json: bytes, reset_argv: Sequence[str], reboot_unit: str) -> Script:
    """Case A (the new config fails its checks, SSH works): disarm the dead-man switch, record why,
    re-apply the saved previous config (``flatcar-reset -F APPLIED_CONFIG``) and reboot."""
    parts: list[str | Payload] = [
        _prologue(""),
        f"""mkdir -p {RUN_DIR}
exec 9>{DEADMAN_LOCK}
flock 9 || fail 'cannot lock {DEADMAN_LOCK}'
if [ -e {ROLLBACK_STARTED} ]; then v rollback already-started; exit 0; fi
touch {ROLLBACK_STARTED}
systemctl stop {DEADMAN_UNIT}.timer >/dev/null 2>&1
rm -f {q(DEADMAN_WANTS)} {q(DEADMAN_TIMER)} {q(DEADMAN_SERVICE)} {q(DEADMAN_SCRIPT)}
[ -s {APPLIED_CONFIG} ] || fail 'the previous config {APPLIED_CONFIG} is missing'
""",
    ]
    parts += write_file(ROLLBACK_RECORD, record, "the rollback record")
    parts += write_file(STATE_FILE, staging_json, "the staging record of the rollback")
    parts.append(_reset(reset_argv))
    parts.append(_reboot(reboot_unit))
    return Script("rollback", tuple(parts), timeout=300)


def release(root: str, token: str) -> Script:
    return Script(
        "release",
        (
            _prologue(root),
            f'grep -qF {q(token)} "$R{LOCK_FILE}" 2>/dev/null && rm -f "$R{LOCK_FILE}"\nv released 1\n',
        ),
        timeout=30,
    )


def lock(root: str, owner_json: str, stale: str | None) -> Script:
    """Take the lock on its own (a stale lock of ours is taken over with its exact content)."""
    return Script(
        "lock", (_prologue(root), _lock(owner_json, stale), f'f lock "$R{LOCK_FILE}"\n'), timeout=30
    )


def facts(root: str) -> Script:
    """The host facts only (``pulumi refresh``)."""
    return Script("facts", (_prologue(root), _FACTS), timeout=60)


def settle(record: bytes | None) -> Script:
    """The host came back on the previous config by itself: a dead-man switch left over from the
    failed boot has nothing to do any more (disarm it), and record how it came back."""
    parts: list[str | Payload] = [
        _prologue(""),
        f"rm -f {q(DEADMAN_WANTS)} {q(DEADMAN_TIMER)} {q(DEADMAN_SERVICE)} {q(DEADMAN_SCRIPT)}\n"
        f"systemctl stop {DEADMAN_UNIT}.timer >/dev/null 2>&1; true\n",
    ]
    if record is not None:
        parts += write_file(ROLLBACK_RECORD, record, "the rollback record")
    return Script("settle", tuple(parts), timeout=30)
