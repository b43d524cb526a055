"""The CLC sections that configure Flatcar services: ``etcd``, ``flannel``, ``docker``, ``update``,
``locksmith``, and the dynamic data (``{PRIVATE_IPV4}``…) that etcd and flannel options may use.

The generated drop-ins and ``update.conf`` have the names and text ``ct`` (Flatcar's
container-linux-config-transpiler, ``config/types/*.go``) generated, so a machine configured from a
CLC here ends up as it would have with ``ct`` + Flatcar's spec 2 → 3 conversion. Three deliberate
differences, all Flatcar's own current paths, to which the legacy CoreOS ones are compatibility
symlinks on Flatcar: ``/etc/flatcar/update.conf`` (ct: ``/etc/coreos/update.conf``),
``EnvironmentFile=/run/metadata/flatcar`` (ct: ``/run/metadata/coreos``) and the wrappers under
``/usr/lib/flatcar/`` (ct: ``/usr/lib/coreos/``), as Flatcar's own CLC documentation shows.

Note: ct never generated a ``locksmithd`` drop-in: all locksmith settings (``REBOOT_STRATEGY`` and
the ``LOCKSMITHD_*`` variables) go to ``update.conf``, which ``locksmithd.service`` reads as an
``EnvironmentFile``. We do the same.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from flatcar_infra.compiler.clc_read import Ctx, child, key_mark
from flatcar_infra.compiler.yamlsrc import Mark, TypeMismatch, YMap, as_bool, as_int, as_str

UPDATE_CONF = "/etc/flatcar/update.conf"
METADATA_ENV = "/run/metadata/flatcar"

# --- dynamic data (ct config/templating) -------------------------------------------------------

_V4_PRIVATE, _V4_PUBLIC, _V6_PRIVATE, _V6_PUBLIC = (
    "PRIVATE_IPV4",
    "PUBLIC_IPV4",
    "PRIVATE_IPV6",
    "PUBLIC_IPV6",
)
PLATFORM_VARIABLES: dict[str, dict[str, str]] = {
    "azure": {_V4_PRIVATE: "COREOS_AZURE_IPV4_DYNAMIC", _V4_PUBLIC: "COREOS_AZURE_IPV4_VIRTUAL"},
    "digitalocean": {
        "HOSTNAME": "COREOS_DIGITALOCEAN_HOSTNAME",
        _V4_PRIVATE: "COREOS_DIGITALOCEAN_IPV4_PRIVATE_0",
        _V4_PUBLIC: "COREOS_DIGITALOCEAN_IPV4_PUBLIC_0",
        _V6_PRIVATE: "COREOS_DIGITALOCEAN_IPV6_PRIVATE_0",
        _V6_PUBLIC: "COREOS_DIGITALOCEAN_IPV6_PUBLIC_0",
    },
    "ec2": {
        "HOSTNAME": "COREOS_EC2_HOSTNAME",
        _V4_PRIVATE: "COREOS_EC2_IPV4_LOCAL",
        _V4_PUBLIC: "COREOS_EC2_IPV4_PUBLIC",
    },
    "gce": {
        "HOSTNAME": "COREOS_GCE_HOSTNAME",
        _V4_PRIVATE: "COREOS_GCE_IP_LOCAL_0",
        _V4_PUBLIC: "COREOS_GCE_IP_EXTERNAL_0",
    },
    "packet": {
        "HOSTNAME": "COREOS_PACKET_HOSTNAME",
        _V4_PRIVATE: "COREOS_PACKET_IPV4_PRIVATE_0",
        _V4_PUBLIC: "COREOS_PACKET_IPV4_PUBLIC_0",
        _V6_PUBLIC: "COREOS_PACKET_IPV6_PUBLIC_0",
    },
    "openstack-metadata": {
        "HOSTNAME": "COREOS_OPENSTACK_HOSTNAME",
        _V4_PRIVATE: "COREOS_OPENSTACK_IPV4_LOCAL",
        _V4_PUBLIC: "COREOS_OPENSTACK_IPV4_PUBLIC",
    },
    "vagrant-virtualbox": {
        "HOSTNAME": "COREOS_VAGRANT_VIRTUALBOX_HOSTNAME",
        _V4_PRIVATE: "COREOS_VAGRANT_VIRTUALBOX_PRIVATE_IPV4",
    },
    "cloudstack-configdrive": {"HOSTNAME": "CLOUDSTACK_LOCAL_HOSTNAME"},
    "custom": {
        "HOSTNAME": "COREOS_CUSTOM_HOSTNAME",
        _V4_PRIVATE: "COREOS_CUSTOM_PRIVATE_IPV4",
        _V4_PUBLIC: "COREOS_CUSTOM_PUBLIC_IPV4",
        _V6_PRIVATE: "COREOS_CUSTOM_PRIVATE_IPV6",
        _V6_PUBLIC: "COREOS_CUSTOM_PUBLIC_IPV6",
    },
}
PLATFORMS = tuple(sorted(PLATFORM_VARIABLES))
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class Arg:
    """One ``--flag=value`` of a wrapper's command line and where its value was written."""

    text: str
    mark: Mark
    ipath: str


def substitute_dynamic(ctx: Ctx, args: list[Arg]) -> tuple[list[str], bool] | None:
    """ct's dynamic data (``config/templating``): any ``{`` or ``}`` in an argument means the unit
    reads the platform's metadata, so a platform is required and ``coreos-metadata.service`` a
    dependency; each ``{NAME}`` (a ``{`` before the next ``}``) becomes ``${PLATFORM_VARIABLE}``,
    and a name the platform does not provide is an error. Braces that do not pair up (``}x{``)
    stay as they are, but still bring the metadata dependency, as in ct.

    Returns the new argument texts and whether the metadata dependency is needed; ``None`` after
    errors."""
    if not any("{" in a.text or "}" in a.text for a in args):
        return [a.text for a in args], False
    if ctx.platform is None:
        first = next(a for a in args if "{" in a.text or "}" in a.text)
        ctx.error(
            first.mark,
            "platform must be specified to use templating: dynamic data ({PRIVATE_IPV4}, ...) "
            f"needs --platform (one of: {', '.join(PLATFORMS)})",
            first.ipath,
        )
        return None
    table = PLATFORM_VARIABLES.get(ctx.platform)
    if table is None:  # already reported once for the whole config
        return None
    out: list[str] = []
    ok = True
    for arg in args:
        text = arg.text
        start, end = text.find("{"), text.find("}")
        while start != -1 and end != -1 and start < end:
            name = text[start + 1 : end]
            var = table.get(name)
            if var is None:
                supported = ", ".join("{" + n + "}" for n in table) or "none"
                ctx.error(
                    arg.mark,
                    f"unknown field {{{name}}}: not available on platform {ctx.platform!r} "
                    f"(supported there: {supported})",
                    arg.ipath,
                )
                ok = False
                break
            text = text.replace("{" + name + "}", "${" + var + "}", 1)
            # ct searches on from the old end of the placeholder, in the new text
            start = text.find("{", end)
            end = text.find("}", start) if start != -1 else end
        out.append(text)
    return (out, True) if ok else None


def platform_units(platform: str) -> list[dict[str, Any]]:
    """ct points ``coreos-metadata`` at the right provider on the two platforms it cannot detect."""
    if platform not in ("openstack-metadata", "cloudstack-configdrive"):
        return []
    dropin = {
        "name": "20-clct-provider-override.conf",
        "contents": f"[Service]\nEnvironment=COREOS_METADATA_OPT_PROVIDER=--provider={platform}",
    }
    return [
        {"name": "coreos-metadata.service", "dropins": [dict(dropin)]},
        {"name": "coreos-metadata-sshkeys@.service", "enabled": True, "dropins": [dict(dropin)]},
    ]


# --- unit text (ct config/types/util SystemdUnit) ----------------------------------------------


def go_quote(s: str) -> str:
    """Go's ``%q``: what ct used for option values (keeps whitespace in one systemd word)."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif not ch.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def unit_text(unit: list[str], service: list[str]) -> str:
    sections = [(n, lines) for n, lines in (("Unit", unit), ("Service", service)) if lines]
    return "\n\n".join("[" + n + "]" + "".join("\n" + line for line in lines) for n, lines in sections)


def wrapper_dropin(
    ctx: Ctx, exec_start: str, args: list[Arg], env: list[str]
) -> tuple[list[str], list[str]] | None:
    """ct's ``assembleUnit``: the [Unit] and [Service] lines of a wrapper's drop-in."""
    substituted = substitute_dynamic(ctx, args)
    if substituted is None:
        return None
    texts, dynamic = substituted
    unit: list[str] = []
    service: list[str] = []
    if dynamic:
        unit += ["Requires=coreos-metadata.service", "After=coreos-metadata.service"]
        service.append(f"EnvironmentFile={METADATA_ENV}")
    service += [f'Environment="{v}"' for v in env]
    service.append("ExecStart=")
    service.append("ExecStart=" + exec_start + "".join(f" \\\n  {a}" for a in texts))
    return unit, service


# --- semantic versions -------------------------------------------------------------------------

_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


def _version(ctx: Ctx, m: YMap, ipath: str) -> tuple[tuple[int, int, int], str] | None:
    node = child(m, "version")
    if node is None:
        return None
    try:
        text = as_str(node)
    except TypeMismatch as exc:
        ctx.error(node.mark, str(exc), f"{ipath}.version")
        return None
    match = _SEMVER.match(text.strip())
    if not match:
        ctx.error(
            node.mark, f"invalid version {text!r}: expected MAJOR.MINOR.PATCH (quote it)", f"{ipath}.version"
        )
        return None
    nums = (int(match[1]), int(match[2]), int(match[3]))
    canon = ".".join(map(str, nums)) + (match[4] or "") + (match[5] or "")
    return nums, canon


# --- option tables (field order = ct's struct order = argument order) --------------------------


def _fields(spec: str) -> list[tuple[str, str, str]]:
    """``"name data_dir snapshot_count:i interface=iface"`` → [(yaml key, cli flag, type)]."""
    out = []
    for word in spec.split():
        word, _, typ = word.partition(":")
        key, _, flag = word.partition("=")
        out.append((key, flag or key.replace("_", "-"), typ or "s"))
    return out


_E30 = (
    "name data_dir wal_dir snapshot_count:i heartbeat_interval:i election_timeout:i enable_pprof:b "
    "listen_peer_urls listen_client_urls max_snapshots:i max_wals:i cors initial_advertise_peer_urls "
    "initial_cluster initial_cluster_state initial_cluster_token advertise_client_urls discovery "
    "discovery_srv discovery_fallback discovery_proxy strict_reconfig_check:b auto_compaction_retention:i "
    "proxy proxy_failure_wait:i proxy_refresh_interval:i proxy_dial_timeout:i proxy_write_timeout:i "
    "proxy_read_timeout:i ca_file cert_file key_file client_cert_auth:b trusted_ca_file auto_tls:b "
    "peer_ca_file peer_cert_file peer_key_file peer_client_cert_auth:b peer_trusted_ca_file "
    "peer_auto_tls:b debug:b log_package_levels force_new_cluster:b"
)
_E32 = (
    _E30.replace("enable_pprof:b", "enable_pprof:b enable_v2:b").replace(
        "peer_auto_tls:b debug:b", "peer_auto_tls:b auth_token debug:b"
    )
    + " metrics log_output"
)
_E33 = (
    "name data_dir wal_dir snapshot_count:i heartbeat_interval:i election_timeout:i enable_pprof:b "
    "enable_v2:b listen_peer_urls listen_client_urls max_snapshots:i max_wals:i cors "
    "quota_backend_bytes:i max_txn_ops:i max_request_bytes:i grpc_keepalive_min_time "
    "grpc_keepalive_interval grpc_keepalive_timeout initial_advertise_peer_urls initial_cluster "
    "initial_cluster_state initial_cluster_token advertise_client_urls discovery discovery_srv "
    "discovery_fallback discovery_proxy strict_reconfig_check:b auto_compaction_retention "
    "auto_compaction_mode proxy proxy_failure_wait:i proxy_refresh_interval:i proxy_dial_timeout:i "
    "proxy_write_timeout:i proxy_read_timeout:i ca_file cert_file key_file client_cert_auth:b "
    "client_crl_file trusted_ca_file auto_tls:b peer_ca_file peer_cert_file peer_key_file "
    "peer_client_cert_auth:b peer_crl_file peer_trusted_ca_file peer_auto_tls:b peer_cert_allowed_cn "
    "auth_token debug:b log_package_levels force_new_cluster:b metrics log_output listen_metrics_urls "
    "experimental_initial_corrupt_check:b experimental_corrupt_check_time experimental_enable_v2v3"
)
_E34 = (
    _E33.replace("ca_file ", "", 1)
    .replace("peer_ca_file ", "")
    .replace(" log_output ", " logger log_outputs log_level ")
    + " backend_batch_limit:i backend_batch_interval backend_bbolt_freelist_type discovery_srv_name "
    "pre_vote:b initial_election_tick_advance:b auth_token_ttl:i bcrypt_cost:i peer_cert_allowed_hostname "
    "client_cert_allowed_hostname cipher_suites enable_grpc_gateway:b experimental_enable_lease_checkpoint:b "
    "experimental_compaction_batch_limit:i experimental_peer_skip_client_san_verification:b "
    "experimental_watch_progress_notify_interval"
)
_E35 = (
    _E34 + " socket_reuse_port:b socket_reuse_address:b enable_log_rotation:b log_rotation_config_json "
    "experimental_warning_apply_duration experimental_memory_mlock:b "
    "experimental_txn_mode_write_with_shared_buffer:b experimental_bootstrap_defrag_threshold_megabytes:i "
    "experimental_downgrade_check_time self_signed_cert_validity:i tls_min_version tls_max_version "
    "v2_deprecation listen_client_http_urls max_concurrent_streams:i unsafe_no_fsync:b "
    "experimental_enable_distributed_tracing:b experimental_distributed_tracing_address "
    "experimental_distributed_tracing_service_name experimental_distributed_tracing_instance_id "
    "experimental_distributed_tracing_sampling_rate:i experimental_stop_grpc_service_on_defrag:b"
)
_E2 = (
    "advertise_client_urls ca_file cert_file client_cert_auth:b cors data_dir debug:b discovery "
    "discovery_fallback discovery_srv discovery_proxy election_timeout:i enable_pprof:b "
    "force_new_cluster:b heartbeat_interval:i initial_advertise_peer_urls initial_cluster "
    "initial_cluster_state initial_cluster_token key_file listen_client_urls listen_peer_urls "
    "log_package_levels max_snapshots:i max_wals:i name peer_ca_file peer_cert_file peer_key_file "
    "peer_client_cert_auth:b peer_trusted_ca_file proxy proxy_dial_timeout:i proxy_failure_wait:i "
    "proxy_read_timeout:i proxy_refresh_interval:i proxy_write_timeout:i snapshot_count:i "
    "strict_reconfig_check:b trusted_ca_file wal_dir"
)
ETCD_OPTIONS = {
    "2.3": _fields(_E2),
    "3.0": _fields(_E30),
    "3.1": _fields(_E30 + " metrics log_output"),
    "3.2": _fields(_E32),
    "3.3": _fields(_E33),
    "3.4": _fields(_E34),
    "3.5": _fields(_E35),
}
ETCD_NEWEST_MINOR = 5
ETCD_DEFAULT = (3, 5, 0)  # ct's EtcdDefaultVersion (no image tag is written for it)
_F05 = (
    "etcd_endpoints etcd_cafile etcd_certfile etcd_keyfile etcd_prefix ip_masq subnet_file "
    "interface=iface public_ip"
)
FLANNEL_OPTIONS = {
    "0.5": _fields(_F05),
    "0.6": _fields("etcd_username etcd_password " + _F05),
    "0.7": _fields("etcd_username etcd_password " + _F05 + " kube_subnet_mgr:b"),
}
_DEPRECATED = {
    "ca_file": "trusted_ca_file and client_cert_auth",
    "peer_ca_file": "peer_trusted_ca_file and peer_client_cert_auth",
}


def _cli_args(
    ctx: Ctx, m: YMap, ipath: str, fields: list[tuple[str, str, str]], extra_keys: tuple[str, ...]
) -> tuple[list[Arg], dict[str, Any]] | None:
    """``--flag=value`` for every option set, in ct's order; strings Go-quoted like ct did."""
    known = {f[0] for f in fields}
    for key, kmark in m.keys.items():
        if key not in known and key not in extra_keys:
            ctx.warn(kmark, f"unknown key {key!r} for this version (ignored)", f"{ipath}.{key}")
    args: list[Arg] = []
    values: dict[str, Any] = {}
    ok = True
    for key, flag, typ in fields:
        node = child(m, key)
        if node is None:
            continue
        try:
            if typ == "i":
                value: Any = as_int(node)
                text = str(value)
            elif typ == "b":
                value = as_bool(node)
                text = "true" if value else "false"
            else:
                value = as_str(node)
                text = go_quote(value)
        except (TypeMismatch, UnicodeDecodeError) as exc:
            ctx.error(node.mark, str(exc), f"{ipath}.{key}")
            ok = False
            continue
        if key in _DEPRECATED:
            ctx.warn(
                key_mark(m, key), f"{key} is deprecated in etcd: use {_DEPRECATED[key]}", f"{ipath}.{key}"
            )
        values[key] = value
        args.append(Arg(f"--{flag}={text}", node.mark, f"{ipath}.{key}"))
    return (args, values) if ok else None


# --- sections ----------------------------------------------------------------------------------


def etcd_unit(ctx: Ctx, m: YMap, ipath: str) -> dict[str, Any] | None:
    version = _version(ctx, m, ipath)
    if version is None and child(m, "version") is not None:
        return None
    nums = version[0] if version else ETCD_DEFAULT
    vmark = key_mark(m, "version")
    if nums < (2, 3, 0):
        ctx.error(
            vmark, "Etcd version specified is not valid (too old): 2.3.0 is the oldest", f"{ipath}.version"
        )
        return None
    if nums[0] > 3:
        ctx.error(vmark, "Etcd version is not valid (too new): 3.x is the newest", f"{ipath}.version")
        return None
    if (nums[0] == 2 and nums[1] > 3) or (nums[0] == 3 and nums[1] > ETCD_NEWEST_MINOR):
        ctx.warn(
            vmark,
            "Etcd minor version specified is too new, only options available in the previous "
            "minor version will be accepted",
            f"{ipath}.version",
        )
    table = "2.3" if nums[0] == 2 else f"3.{min(nums[1], ETCD_NEWEST_MINOR)}"
    parsed = _cli_args(ctx, m, ipath, ETCD_OPTIONS[table], ("version",))
    if parsed is None:
        return None
    env = [f"ETCD_IMAGE_TAG=v{version[1]}"] if version else []
    lines = wrapper_dropin(ctx, "/usr/lib/flatcar/etcd-wrapper $ETCD_OPTS", parsed[0], env)
    if lines is None:
        return None
    return {
        "name": "etcd-member.service",
        "enabled": True,
        "dropins": [{"name": "20-clct-etcd-member.conf", "contents": unit_text(*lines)}],
    }


def flannel_unit(ctx: Ctx, m: YMap, ipath: str) -> dict[str, Any] | None:
    version = _version(ctx, m, ipath)
    if version is None and child(m, "version") is not None:
        return None
    nums = version[0] if version else (0, 6, 0)
    vmark = key_mark(m, "version")
    if nums < (0, 5, 0):
        ctx.error(vmark, "flannel version is too old (0.5.0 is the oldest supported)", f"{ipath}.version")
        return None
    if nums[0] > 0 or nums[1] > 7:
        ctx.warn(
            vmark,
            "flannel version is newer than this translator knows: only the options of 0.7 are accepted",
            f"{ipath}.version",
        )
    table = "0.7" if (nums[0] > 0 or nums[1] >= 7) else f"0.{nums[1]}"
    parsed = _cli_args(ctx, m, ipath, FLANNEL_OPTIONS[table], ("version", "network_config"))
    net_config = ctx.str_(m, "network_config", ipath)
    if parsed is None:
        return None
    args, values = parsed
    if net_config:
        try:
            json.loads(net_config)
        except ValueError:
            ctx.error(
                key_mark(m, "network_config"),
                "flannel network_config is not valid JSON",
                f"{ipath}.network_config",
            )
            return None
        if values.get("kube_subnet_mgr"):
            ctx.error(
                key_mark(m, "network_config"),
                "flannel network_config cannot be given when kube_subnet_mgr is set",
                f"{ipath}.network_config",
            )
            return None
    env = [f"FLANNEL_IMAGE_TAG=v{version[1]}"] if version else []
    lines = wrapper_dropin(ctx, "/usr/lib/flatcar/flannel-wrapper $FLANNEL_OPTS", args, env)
    if lines is None:
        return None
    if net_config:
        pre = "ExecStartPre=/usr/bin/etcdctl"
        for key, flag in (
            ("etcd_endpoints", "endpoints"),
            ("etcd_cafile", "ca-file"),
            ("etcd_certfile", "cert-file"),
            ("etcd_keyfile", "key-file"),
        ):
            if values.get(key):
                pre += f" --{flag}={go_quote(values[key])}"
        pre += f" set /coreos.com/network/config {go_quote(net_config)}"
        lines[1].append(pre)
    return {
        "name": "flanneld.service",
        "enabled": True,
        "dropins": [{"name": "20-clct-flannel.conf", "contents": unit_text(*lines)}],
    }


def docker_unit(ctx: Ctx, m: YMap, ipath: str) -> dict[str, Any]:
    flags = ctx.strs(m, "flags", ipath) or []
    return {
        "name": "docker.service",
        "enabled": True,
        "dropins": [
            {
                "name": "20-clct-docker.conf",
                "contents": f'[Service]\nEnvironment="DOCKER_OPTS={" ".join(flags)}"',
            }
        ],
    }


_UPDATE_KEYS = (
    ("group", "GROUP"),
    ("server", "SERVER"),
    ("pcr_policy_server", "PCR_POLICY_SERVER"),
    ("download_user", "DOWNLOAD_USER"),
    ("download_password", "DOWNLOAD_PASSWORD"),
    ("machine_alias", "MACHINE_ALIAS"),
)
UPDATE_ALLOWED = tuple(k for k, _ in _UPDATE_KEYS)
_LOCKSMITH_KEYS = (
    ("reboot_strategy", "REBOOT_STRATEGY"),
    ("window_start", "LOCKSMITHD_REBOOT_WINDOW_START"),
    ("window_length", "LOCKSMITHD_REBOOT_WINDOW_LENGTH"),
    ("group", "LOCKSMITHD_GROUP"),
    ("etcd_endpoints", "LOCKSMITHD_ENDPOINT"),
    ("etcd_cafile", "LOCKSMITHD_ETCD_CAFILE"),
    ("etcd_certfile", "LOCKSMITHD_ETCD_CERTFILE"),
    ("etcd_keyfile", "LOCKSMITHD_ETCD_KEYFILE"),
)
LOCKSMITH_ALLOWED = tuple(k for k, _ in _LOCKSMITH_KEYS)
_WINDOW_TIME = re.compile(r"^([01]?[0-9]|2[0-3]):[0-5][0-9]$")
_DURATION = re.compile(r"^[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$")


def update_conf(
    ctx: Ctx, update: YMap | None, locksmith: YMap | None, uipath: str, lipath: str
) -> str | None:
    """The text of ``update.conf`` exactly as ct wrote it (``None`` when nothing is set)."""
    contents = ""
    if update is not None:
        values = {k: ctx.str_(update, k, uipath) for k, _ in _UPDATE_KEYS}
        group = values["group"]
        if (
            group is not None
            and group.lower() not in ("stable", "beta", "alpha", "lts")
            and not values["server"]
        ):
            ctx.warn(
                key_mark(update, "group"),
                f"unknown update group {group!r} (Flatcar's are stable, beta, alpha and lts)",
                f"{uipath}.group",
            )
        if group:
            contents += f"GROUP={group.lower()}"
        for key, var in _UPDATE_KEYS[1:]:
            if values[key]:
                contents += f"\n{var}={values[key]}"
    if locksmith is not None:
        lvalues = {k: ctx.str_(locksmith, k, lipath) for k, _ in _LOCKSMITH_KEYS}
        _check_locksmith(ctx, locksmith, lvalues, lipath)
        lines = [f"{var}={go_quote(v)}" for k, var in _LOCKSMITH_KEYS if (v := lvalues[k]) is not None]
        if lines:
            contents += "\n" + "\n".join(lines)
    return contents or None


def _check_locksmith(ctx: Ctx, m: YMap, values: dict[str, str | None], ipath: str) -> None:
    strategy = values["reboot_strategy"]
    if strategy is not None and strategy.lower() not in ("reboot", "etcd-lock", "off"):
        ctx.error(
            key_mark(m, "reboot_strategy"),
            f"unknown reboot strategy {strategy!r} (one of reboot, etcd-lock, off)",
            f"{ipath}.reboot_strategy",
        )
    start, length = values["window_start"], values["window_length"]
    if bool(start) != bool(length):
        where = "window_length" if start else "window_start"
        ctx.error(
            key_mark(m, "window_start" if start else "window_length"),
            f"window_start and window_length must both be given ({where} is missing)",
            ipath,
        )
    if start:
        words = start.split()
        day, time = (words[0], words[1]) if len(words) >= 2 else ("", start)
        if day and day.lower() not in ("sun", "mon", "tue", "wed", "thu", "fri", "sat"):
            ctx.error(
                key_mark(m, "window_start"),
                f"unknown day {day!r} in window_start (Sun…Sat)",
                f"{ipath}.window_start",
            )
        elif not _WINDOW_TIME.match(time):
            ctx.error(
                key_mark(m, "window_start"),
                f"cannot parse window_start {start!r}: expected '[Day ]HH:MM'",
                f"{ipath}.window_start",
            )
    if length and not _DURATION.match(length):
        ctx.error(
            key_mark(m, "window_length"),
            f"cannot parse window_length {length!r}: expected a duration like 1h30m",
            f"{ipath}.window_length",
        )
