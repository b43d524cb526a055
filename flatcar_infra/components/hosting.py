"""Config hosting: the real config in a bucket object, a never-changing pointer in user-data.

DigitalOcean cannot change a droplet's user-data and EC2 only with a stop/start (16 KB max), so
the user-data is a pointer to a stable object URL. The pointer is built only from the bucket and
the key, never from the config or its hash: two different configs give byte-identical user-data,
so a config change never replaces the instance. The ``Reprovision`` resource then applies the new
object content in place. Each target's hosting (S3 with an instance role, a public Spaces
object, the local bucket) lives in its module under ``flatcar_infra.targets``; what they share
is here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi

from flatcar_infra.canonical import canonical_bytes
from flatcar_infra.components.config import ConfigOutput
from flatcar_infra.secrets import SecretFinding

POINTER_VERSION = "3.3.0"
"""Ignition spec of the pointer: understood by every Flatcar still supported (LTS included)."""

OBJECT_NAME = "config.ign"


def pointer_config(source: str) -> str:
    """The user-data: an Ignition config that replaces itself with the one at ``source``."""
    doc = {"ignition": {"version": POINTER_VERSION, "config": {"replace": {"source": source}}}}
    return canonical_bytes(doc).decode("utf-8")


def object_key(machine: str, *, unguessable: str | None = None) -> str:
    """``flatcar-infra/<project>/<stack>/<machine>[/<unguessable>]/config.ign``: two projects or
    stacks sharing a bucket never write each other's objects."""
    parts = ["flatcar-infra", pulumi.get_project(), pulumi.get_stack(), machine]
    if unguessable:
        parts.append(unguessable)
    return "/".join([*parts, OBJECT_NAME])


def check_object_key(field: str, key: str | None) -> None:
    """A user-given object key (an upgrade keeping an existing machine's pointer): a plain,
    relative S3 key, so the pointer built from it is the one the machine already has."""
    if key is None:
        return
    if not isinstance(key, str) or not key or key.startswith("/") or any(c in key for c in "\n\r\\"):
        raise pulumi.RunError(f"{field}: {key!r} is not an object key "
                              "(e.g. flatcar-infra/<stack>/<machine>/config.ign)")


def refuse_public_secrets(
    name: str, config: ConfigOutput, accepted: Sequence[str], *, where: str, opt_in: str
) -> pulumi.Output[str]:
    """The config's canonical text, or a ``RunError`` before it is written to a public object.

    Refused: every entry ``flatcar_infra.secrets.find_secrets`` flags (the detector the plan
    masks with), each entry holding a Pulumi secret variable, and each secret variable whose use
    cannot be traced. ``accepted`` lists the entries the user publishes knowingly
    (``file:/etc/app/ca.key``); an entry not listed, e.g. a secret added later, is still refused.
    The check is chained into the content, so the object cannot be written without it.
    """
    accepted_set = set(accepted)

    def check(args: list[Any]) -> str:
        text = str(args[0])
        findings: list[SecretFinding] = args[1]
        refused: dict[str, list[str]] = {}
        for f in findings:
            if f.entry not in accepted_set:
                refused.setdefault(f.entry, []).append(f"{f.where}: {f.reason}")
        if refused:
            listing = "; ".join(f"{e} ({', '.join(r)})" for e, r in sorted(refused.items()))
            names = ", ".join(f'"{e}"' for e in sorted(refused | {e: [] for e in accepted_set}))
            raise pulumi.RunError(
                f"{name}: refusing to publish the config in {where}: it holds secrets: {listing}. "
                "Keep them out of the config (fetch them at boot from a secret store), or accept "
                f"publishing exactly these entries with {opt_in}=[{names}]"
            )
        stale = sorted(accepted_set - {f.entry for f in findings})
        if stale:
            pulumi.log.warn(
                f"{name}: {opt_in} lists {', '.join(stale)}, which holds no secret "
                "(any more): remove it from the list"
            )
        return text

    return pulumi.Output.all(config.canonical, config.secret_findings()).apply(check)
