"""``plan --stack-dir`` reads only the repository: a pull request controls the stack files and
configs, and CI runs the plan with the runner's files around it. Paths that are absolute, climb out
with ``..``, reach into ``.git`` or go through a symlink leading out are refused, naming the stack
file and key; ``local:`` contents are held to the repository the same way."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.plan.helpers import Repo

Cli = Callable[..., tuple[int, str, str]]
BUTANE = "variant: flatcar\nversion: 1.0.0\n"


def stack(**machine: str) -> str:
    body = "".join(f"      {k}: {v}\n" for k, v in machine.items())
    return ("config:\n  flatcar-infra:target: local\n  flatcar-infra:machines:\n"
            f"    - name: web-1\n{body}")


def plan(cli: Cli) -> tuple[int, str, str]:
    return cli("plan", "--stack-dir", "stacks", "--base", "main", "--format", "markdown")


@pytest.fixture
def based(repo: Repo, tmp_path: Path) -> Repo:
    repo.write("configs/web.bu", BUTANE)
    repo.write("stacks/Pulumi.prod.yaml", stack(config="configs/web.bu"))
    repo.commit("base")
    (tmp_path / "outside.bu").write_text(BUTANE + "# outside\n")
    return repo


@pytest.mark.parametrize(("key", "value", "why"), [
    ("config", "/etc/passwd", "is an absolute path"),
    ("config", "~/outside.bu", "is an absolute path"),
    ("config", "../../outside.bu", "leads outside the repository"),
    ("config", ".git/config", "is inside .git"),
    ("config", "configs/../.git/HEAD", "is inside .git"),
    ("files_dir", "/etc", "is an absolute path"),
    ("files_dir", ".git", "is inside .git"),
])
def test_paths_leaving_the_repository_are_refused(based: Repo, cli: Cli, key: str, value: str,
                                                  why: str) -> None:
    fields = {"config": "configs/web.bu", key: value}
    based.write("stacks/Pulumi.prod.yaml", stack(**fields))
    code, out, err = plan(cli)
    assert code == 1 and out == ""
    assert f"Pulumi.prod.yaml: flatcar-infra:machines[0].{key}: '{value}' {why}" in err
    assert "root:" not in err and "[core]" not in err  # nothing of /etc/passwd or .git/config


def test_symlinks_leading_out_or_into_git_are_refused(based: Repo, cli: Cli, tmp_path: Path) -> None:
    (based.root / "configs/out.bu").symlink_to(tmp_path / "outside.bu")
    (based.root / "configs/git.bu").symlink_to(based.root / ".git/config")
    cases = (("out.bu", "a symlink leading outside the repository"), ("git.bu", "a symlink into .git"))
    for name, why in cases:
        based.write("stacks/Pulumi.prod.yaml", stack(config=f"configs/{name}"))
        code, _, err = plan(cli)
        assert code == 1 and f"machines[0].config: 'configs/{name}' is {why}" in err
    snippet = "      snippets: [/etc/hostname]\n"
    based.write("stacks/Pulumi.prod.yaml", stack(config="configs/web.bu") + snippet)
    code, _, err = plan(cli)
    assert code == 1 and "machines[0].snippets[0]: '/etc/hostname' is an absolute path" in err


def test_local_contents_never_reach_git_or_outside(based: Repo, cli: Cli, tmp_path: Path) -> None:
    """The default files dir of a config at the repository root is the root, .git beside it."""
    based.write("root.bu", BUTANE + "storage:\n  files:\n    - path: /etc/x\n      contents:\n"
                "        local: .git/config\n")
    based.write("stacks/Pulumi.prod.yaml", stack(config="root.bu"))
    code, _, err = plan(cli)
    assert code == 1 and "root.bu:7:16: error: local file '.git/config' is inside .git" in err
    (based.root / "files").mkdir()
    (based.root / "files/link").symlink_to(tmp_path / "outside.bu")
    based.write("root.bu", BUTANE + "storage:\n  files:\n    - path: /etc/x\n      contents:\n"
                "        local: files/link\n")
    code, _, err = plan(cli)
    assert code == 1 and "error: local file path 'files/link' traverses outside the files directory" in err
    assert "# outside" not in err


def test_the_base_revision_is_held_to_its_tree(repo: Repo, cli: Cli) -> None:
    repo.write("configs/web.bu", BUTANE)
    repo.write("stacks/Pulumi.prod.yaml", stack(config="/etc/hostname"))
    repo.commit("base")
    repo.write("stacks/Pulumi.prod.yaml", stack(config="configs/web.bu"))
    code, _, err = plan(cli)
    assert code == 1
    where = "git:main:stacks/Pulumi.prod.yaml: flatcar-infra:machines[0].config"
    assert f"{where}: '/etc/hostname' is an absolute path" in err


def test_configs_beside_the_project_are_read_at_both_revisions(repo: Repo, cli: Cli) -> None:
    repo.write("configs/web.bu", BUTANE + "storage:\n  files:\n    - path: /etc/motd\n      contents:\n"
               "        inline: old\n")
    repo.write("infra/stacks/Pulumi.prod.yaml", stack(config="../configs/web.bu"))
    repo.commit("base")
    repo.write("configs/web.bu", BUTANE + "storage:\n  files:\n    - path: /etc/motd\n      contents:\n"
               "        inline: new\n")
    code, out, err = cli("plan", "--stack-dir", "infra/stacks", "--base", "main")
    assert code == 0, err
    assert "-old" in out and "+new" in out and "from git:main:configs/web.bu to configs/web.bu" in out


def test_a_fifo_in_the_repository_is_refused_not_waited_on(based: Repo, cli: Cli) -> None:
    os.mkfifo(based.root / "configs/pipe.bu")
    based.write("stacks/Pulumi.prod.yaml", stack(config="configs/pipe.bu"))
    result: list[tuple[int, str, str]] = []
    t = threading.Thread(target=lambda: result.append(plan(cli)), daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive()
    code, _, err = result[0]
    assert code == 1 and "configs/pipe.bu: cannot read: not a regular file" in err


def test_ssh_key_files_outside_the_repository_are_not_read(based: Repo, cli: Cli, tmp_path: Path) -> None:
    """The key file is a FIFO outside the repository: reading it would block the plan forever."""
    os.mkfifo(tmp_path / "deploy.pub")
    based.write("configs/web.bu", BUTANE + "passwd:\n  users:\n    - name: core\n"
                "      ssh_authorized_keys: [{{ ssh_public_key | tojson }}]\n")
    based.write("stacks/Pulumi.prod.yaml", stack(config="configs/web.bu") + "      variables: {a: b}\n"
                f"  flatcar-infra:ssh:\n    public_key_file: {tmp_path / 'deploy.pub'}\n")
    result: list[tuple[int, str, str]] = []
    argv = ("plan", "--stack-dir", "stacks", "--base", "main", "--format", "json")
    t = threading.Thread(target=lambda: result.append(cli(*argv)), daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive()
    code, out, err = result[0]
    assert code == 0, err
    assert json.loads(out)["machines"][0]["name"] == "web-1"


def test_a_hostile_stack_file_is_refused_at_its_line(based: Repo, cli: Cli) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    based.write("stacks/Pulumi.prod.yaml", "\n".join(lines) + "\nconfig: {x: *a9}\n")
    code, _, err = plan(cli)
    assert code == 1 and "stacks/Pulumi.prod.yaml:6:45: error: YAML document has more than" in err
    based.write("stacks/Pulumi.prod.yaml", "config: " + "[" * 100_000 + "]" * 100_000 + "\n")
    code, _, err = plan(cli)
    assert code == 1 and "nested more than 64 levels deep" in err and "Traceback" not in err
