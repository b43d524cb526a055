"""Legacy Container Linux Config → Ignition 3.3.0: the corpus, golden output per section, and one
test per class of user mistake (each must be a located diagnostic, never a traceback)."""

from __future__ import annotations

import gzip
import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from flatcar_infra.compiler import compile_config, compile_file
from flatcar_infra.compiler.dataurl import decode_data_url
from flatcar_infra.errors import ConfigError, Diagnostic, Severity
from tests.support.ignition import ignition_validate, requires_ignition


def corpus_dir() -> Path:
    """``$FLATCAR_INFRA_CORPUS`` or ``<repo>/../shared/corpus`` (CI clones with ``../shared`` beside it)."""
    env = os.environ.get("FLATCAR_INFRA_CORPUS")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


CLC = corpus_dir() / "clc"
PLATFORMS = {"11": "custom", "12": "ec2"}  # as the corpus README says (11: any platform; custom fits)
SUM512 = (
    "4ee6a9d20cc0e6c7ee187daffa6822bdef7f4cebe109eff44b235f97e45dc3d7"
    "a5bb932efc841192e46618f48a6f4f5bc0d15fd74b1038abf46bf4b4fd409f2e"
)
SUM256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
CLC_FILES = sorted(CLC.glob("*.yaml")) if CLC.is_dir() else []


def compile_corpus(path: Path) -> Any:
    return compile_file(path, files_dir=CLC / "files", platform=PLATFORMS.get(path.name[:2]))


def clc(
    text: str, *, platform: str | None = None, files_dir: Path | None = None, strict: bool = False
) -> Any:
    return compile_config(
        textwrap.dedent(text), filename="cl.yaml", platform=platform, files_dir=files_dir, strict=strict
    )


def fail(text: str, **kw: Any) -> list[Diagnostic]:
    with pytest.raises(ConfigError) as info:
        clc(text, **kw)
    return [d for d in info.value.diagnostics if d.is_error]


def data(entry: dict[str, Any]) -> str:
    """The text a file entry writes (gzip data URLs decompressed)."""
    raw = decode_data_url(entry["contents"]["source"])
    return (gzip.decompress(raw) if entry["contents"].get("compression") == "gzip" else raw).decode()


def file_at(doc: dict[str, Any], path: str) -> dict[str, Any]:
    matches: list[dict[str, Any]] = [f for f in doc["storage"]["files"] if f["path"] == path]
    assert len(matches) == 1, f"{path} not in {[f['path'] for f in doc['storage']['files']]}"
    return matches[0]


def unit(doc: dict[str, Any], name: str) -> dict[str, Any]:
    matches: list[dict[str, Any]] = [u for u in doc["systemd"]["units"] if u["name"] == name]
    assert len(matches) == 1
    return matches[0]


# --- the corpus ------------------------------------------------------------------------------------


def test_corpus_present() -> None:
    assert len(CLC_FILES) >= 17, f"CLC corpus not found at {CLC} (set FLATCAR_INFRA_CORPUS)"


@pytest.mark.ignition
@requires_ignition
@pytest.mark.parametrize("path", CLC_FILES, ids=lambda p: p.name[:2])
def test_corpus_compiles_and_real_ignition_accepts_it(path: Path) -> None:
    compiled = compile_corpus(path)
    assert compiled.source_kind == "clc"
    assert compiled.version == "3.3.0"
    ignition_validate(compiled.canonical)
    assert compile_corpus(path).canonical == compiled.canonical  # deterministic


def test_corpus_dynamic_data_needs_a_platform() -> None:
    for name in ("11", "12"):
        (path,) = [p for p in CLC_FILES if p.name.startswith(name)]
        with pytest.raises(ConfigError) as info:
            compile_file(path, files_dir=CLC / "files")
        errors = [d for d in info.value.diagnostics if d.is_error]
        assert errors and all("--platform" in d.message and d.line > 0 for d in errors)


def test_corpus_12_matches_the_documented_ct_output_on_flatcar() -> None:
    """The Flatcar docs show ct's drop-in for clc/12 with --platform=ec2 (spec 2.0.0, stale paths);
    ours carries the same lines, with Flatcar's metadata file."""
    (path,) = [p for p in CLC_FILES if p.name.startswith("12")]
    expected = json.loads(path.with_name(path.name.replace(".yaml", ".expected.ign.json")).read_text())
    want = expected["systemd"]["units"][0]["dropins"][0]["contents"]
    got = unit(compile_corpus(path).ignition, "etcd-member.service")
    assert got["enabled"] is True
    assert got["dropins"][0]["name"] == "20-clct-etcd-member.conf"
    assert got["dropins"][0]["contents"] == want.replace("/run/metadata/coreos", "/run/metadata/flatcar")


def test_corpus_binary_contents_are_decoded() -> None:
    (path,) = [p for p in CLC_FILES if p.name.startswith("05")]
    ca = file_at(compile_corpus(path).ignition, "/etc/eks/ca.crt")
    assert data(ca).startswith("-----BEGIN CERTIFICATE-----")


def test_corpus_files_default_to_root_and_local_contents() -> None:
    (path,) = [p for p in CLC_FILES if p.name.startswith("17")]
    doc = compile_corpus(path).ignition
    png = file_at(doc, "/srv/www/html/froscon.png")
    assert (
        decode_data_url(png["contents"]["source"])
        == (CLC / "files" / "froscon_logo_print_color.png").read_bytes()
    )
    assert png["user"] == {"name": "caddy"} and png["overwrite"] is True
    assert data(file_at(doc, "/etc/flatcar/update.conf")) == '\nREBOOT_STRATEGY="off"'


# --- golden output per section -------------------------------------------------------------------


def test_update_and_locksmith_write_update_conf_like_ct() -> None:
    doc = clc("""
        update:
          group: Beta
          server: https://update.example.com/v1/update/
        locksmith:
          reboot_strategy: etcd-lock
          window_start: Sun 1:00
          window_length: 2h
          group: workers
          etcd_endpoints: http://10.0.0.1:2379
    """).ignition
    f = file_at(doc, "/etc/flatcar/update.conf")
    assert f["mode"] == 0o644 and f["overwrite"] is True
    assert data(f) == (
        "GROUP=beta\nSERVER=https://update.example.com/v1/update/\n"
        'REBOOT_STRATEGY="etcd-lock"\nLOCKSMITHD_REBOOT_WINDOW_START="Sun 1:00"\n'
        'LOCKSMITHD_REBOOT_WINDOW_LENGTH="2h"\nLOCKSMITHD_GROUP="workers"\n'
        'LOCKSMITHD_ENDPOINT="http://10.0.0.1:2379"'
    )
    assert "systemd" not in doc  # ct never generated a locksmithd drop-in


def test_etcd_dropin_options_in_ct_order_without_dynamic_data() -> None:
    doc = clc("""
        etcd:
          version: 3.2.0
          name: node1
          strict_reconfig_check: false
          snapshot_count: 100
          enable_v2: true
          listen_client_urls: "http://0.0.0.0:2379"
    """).ignition
    u = unit(doc, "etcd-member.service")
    assert u["enabled"] is True
    assert u["dropins"] == [
        {
            "name": "20-clct-etcd-member.conf",
            "contents": (
                '[Service]\nEnvironment="ETCD_IMAGE_TAG=v3.2.0"\nExecStart=\n'
                "ExecStart=/usr/lib/flatcar/etcd-wrapper $ETCD_OPTS \\\n"
                '  --name="node1" \\\n  --snapshot-count=100 \\\n  --enable-v2=true \\\n'
                '  --listen-client-urls="http://0.0.0.0:2379" \\\n  --strict-reconfig-check=false'
            ),
        }
    ]


def test_dynamic_data_with_platform_uses_metadata_variables() -> None:
    doc = clc(
        """
        etcd:
          name: "{HOSTNAME}"
          advertise_client_urls: "http://{PRIVATE_IPV6}:2379,http://{PUBLIC_IPV4}:2379"
    """,
        platform="digitalocean",
    ).ignition
    text = unit(doc, "etcd-member.service")["dropins"][0]["contents"]
    assert text.startswith(
        "[Unit]\nRequires=coreos-metadata.service\nAfter=coreos-metadata.service\n\n"
        "[Service]\nEnvironmentFile=/run/metadata/flatcar\nExecStart=\n"
    )
    assert '--name="${COREOS_DIGITALOCEAN_HOSTNAME}"' in text
    assert (
        '--advertise-client-urls="http://${COREOS_DIGITALOCEAN_IPV6_PRIVATE_0}:2379,'
        'http://${COREOS_DIGITALOCEAN_IPV4_PUBLIC_0}:2379"'
    ) in text


def test_flannel_with_network_config() -> None:
    doc = clc("""
        flannel:
          version: 0.7.1
          etcd_endpoints: http://127.0.0.1:2379
          interface: eth1
          network_config: '{"Network": "10.2.0.0/16"}'
    """).ignition
    u = unit(doc, "flanneld.service")
    assert u["dropins"][0] == {
        "name": "20-clct-flannel.conf",
        "contents": (
            '[Service]\nEnvironment="FLANNEL_IMAGE_TAG=v0.7.1"\nExecStart=\n'
            "ExecStart=/usr/lib/flatcar/flannel-wrapper $FLANNEL_OPTS \\\n"
            '  --etcd-endpoints="http://127.0.0.1:2379" \\\n  --iface="eth1"\n'
            'ExecStartPre=/usr/bin/etcdctl --endpoints="http://127.0.0.1:2379" '
            "set /coreos.com/network/config "
            '"{\\"Network\\": \\"10.2.0.0/16\\"}"'
        ),
    }


def test_docker_flags_and_user_unit_of_the_same_name_become_one_unit() -> None:
    doc = clc("""
        docker:
          flags: [--selinux-enabled, --log-level=warn]
        systemd:
          units:
            - name: docker.service
              dropins:
                - name: 10-proxy.conf
                  contents: "[Service]\\nEnvironment=HTTP_PROXY=http://proxy:3128\\n"
    """).ignition
    u = unit(doc, "docker.service")
    assert u["enabled"] is True
    assert [d["name"] for d in u["dropins"]] == ["20-clct-docker.conf", "10-proxy.conf"]
    assert (
        u["dropins"][0]["contents"]
        == '[Service]\nEnvironment="DOCKER_OPTS=--selinux-enabled --log-level=warn"'
    )


def test_networkd_units_become_files() -> None:
    doc = clc("""
        networkd:
          units:
            - name: 00-eth0.network
              contents: "[Match]\\nName=eth0\\n"
              dropins:
                - name: mtu.conf
                  contents: "[Link]\\nMTUBytes=9000\\n"
    """).ignition
    f = file_at(doc, "/etc/systemd/network/00-eth0.network")
    assert (f["mode"], f["overwrite"], data(f)) == (0o644, True, "[Match]\nName=eth0\n")
    assert data(file_at(doc, "/etc/systemd/network/00-eth0.network.d/mtu.conf")) == "[Link]\nMTUBytes=9000\n"


def test_units_legacy_enable_mask_and_explicit_disable() -> None:
    compiled = clc("""
        systemd:
          units:
            - name: a.service
              enable: true
              contents: "[Service]\\nExecStart=/bin/true\\n[Install]\\nWantedBy=multi-user.target\\n"
            - name: b.service
              enable: true
              enabled: false
            - name: locksmithd.service
              mask: true
    """)
    units = compiled.ignition["systemd"]["units"]
    assert units[0]["enabled"] is True
    assert units[1]["enabled"] is False  # enabled wins over the legacy enable, as Flatcar converts
    assert units[2] == {"name": "locksmithd.service", "mask": True}
    assert [w.line for w in compiled.warnings if "enable is deprecated" in w.message] == [5, 8]


def test_files_overwrite_append_mode_owner_and_remote() -> None:
    compiled = clc(
        """
        storage:
          files:
            - path: /etc/motd
              filesystem: root
              append: true
              mode: 0644
              contents:
                inline: hello
            - path: /opt/keep
              overwrite: false
              mode: 0600
              user: {id: 500}
              group: {name: core}
              contents:
                remote:
                  url: https://example.com/x.gz
                  compression: gzip
                  verification:
                    hash:
                      function: sha512
                      sum: "SUM512"
            - path: /opt/empty
          directories:
            - path: /var/lib/x//y/
          links:
            - path: /usr/local/bin/tool
              target: /opt/bin/tool
              hard: false
    """.replace("SUM512", SUM512)
    )
    doc = compiled.ignition
    motd = file_at(doc, "/etc/motd")
    assert motd["overwrite"] is False and "contents" not in motd
    assert decode_data_url(motd["append"][0]["source"]) == b"hello"
    keep = file_at(doc, "/opt/keep")
    assert keep == {
        "path": "/opt/keep",
        "mode": 0o600,
        "overwrite": False,
        "user": {"id": 500},
        "group": {"name": "core"},
        "contents": {
            "source": "https://example.com/x.gz",
            "compression": "gzip",
            "verification": {"hash": "sha512-" + SUM512},
        },
    }
    empty = file_at(doc, "/opt/empty")
    assert empty == {"path": "/opt/empty", "mode": 0o644, "overwrite": True, "contents": {"source": "data:,"}}
    assert doc["storage"]["directories"] == [{"path": "/var/lib/x/y", "mode": 0o755}]
    assert doc["storage"]["links"] == [{"path": "/usr/local/bin/tool", "target": "/opt/bin/tool"}]
    warned = {(w.path, w.message) for w in compiled.warnings}
    assert ("$.storage.files.2.mode", "mode unspecified for file, defaulting to 0644") in warned
    assert ("$.storage.directories.0.mode", "mode unspecified for directory, defaulting to 0755") in warned


def test_named_filesystems_map_to_mount_points() -> None:
    doc = clc("""
        storage:
          filesystems:
            - name: oem
              mount: {device: /dev/disk/by-label/OEM, format: ext4}
            - mount: {device: /dev/sdb, format: xfs, wipe_filesystem: true, label: SCRATCH}
            - name: data
              mount:
                device: /dev/sdc1
                format: ext4
                create: {force: true, options: [-m0]}
          files:
            - {path: /grub.cfg, filesystem: oem, mode: 0644, contents: {inline: "set x=1\\n"}}
            - {path: /hello, filesystem: data, mode: 0644}
    """).ignition
    assert doc["storage"]["filesystems"] == [
        {"device": "/dev/disk/by-label/OEM", "format": "btrfs", "path": "/oem"},
        {"device": "/dev/sdb", "format": "xfs", "wipeFilesystem": True, "label": "SCRATCH"},
        {
            "device": "/dev/sdc1",
            "format": "ext4",
            "wipeFilesystem": True,
            "options": ["-m0"],
            "path": "/tmp/data-ign3",
        },
    ]
    assert [f["path"] for f in doc["storage"]["files"]] == ["/oem/grub.cfg", "/tmp/data-ign3/hello"]


def test_disks_partitions_and_raid() -> None:
    doc = clc("""
        storage:
          disks:
            - device: /dev/sda
              wipe_table: true
              partitions:
                - {label: ROOT, number: 1, size: 4GiB, start: 1MB, type_guid: raid_partition}
                - {label: DATA}
          raid:
            - {name: md0, level: raid1, devices: [/dev/sda1, /dev/sdb1], spares: 1}
    """).ignition
    assert doc["storage"]["disks"] == [
        {
            "device": "/dev/sda",
            "wipeTable": True,
            "partitions": [
                {
                    "label": "ROOT",
                    "number": 1,
                    "sizeMiB": 4096,
                    "startMiB": 1,
                    "typeGuid": "a19d880f-05fc-4d3b-a006-743f0f84911e",
                },
                {"label": "DATA"},
            ],
        }
    ]
    assert doc["storage"]["raid"] == [
        {"name": "md0", "level": "raid1", "devices": ["/dev/sda1", "/dev/sdb1"], "spares": 1}
    ]


def test_users_groups_and_legacy_create() -> None:
    doc = clc("""
        passwd:
          users:
            - name: core
              password_hash: "$6$x"
              ssh_authorized_keys: [ssh-ed25519 AAAA key1]
              groups: [docker]
            - name: svc
              create:
                uid: 1500
                home_dir: /srv/svc
                system: true
          groups:
            - {name: ops, gid: 2000}
    """).ignition
    assert doc["passwd"] == {
        "users": [
            {
                "name": "core",
                "passwordHash": "$6$x",
                "sshAuthorizedKeys": ["ssh-ed25519 AAAA key1"],
                "groups": ["docker"],
            },
            {"name": "svc", "uid": 1500, "homeDir": "/srv/svc", "system": True},
        ],
        "groups": [{"name": "ops", "gid": 2000}],
    }


def test_ignition_section() -> None:
    doc = clc(
        """
        ignition:
          config:
            append:
              - source: https://example.com/extra.ign
                verification: {hash: {function: sha256, sum: "SUM256"}}
          timeouts: {http_response_headers: 20, http_total: 600}
          security:
            tls:
              certificate_authorities:
                - source: https://example.com/ca.pem
    """.replace("SUM256", SUM256)
    ).ignition
    assert doc["ignition"] == {
        "version": "3.3.0",
        "config": {
            "merge": [
                {"source": "https://example.com/extra.ign", "verification": {"hash": "sha256-" + SUM256}}
            ]
        },
        "timeouts": {"httpResponseHeaders": 20, "httpTotal": 600},
        "security": {"tls": {"certificateAuthorities": [{"source": "https://example.com/ca.pem"}]}},
    }


def test_platform_with_provider_override_units() -> None:
    doc = clc("passwd: {users: [{name: core}]}\n", platform="openstack-metadata").ignition
    names = [u["name"] for u in doc["systemd"]["units"]]
    assert names == ["coreos-metadata.service", "coreos-metadata-sshkeys@.service"]


def test_strings_stay_strings_and_yaml_booleans_only_where_boolean() -> None:
    doc = clc("""
        locksmith:
          reboot_strategy: off
        storage:
          files:
            - {path: /etc/answer, mode: 0644, contents: {inline: no}}
    """).ignition
    assert data(file_at(doc, "/etc/answer")) == "no"
    assert data(file_at(doc, "/etc/flatcar/update.conf")) == '\nREBOOT_STRATEGY="off"'


def test_empty_document_compiles_to_an_empty_config() -> None:
    assert clc("---\n{}\n").ignition == {"ignition": {"version": "3.3.0"}}


# --- each class of mistake: a located error (or warning), never a traceback ----------------------


def one(diags: list[Diagnostic]) -> Diagnostic:
    assert len(diags) == 1, diags
    return diags[0]


def test_error_dynamic_data_without_platform_names_placeholder_and_option() -> None:
    d = one(
        fail("""
        etcd:
          name: node
          initial_advertise_peer_urls: "http://{PRIVATE_IPV4}:2380"
    """)
    )
    assert (d.line, d.path) == (4, "$.etcd.initial_advertise_peer_urls")
    assert "{PRIVATE_IPV4}" in d.message and "--platform" in d.message and "ec2" in d.message


def test_error_placeholder_the_platform_cannot_provide() -> None:
    d = one(fail('etcd: {name: "{PUBLIC_IPV6}"}\n', platform="ec2"))
    assert d.line == 1 and "{PUBLIC_IPV6}" in d.message and "{PRIVATE_IPV4}" in d.message


def test_error_unknown_platform_lists_supported() -> None:
    d = one(fail('etcd: {name: "{HOSTNAME}"}\n', platform="nowhere"))
    assert "nowhere" in d.message and "digitalocean" in d.message


def test_error_type_mismatches_are_located() -> None:
    errors = fail("""
        storage:
          files:
            - path: /etc/x
              mode: rw-r--r--
              overwrite: maybe
        passwd:
          users: {name: core}
    """)
    got = {(d.line, d.col, d.path) for d in errors}
    assert got == {
        (5, 13, "$.storage.files.0.mode"),
        (6, 18, "$.storage.files.0.overwrite"),
        (8, 10, "$.passwd.users"),
    }


def test_warning_unknown_keys_and_strict_makes_them_fatal() -> None:
    text = """
        storage:
          files:
            - path: /etc/x
              mode: 0644
              owner: core
        sytemd: {}
    """
    warnings = clc(text).warnings
    assert {(w.line, w.path) for w in warnings} == {(6, "$.storage.files.0.owner"), (7, "$.sytemd")}
    with pytest.raises(ConfigError):
        clc(text, strict=True)


def test_error_decimal_mode_is_a_warning() -> None:
    (w,) = clc("storage: {files: [{path: /x, mode: 644}]}\n").warnings
    assert "0644" in w.message and w.severity is Severity.WARNING


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        (
            "storage: {files: [{path: /x, mode: 0644, contents: {inline: a, remote: {url: 'http://x'}}}]}\n",
            1,
            "only one of",
        ),
        ("storage: {files: [{path: etc/x, mode: 0644}]}\n", 1, "absolute"),
        ("storage: {files: [{path: /x, filesystem: data, mode: 0644}]}\n", 1, "not defined"),
        ("storage: {files: [{mode: 0644}]}\n", 1, "path is required"),
        (
            "storage:\n  files:\n    - path: /x\n      mode: 0644\n    - path: /x\n      mode: 0644\n",
            5,
            "duplicate entry",
        ),
        ("locksmith: {reboot_strategy: sometimes}\n", 1, "reboot strategy"),
        ("locksmith: {window_start: 'Sun 25:00', window_length: 1h}\n", 1, "window_start"),
        ("locksmith: {window_start: 'Sun 1:00'}\n", 1, "window_length"),
        ("locksmith: {window_start: 'Sun 1:00', window_length: soon}\n", 1, "window_length"),
        ("storage: {disks: [{device: /dev/sda, partitions: [{size: 1.5KiB}]}]}\n", 1, "1MiB"),
        ("storage: {disks: [{device: /dev/sda, partitions: [{size: lots}]}]}\n", 1, "invalid size"),
        ("etcd: {version: 2.2.0}\n", 1, "too old"),
        ("etcd: {version: 4.0.0}\n", 1, "too new"),
        ("etcd: {version: 3.1}\n", 1, "MAJOR.MINOR.PATCH"),
        ("flannel: {network_config: '{not json'}\n", 1, "JSON"),
        ("flannel: {version: 0.7.0, kube_subnet_mgr: true, network_config: '{}'}\n", 1, "kube_subnet_mgr"),
        ("networkd: {units: [{name: eth0, contents: x}]}\n", 1, ".network"),
        (
            "storage: {filesystems: [{name: d, mount: {device: /dev/sdb, format: ext4, "
            "create: {options: []}}}]}\n",
            1,
            "force",
        ),
        (
            "ignition: {config: {append: [{source: 'http://x', "
            "verification: {hash: {function: md5, sum: a}}}]}}\n",
            1,
            "md5",
        ),
        ("version: 2\n", 1, "version 0"),
        ("storage: [files]\n", 1, "expected a mapping"),
        ("- just\n- a list\n", 1, "expected a mapping"),
        ("storage:\n  files:\n  - path: /x\n    path: /y\n", 4, "duplicate key"),
        ("storage: {files: [{path: /x\n", 2, "YAML"),
        ("storage: {files: [{path: /x, contents: {inline: !!binary '***'}}]}\n", 1, "base64"),
        (
            "systemd: {units: [{name: a.service, dropins: [{name: x.conf}, {name: x.conf}]}]}\n",
            1,
            "duplicate",
        ),
        ("networkd: {units: [{name: a.network, contents: '[Match'}]}\n", 1, "end of section"),
        ("etcd: {name: '{HOSTNAME'}\n", 1, "platform must be specified"),
        ("passwd: {users: [{name: a, uid: 1, create: {shell: /bin/sh}}]}\n", 1, "create object and the user"),
        ("storage: {files: [{path: /x, mode: 0644, append: true, overwrite: true}]}\n", 1, "append and"),
    ],
)
def test_error_classes(text: str, line: int, needle: str) -> None:
    errors = fail(text)
    assert any(needle in d.message and d.line == line for d in errors), errors
    assert all(d.file == "cl.yaml" and d.path.startswith("$") for d in errors)


def test_a_unit_given_twice_is_one_unit() -> None:
    """Flatcar's converter merges a unit listed twice: later fields win, drop-ins accumulate."""
    doc = clc("""
        systemd:
          units:
            - name: a.service
              contents: "[Service]\\nExecStart=/bin/true\\n[Install]\\nWantedBy=multi-user.target"
              dropins: [{name: 10.conf, contents: "[Service]\\nA=1"}]
            - name: a.service
              enabled: true
              dropins: [{name: 20.conf, contents: "[Service]\\nB=1"}]
        """).ignition
    (unit,) = doc["systemd"]["units"]
    assert unit["enabled"] is True and unit["contents"].startswith("[Service]")
    assert [d["name"] for d in unit["dropins"]] == ["10.conf", "20.conf"]


def test_errors_are_reported_all_at_once() -> None:
    """A bad entry does not hide the others, nor the checks of the output (ct's own test)."""
    errors = fail("""
        storage:
          files:
            - {path: opt/file1, mode: 0644}
            - path: /opt/file2
              mode: 0644
              contents: {remote: {url: 'httpz://example.com/file2'}}
        systemd:
          units: [{name: nosuffix}]
        """)
    assert sorted((d.line, d.path) for d in errors) == [
        (4, "$.storage.files.0.path"),
        (7, "$.storage.files.1.contents.source"),
        (9, "$.systemd.units.0.name"),
    ]


def test_empty_config_is_an_empty_config_with_a_warning() -> None:
    for text in ("", "\n# nothing\n", "~\n"):
        compiled = clc(text)
        assert compiled.ignition == {"ignition": {"version": "3.3.0"}}
        assert [w.message for w in compiled.warnings] == ["Configuration is empty"]


def test_error_local_contents(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "secret").write_text("s")
    text = "storage: {files: [{path: /x, mode: 0644, contents: {local: %s}}]}\n"
    assert "--files-dir" in one(fail(text % "a.txt")).message
    assert "outside" in one(fail(text % "../secret", files_dir=tmp_path / "files")).message
    assert "cannot read" in one(fail(text % "missing", files_dir=tmp_path / "files")).message


def test_root_filesystem_entry_is_ignored_with_a_warning() -> None:
    compiled = clc("""
        storage:
          filesystems:
            - name: root
              mount: {device: /dev/disk/by-label/ROOT, format: ext4, wipe_filesystem: true}
          files:
            - {path: /etc/x, filesystem: root, mode: 0644}
    """)
    assert "filesystems" not in compiled.ignition["storage"]
    (w,) = compiled.warnings
    assert w.line == 4 and "root filesystem" in w.message


def test_output_problems_found_by_validation_point_at_the_clc_line() -> None:
    """A value only the Ignition validation rejects still blames the CLC line that produced it."""
    errors = fail("""
        storage:
          files:
            - path: /etc/x
              mode: 0644
              contents:
                remote:
                  url: "gopher://example.com/x"
    """)
    assert any(d.line == 8 for d in errors), errors


# --- a CLC and a Butane config with the same meaning compile to the same Ignition -----------------

SAME_CLC = """
passwd:
  users:
    - name: core
      ssh_authorized_keys: [ssh-ed25519 AAAAC3Nza test@example]
      groups: [docker]
storage:
  files:
    - path: /etc/hostname
      filesystem: root
      mode: 0644
      contents:
        inline: node1
    - path: /opt/bin/hello
      mode: 0755
      contents:
        inline: |
          #!/bin/sh
          echo hello
  directories:
    - path: /var/lib/app
      mode: 0700
systemd:
  units:
    - name: hello.service
      enable: true
      contents: |
        [Service]
        ExecStart=/opt/bin/hello
        [Install]
        WantedBy=multi-user.target
    - name: locksmithd.service
      mask: true
update:
  group: stable
networkd:
  units:
    - name: 10-eth0.network
      contents: |
        [Match]
        Name=eth0
"""

SAME_BUTANE = """
variant: flatcar
version: 1.0.0
passwd:
  users:
    - name: core
      ssh_authorized_keys: [ssh-ed25519 AAAAC3Nza test@example]
      groups: [docker]
storage:
  files:
    - path: /etc/hostname
      mode: 0644
      overwrite: true
      contents:
        inline: node1
    - path: /opt/bin/hello
      mode: 0755
      overwrite: true
      contents:
        inline: |
          #!/bin/sh
          echo hello
    - path: /etc/flatcar/update.conf
      mode: 0644
      overwrite: true
      contents:
        inline: GROUP=stable
    - path: /etc/systemd/network/10-eth0.network
      mode: 0644
      overwrite: true
      contents:
        inline: |
          [Match]
          Name=eth0
  directories:
    - path: /var/lib/app
      mode: 0700
systemd:
  units:
    - name: hello.service
      enabled: true
      contents: |
        [Service]
        ExecStart=/opt/bin/hello
        [Install]
        WantedBy=multi-user.target
    - name: locksmithd.service
      mask: true
"""


def test_clc_and_butane_with_the_same_meaning_give_the_same_config_and_hash() -> None:
    from_clc = compile_config(SAME_CLC, filename="cl.yaml")
    from_butane = compile_config(SAME_BUTANE, filename="bu.yaml")
    assert (from_clc.source_kind, from_butane.source_kind) == ("clc", "butane")
    assert from_clc.ignition == from_butane.ignition
    assert from_clc.canonical == from_butane.canonical
    assert from_clc.hash == from_butane.hash


def test_same_bytes_in_other_processes_and_hash_seeds() -> None:
    import subprocess
    import sys

    script = (
        "import sys; from pathlib import Path; from flatcar_infra.compiler import compile_file\n"
        "c = Path(sys.argv[1])\n"
        "for p in sorted(c.glob('*.yaml')):\n"
        "    pl = {'11': 'custom', '12': 'ec2'}.get(p.name[:2])\n"
        "    print(compile_file(p, files_dir=c / 'files', platform=pl).hash)\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script, str(CLC)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    here = "".join(compile_corpus(p).hash + "\n" for p in CLC_FILES)
    assert outputs == {here}
