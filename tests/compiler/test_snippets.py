"""Snippet composition: Ignition 3.x merge semantics (``config/merge``), as terraform-provider-ct's
``snippets`` apply them, and snippets through ``compile_config``."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from flatcar_infra.compiler import compile_config
from flatcar_infra.compiler.merge import merge_configs
from flatcar_infra.errors import ConfigError

V = {"version": "3.3.0"}


def merged(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    b, c = copy.deepcopy(base), copy.deepcopy(child)
    out = merge_configs(base, child)
    assert (base, child) == (b, c), "inputs must not be mutated"
    assert json.dumps(out, sort_keys=True) == json.dumps(merge_configs(b, c), sort_keys=True)
    return out


def test_scalars_child_wins_absent_keeps_parent() -> None:
    out = merged(
        {"ignition": {**V, "timeouts": {"httpTotal": 10, "httpResponseHeaders": 5}}},
        {"ignition": {**V, "timeouts": {"httpTotal": 60}}},
    )
    assert out["ignition"]["timeouts"] == {"httpTotal": 60, "httpResponseHeaders": 5}


def test_files_merge_by_path_recursively_and_new_ones_append() -> None:
    out = merged(
        {
            "storage": {
                "files": [
                    {"path": "/a", "mode": 0o644, "contents": {"source": "data:,a", "compression": "gzip"}},
                    {"path": "/b", "mode": 0o600},
                ]
            }
        },
        {"storage": {"files": [{"path": "/a", "contents": {"source": "data:,A"}}, {"path": "/c"}]}},
    )
    assert out["storage"]["files"] == [
        # nested objects merge field by field: the parent's compression survives (Ignition does the same)
        {"path": "/a", "mode": 0o644, "contents": {"source": "data:,A", "compression": "gzip"}},
        {"path": "/b", "mode": 0o600},
        {"path": "/c"},
    ]


def test_files_directories_links_share_one_key_space() -> None:
    out = merged(
        {"storage": {"files": [{"path": "/x"}, {"path": "/y"}], "links": [{"path": "/l", "target": "/t"}]}},
        {"storage": {"directories": [{"path": "/x", "mode": 0o755}], "files": [{"path": "/l"}]}},
    )
    assert out["storage"] == {
        "files": [{"path": "/y"}, {"path": "/l"}],
        "directories": [{"path": "/x", "mode": 0o755}],
    }


def test_units_and_dropins_merge_by_name() -> None:
    out = merged(
        {
            "systemd": {
                "units": [
                    {"name": "a.service", "enabled": True, "dropins": [{"name": "10.conf", "contents": "x"}]},
                    {"name": "b.service", "mask": True},
                ]
            }
        },
        {
            "systemd": {
                "units": [
                    {
                        "name": "a.service",
                        "enabled": False,
                        "dropins": [
                            {"name": "10.conf", "contents": "y"},
                            {"name": "20.conf", "contents": "z"},
                        ],
                    },
                ]
            }
        },
    )
    assert out["systemd"]["units"] == [
        {
            "name": "a.service",
            "enabled": False,
            "dropins": [{"name": "10.conf", "contents": "y"}, {"name": "20.conf", "contents": "z"}],
        },
        {"name": "b.service", "mask": True},
    ]


def test_users_merge_by_name_and_string_lists_are_ordered_sets() -> None:
    out = merged(
        {
            "passwd": {
                "users": [{"name": "core", "sshAuthorizedKeys": ["k1", "k2"], "groups": ["docker"]}],
                "groups": [{"name": "ops", "gid": 1}],
            }
        },
        {
            "passwd": {
                "users": [
                    {"name": "core", "sshAuthorizedKeys": ["k2", "k3"], "groups": ["wheel"]},
                    {"name": "svc"},
                ],
                "groups": [{"name": "ops", "gid": 2}],
            }
        },
    )
    assert out["passwd"] == {
        "users": [
            {"name": "core", "sshAuthorizedKeys": ["k1", "k2", "k3"], "groups": ["docker", "wheel"]},
            {"name": "svc"},
        ],
        "groups": [{"name": "ops", "gid": 2}],
    }


def test_storage_devices_keys() -> None:
    out = merged(
        {
            "storage": {
                "disks": [
                    {
                        "device": "/dev/sda",
                        "wipeTable": False,
                        "partitions": [{"number": 1, "label": "A", "sizeMiB": 10}, {"label": "B"}],
                    }
                ],
                "filesystems": [{"device": "/dev/sda1", "format": "ext4", "options": ["-m0"]}],
                "raid": [
                    {"name": "md0", "level": "raid1", "devices": ["/dev/sda", "/dev/sdb"], "options": ["x"]}
                ],
                "luks": [{"name": "data", "device": "/dev/sdc", "options": ["--a"]}],
            }
        },
        {
            "storage": {
                "disks": [
                    {
                        "device": "/dev/sda",
                        "wipeTable": True,
                        "partitions": [
                            {"number": 1, "sizeMiB": 20},
                            {"label": "B", "sizeMiB": 5},
                            {"label": "C"},
                        ],
                    }
                ],
                "filesystems": [{"device": "/dev/sda1", "label": "DATA", "options": ["-m0"]}],
                "raid": [{"name": "md0", "devices": ["/dev/sdb", "/dev/sdc"], "options": ["x"]}],
                "luks": [{"name": "data", "options": ["--b"]}],
            }
        },
    )
    s = out["storage"]
    assert s["disks"] == [
        {
            "device": "/dev/sda",
            "wipeTable": True,
            "partitions": [
                {"number": 1, "label": "A", "sizeMiB": 20},
                {"label": "B", "sizeMiB": 5},
                {"label": "C"},
            ],
        }
    ]
    # options lists are exempt from duplicate handling in Ignition: concatenated
    assert s["filesystems"] == [
        {"device": "/dev/sda1", "format": "ext4", "options": ["-m0", "-m0"], "label": "DATA"}
    ]
    assert s["raid"] == [
        {
            "name": "md0",
            "level": "raid1",
            "devices": ["/dev/sda", "/dev/sdb", "/dev/sdc"],
            "options": ["x", "x"],
        }
    ]
    assert s["luks"] == [{"name": "data", "device": "/dev/sdc", "options": ["--a", "--b"]}]


def test_kernel_arguments_share_one_key_space() -> None:
    out = merged(
        {"kernelArguments": {"shouldExist": ["quiet", "console=ttyS0"]}},
        {"kernelArguments": {"shouldNotExist": ["quiet"], "shouldExist": ["console=ttyS0", "nosmt"]}},
    )
    assert out["kernelArguments"] == {"shouldExist": ["console=ttyS0", "nosmt"], "shouldNotExist": ["quiet"]}


def test_config_merge_sources_and_headers() -> None:
    out = merged(
        {
            "ignition": {
                **V,
                "config": {
                    "merge": [
                        {
                            "source": "https://a",
                            "httpHeaders": [{"name": "X-A", "value": "1"}, {"name": "X-B", "value": "2"}],
                        }
                    ]
                },
            }
        },
        {
            "ignition": {
                **V,
                "config": {
                    "merge": [
                        {"source": "https://a", "httpHeaders": [{"name": "X-A", "value": None}]},
                        {"source": "https://b"},
                    ]
                },
            }
        },
    )
    assert out["ignition"]["config"]["merge"] == [
        {"source": "https://a", "httpHeaders": [{"name": "X-B", "value": "2"}]},  # null value removes
        {"source": "https://b"},
    ]


def test_file_append_lists_concatenate() -> None:
    out = merged(
        {"storage": {"files": [{"path": "/etc/motd", "append": [{"source": "data:,a"}]}]}},
        {"storage": {"files": [{"path": "/etc/motd", "append": [{"source": "data:,a"}]}]}},
    )
    assert out["storage"]["files"][0]["append"] == [{"source": "data:,a"}, {"source": "data:,a"}]


# --- through the compiler ----------------------------------------------------------------------------

MAIN = """variant: flatcar
version: 1.0.0
passwd:
  users:
    - name: core
      ssh_authorized_keys: [key-main]
systemd:
  units:
    - name: app.service
      enabled: true
      contents: "[Service]\\nExecStart=/bin/true\\n[Install]\\nWantedBy=multi-user.target\\n"
"""
SNIPPET = """variant: flatcar
version: 1.0.0
passwd:
  users:
    - name: core
      ssh_authorized_keys: [key-snippet]
systemd:
  units:
    - name: app.service
      dropins:
        - name: 10-env.conf
          contents: "[Service]\\nEnvironment=A=1\\n"
"""


def test_butane_snippets_merge_into_the_main_config() -> None:
    compiled = compile_config(MAIN, filename="main.yaml", snippets=[("snip.yaml", SNIPPET)])
    doc = compiled.ignition
    assert doc["passwd"]["users"] == [{"name": "core", "sshAuthorizedKeys": ["key-main", "key-snippet"]}]
    (unit,) = doc["systemd"]["units"]
    assert unit["enabled"] is True and unit["dropins"] == [
        {"name": "10-env.conf", "contents": "[Service]\nEnvironment=A=1\n"}
    ]
    alone = compile_config(MAIN, filename="main.yaml")
    assert compiled.hash != alone.hash


def test_clc_snippets_merge_into_a_clc_config() -> None:
    compiled = compile_config(
        "update: {group: stable}\npasswd: {users: [{name: core, ssh_authorized_keys: [k1]}]}\n",
        filename="main.yaml",
        snippets=[("snip.yaml", "passwd: {users: [{name: core, ssh_authorized_keys: [k2]}]}\n")],
    )
    assert compiled.ignition["passwd"]["users"] == [{"name": "core", "sshAuthorizedKeys": ["k1", "k2"]}]


@pytest.mark.parametrize(
    "snippet",
    [
        SNIPPET.replace("version: 1.0.0", "version: 1.1.0"),
        "passwd: {users: [{name: core}]}\n",  # a CLC snippet for a Butane config
    ],
)
def test_snippets_must_match_kind_variant_and_version(snippet: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_config(MAIN, filename="main.yaml", snippets=[("snip.yaml", snippet)])
    assert any(d.file == "snip.yaml" and d.is_error for d in info.value.diagnostics)


def test_snippet_errors_point_into_the_snippet() -> None:
    bad = SNIPPET.replace("      dropins:", "      enabled: perhaps\n      dropins:")
    with pytest.raises(ConfigError) as info:
        compile_config(MAIN, filename="main.yaml", snippets=[("snip.yaml", bad)])
    errors = [d for d in info.value.diagnostics if d.is_error]
    assert errors and all(d.file == "snip.yaml" and d.line == 10 for d in errors)


def test_problems_found_after_merging_blame_the_snippet_that_brought_them() -> None:
    """A problem only the merged config has is located (file, line, Butane path) in the snippet
    whose value causes it: the translation sets are kept through the merge, as Butane's are."""
    main = (
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  links:\n    - path: /etc/app\n      target: /opt/app\n"
    )
    snip = (
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/other\n"
        "    - path: /etc/app/conf\n      contents: {inline: x}\n"
    )
    with pytest.raises(ConfigError) as info:
        compile_config(main, filename="main.yaml", snippets=[("snip.yaml", snip)])
    (error,) = [d for d in info.value.diagnostics if d.is_error]
    assert (error.file, error.line, error.path) == ("snip.yaml", 6, "$.storage.files.1")
    assert error.message.startswith("after merging snippets: file path '/etc/app/conf' includes link")


def test_merged_main_config_values_keep_their_own_location() -> None:
    """The same, the other way round: the main config's entry is the one at fault."""
    main = (
        "variant: flatcar\nversion: 1.0.0\nsystemd:\n  units:\n    - name: a.service\n"
        "      enabled: true\n      contents: |\n        [Service]\n        ExecStart=/bin/true\n"
    )
    snip = "variant: flatcar\nversion: 1.0.0\nsystemd:\n  units:\n    - name: b.service\n      mask: true\n"
    compiled = compile_config(main, filename="main.yaml", snippets=[("snip.yaml", snip)])
    (warning,) = compiled.warnings
    assert (warning.file, warning.line, warning.path) == ("main.yaml", 7, "$.systemd.units.0.contents")
