"""The pure decisions: phase planning, refusals, rollback target, diff, kept manifest, policy,
messages."""

from __future__ import annotations

import pytest

from flatcar_infra.reprovision import messages
from flatcar_infra.reprovision.decide import Refusal, config_refusals, decide, rollback_config
from flatcar_infra.reprovision.desired import Desired, authorized_keys, key_id, remote_resources, stamp_in
from flatcar_infra.reprovision.hoststate import (
    STAGED_CONFIG,
    RollbackRecord,
    Staging,
    ignition_for,
    parse_kept,
    spec_accepted,
)
from flatcar_infra.reprovision.kept import KeptEntry, compare_kept, hash_selection, keep_regex, kept_digest
from flatcar_infra.reprovision.policy import DEFAULT_KEEP_PATHS, Policy, PolicyError
from flatcar_infra.reprovision.propdiff import diff_props, manifest_changes
from tests.reprovision.helpers import ME, OLD, OTHER, compiled, desired, facts, staging

# --- policy -----------------------------------------------------------------------------------------


def test_policy_defaults_and_roundtrip() -> None:
    p = Policy()
    assert p.strategy == "in-place" and p.keep_machine_id and p.reboot_timeout == 600
    assert p.hash_budget_bytes == 64 * 1024 * 1024
    q = Policy.from_dict(
        {
            "keep_paths": ["/var/lib/app"],
            "health_checks": ["true"],
            "hash_budget_bytes": 10.0,
            "reboot_timeout": 30,
        }
    )
    assert Policy.from_dict(q.to_dict()) == q
    assert q.all_keep_paths == (*DEFAULT_KEEP_PATHS, "/var/lib/app")
    assert Policy.from_dict(None) == Policy()


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"stratgy": "in-place"}, "policy.stratgy"),
        ({"strategy": "yolo"}, "policy.strategy"),
        ({"keep_paths": "/var/lib"}, "policy.keep_paths"),
        ({"keep_paths": ["var/lib"]}, "policy.keep_paths"),
        ({"keep_paths": ["/var/(lib"]}, "policy.keep_paths"),
        ({"health_timeout": -1}, "policy.health_timeout"),
        ({"reboot_timeout": "soon"}, "policy.reboot_timeout"),
        ({"hash_budget_bytes": -5}, "policy.hash_budget_bytes"),
        ({"keep_machine_id": "yes"}, "policy.keep_machine_id"),
        ({"keep_paths": ["/var/lib/app\\d+"]}, "policy.keep_paths"),
        ({"keep_paths": ["/var/(?:a|b)"]}, "policy.keep_paths"),
        ({"rollback": "no"}, "policy.rollback"),
        ({"confirm_window": 0}, "policy.confirm_window"),
        ({"deadline": -3}, "policy.deadline"),
    ],
)
def test_policy_errors_name_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(PolicyError) as exc:
        Policy.from_dict(data)
    assert exc.value.message.startswith(key)


# --- desired state ------------------------------------------------------------------------------------


def test_desired_requires_a_stamp_matching_the_hash() -> None:
    c = compiled({"/etc/a": "1"})
    assert stamp_in(c.ignition) == c.hash
    d = Desired.from_config(c.canonical, c.hash, Policy())
    assert d.version == "3.3.0" and d.config == c.canonical
    other = compiled({"/etc/a": "2"})
    with pytest.raises(ValueError, match="stamp"):
        Desired.from_config(c.canonical, other.hash, Policy())
    from flatcar_infra.compiler.api import compile_config

    unstamped = compile_config('{"ignition":{"version":"3.3.0"}}')
    with pytest.raises(ValueError, match="stamp_config=True"):
        Desired.from_config(unstamped.canonical, unstamped.hash, Policy())
    # no SSH, no stamp needed
    Desired.from_config(unstamped.canonical, unstamped.hash, Policy(strategy="ignore"))
    with pytest.raises(ValueError, match="config_url"):
        Desired.from_config(c.canonical, c.hash, Policy(), "url")
    with pytest.raises(ValueError, match="delivery"):
        Desired.from_config(c.canonical, c.hash, Policy(), "carrier-pigeon")


def test_wipe_root_needs_a_config_that_reformats_root() -> None:
    with pytest.raises(ValueError, match="wipe-root"):
        desired(policy=Policy(strategy="wipe-root"))
    fs = {
        "storage": {
            "filesystems": [
                {
                    "device": "/dev/disk/by-label/ROOT",
                    "format": "ext4",
                    "label": "ROOT",
                    "wipeFilesystem": True,
                }
            ],
            "files": [],
        }
    }
    c = compiled({}, extra=fs)
    d = Desired.from_config(c.canonical, c.hash, Policy(strategy="wipe-root"))
    assert d.wipes_root


# --- Ignition spec table ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("release", "spec"),
    [
        ("3535.0.0", "3.3.0"),
        ("3602.2.0", "3.3.0"),
        ("3975.2.1", "3.3.0"),
        ("4081.2.0", "3.4.0"),
        ("4230.2.4", "3.4.0"),
        ("4593.0.0", "3.5.0"),
        ("9999.0.0", "3.5.0"),
    ],
)
def test_ignition_table(release: str, spec: str) -> None:
    assert ignition_for(release)[1] == spec


def test_spec_acceptance() -> None:
    assert spec_accepted("3.3.0", "3602.2.0")
    assert not spec_accepted("3.4.0", "3602.2.0")
    assert spec_accepted("3.4.0", "4081.2.0")
    assert spec_accepted("3.0.0", "3602.2.0")
    assert not spec_accepted("3.4.0-experimental", "3602.2.0")


# --- phase planning ---------------------------------------------------------------------------------------


def test_fresh_host_gets_the_full_procedure() -> None:
    d = desired()
    plan = decide(facts(), d, ME)
    assert plan.phases == ("preflight", "stage", "reboot", "verify", "confirm") and not plan.refused
    assert plan.rollback_config == OLD.canonical


def test_rollback_needs_proof_of_the_running_config() -> None:
    d = desired()
    bare = facts(applied_config=None)
    plan = decide(bare, d, ME)
    assert plan.refused and "cannot roll back" in plan.refusals[0].reason
    assert "--previous-config" in plan.refusals[0].advice and "--no-rollback" in plan.refusals[0].advice
    # the caller's copy (the provider's old state), or a /oem/config.ign stamping the running hash
    assert decide(bare, d, ME, previous=OLD.canonical).rollback_config == OLD.canonical
    assert (
        decide(facts(applied_config=None, oem_config=OLD.canonical), d, ME).rollback_config == OLD.canonical
    )
    # a copy that does not stamp the running hash proves nothing
    assert rollback_config(bare, compiled({"/x": "y"}).canonical) is None
    # rollback off: no target, no refusal, no dead-man switch
    plan = decide(bare, desired(policy=Policy(rollback=False)), ME)
    assert not plan.refused and plan.rollback_config is None


def test_already_applied_only_verifies() -> None:
    d = desired()
    plan = decide(facts(stamp=d.config_hash), d, ME)
    assert plan.phases == ("preflight", "verify") and not plan.reboots
    assert any("no reboot" in n for n in plan.notes)


def test_staged_but_never_rebooted_is_cleaned_up_then_restaged() -> None:
    d = desired()
    f = facts(reset_staged=True, staging=staging(d.config_hash, "boot-1"))
    assert decide(f, d, ME).phases == ("preflight", "cleanup", "stage", "reboot", "verify", "confirm")
    # staged by someone else (no record of ours) in this boot: also cleaned up, and said so
    plan = decide(facts(reset_staged=True), d, ME)
    assert plan.phases[1] == "cleanup" and any("someone else" in n for n in plan.notes)
    # applied already, but a reset is pending: cancel it, verify, no reboot
    plan = decide(facts(stamp=d.config_hash, reset_staged=True), d, ME)
    assert plan.phases == ("preflight", "cleanup", "verify")


def test_an_unconfirmed_new_boot_is_verified_then_confirmed_or_rolled_back() -> None:
    d = desired()
    f = facts(
        stamp=d.config_hash,
        applied_config=OLD.canonical,
        deadman_armed=True,
        staging=staging(d.config_hash, "boot-0", previous_hash=OLD.hash),
    )
    plan = decide(f, d, ME)
    assert plan.phases == ("preflight", "verify", "confirm") and plan.rollback_config == OLD.canonical
    # confirmed already (a second run): nothing to roll back to; a failing check is reported only
    plan = decide(facts(stamp=d.config_hash, confirmed=True, deadman_armed=False), d, ME)
    assert plan.phases == ("preflight", "verify") and plan.rollback_config is None


def test_rebooted_but_not_applied_retries_with_a_warning() -> None:
    d = desired()
    f = facts(staging=staging(d.config_hash, "boot-0"))
    plan = decide(f, d, ME)
    assert plan.reboots and any("did not apply" in w for w in plan.warnings)


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"os_id": "debian"}, "not Flatcar"),
        ({"version": "3510.2.0", "reset_tool": None}, "3535"),
        ({"version": "3602.2.0", "reset_tool": None}, "flatcar-reset is not available"),
        ({"version": "3400.0.0"}, "3535"),
    ],
)
def test_refusals_for_unsuitable_hosts(kw: dict[str, object], needle: str) -> None:
    plan = decide(facts(**kw), desired(), ME)
    assert plan.refused and plan.phases == ("preflight",)
    assert any(needle in r.reason for r in plan.refusals)


def test_spec_too_new_for_the_host_is_refused() -> None:
    d = desired(version="3.4.0")
    plan = decide(facts(), d, ME)
    assert plan.refused
    r = plan.refusals[0]
    assert "3.4.0" in r.reason and "3.3.0" in r.reason and "2.14" in r.reason
    assert not decide(facts(version="4081.2.0"), d, ME).refused


def test_precedence_pointer() -> None:
    d = desired(delivery="pointer", config_url="http://h/c.ign")
    plan = decide(facts(oem_config_hash="sha512-x"), d, ME)
    assert plan.refused and "overrides the cloud user-data pointer" in plan.refusals[0].reason
    plan = decide(facts(grub_config_url="http://x/c.ign"), d, ME)
    assert plan.refused and "ignition.config.url=http://x/c.ign" in plan.refusals[0].reason
    assert not decide(facts(), d, ME).refused
    # a /oem/config.ign our own rollback wrote (the running config, after a failed pointer run) is
    # ours to remove, not a foreign override
    rb = RollbackRecord("deadman", d.config_hash, OLD.hash, "boot-0", 1.0, "not confirmed")
    plan = decide(facts(oem_config=OLD.canonical, oem_config_hash="sha512-x", rollback_record=rb), d, ME)
    assert not plan.refused and plan.remove_oem and any("earlier rollback" in n for n in plan.notes)


def test_precedence_file_and_url() -> None:
    # after a -F delivery /oem/config.ign is the host's config: expected, not foreign
    assert not decide(facts(oem_config_hash="sha512-x"), desired(), ME).refused
    plan = decide(facts(cmdline_config_url="http://x"), desired(), ME)
    assert plan.refused and "overrides /oem/config.ign" in plan.refusals[0].reason
    plan = decide(facts(oem_config_hash="sha512-x"), desired(delivery="url", config_url="http://h/c"), ME)
    assert not plan.refused and plan.warnings


def test_lock_held_by_another_is_reported_with_owner_and_age() -> None:
    f = facts(lock_text=OTHER.to_json(), lock_age=125.0)
    plan = decide(f, desired(), ME)
    assert plan.refused
    reason = plan.refusals[0].reason
    assert "bob on laptop, pid 99" in reason and "125s" in reason
    assert "sudo rm /run/flatcar-infra/reprovision.lock" in plan.refusals[0].advice
    # garbage in the lock is still a lock
    assert decide(facts(lock_text="junk", lock_age=1.0), desired(), ME).refused
    # our own stale lock is taken over, and that is said
    plan = decide(f, desired(), ME, stale_ours=True)
    assert not plan.refused and any("stale lock" in n for n in plan.notes)


# --- kept files -------------------------------------------------------------------------------------------


def test_hash_selection_respects_the_budget_in_path_order() -> None:
    entries = [
        KeptEntry("/b", "file", 60, 0),
        KeptEntry("/a", "file", 50, 0),
        KeptEntry("/c", "file", 10, 0),
        KeptEntry("/l", "link", 3, 0),
    ]
    hashed, skipped = hash_selection(entries, 70)
    assert hashed == ["/a", "/c"] and skipped == ["/b"]
    assert hash_selection(entries, 0) == ([], ["/a", "/b", "/c"])


def test_compare_kept() -> None:
    before = {"/etc/ssh/k": "10:aa", "/var/log/x": "5:bb", "/gone": "1:cc", "/big": "100:-", "/bad": "3:dd"}
    after = {"/etc/ssh/k": "10:aa", "/var/log/x": "9:ee", "/big": "100:ff", "/bad": "3:zz"}
    cmp = compare_kept(before, after, {"/var/log/x": 2000.0, "/bad": 10.0}, staged_at=1000.0)
    assert cmp.missing == ("/gone",) and cmp.corrupted == ("/bad",) and cmp.rewritten == ("/var/log/x",)
    assert not cmp.ok
    assert compare_kept({"/a": "1:x"}, {"/a": "1:x", "/new": "2:y"}, {}, 0).ok
    assert kept_digest(KeptEntry("/l", "link", 1, 0), None) == "link:"


def test_kept_record_roundtrip() -> None:
    entries = [
        KeptEntry("/etc/ssh/ssh_host_ed25519_key", "file", 411, 1700000000.25),
        KeptEntry("/var/lib/app/a\tb", "file", 3, 1.0),
        KeptEntry("/var/lib/app/l", "link", 7, 2.0),
    ]
    listing = b"".join(e.record() for e in entries)
    sums = b"aa  /etc/ssh/ssh_host_ed25519_key\0"
    assert dict(parse_kept(listing, sums)) == {
        "/etc/ssh/ssh_host_ed25519_key": "411:aa",
        "/var/lib/app/a\tb": "3:-",
        "/var/lib/app/l": "link:",
    }
    st = Staging(
        "sha512-n",
        "boot-1",
        5.0,
        "pointer",
        parse_kept(listing, sums),
        (("file:/a", "1"),),
        "sha512-p",
        False,
        300.0,
        ("/var/lib/app",),
    )
    assert Staging.parse(st.to_json(), st.kept) == st
    rb = RollbackRecord("deadman", "sha512-n", "sha512-p", "boot-2", 9.0, "why")
    assert RollbackRecord.parse(rb.to_json()) == rb and RollbackRecord.parse(b"junk") is None


# --- diff -------------------------------------------------------------------------------------------------


def _props(d: Desired, **kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "host": "10.0.0.5",
        "port": 22,
        "user": "core",
        "private_key": "KEY",
        "host_key": None,
        "config": d.config.decode(),
        "config_hash": d.config_hash,
        "manifest": {"file:/etc/a": "1"},
        "policy": d.policy.to_dict(),
        "delivery": "file",
        "config_url": None,
    }
    base.update(kw)
    return base


def _olds(d: Desired, **kw: object) -> dict[str, object]:
    return {**_props(d, host_key="ssh-ed25519 AAAA", **kw), "applied_hash": d.config_hash}


def test_diff_no_change() -> None:
    d = desired()
    r = diff_props(_olds(d), _props(d))
    assert r.action == "none" and r.changed == () and not r.has_changes
    # the port arrives as a float from protobuf
    assert diff_props(_olds(d), _props(d, port=22.0)).action == "none"


def test_diff_config_change_is_an_update_never_a_replace() -> None:
    d1, d2 = desired({"/etc/a": "1"}), desired({"/etc/a": "2"})
    r = diff_props(_olds(d1), _props(d2, manifest={"file:/etc/a": "2"}))
    assert r.action == "reprovision" and r.replaces == ()
    assert r.changed == ("config", "config_hash", "manifest")


def test_diff_connection_only_changes_do_not_reboot() -> None:
    d = desired()
    assert diff_props(_olds(d), _props(d, port=2222)).action == "connect"
    r = diff_props(_olds(d), _props(d, private_key="OTHER", host_key="ssh-ed25519 BBBB"))
    assert r.action == "connect" and r.changed == ("host_key", "private_key")
    # a host key that only differs by its comment is the same key
    assert diff_props(_olds(d), _props(d, host_key="ssh-ed25519 AAAA me@x")).action == "none"


def test_diff_new_machine_identity_drops_the_pin() -> None:
    d = desired()
    olds = _olds(d, machine_identity="i-0aaa")
    r = diff_props(olds, _props(d, machine_identity="i-0bbb"))
    assert r.action == "new-machine" and r.changed == ("machine_identity",)
    assert diff_props(olds, _props(d, machine_identity="i-0aaa")).action == "none"
    # state written before the field existed: recording the identity is not a new machine
    assert diff_props(_olds(d), _props(d, machine_identity="i-0aaa")).action == "record"


def test_diff_platform_keys_compare_as_a_set_of_keys() -> None:
    d = desired()
    olds = _olds(d, platform_keys=["ssh-ed25519 AAAA a@b", "ssh-rsa BBBB"])
    assert diff_props(olds, _props(d, platform_keys=["ssh-rsa BBBB x", "ssh-ed25519 AAAA"])).action == "none"
    assert diff_props(olds, _props(d, platform_keys=["ssh-rsa BBBB"])).action == "record"


def test_diff_policy_only_is_recorded() -> None:
    d = desired()
    r = diff_props(_olds(d), _props(d, policy=Policy(keep_paths=("/var/log",)).to_dict()))
    assert r.action == "record" and r.changed == ("policy",)


def test_diff_drift_and_strategies() -> None:
    d = desired()
    drifted = {**_olds(d), "applied_hash": "sha512-other"}
    assert diff_props(drifted, _props(d)).action == "reprovision"
    ignore = Policy(strategy="ignore").to_dict()
    assert diff_props({**drifted, "policy": ignore}, _props(d, policy=ignore)).action == "none"
    d2 = desired({"/etc/a": "2"})
    replace = Policy(strategy="replace").to_dict()
    r = diff_props({**_olds(d), "policy": replace}, _props(d2, policy=replace))
    assert r.action == "replace" and r.replaces == ("config_hash",)


def test_diff_with_unknowns() -> None:
    d = desired()
    unknown = object()
    r = diff_props(_olds(d), _props(d, config=unknown, config_hash=unknown), lambda v: v is unknown)
    assert r.action == "reprovision" and r.unknown == ("config", "config_hash")


def test_manifest_changes() -> None:
    assert manifest_changes(
        {"file:/a": "1", "unit:x": "2", "user:core": "3"}, {"file:/a": "9", "user:core": "3", "file:/b": "4"}
    ) == [("~", "file:/a"), ("+", "file:/b"), ("-", "unit:x")]


# --- messages -------------------------------------------------------------------------------------------


def test_messages_say_the_host_state_and_what_to_do() -> None:
    e = messages.refused("h", [Refusal("bad thing", "do this")], "sha512-a")
    assert "host state: the host was not changed" in str(e) and e.advice == "do this"
    assert e.applied_hash == "sha512-a" and not e.rolled_back
    e = messages.lost_before_reboot("h", "eof", None)
    assert "staged" in str(e) and "flatcar-reset --stop" in (e.advice or "")
    e = messages.not_back("h", 600, "timeout", None)
    assert "600s" in str(e) and "run again" in (e.advice or "")
    e = messages.verify_failed("h", ["unit x failed"], "sha512-n")
    assert "unit x failed" in str(e) and "rebooted into the new config" in str(e)
    e = messages.rolled_back(
        "h", "sha512-" + "1" * 128, "sha512-" + "0" * 128, ["health check #1 exited 1"], "re-applied in place"
    )
    assert e.rolled_back and e.applied_hash == "sha512-" + "0" * 128
    assert (
        "rolled back" in str(e) and "health check #1 exited 1" in str(e) and "sha512-000000000000" in str(e)
    )


def test_reset_arguments() -> None:
    from flatcar_infra.reprovision.hoststate import DEADMAN_KEEP
    from flatcar_infra.reprovision.procedure import reset_argv, rollback_argv

    d = desired(policy=Policy(keep_paths=("/var/lib/app/",)))
    # real flatcar-reset runs `cp FILE /oem/config.ign`: "-" would be a file named "-"
    assert reset_argv(d) == [
        "flatcar-reset",
        "--keep-machine-id",
        "-F",
        STAGED_CONFIG,
        "--keep-paths",
        "/etc/ssh/ssh_host_.*",
        "/var/lib/flatcar-infra",
        "/var/lib/app/",
    ]
    u = desired(policy=Policy(keep_machine_id=False), delivery="url", config_url="http://h/c.ign")
    assert reset_argv(u)[:3] == ["flatcar-reset", "-U", "http://h/c.ign"]
    pointer = desired(delivery="pointer", config_url="http://h/c.ign")
    assert "-F" not in reset_argv(pointer) and "-U" not in reset_argv(pointer)
    assert reset_argv(d, preview="keep")[:3] == ["flatcar-reset", "--preview-keep", "--keep-paths"]
    # the dead-man switch's units survive the reset into the new boot, not the rollback's
    assert reset_argv(d, deadman=True)[-3:] == list(DEADMAN_KEEP)
    assert rollback_argv(d)[:4] == [
        "flatcar-reset",
        "--keep-machine-id",
        "-F",
        "/var/lib/flatcar-infra/applied.ign",
    ]
    assert not set(DEADMAN_KEEP) & set(rollback_argv(d))
    # like flatcar-reset: a plain path keeps what is below it; a regex ending in * is as written;
    # the backup directory and the marker are always kept
    assert (
        keep_regex(("/etc/ssh/ssh_host_.*", "/var/lib/app/"))
        == "(/etc/ssh/ssh_host_.*|/var/lib/app/.*|/var/lib/app|"
        "/flatcar-backup|/flatcar-backup/.*|/selective-os-reset)"
    )


# --- config checks -----------------------------------------------------------------------------------------


def test_config_refusals_dangers_and_lock_out() -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOPERATORKEYxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx op@laptop"
    ok = desired(extra={"passwd": {"users": [{"name": "core", "sshAuthorizedKeys": [key]}]}})
    assert config_refusals(ok, user="core", login_key=key) == []
    assert authorized_keys(ok.document, "core") == (key_id(key),)
    # no key for core: locked out, unless the platform installs it on every boot or a kept file has it
    bare = desired()
    r = config_refusals(bare, user="core", login_key=key)
    assert len(r) == 1 and "lock you out" in r[0].reason and "sshAuthorizedKeys" in r[0].reason
    assert config_refusals(bare, user="core", login_key=key, platform_keys=[key.rsplit(" ", 1)[0]]) == []
    assert config_refusals(bare, user="core", login_key=key, key_kept=True) == []
    assert config_refusals(bare, user="core", login_key=key, more_keys=[key]) == []
    # authorized for another user only: still locked out as core
    other = desired(extra={"passwd": {"users": [{"name": "ops", "sshAuthorizedKeys": [key]}]}})
    assert config_refusals(other, user="core", login_key=key)
    # everything the plan marks as a DANGER refuses, naming it
    wipe = {
        "storage": {
            "files": [],
            "filesystems": [{"device": "/dev/vdb", "format": "ext4", "wipeFilesystem": True}],
        }
    }
    r = config_refusals(desired(extra=wipe), user="core", login_key=None)
    assert len(r) == 1 and "/dev/vdb" in r[0].reason and "DANGER" in r[0].advice


def test_remote_resources_are_listed_with_their_hashes() -> None:
    doc = {
        "ignition": {"version": "3.3.0", "config": {"merge": [{"source": "https://h/m.ign"}]}},
        "storage": {
            "files": [
                {"path": "/a", "contents": {"source": "data:,x"}},
                {
                    "path": "/b",
                    "contents": {
                        "source": "http://h/b",
                        "verification": {"hash": "sha512-ab"},
                        "httpHeaders": [{"name": "Authorization", "value": "t"}],
                    },
                },
                {"path": "/c", "append": [{"source": "s3://bucket/c"}]},
            ]
        },
    }
    res = remote_resources(doc)
    assert [(r.where, r.url, r.hash, r.is_config) for r in res] == [
        ("$.ignition.config.merge.0", "https://h/m.ign", None, True),
        ("$.storage.files.1.contents", "http://h/b", "sha512-ab", False),
        ("$.storage.files.2.append.0", "s3://bucket/c", None, False),
    ]
    assert res[1].headers == (("Authorization", "t"),) and res[2].scheme == "s3"
