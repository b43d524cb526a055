"""The rollout policy and the waves: every field checked when built, waves as documented."""

from __future__ import annotations

import pytest

from flatcar_infra.rollout.policy import RolloutPolicy, RolloutPolicyError
from flatcar_infra.rollout.schedule import Wave, plan_waves

NAMES = [f"web-{i}" for i in range(1, 13)]


def test_defaults_and_round_trip() -> None:
    p = RolloutPolicy()
    assert p.max_unavailable == 1 and p.failure_budget == 0 and p.canary == 0 and p.waves == ()
    full = RolloutPolicy(
        max_unavailable="25%",
        waves=(("a",), ("b", "c")),
        bake_seconds=30,
        gates=("etcdctl endpoint health",),
        gate_timeout=60,
        gate_interval=2,
        failure_budget=1,
    )
    assert RolloutPolicy.from_dict(full.to_dict()) == full
    # numbers as protobuf Structs deliver them
    assert RolloutPolicy.from_dict({**full.to_dict(), "failure_budget": 1.0}).failure_budget == 1
    assert RolloutPolicy.from_dict({"max_unavailable": 3.0}).max_unavailable == 3
    assert RolloutPolicy.from_dict({"max_unavailable": "4"}).max_unavailable == 4


@pytest.mark.parametrize(
    ("value", "size", "limit"),
    [
        (1, 12, 1),
        (4, 12, 4),
        (20, 12, 20),
        ("25%", 12, 3),
        ("10%", 12, 1),
        ("100%", 12, 12),
        ("33%", 3, 1),
        ("50%", 3, 1),
        ("34%", 3, 1),
        ("67%", 3, 2),
        ("1%", 1, 1),
    ],
)
def test_max_unavailable_resolves_rounding_down_at_least_one(value: int | str, size: int, limit: int) -> None:
    assert RolloutPolicy(max_unavailable=value).unavailable_limit(size) == limit


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"max_unavailable": 0}, "at least 1"),
        ({"max_unavailable": "0%"}, "percentage"),
        ({"max_unavailable": "120%"}, "percentage"),
        ({"max_unavailable": "many"}, "percentage"),
        ({"max_unavailable": True}, "count or a percentage"),
        ({"canary": -1}, "non-negative integer"),
        ({"failure_budget": 1.5}, "non-negative integer"),
        ({"bake_seconds": -1}, "non-negative number"),
        ({"gate_timeout": 0}, "positive number"),
        ({"gates": "curl lb"}, "list of commands"),
        ({"gates": ("ok", " ")}, "non-empty command"),
        ({"waves": (("a",), ("a", "b"))}, "already in an earlier wave"),
        ({"waves": ((),)}, "non-empty list"),
        ({"waves": ("a",)}, "non-empty list"),
        ({"waves": (("a",),), "canary": 1}, "canary or waves"),
    ],
)
def test_bad_values_are_named(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(RolloutPolicyError) as exc:
        RolloutPolicy(**kwargs)  # type: ignore[arg-type]
    assert needle in exc.value.message


def test_unknown_key_is_an_error() -> None:
    with pytest.raises(RolloutPolicyError) as exc:
        RolloutPolicy.from_dict({"max_unavailble": 2})
    assert "rollout.max_unavailble" in exc.value.message and "max_unavailable" in (exc.value.advice or "")


def test_waves_in_batches_of_max_unavailable() -> None:
    waves = plan_waves(NAMES, RolloutPolicy(max_unavailable=4))
    assert [w.hosts for w in waves] == [tuple(NAMES[0:4]), tuple(NAMES[4:8]), tuple(NAMES[8:12])]
    assert [w.number for w in waves] == [1, 2, 3] and not any(w.canary for w in waves)
    assert waves[1].key() == "wave-02" and waves[0].label(3) == "wave 1/3"


def test_canary_first_then_the_rest() -> None:
    waves = plan_waves(NAMES[:5], RolloutPolicy(max_unavailable=2, canary=1))
    assert [w.hosts for w in waves] == [("web-1",), ("web-2", "web-3"), ("web-4", "web-5")]
    assert waves[0].canary and waves[0].label(3) == "wave 1/3 (canary)"
    with pytest.raises(RolloutPolicyError, match="nothing would be left"):
        plan_waves(NAMES[:2], RolloutPolicy(canary=2))


def test_explicit_waves_then_the_unnamed_in_order() -> None:
    p = RolloutPolicy(max_unavailable=2, waves=(("web-3",), ("web-1", "web-5", "web-6")))
    waves = plan_waves(NAMES[:6], p)
    assert [w.hosts for w in waves] == [("web-3",), ("web-1", "web-5", "web-6"), ("web-2", "web-4")]
    with pytest.raises(RolloutPolicyError, match="no machine named 'db-1'"):
        plan_waves(NAMES[:3], RolloutPolicy(waves=(("db-1",),)))
    with pytest.raises(RolloutPolicyError, match="appears twice"):
        plan_waves(["a", "b", "a"], RolloutPolicy())


def test_percent_uses_the_fleet_size() -> None:
    waves = plan_waves(NAMES, RolloutPolicy(max_unavailable="50%", canary=2))
    assert [len(w.hosts) for w in waves] == [2, 6, 4]
    assert waves == (Wave(1, tuple(NAMES[:2]), True), Wave(2, tuple(NAMES[2:8])), Wave(3, tuple(NAMES[8:])))
