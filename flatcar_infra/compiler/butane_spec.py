"""The Butane flatcar spec as a table: every key, its Ignition name and its type (from coreos/butane
docs config-flatcar-v1_0.md, v1_1.md and v1_2-exp.md).

Which version introduced a key, and which keys a version forbids, is the version registry's
(``versions.py``): this table is the union of every version's keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class _Type:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


STR = _Type("string")
BOOL = _Type("boolean")
INT = _Type("integer")
MODE = _Type("mode")  # an integer, written in octal by convention
STRLIST = _Type("list of strings")
CUSTOM = _Type("custom")  # consumed by a hook, not copied


@dataclass(frozen=True)
class F:
    """One input key: its Ignition key (``None`` = consumed by a hook) and its type."""

    out: str | None
    type: Any


@dataclass(frozen=True)
class Obj:
    fields: dict[str, F]
    hook: str | None = None
    # keys that are a known mistake (e.g. Container Linux Config syntax): an error with advice
    hints: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ListOf:
    item: Obj


def _same(*names: str, type: Any = STR) -> dict[str, F]:
    return {n: F(n, type) for n in names}


HEADER = Obj({"name": F("name", STR), "value": F("value", STR)})
VERIFICATION = Obj({"hash": F("hash", STR)})

RESOURCE = Obj(
    {
        "source": F("source", STR),
        "inline": F(None, CUSTOM),
        "local": F(None, CUSTOM),
        "compression": F("compression", STR),
        "http_headers": F("httpHeaders", ListOf(HEADER)),
        "verification": F("verification", VERIFICATION),
    },
    hook="resource",
)

NODE_USER = Obj({"id": F("id", INT), "name": F("name", STR)})
NODE_GROUP = Obj({"id": F("id", INT), "name": F("name", STR)})

_NODE = {
    "path": F("path", STR),
    "overwrite": F("overwrite", BOOL),
    "user": F("user", NODE_USER),
    "group": F("group", NODE_GROUP),
}

FILE = Obj(
    {
        **_NODE,
        "contents": F("contents", RESOURCE),
        "append": F("append", ListOf(RESOURCE)),
        "mode": F("mode", MODE),
    },
    hints={
        "filesystem": "'filesystem' is Container Linux Config syntax; Butane files have no "
        "filesystem (paths are absolute in the real root)"
    },
)
DIRECTORY = Obj({**_NODE, "mode": F("mode", MODE)})
LINK = Obj({**_NODE, "target": F("target", STR), "hard": F("hard", BOOL)})

PARTITION = Obj(
    {
        "label": F("label", STR),
        "number": F("number", INT),
        "size_mib": F("sizeMiB", INT),
        "start_mib": F("startMiB", INT),
        "type_guid": F("typeGuid", STR),
        "guid": F("guid", STR),
        "wipe_partition_entry": F("wipePartitionEntry", BOOL),
        "should_exist": F("shouldExist", BOOL),
        "resize": F("resize", BOOL),
    }
)
DISK = Obj(
    {
        "device": F("device", STR),
        "wipe_table": F("wipeTable", BOOL),
        "partitions": F("partitions", ListOf(PARTITION)),
    }
)
RAID = Obj(
    {
        "name": F("name", STR),
        "level": F("level", STR),
        "devices": F("devices", STRLIST),
        "spares": F("spares", INT),
        "options": F("options", STRLIST),
    }
)
FILESYSTEM = Obj(
    {
        "device": F("device", STR),
        "format": F("format", STR),
        "path": F("path", STR),
        "wipe_filesystem": F("wipeFilesystem", BOOL),
        "label": F("label", STR),
        "uuid": F("uuid", STR),
        "options": F("options", STRLIST),
        "mount_options": F("mountOptions", STRLIST),
        "with_mount_unit": F(None, CUSTOM),
    },
    hook="filesystem",
    hints={
        "mount": "'mount' is Container Linux Config syntax; in Butane put device, format, "
        "wipe_filesystem, label and options directly on the filesystem entry",
        "name": "'name' is Container Linux Config syntax; Butane filesystems are identified by "
        "device (and mounted at path)",
    },
)
TANG = Obj(
    {"url": F("url", STR), "thumbprint": F("thumbprint", STR), "advertisement": F("advertisement", STR)}
)
CLEVIS_CUSTOM = Obj(
    {"pin": F("pin", STR), "config": F("config", STR), "needs_network": F("needsNetwork", BOOL)}
)
CLEVIS = Obj(
    {
        "tang": F("tang", ListOf(TANG)),
        "tpm2": F("tpm2", BOOL),
        "threshold": F("threshold", INT),
        "custom": F("custom", CLEVIS_CUSTOM),
    }
)
LUKS = Obj(
    {
        "name": F("name", STR),
        "device": F("device", STR),
        "key_file": F("keyFile", RESOURCE),
        "label": F("label", STR),
        "uuid": F("uuid", STR),
        "options": F("options", STRLIST),
        "wipe_volume": F("wipeVolume", BOOL),
        "clevis": F("clevis", CLEVIS),
        "discard": F("discard", BOOL),
        "open_options": F("openOptions", STRLIST),
    },
    hook="luks",
)
TREE = Obj({"local": F(None, CUSTOM), "path": F(None, CUSTOM)})

STORAGE = Obj(
    {
        "disks": F("disks", ListOf(DISK)),
        "raid": F("raid", ListOf(RAID)),
        "filesystems": F("filesystems", ListOf(FILESYSTEM)),
        "files": F("files", ListOf(FILE)),
        "directories": F("directories", ListOf(DIRECTORY)),
        "links": F("links", ListOf(LINK)),
        "luks": F("luks", ListOf(LUKS)),
        "trees": F(None, ListOf(TREE)),  # checked for unknown keys here, expanded at the end
    }
)

DROPIN = Obj(
    {
        "name": F("name", STR),
        "contents": F("contents", STR),
        "contents_local": F(None, CUSTOM),
    },
    hook="contents_local",
)
UNIT = Obj(
    {
        "name": F("name", STR),
        "enabled": F("enabled", BOOL),
        "mask": F("mask", BOOL),
        "contents": F("contents", STR),
        "contents_local": F(None, CUSTOM),
        "dropins": F("dropins", ListOf(DROPIN)),
    },
    hook="contents_local",
    hints={"enable": "'enable' is legacy syntax; use 'enabled: true'"},
)
SYSTEMD = Obj({"units": F("units", ListOf(UNIT))})

USER = Obj(
    {
        "name": F("name", STR),
        "password_hash": F("passwordHash", STR),
        "ssh_authorized_keys": F("sshAuthorizedKeys", STRLIST),
        "ssh_authorized_keys_local": F(None, CUSTOM),
        "uid": F("uid", INT),
        "gecos": F("gecos", STR),
        "home_dir": F("homeDir", STR),
        "no_create_home": F("noCreateHome", BOOL),
        "primary_group": F("primaryGroup", STR),
        "groups": F("groups", STRLIST),
        "no_user_group": F("noUserGroup", BOOL),
        "no_log_init": F("noLogInit", BOOL),
        "shell": F("shell", STR),
        "should_exist": F("shouldExist", BOOL),
        "system": F("system", BOOL),
    },
    hook="user",
)
GROUP = Obj(
    {
        "name": F("name", STR),
        "gid": F("gid", INT),
        "password_hash": F("passwordHash", STR),
        "should_exist": F("shouldExist", BOOL),
        "system": F("system", BOOL),
    }
)
PASSWD = Obj({"users": F("users", ListOf(USER)), "groups": F("groups", ListOf(GROUP))})

KERNEL_ARGUMENTS = Obj(
    {"should_exist": F("shouldExist", STRLIST), "should_not_exist": F("shouldNotExist", STRLIST)}
)

IGNITION = Obj(
    {
        "config": F(
            "config",
            Obj({"merge": F("merge", ListOf(RESOURCE)), "replace": F("replace", RESOURCE)}),
        ),
        "timeouts": F(
            "timeouts",
            Obj(
                {
                    "http_response_headers": F("httpResponseHeaders", INT),
                    "http_total": F("httpTotal", INT),
                }
            ),
        ),
        "security": F(
            "security",
            Obj(
                {
                    "tls": F(
                        "tls", Obj({"certificate_authorities": F("certificateAuthorities", ListOf(RESOURCE))})
                    )
                }
            ),
        ),
        "proxy": F(
            "proxy",
            Obj(
                {
                    "http_proxy": F("httpProxy", STR),
                    "https_proxy": F("httpsProxy", STR),
                    "no_proxy": F("noProxy", STRLIST),
                }
            ),
        ),
    }
)

ROOT = Obj(
    {
        "variant": F(None, CUSTOM),
        "version": F(None, CUSTOM),
        "ignition": F("ignition", IGNITION),
        "storage": F("storage", STORAGE),
        "systemd": F("systemd", SYSTEMD),
        "passwd": F("passwd", PASSWD),
        "kernel_arguments": F("kernelArguments", KERNEL_ARGUMENTS),
    }
)
