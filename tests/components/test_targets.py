"""The targets registry: one module per target, one interface; a new cloud is one new file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flatcar_infra import targets
from flatcar_infra.errors import UserError
from flatcar_infra.stackconfig import parse_stack_config, top_keys


def test_every_target_module_implements_the_interface() -> None:
    assert targets.names() == ("aws", "digitalocean", "existing", "local")
    for name in targets.names():
        t = targets.get(name)
        assert isinstance(t, targets.Target) and t.name == name
        assert t.fetch, f"{name}: say how the guest fetches its config"
        assert set(t.stack_only) <= set(t.options)
        assert {k for k, kind in t.options.items() if kind == "list_of_maps"} == set(t.items)
        assert type(t).build is not targets.Target.build, f"{name}: builds its machines"
    assert targets.get("aws").delivers_host_keys and not targets.get("digitalocean").delivers_host_keys
    assert not targets.get("local").needs_private_key


def test_an_unknown_target_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="unknown target 'gcp'") as info:
        targets.get("gcp")
    assert "aws, digitalocean, existing, local" in (info.value.advice or "")


@pytest.fixture
def extra_target(tmp_path: Path) -> Iterator[str]:
    """A target module that is not part of the package, put where the registry looks."""
    (tmp_path / "hetzner.py").write_text(
        "from flatcar_infra.targets import Target\n"
        "class Hetzner(Target):\n"
        "    name = 'hetzner'\n"
        "    fetch = 'https://example.invalid/<key>'\n"
        "    options = {'server_type': 'str', 'location': 'str'}\n"
        "    stack_only = ('location',)\n"
        "TARGET = Hetzner()\n"
    )
    targets.__path__.append(str(tmp_path))
    targets.names.cache_clear()
    try:
        yield "hetzner"
    finally:
        targets.__path__.remove(str(tmp_path))
        targets.names.cache_clear()


def test_a_new_cloud_is_one_new_file(extra_target: str) -> None:
    assert extra_target in targets.names() and "hetzner" in top_keys()
    spec = parse_stack_config(
        {
            "target": "hetzner",
            "ssh": {"private_key_file": "k"},
            "hetzner": {"location": "fsn1", "server_type": "cx22"},
            "machines": [{"name": "a", "config": "c.bu", "server_type": "cx32"}],
        },
        "s.yaml",
    )
    assert spec.machine_options(spec.machines[0]) == {"location": "fsn1", "server_type": "cx32"}
    with pytest.raises(UserError, match=r"machines\[0\]\.location: not a hetzner option here"):
        parse_stack_config(
            {
                "target": "hetzner",
                "ssh": {"private_key_file": "k"},
                "machines": [{"name": "a", "config": "c.bu", "location": "x"}],
            },
            "s.yaml",
        )
