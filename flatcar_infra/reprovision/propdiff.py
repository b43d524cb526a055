"""The provider's property diff: what a change of the ``Reprovision`` resource's inputs means for
the host (reprovision, reconnect, record, replace, or a new machine). Pure and offline: ``diff``
runs on every preview and must never touch the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from flatcar_infra.reprovision.policy import Policy

CONNECTION_KEYS = ("host", "port", "user", "private_key", "host_key")
CONFIG_KEYS = ("config", "config_hash", "manifest", "delivery", "config_url")
POLICY_KEYS = ("policy", "platform_keys", "config_source")
"""Shape the next reprovision (``config_source``: where the operator side reads and restores the
hosted config): a change alone is only recorded."""
IDENTITY_KEYS = ("machine_identity",)
"""The cloud's id of the machine (instance or droplet id): when it changes, another machine answers
at the address, so the host key pinned for the old one must not be reused."""
INPUT_KEYS = (*CONNECTION_KEYS, *CONFIG_KEYS, *POLICY_KEYS, *IDENTITY_KEYS)

Action = Literal["none", "record", "connect", "reprovision", "replace", "new-machine"]


@dataclass(frozen=True)
class PropDiff:
    """What a change of inputs means for the host. ``changed`` are input names, sorted."""

    changed: tuple[str, ...]
    action: Action
    replaces: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()  # values not known yet (preview)

    @property
    def has_changes(self) -> bool:
        return self.action != "none"


def _norm(key: str, value: Any) -> Any:
    if key == "port" and isinstance(value, float) and value.is_integer():
        return int(value)
    if key == "policy":
        try:
            return Policy.from_dict(value).to_dict()
        except Exception:  # an invalid policy is check()'s business; compare raw
            return value
    if key == "host_key" and isinstance(value, str):
        return " ".join(value.split()[:2])
    if key == "platform_keys":
        return sorted(" ".join(str(k).split()[:2]) for k in value or ())
    return value


def diff_props(olds: Mapping[str, Any], news: Mapping[str, Any],
               is_unknown: Any = lambda v: False) -> PropDiff:
    """Pure and offline. ``olds`` are the previous OUTPUTS (they hold the inputs too).

    - a config hash change is an update (reprovision), never a replace — except under the
      ``replace`` strategy, where the machine itself is replaced and so is this resource;
    - connection-only changes update without a reboot (reconnect and verify);
    - policy-only changes are recorded (they shape the next reprovision);
    - an applied hash that differs from the desired one (drift seen by refresh, or a pending
      change left by ``ignore``) is a change too, unless the strategy is ``ignore``.
    """
    changed: list[str] = []
    unknown: list[str] = []
    for key in INPUT_KEYS:
        new = news.get(key)
        if is_unknown(new):
            unknown.append(key)
            changed.append(key)
            continue
        if key == "host_key" and not new:
            continue  # None = keep the key captured on first use (it is in olds)
        if _norm(key, olds.get(key)) != _norm(key, new):
            changed.append(key)
    try:
        strategy = Policy.from_dict(news.get("policy")).strategy if not is_unknown(news.get("policy")) \
            else "in-place"
    except Exception:
        strategy = "in-place"
    desired = news.get("config_hash")
    drift = (not is_unknown(desired) and olds.get("applied_hash") is not None
             and olds.get("applied_hash") != desired and strategy != "ignore")
    config_changed = any(k in changed for k in ("config", "config_hash"))
    if strategy == "replace":
        reps = tuple(k for k in ("host", "config_hash") if k in changed)
        if reps:
            return PropDiff(tuple(sorted(changed)), "replace", reps, tuple(sorted(unknown)))
    old_identity = olds.get("machine_identity")
    if old_identity is not None and "machine_identity" in changed:
        # a replaced machine: wait for its first boot, pin its key afresh, then converge it
        return PropDiff(tuple(sorted(changed)), "new-machine", (), tuple(sorted(unknown)))
    if (config_changed or drift) and strategy not in ("ignore", "replace"):
        action: Action = "reprovision"
    elif any(k in changed for k in CONNECTION_KEYS):
        action = "connect"
    elif changed:
        action = "record"
    else:
        action = "none"
    return PropDiff(tuple(sorted(changed)), action, (), tuple(sorted(unknown)))


def manifest_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[tuple[str, str]]:
    """``[("+"|"-"|"~", key)]`` sorted by key: what a reviewer reads in a config diff."""
    out: list[tuple[str, str]] = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            out.append(("+", key))
        elif key not in new:
            out.append(("-", key))
        elif old[key] != new[key]:
            out.append(("~", key))
    return out
