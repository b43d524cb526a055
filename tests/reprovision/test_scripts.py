"""The host scripts are valid POSIX sh (dash and bash parse them), carry payloads intact, and show
the dry run no payload bytes."""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest

from flatcar_infra.reprovision import preflight, scripts
from flatcar_infra.reprovision.desired import Remote
from flatcar_infra.reprovision.hoststate import DEADMAN_SERVICE, DEADMAN_TIMER
from flatcar_infra.reprovision.procedure import reset_argv, rollback_argv
from tests.reprovision.helpers import OLD, OTHER, desired

SECRET = (
    b'{"ignition":{"version":"3.3.0"},'
    b'"storage":{"files":[{"path":"/etc/k","contents":{"source":"data:,TOPSECRET"}}]}}'
)


def all_scripts() -> list[scripts.Script]:
    d = desired()
    man = scripts.deadman_files(
        new_hash=d.config_hash,
        previous_hash=OLD.hash,
        staged_boot="boot-1",
        window=300,
        rollback_reset=rollback_argv(d),
    )
    return [
        preflight.script_for(
            d,
            root="",
            owner_json=OTHER.to_json(),
            take_lock=True,
            stale=None,
            user="core",
            login_key="ssh-ed25519 AAAA",
        ).script,
        scripts.preflight(
            "/tmp/x",
            owner_json="{}",
            take_lock=False,
            stale="old",
            keep_entries=["/a"],
            keep_rx="(/a)",
            candidates=["/a/b"],
            fetches=[("res0", Remote("$.x", "https://h/x", None, (("Authorization", "Bearer TOPSECRET"),)))],
            proxy={"https_proxy": "http://p:3128"},
            ca_bundle=b"PEM",
            key_b64="AAAA",
        ),
        scripts.stage(
            staging_json=b"{}",
            kept_list=b"f\t1\t2.0\t/a\0",
            hash_paths=["/a"],
            config=SECRET,
            config_sha512="ab",
            delivery="file",
            reset_argv=reset_argv(d, deadman=True),
            cancel_first=True,
            remove_oem=True,
            seed_applied=OLD.canonical,
            deadman=man,
            reboot_unit="flatcar-infra-reboot-x",
        ),
        scripts.verify(
            "",
            owner_json="{}",
            kept_paths=["/a", "/b"],
            hash_paths=["/a"],
            user="core",
            health_checks=["curl -fsS localhost:80/health", "test -f '/x y'"],
            health_timeout=30,
        ),
        scripts.confirm("", lock_token="tok", new_sha512="ab", applied=SECRET),
        scripts.rollback(record=b"{}", staging_json=b"{}", reset_argv=rollback_argv(d), reboot_unit="u"),
        scripts.lock("", "{}", None),
        scripts.facts(""),
        scripts.release("", "tok"),
        scripts.settle(b"{}"),
        scripts.settle(None),
    ]


@pytest.mark.parametrize("shell", ["dash", "bash"])
def test_scripts_parse(shell: str) -> None:
    path = shutil.which(shell)
    assert path, f"{shell} is needed"
    for s in all_scripts():
        res = subprocess.run([path, "-n"], input=s.text(), capture_output=True, text=True)
        assert res.returncode == 0, (s.name, res.stderr)


def test_payloads_travel_intact_and_the_display_hides_them() -> None:
    stage = all_scripts()[2]
    text, shown = stage.text(), stage.display()
    assert base64.b64encode(SECRET).decode()[:40] in text
    assert "TOPSECRET" not in shown and base64.b64encode(SECRET).decode()[:40] not in shown
    assert f"<the new config: {len(SECRET)} bytes>" in shown
    pre = all_scripts()[1].display()
    assert "TOPSECRET" not in pre and "<HTTP headers of $.x:" in pre


def test_deadman_units() -> None:
    d = desired()
    man = scripts.deadman_files(
        new_hash=d.config_hash,
        previous_hash=OLD.hash,
        staged_boot="boot-1",
        window=120,
        rollback_reset=rollback_argv(d),
    )
    timer = man[DEADMAN_TIMER][0].decode()
    assert "OnActiveSec=120s" in timer and "WantedBy=timers.target" in timer
    assert "ExecStart=/bin/sh /var/lib/flatcar-infra/deadman.sh" in man[DEADMAN_SERVICE][0].decode()
    script = man["/var/lib/flatcar-infra/deadman.sh"][0].decode()
    assert "flatcar-reset --keep-machine-id -F /var/lib/flatcar-infra/applied.ign --keep-paths" in script
    assert (
        "flatcar-infra-rollback\\.timer" not in script.split("flatcar-reset", 1)[1]
    )  # not kept by the rollback
    res = subprocess.run(["dash", "-n"], input=script, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
