"""The compiler's version registry: one row per Ignition spec and one per Butane flatcar version.

Translation, validation and error texts read these rows instead of testing version strings, so
supporting a new version is a new row (plus, for a new Ignition spec, its JSON schema file).

``IgnitionSpec``: what the machine's Ignition accepts for that ``ignition.version`` — the schema,
the URL schemes of ``source`` fields, whether setuid/setgid/sticky bits work.
``ButaneVersion``: which Ignition spec a Butane flatcar version emits, the Butane fields it adds
over the previous version (``since``), and the fields its variant forbids (Butane's field filters).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

_BASE_SCHEMES = frozenset({"http", "https", "tftp", "s3", "gs", "data"})


@dataclass(frozen=True)
class IgnitionSpec:
    version: str
    schema: str  # file in compiler/schema/
    url_schemes: frozenset[str]
    # Ignition < 3.6 ignores setuid/setgid/sticky bits (coreos/ignition#2042) and warns about them
    special_mode_bits_work: bool = False
    experimental: bool = False


@dataclass(frozen=True)
class ButaneVersion:
    version: str
    ignition: str  # key of IGNITION_SPECS
    # Butane field paths (snake_case, no list indices: "storage.luks.discard") new in this version
    added: frozenset[str] = frozenset()
    # field path -> why this variant refuses it (Butane's FieldFilters: an error)
    forbidden: Mapping[str, str] = field(default_factory=dict)
    experimental: bool = False

    @cached_property
    def key(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.version.split("-")[0].split("."))

    @property
    def spec(self) -> IgnitionSpec:
        return IGNITION_SPECS[self.ignition]

    @cached_property
    def unavailable(self) -> frozenset[str]:
        """The field paths of newer versions: not in this one."""
        return frozenset(f for b in BUTANE_VERSIONS.values() if b.key > self.key for f in b.added)


IGNITION_SPECS: dict[str, IgnitionSpec] = {
    s.version: s
    for s in (
        IgnitionSpec("3.3.0", "ignition-3.3.0.json", _BASE_SCHEMES),
        IgnitionSpec("3.4.0", "ignition-3.4.0.json", _BASE_SCHEMES | {"arn"}),
        IgnitionSpec(
            "3.5.0-experimental",
            "ignition-3.5.0-experimental.json",
            _BASE_SCHEMES | {"arn"},
            experimental=True,
        ),
    )
}

_CLEVIS = (
    "clevis is not supported in this spec version: Butane's flatcar variant accepts it from "
    "1.2.0-experimental (Ignition spec 3.5.0-experimental, Flatcar >= 3941 with clevis in the initramfs)"
)

BUTANE_VERSIONS: dict[str, ButaneVersion] = {
    b.version: b
    for b in (
        ButaneVersion("1.0.0", "3.3.0", forbidden={"storage.luks.clevis": _CLEVIS}),
        ButaneVersion(
            "1.1.0",
            "3.4.0",
            added=frozenset(
                {
                    "storage.luks.discard",
                    "storage.luks.open_options",
                    "storage.luks.clevis.tang.advertisement",
                    "systemd.units.contents_local",
                    "systemd.units.dropins.contents_local",
                    "passwd.users.ssh_authorized_keys_local",
                }
            ),
            forbidden={"storage.luks.clevis": _CLEVIS},
        ),
        ButaneVersion("1.2.0-experimental", "3.5.0-experimental", experimental=True),
    )
}

# The Ignition version a legacy Container Linux Config compiles to.
CLC_IGNITION = "3.3.0"


def stable_butane_versions() -> list[str]:
    return [v for v, b in BUTANE_VERSIONS.items() if not b.experimental]


def describe_butane_versions() -> str:
    """``1.0.0 (Ignition 3.3.0), 1.1.0 (Ignition 3.4.0) or 1.2.0-experimental (...)``: for errors."""
    parts = [f"{v} (Ignition {b.ignition})" for v, b in BUTANE_VERSIONS.items()]
    return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else parts[0]


_SINCE = {f: b for b in reversed(BUTANE_VERSIONS.values()) for f in b.added}


def since(field_path: str) -> ButaneVersion | None:
    """The first Butane version with ``field_path``; ``None`` when it is in every version."""
    return _SINCE.get(field_path)
