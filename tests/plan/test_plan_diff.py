"""The pure diff: two Ignition documents → changes keyed like the manifest."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flatcar_infra.manifest import build_manifest
from flatcar_infra.plan.diff import (
    MAX_DIFF_BYTES,
    SECRET_MARKER,
    Action,
    Change,
    ConfigDiff,
    SecretRules,
    diff_ignition,
)
from flatcar_infra.plan.display import abbreviate_key, mask_url
from flatcar_infra.plan.model import plan_machine
from flatcar_infra.plan.render import render_json, render_markdown, render_text
from tests.plan.helpers import data_url, file_entry, ign


def one(d: ConfigDiff, key: str) -> Change:
    found = [c for c in d.changes if c.key == key]
    assert len(found) == 1, [c.key for c in d.changes]
    return found[0]


def all_output(old: dict[str, Any], new: dict[str, Any], **kw: Any) -> str:
    from flatcar_infra.plan.model import Plan

    plan = Plan((plan_machine("m", old, new, **kw),))
    return render_text(plan) + render_text(plan, color=True) + render_markdown(plan) + render_json(plan)


def test_identical_documents_have_no_changes() -> None:
    doc = ign(storage={"files": [file_entry("/etc/motd", "hi")]})
    assert diff_ignition(doc, json.loads(json.dumps(doc))).changes == ()


def test_added_file_shows_its_content_as_a_diff() -> None:
    d = diff_ignition(ign(), ign(storage={"files": [file_entry("/etc/motd", "hello\n", mode=0o644)]}))
    c = one(d, "file:/etc/motd")
    assert c.action is Action.ADDED and c.old_digest is None and c.new_digest
    assert c.contents[0].mode == "diff"
    assert c.contents[0].diff == ("--- /dev/null", "+++ b/etc/motd", "@@ -0,0 +1 @@", "+hello")
    assert "mode 0644" in c.summary and c.summary.startswith("added")


def test_removed_entries_of_every_kind() -> None:
    old = ign(
        storage={
            "files": [file_entry("/etc/a", "x")],
            "directories": [{"path": "/var/d"}],
            "links": [{"path": "/etc/l", "target": "/etc/a"}],
        },
        systemd={"units": [{"name": "a.service", "enabled": True}]},
        passwd={"users": [{"name": "alice"}], "groups": [{"name": "ops"}]},
        kernelArguments={"shouldExist": ["quiet"]},
    )
    d = diff_ignition(old, ign())
    assert {c.key for c in d.changes} == {
        "file:/etc/a",
        "dir:/var/d",
        "link:/etc/l",
        "unit:a.service",
        "user:alice",
        "group:ops",
        "kernel-arg:+quiet",
    }
    assert all(c.action is Action.REMOVED and c.new_digest is None for c in d.changes)
    # grouped in display order: files before directories, links, units, users, groups, kernel args
    assert [c.category for c in d.changes] == ["file", "dir", "link", "unit", "user", "group", "kernel-arg"]


def test_modified_text_file_gets_a_unified_diff() -> None:
    old = ign(storage={"files": [file_entry("/etc/app.conf", "a=1\nb=2\nc=3\n")]})
    new = ign(storage={"files": [file_entry("/etc/app.conf", "a=1\nb=20\nc=3\n")]})
    c = one(diff_ignition(old, new), "file:/etc/app.conf")
    cc = c.contents[0]
    assert (cc.mode, cc.added_lines, cc.removed_lines) == ("diff", 1, 1)
    assert "-b=2" in cc.diff and "+b=20" in cc.diff and " a=1" in cc.diff
    assert c.summary == "contents changed (+1 -1 lines)"


def test_gzip_contents_are_decompressed_for_the_diff() -> None:
    old = ign(storage={"files": [{"path": "/etc/x", "contents": data_url("one\ntwo\n", gz=True)}]})
    new = ign(storage={"files": [{"path": "/etc/x", "contents": data_url("one\nthree\n", gz=True)}]})
    cc = one(diff_ignition(old, new), "file:/etc/x").contents[0]
    assert cc.mode == "diff" and "+three" in cc.diff and "-two" in cc.diff


def test_same_bytes_other_encoding_is_a_change_without_a_diff() -> None:
    old = ign(storage={"files": [{"path": "/etc/x", "contents": data_url("same\n")}]})
    new = ign(storage={"files": [{"path": "/etc/x", "contents": data_url("same\n", gz=True)}]})
    c = one(diff_ignition(old, new), "file:/etc/x")
    assert c.contents[0].mode == "digest" and c.contents[0].note == "same bytes, encoding changed"


def test_mode_and_owner_only_changes_show_just_that() -> None:
    old = ign(storage={"files": [file_entry("/etc/x", "body\n", mode=0o644, user={"name": "core"})]})
    new = ign(
        storage={
            "files": [file_entry("/etc/x", "body\n", mode=0o600, user={"name": "root"}, group={"id": 0})]
        }
    )
    c = one(diff_ignition(old, new), "file:/etc/x")
    assert c.contents == ()
    assert c.summary == "mode 0644 → 0600; user.name core → root; group.id (unset) → 0"


def test_directory_mode_change() -> None:
    old = ign(storage={"directories": [{"path": "/var/app", "mode": 0o755}]})
    new = ign(storage={"directories": [{"path": "/var/app", "mode": 0o750}]})
    assert one(diff_ignition(old, new), "dir:/var/app").summary == "mode 0755 → 0750"


def test_unit_enable_and_mask_flips() -> None:
    old = ign(
        systemd={
            "units": [
                {"name": "a.service", "enabled": True, "contents": "[Service]\n"},
                {"name": "b.service", "contents": "[Service]\n"},
                {"name": "c.service", "mask": True},
            ]
        }
    )
    new = ign(
        systemd={
            "units": [
                {"name": "a.service", "enabled": False, "contents": "[Service]\n"},
                {"name": "b.service", "enabled": True, "contents": "[Service]\n"},
                {"name": "c.service", "mask": False},
                {"name": "d.service", "mask": True},
            ]
        }
    )
    d = diff_ignition(old, new)
    assert one(d, "unit:a.service").summary == "enabled → disabled"
    assert one(d, "unit:b.service").summary == "no preset → enabled"
    assert one(d, "unit:c.service").summary == "masked → unmasked"
    assert one(d, "unit:d.service").summary == "added; mask true"


def test_dropins_are_listed_under_their_unit() -> None:
    old = ign(
        systemd={
            "units": [
                {
                    "name": "docker.service",
                    "dropins": [{"name": "10-a.conf", "contents": "[Service]\nA=1\n"}],
                },
                {"name": "zz.service", "enabled": True},
            ]
        }
    )
    new = ign(
        systemd={
            "units": [
                {
                    "name": "docker.service",
                    "enabled": True,
                    "dropins": [
                        {"name": "10-a.conf", "contents": "[Service]\nA=2\n"},
                        {"name": "20-b.conf", "contents": "[Service]\nB=1\n"},
                    ],
                },
                {"name": "aa.service", "enabled": True},
            ]
        }
    )
    d = diff_ignition(old, new)
    assert [c.key for c in d.changes] == [
        "unit:aa.service",
        "unit:docker.service",
        "dropin:docker.service/10-a.conf",
        "dropin:docker.service/20-b.conf",
        "unit:zz.service",
    ]
    dropin = one(d, "dropin:docker.service/10-a.conf")
    assert dropin.unit == "docker.service"
    assert "+A=2" in dropin.contents[0].diff


def test_unit_contents_diff() -> None:
    old = ign(systemd={"units": [{"name": "a.service", "contents": "[Service]\nExecStart=/bin/a\n"}]})
    new = ign(systemd={"units": [{"name": "a.service", "contents": "[Service]\nExecStart=/bin/b\n"}]})
    cc = one(diff_ignition(old, new), "unit:a.service").contents[0]
    assert cc.diff[:2] == ("--- a/a.service", "+++ b/a.service")
    assert "+ExecStart=/bin/b" in cc.diff


def test_binary_files_get_digests_and_sizes() -> None:
    old = ign(storage={"files": [{"path": "/opt/bin/x", "contents": data_url(b"\x7fELF\x00\x01", b64=True)}]})
    new = ign(
        storage={"files": [{"path": "/opt/bin/x", "contents": data_url(b"\x7fELF\x00\x02\x03", b64=True)}]}
    )
    cc = one(diff_ignition(old, new), "file:/opt/bin/x").contents[0]
    assert cc.mode == "digest" and cc.diff == ()
    assert cc.old is not None and cc.new is not None
    assert (cc.old.size, cc.new.size, cc.old.text) == (6, 7, False)
    assert cc.old.sha256 != cc.new.sha256 and len(cc.old.sha256 or "") == 12
    assert "6 B binary sha256:" in one(diff_ignition(old, new), "file:/opt/bin/x").summary


def test_large_text_files_get_digests_not_diffs() -> None:
    big = "x" * (MAX_DIFF_BYTES + 1)
    old = ign(storage={"files": [file_entry("/etc/big", big)]})
    new = ign(storage={"files": [file_entry("/etc/big", big + "y")]})
    cc = one(diff_ignition(old, new), "file:/etc/big").contents[0]
    assert cc.mode == "digest" and cc.diff == () and "larger than" in cc.note
    many = "".join(f"{i}\n" for i in range(1000))
    cc2 = one(
        diff_ignition(
            ign(storage={"files": [file_entry("/etc/m", many)]}),
            ign(storage={"files": [file_entry("/etc/m", many + "x\n")]}),
        ),
        "file:/etc/m",
    )
    assert cc2.contents[0].mode == "digest"


def test_remote_sources_show_url_and_verification_not_fetched() -> None:
    def cfg(h: str) -> dict[str, Any]:
        return ign(
            storage={
                "files": [
                    {
                        "path": "/opt/f",
                        "contents": {
                            "source": "https://bucket.example.com/f?X-Amz-Signature=SIGNATURE123&X-Amz-Credential=CRED",
                            "verification": {"hash": "sha512-" + h * 128},
                            "httpHeaders": [{"name": "Authorization", "value": "Bearer HEADERSECRET"}],
                        },
                    }
                ]
            }
        )

    c = one(diff_ignition(cfg("a"), cfg("b")), "file:/opt/f")
    cc = c.contents[0]
    assert cc.mode == "remote"
    assert cc.new is not None and cc.new.source == "https://bucket.example.com/f?•••"
    assert cc.new.headers == ("Authorization",)
    # fetched with credentials: the verification hash could confirm a guessed secret, so only
    # that something secret changed is said
    assert c.summary == (
        "contents from https://bucket.example.com/f?••• (not fetched): credentials (secret, changed)"
    )
    plain = [ign(storage={"files": [{"path": "/opt/f", "contents": {
        "source": "https://h.example/f", "verification": {"hash": "sha512-" + h * 128}}}]}) for h in "ab"]
    public = one(diff_ignition(*plain), "file:/opt/f")
    assert public.summary == ("contents from https://h.example/f (not fetched): "
                              "verify sha512-aaaaaaaaaaaa… → sha512-bbbbbbbbbbbb…")
    out = all_output(cfg("a"), cfg("b"))
    for secret in ("SIGNATURE123", "CRED", "HEADERSECRET"):
        assert secret not in out


def test_secrets_are_masked_in_every_format() -> None:
    old = ign(
        storage={
            "files": [
                file_entry("/etc/tls/server.key", "KEYMATERIAL-OLD"),
                file_entry("/etc/app/secrets.env", "DBPASS=OLDPASS"),
                file_entry("/etc/app/token", "TOKEN-OLD"),
                file_entry("/etc/custom/conf", "CUSTOM-OLD"),
            ]
        },
        passwd={"users": [{"name": "core", "passwordHash": "$6$OLDHASH"}]},
        ignition={
            "version": "3.3.0",
            "config": {"merge": [{"source": "https://u:PW@h.example.com/c.ign?sig=QSECRET"}]},
        },
    )
    new = ign(
        storage={
            "files": [
                file_entry("/etc/tls/server.key", "KEYMATERIAL-NEW"),
                file_entry("/etc/app/secrets.env", "DBPASS=NEWPASS"),
                file_entry("/etc/app/token", "TOKEN-NEW"),
                file_entry("/etc/custom/conf", "CUSTOM-NEW"),
            ]
        },
        passwd={"users": [{"name": "core", "passwordHash": "$6$NEWHASH"}]},
        ignition={
            "version": "3.3.0",
            "config": {"merge": [{"source": "https://u:PW2@h.example.com/c.ign?sig=QSECRET2"}]},
        },
    )
    rules = SecretRules(globs=("/etc/custom/*",))
    d = diff_ignition(old, new, secrets=rules)
    for path in ("/etc/tls/server.key", "/etc/app/secrets.env", "/etc/app/token", "/etc/custom/conf"):
        c = one(d, f"file:{path}")
        assert c.secret and c.contents[0].mode == "secret" and c.contents[0].diff == ()
        assert c.summary == "contents (secret, changed)"
    assert one(d, "user:core").summary == "passwordHash (secret, changed)"
    out = all_output(old, new, secrets=rules)
    for secret in (
        "KEYMATERIAL",
        "OLDPASS",
        "NEWPASS",
        "TOKEN-",
        "CUSTOM-",
        "OLDHASH",
        "NEWHASH",
        "PW@",
        "PW2",
        "QSECRET",
    ):
        assert secret not in out, secret
    assert "(secret, changed)" in out


def test_secret_variable_marker_masks_any_file() -> None:
    old = ign(storage={"files": [file_entry("/etc/app.conf", f"key={SECRET_MARKER}api_key\nA=1\n")]})
    new = ign(storage={"files": [file_entry("/etc/app.conf", f"key={SECRET_MARKER}api_key\nA=2\n")]})
    c = one(diff_ignition(old, new), "file:/etc/app.conf")
    assert c.secret and c.contents[0].mode == "secret"


def test_secret_file_mode_change_shows_only_the_mode() -> None:
    old = ign(storage={"files": [file_entry("/etc/x.pem", "PEMDATA", mode=0o644)]})
    new = ign(storage={"files": [file_entry("/etc/x.pem", "PEMDATA", mode=0o600)]})
    c = one(diff_ignition(old, new), "file:/etc/x.pem")
    assert c.summary == "mode 0644 → 0600" and c.contents == ()


def test_ssh_keys_and_groups_are_set_changes() -> None:
    k1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKEYONE000000000000000000 alice@laptop"
    k2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKEYTWO000000000000000000 bob@laptop"
    old = ign(passwd={"users": [{"name": "core", "sshAuthorizedKeys": [k1], "groups": ["docker"]}]})
    new = ign(passwd={"users": [{"name": "core", "sshAuthorizedKeys": [k2, k1], "groups": ["wheel"]}]})
    c = one(diff_ignition(old, new), "user:core")
    assert [f.describe() for f in c.fields] == [
        "groups -docker",
        "groups +wheel",
        f"sshAuthorizedKeys +{abbreviate_key(k2)}",
    ]
    assert c.summary == f"groups -docker +wheel; sshAuthorizedKeys +{abbreviate_key(k2)}"
    # reordering a set-like list changes the manifest digest: still one change, with no field noise
    d = diff_ignition(
        new, ign(passwd={"users": [{"name": "core", "sshAuthorizedKeys": [k1, k2], "groups": ["wheel"]}]})
    )
    assert one(d, "user:core").summary == "changed"


def test_kernel_arguments() -> None:
    d = diff_ignition(
        ign(kernelArguments={"shouldExist": ["quiet"]}),
        ign(kernelArguments={"shouldExist": ["console=ttyS0"], "shouldNotExist": ["quiet"]}),
    )
    assert [(c.key, c.action.value, c.summary) for c in d.changes] == [
        ("kernel-arg:+console=ttyS0", "added", "added (should exist)"),
        ("kernel-arg:+quiet", "removed", "removed (should exist)"),
        ("kernel-arg:-quiet", "added", "added (should not exist)"),
    ]


def test_storage_partitions_keyed_by_label() -> None:
    disk = {
        "device": "/dev/vdb",
        "wipeTable": False,
        "partitions": [{"label": "data", "number": 1, "sizeMiB": 1024}],
    }
    new_disk = json.loads(json.dumps(disk))
    new_disk["partitions"][0]["sizeMiB"] = 2048
    c = one(
        diff_ignition(ign(storage={"disks": [disk]}), ign(storage={"disks": [new_disk]})), "disk:/dev/vdb"
    )
    assert c.summary == "partitions[data].sizeMiB 1024 → 2048"


def test_mask_url() -> None:
    assert mask_url("https://h/p?a=1") == "https://h/p?•••"
    assert mask_url("s3://bucket/key") == "s3://bucket/key"
    assert mask_url("http://user:pw@proxy:3128") == "http://•••@proxy:3128"
    assert mask_url("data:,abc") == "inline"


# --- the plan shows exactly the manifest's entries ----------------------------------------------

_names = st.sampled_from(["/etc/a", "/etc/b", "/etc/c.key", "/var/d"])
_file = st.fixed_dictionaries(
    {"path": _names, "contents": st.builds(data_url, st.text(max_size=20))},
    optional={"mode": st.sampled_from([0o644, 0o600]), "overwrite": st.booleans()},
)
_unit = st.fixed_dictionaries(
    {"name": st.sampled_from(["a.service", "b.service"])},
    optional={
        "enabled": st.booleans(),
        "mask": st.booleans(),
        "contents": st.text(max_size=10),
        "dropins": st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["1.conf", "2.conf"]), "contents": st.text(max_size=5)}
            ),
            max_size=2,
            unique_by=lambda d: d["name"],
        ),
    },
)
_doc = st.builds(
    lambda files, units, args: ign(
        storage={"files": files}, systemd={"units": units}, kernelArguments={"shouldExist": args}
    ),
    st.lists(_file, max_size=3, unique_by=lambda f: f["path"]),
    st.lists(_unit, max_size=2, unique_by=lambda u: u["name"]),
    st.lists(st.sampled_from(["quiet", "a=1"]), max_size=2, unique=True),
)


@settings(max_examples=150, deadline=None)
@given(_doc, _doc)
def test_changes_are_exactly_the_manifest_differences(old: dict[str, Any], new: dict[str, Any]) -> None:
    mo, mn = build_manifest(old), build_manifest(new)
    expected = {k for k in set(mo) | set(mn) if mo.get(k) != mn.get(k)}
    d = diff_ignition(old, new)
    assert {c.key for c in d.changes} == expected
    for c in d.changes:
        assert (c.old_digest, c.new_digest) == (mo.get(c.key), mn.get(c.key))
    assert render_json_stable(old, new)


def render_json_stable(old: dict[str, Any], new: dict[str, Any]) -> bool:
    from flatcar_infra.plan.model import Plan

    a = render_json(Plan((plan_machine("m", old, new),)))
    b = render_json(Plan((plan_machine("m", json.loads(json.dumps(old)), json.loads(json.dumps(new))),)))
    return a == b


def test_presigned_url_signature_change_is_a_secret_change() -> None:
    def cfg(sig: str) -> dict[str, Any]:
        url = f"https://bucket.example.com/config.ign?X-Amz-Expires=604800&X-Amz-Signature={sig}"
        return ign(
            ignition={"version": "3.3.0", "config": {"replace": {"source": url}}},
            storage={"files": [{"path": "/opt/x", "contents": {"source": url}}]},
        )

    d = diff_ignition(cfg("SIGONE"), cfg("SIGTWO"))
    assert one(d, "file:/opt/x").summary == (
        "contents from https://bucket.example.com/config.ign?••• (not fetched): credentials (secret, changed)"
    )
    assert one(d, "ignition:config").summary == "replace (secret, changed)"
    out = all_output(cfg("SIGONE"), cfg("SIGTWO"))
    assert "SIGONE" not in out and "SIGTWO" not in out and "604800" not in out
