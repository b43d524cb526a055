"""``flatcar-infra plan`` end to end: real compiler, real git repositories, exit codes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.plan.helpers import Repo, file_entry, ign

Cli = Callable[..., tuple[int, str, str]]

BUTANE_OLD = """\
variant: flatcar
version: 1.0.0
storage:
  files:
    - path: /etc/app.conf
      mode: 0644
      contents:
        local: app.conf
    - path: /etc/motd
      contents:
        inline: "hello {{ greeting }}\\n"
systemd:
  units:
    - name: app.service
      enabled: true
      contents: |
        [Service]
        ExecStart=/usr/bin/app
"""


IN_REPO = BUTANE_OLD.replace("{{ greeting }}", "world").replace("local: app.conf", "local: files/app.conf")


def write(path: Path, text: str | dict[str, object]) -> str:
    path.write_text(text if isinstance(text, str) else json.dumps(text), encoding="utf-8")
    return str(path)


def test_exit_codes(tmp_path: Path, cli: Cli) -> None:
    a = write(tmp_path / "a.ign", ign(storage={"files": [file_entry("/etc/motd", "a\n")]}))
    b = write(tmp_path / "b.ign", ign(storage={"files": [file_entry("/etc/motd", "b\n")]}))
    code, out, _ = cli("plan", a, b)
    assert code == 0 and "~ /etc/motd" in out
    assert cli("plan", a, b, "--exit-code")[0] == 3
    code, out, _ = cli("plan", a, a, "--exit-code")
    assert code == 0 and "no changes" in out
    code, _, err = cli("plan", a, str(tmp_path / "missing.ign"))
    assert code == 1 and "missing.ign: no such file" in err
    bad = write(tmp_path / "bad.yaml", "variant: flatcar\nversion: 1.0.0\nstorage: {files: [{mode: 1}]}\n")
    code, _, err = cli("plan", a, bad)
    assert code == 1 and "bad.yaml" in err and "Traceback" not in err
    assert cli("plan", a)[0] == 2
    assert cli("plan", a, b, "--base", "HEAD")[0] == 2
    assert cli("plan", a, b, "--var", "novalue")[0] == 2
    assert cli("plan", a, b, "--format", "yaml")[0] == 2


def test_butane_with_local_files_and_variables(tmp_path: Path, cli: Cli) -> None:
    files = tmp_path / "files"
    files.mkdir()
    (files / "app.conf").write_text("port=80\n")
    old = write(tmp_path / "old.bu", BUTANE_OLD)
    new = write(tmp_path / "new.bu", BUTANE_OLD.replace("enabled: true", "enabled: false"))
    (tmp_path / "files2").mkdir()
    (tmp_path / "files2" / "app.conf").write_text("port=8080\n")
    code, out, err = cli(
        "plan", old, new, "--files-dir", str(files), "--var", "greeting=world", "--format", "json"
    )
    assert code == 0, err
    doc = json.loads(out)
    stamp = "file:/etc/flatcar-infra/config-hash"  # the config hash stamp, as the stack compiles it
    assert [c["key"] for c in doc["machines"][0]["changes"]] == [stamp, "unit:app.service"]
    m = doc["machines"][0]
    assert m["changes"][0]["summary"] == (f"config hash {m['old_hash'][:19]}… → {m['new_hash'][:19]}…")
    code, out, err = cli("plan", old, new, "--files-dir", str(tmp_path / "files2"), "--var", "greeting=x")
    assert code == 0, err
    assert "enabled → disabled" in out
    # same files dir on both sides: only the unit differs; the template variable is applied to both
    assert "/etc/motd" not in out


def test_same_meaning_different_text_is_an_empty_plan(tmp_path: Path, cli: Cli) -> None:
    a = write(
        tmp_path / "a.bu",
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n"
        "    - path: /etc/x\n      mode: 0644\n      contents: {inline: hi}\n",
    )
    b = write(
        tmp_path / "b.bu",
        "# reformatted\nversion: 1.0.0\nvariant: flatcar\nstorage:\n  files:\n"
        "  - contents:\n      inline: 'hi'\n    mode: 420\n    path: /etc/x\n",
    )
    code, out, _ = cli("plan", a, b, "--exit-code")
    assert code == 0 and "no changes" in out


CLC_SAME = """\
storage:
  directories:
    - path: /var/lib/app
      filesystem: root
      mode: 0750
  links:
    - path: /etc/localtime
      filesystem: root
      target: /usr/share/zoneinfo/UTC
systemd:
  units:
    - name: app.service
      enabled: true
      contents: |
        [Service]
        ExecStart=/bin/true
    - name: docker.service
      dropins:
        - name: 10-env.conf
          contents: |
            [Service]
            Environment=A=1
    - name: update-engine.service
      mask: true
passwd:
  users:
    - name: core
      ssh_authorized_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample core@example"]
      groups: [docker]
  groups:
    - name: ops
      gid: 4000
"""
BUTANE_SAME = """\
variant: flatcar
version: 1.0.0
storage:
  directories:
    - path: /var/lib/app
      mode: 0750
  links:
    - path: /etc/localtime
      target: /usr/share/zoneinfo/UTC
systemd:
  units:
    - name: app.service
      enabled: true
      contents: |
        [Service]
        ExecStart=/bin/true
    - name: docker.service
      dropins:
        - name: 10-env.conf
          contents: |
            [Service]
            Environment=A=1
    - name: update-engine.service
      mask: true
passwd:
  users:
    - name: core
      ssh_authorized_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample core@example"]
      groups: [docker]
  groups:
    - name: ops
      gid: 4000
"""


def test_clc_and_butane_with_the_same_meaning_plan_empty(tmp_path: Path, cli: Cli) -> None:
    clc = write(tmp_path / "a.clc.yaml", CLC_SAME)
    bu = write(tmp_path / "a.bu", BUTANE_SAME)
    code, out, err = cli("plan", clc, bu, "--exit-code")
    assert code == 0, out + err
    assert "no changes" in out
    # a real difference between the two still shows: the unit is no longer enabled
    other = write(tmp_path / "b.bu", BUTANE_SAME.replace("enabled: true", "enabled: false"))
    code, out, _ = cli("plan", clc, other)
    assert code == 0 and re.search(r"\n    ~ app\.service +enabled → disabled\n", out)


def test_clc_and_butane_files_with_the_same_bytes(tmp_path: Path, cli: Cli) -> None:
    """ct wrote files with overwrite (Ignition 2.x semantics); a Butane file needs it said. With
    it, the same file compiles to the same bytes; any difference left is only in the encoding."""
    clc = write(
        tmp_path / "f.clc.yaml",
        "storage:\n  files:\n    - path: /etc/motd\n"
        "      filesystem: root\n      mode: 0644\n      contents:\n        inline: hello\n",
    )
    bu = write(
        tmp_path / "f.bu",
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n"
        "    - path: /etc/motd\n      mode: 0644\n      overwrite: true\n      contents:\n"
        "        inline: hello\n",
    )
    code, out, err = cli("plan", clc, bu, "--format", "json")
    assert code == 0, err
    changes = json.loads(out)["machines"][0]["changes"]
    assert all(c["fields"] == [] and c["summary"] == "contents same bytes, encoding changed" for c in changes)
    without = write(tmp_path / "g.bu", Path(bu).read_text().replace("      overwrite: true\n", ""))
    code, out, _ = cli("plan", clc, without)
    assert code == 0 and "overwrite true → (unset)" in out


def test_git_references(repo: Repo, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    repo.write("configs/files/app.conf", "port=80\n")
    repo.write("configs/web.bu", IN_REPO)
    first = repo.commit("first")
    repo.write("configs/files/app.conf", "port=8080\n")
    repo.write(
        "configs/web.bu", IN_REPO.replace("ExecStart=/usr/bin/app", "ExecStart=/usr/bin/app --verbose")
    )
    repo.commit("second")
    repo.write("configs/files/app.conf", "port=9090\n")  # uncommitted: the working tree

    # a relative files-dir resolves at each revision: git:HEAD~1 sees port=80, HEAD sees port=8080
    code, out, err = cli(
        "plan",
        "git:HEAD~1:configs/web.bu",
        "git:HEAD:configs/web.bu",
        "--files-dir",
        "configs",
        "--format",
        "json",
    )
    assert code == 0, err
    machine = json.loads(out)["machines"][0]
    assert machine["old_source"] == "git:HEAD~1:configs/web.bu"
    diffs = {c["key"]: c["contents"][0]["diff"] for c in machine["changes"]}
    assert set(diffs) == {"file:/etc/app.conf", "unit:app.service", "file:/etc/flatcar-infra/config-hash"}
    assert diffs["file:/etc/flatcar-infra/config-hash"] == []
    assert "-port=80" in diffs["file:/etc/app.conf"] and "+port=8080" in diffs["file:/etc/app.conf"]

    # default files-dir: the config's own directory at that revision; against the working tree
    code, out, err = cli("plan", f"git:{first}:configs/web.bu", "configs/web.bu")
    assert code == 0, err
    assert "+port=9090" in out and "-port=80" in out

    # relative to the current directory, like git show REV:./path
    monkeypatch.chdir(repo.root / "configs")
    code, out, err = cli("plan", "git:HEAD:./web.bu", "web.bu", "--exit-code")
    assert code == 3 and "+port=9090" in out, err

    code, _, err = cli("plan", "git:no-such-rev:web.bu", "web.bu")
    assert code == 1 and "unknown revision 'no-such-rev'" in err
    code, _, err = cli("plan", "git:HEAD:nope.bu", "web.bu")
    assert code == 1 and "configs/nope.bu does not exist at HEAD" in err
    assert cli("plan", "git:HEAD", "web.bu")[0] == 1


def test_git_reference_outside_a_repository(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    write(tmp_path / "a.ign", ign())
    code, _, err = cli("plan", "git:HEAD:a.ign", "a.ign")
    assert code == 1 and "git" in err and "Traceback" not in err


STACK = """\
config:
  flatcar-infra:target: local
  flatcar-infra:policy:
    strategy: in-place
    keep_paths: ["/var/lib/app"]
  flatcar-infra:machines:
{machines}
"""


def machines_yaml(*entries: tuple[str, str]) -> str:
    return "\n".join(f"    - name: {n}\n      config: {c}" for n, c in entries)


def test_stack_dir_against_base(repo: Repo, cli: Cli) -> None:
    repo.write("configs/web.bu", IN_REPO)
    repo.write("configs/files/app.conf", "port=80\n")
    repo.write("configs/db.bu", "variant: flatcar\nversion: 1.0.0\n")
    repo.write("configs/old.bu", "variant: flatcar\nversion: 1.0.0\n")
    repo.write(
        "stacks/Pulumi.prod.yaml",
        STACK.format(
            machines=machines_yaml(
                ("web-1", "configs/web.bu"), ("db-1", "configs/db.bu"), ("old-1", "configs/old.bu")
            )
        ),
    )
    repo.write("stacks/Pulumi.gone.yaml", STACK.format(machines=machines_yaml(("x-1", "configs/db.bu"))))
    repo.write("Pulumi.yaml", "name: demo\nruntime: python\nstackConfigDir: stacks\n")
    repo.commit("base")
    repo.write("configs/files/app.conf", "port=8080\n")
    repo.write(
        "stacks/Pulumi.prod.yaml",
        STACK.format(
            machines=machines_yaml(
                ("web-1", "configs/web.bu"), ("db-1", "configs/db.bu"), ("new-1", "configs/db.bu")
            )
        ),
    )
    (repo.root / "stacks/Pulumi.gone.yaml").unlink()
    repo.write("stacks/Pulumi.dev.yaml", STACK.format(machines=machines_yaml(("dev-1", "configs/db.bu"))))

    code, out, err = cli("plan", "--stack-dir", "stacks", "--base", "main", "--format", "json", "--exit-code")
    assert code == 3, err
    doc = json.loads(out)
    got = [(m["stack"], m["name"], m["status"]) for m in doc["machines"]]
    assert got == [
        ("dev", "dev-1", "added"),
        ("gone", "x-1", "removed"),
        ("prod", "web-1", "changed"),
        ("prod", "db-1", "unchanged"),
        ("prod", "new-1", "added"),
        ("prod", "old-1", "removed"),
    ]
    web = doc["machines"][2]
    assert [c["key"] for c in web["changes"]] == ["file:/etc/app.conf", "file:/etc/flatcar-infra/config-hash"]
    assert web["old_source"] == "git:main:configs/web.bu" and web["new_source"] == "configs/web.bu"
    assert "paths matching /var/lib/app" in web["effect"]["keeps"]

    code, md, err = cli("plan", "--stack-dir", "stacks", "--base", "main", "--format", "markdown")
    assert code == 0, err
    assert "### `prod/web-1`: config changed" in md and "No changes: `prod/db-1`" in md
    assert "+port=8080" in md

    code, out, err = cli("plan", "--stack-dir", "stacks", "--base", "main", "--stack", "prod")
    assert code == 0 and "dev/dev-1" not in out and "prod/web-1" in out
    assert cli("plan", "--stack-dir", "stacks", "--base", "main", "--stack", "nope")[0] == 1
    assert cli("plan", "--stack-dir", "stacks")[0] == 2


def test_stack_errors_name_the_revision(repo: Repo, cli: Cli) -> None:
    repo.write("configs/web.bu", "variant: flatcar\nversion: 1.0.0\nstorage: {files: [{mode: 1}]}\n")
    repo.write("stacks/Pulumi.prod.yaml", STACK.format(machines=machines_yaml(("web-1", "configs/web.bu"))))
    repo.commit("broken at base")
    repo.write("configs/web.bu", "variant: flatcar\nversion: 1.0.0\n")
    code, _, err = cli("plan", "--stack-dir", "stacks", "--base", "HEAD")
    assert code == 1 and "git:HEAD:configs/web.bu" in err and "/tmp" not in err


def test_stack_dir_new_in_working_tree(repo: Repo, cli: Cli) -> None:
    repo.write("README", "x\n")
    repo.commit("empty")
    repo.write("configs/web.bu", "variant: flatcar\nversion: 1.0.0\n")
    repo.write("stacks/Pulumi.prod.yaml", STACK.format(machines=machines_yaml(("web-1", "configs/web.bu"))))
    code, out, err = cli("plan", "--stack-dir", "stacks", "--base", "HEAD")
    assert code == 0, err
    assert "prod/web-1: new machine" in out


def test_secure_variables_are_never_compiled_in(repo: Repo, cli: Cli) -> None:
    repo.write(
        "configs/web.bu.j2",
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n"
        "    - path: /etc/app.env\n      contents:\n"
        "        inline: 'TOKEN={{ token }}\\nLEVEL={{ level }}\\n'\n",
    )
    stack = (
        "config:\n  flatcar-infra:target: local\n  flatcar-infra:machines:\n"
        "    - name: web-1\n      config: configs/web.bu.j2\n      variables:\n"
        "        token:\n          secure: {ct}\n        level: {lvl}\n"
    )
    repo.write("stacks/Pulumi.prod.yaml", stack.format(ct="v1:AAAA", lvl="info"))
    repo.commit("base")
    repo.write("stacks/Pulumi.prod.yaml", stack.format(ct="v1:BBBB", lvl="debug"))
    code, out, err = cli("plan", "--stack-dir", "stacks", "--base", "HEAD", "--format", "markdown")
    assert code == 0, err
    assert "contents (secret, changed)" in out
    assert "secret variable token changed or was re-encrypted" in out
    assert "v1:AAAA" not in out and "v1:BBBB" not in out and "LEVEL" not in out


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pulumi_digitalocean, imported by components
def test_stack_plan_digests_are_the_reprovision_manifest(repo: Repo, cli: Cli) -> None:
    """The digests the plan reports are the values of the ``manifest`` input the stack program
    gives each ``Reprovision`` resource, so ``pulumi preview --diff`` lists the same entries
    (SSH access merged by the machine components' own code: the login key, here the plan's
    placeholder for a local VM that is not running)."""
    from flatcar_infra.access import Access
    from flatcar_infra.components.config import CompiledParts, compile_now
    from flatcar_infra.manifest import build_manifest
    from flatcar_infra.plan.sources import SSH_KEY_PLACEHOLDER

    repo.write("configs/files/app.conf", "port=80\n")
    repo.write("configs/web.bu", IN_REPO)
    repo.write("stacks/Pulumi.prod.yaml", STACK.format(machines=machines_yaml(("web-1", "configs/web.bu"))))
    repo.commit("base")
    repo.write("configs/files/app.conf", "port=8080\n")
    code, out, err = cli("plan", "--stack-dir", "stacks", "--base", "HEAD", "--format", "json")
    assert code == 0, err
    changes = json.loads(out)["machines"][0]["changes"]

    def manifest(app_conf: str) -> dict[str, str]:
        repo.write("configs/files/app.conf", app_conf)
        compiled = compile_now(
            IN_REPO,
            filename="web.bu",
            files_dir=repo.root / "configs",
            variables=None,
            snippets=(),
            platform=None,
            strict=False,
            template=None,
            stamp=False,
        )
        parts = CompiledParts(compiled.canonical.decode(), None, (), "web.bu", compiled.source_kind)
        return build_manifest(parts.with_access(Access("core", (SSH_KEY_PLACEHOLDER,))).finished().ignition)

    old, new = manifest("port=80\n"), manifest("port=8080\n")
    assert {c["key"]: (c["old_digest"], c["new_digest"]) for c in changes} == {
        k: (old.get(k), new.get(k)) for k in set(old) | set(new) if old.get(k) != new.get(k)
    }
