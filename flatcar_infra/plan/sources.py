"""Where the two sides of a plan come from: config files, ``git:REV:path`` references, stacks.

The only I/O of the plan package: reading files, running ``git`` (``rev-parse``, ``cat-file``,
``show``, ``archive``: never anything that changes the repository) and compiling. A tree at a
revision is exported with ``git archive`` into a temporary directory, so relative ``files_dir``,
snippets and ``local:`` contents resolve at that revision exactly as in the working tree.
"""

from __future__ import annotations

import io
import os
import posixpath
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from flatcar_infra.access import finish
from flatcar_infra.compiler import CompiledConfig, compile_config
from flatcar_infra.compiler.yamlsrc import parse_yaml
from flatcar_infra.errors import ConfigError, Diagnostic, UserError
from flatcar_infra.limits import LIMITS, LimitExceeded, local_reads_within, read_regular_file
from flatcar_infra.plan.effect import Notice
from flatcar_infra.plan.model import MachinePlan, Plan, plan_machine
from flatcar_infra.reprovision.policy import Policy
from flatcar_infra.secrets import SECRET_MARKER, SecretRules
from flatcar_infra.stackconfig import (
    PREFIX,
    MachineSpec,
    SecureValue,
    StackSpec,
    load_stack_file,
    login_public_key,
    machine_access,
    machine_variables,
)

GIT_PREFIX = "git:"
STACK_GLOB = "Pulumi.*.yaml"


@dataclass(frozen=True)
class GitRef:
    rev: str
    path: str  # as the user wrote it, relative to the current directory

    @classmethod
    def parse(cls, ref: str) -> GitRef:
        rest = ref[len(GIT_PREFIX) :]
        rev, sep, path = rest.partition(":")
        if not sep or not rev or not path:
            raise UserError(f"{ref}: expected git:REV:PATH", advice="e.g. git:origin/main:configs/web.bu")
        return cls(rev, path)

    def __str__(self) -> str:
        return f"{GIT_PREFIX}{self.rev}:{self.path}"


class GitRepo:
    """Read-only access to the repository that contains ``cwd``."""

    def __init__(self, cwd: str | Path = ".") -> None:
        self.cwd = Path(cwd).resolve()
        self.top = self.cwd
        top = self._git("rev-parse", "--show-toplevel", what="find the git repository").strip()
        self.prefix = self._git("rev-parse", "--show-prefix", what="locate the directory").decode().strip()
        self.top = Path(top.decode())  # from here on git runs at the root: paths are root-relative

    def _git(self, *args: str, what: str, check: bool = True) -> bytes:
        try:
            proc = subprocess.run(["git", *args], cwd=self.top, capture_output=True, check=False)
        except FileNotFoundError:
            raise UserError("git is not installed", advice="git:REV:PATH and --base need git") from None
        if check and proc.returncode != 0:
            msg = proc.stderr.decode(errors="replace").strip().splitlines()
            raise UserError(
                f"git: cannot {what}: {msg[-1] if msg else 'failed'}",
                advice="run inside the repository (git rev-parse --show-toplevel)",
            )
        return proc.stdout

    def commit(self, rev: str) -> str:
        """The commit id of ``rev``; a clear error when there is no such revision."""
        if rev.startswith("-"):
            raise UserError(f"git: {rev!r} is not a revision")
        proc = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
            cwd=self.top,
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise UserError(
                f"git: unknown revision {rev!r}",
                advice="fetch it first (CI: actions/checkout with fetch-depth: 0)",
            )
        return proc.stdout.decode().strip()

    def repo_path(self, path: str | Path) -> str:
        """A path relative to the current directory (or absolute inside the work tree) as a path
        relative to the repository root ('' for the root)."""
        p = Path(path)
        if p.is_absolute():
            try:
                rel = p.resolve().relative_to(self.top).as_posix()
            except ValueError:
                raise UserError(f"{path}: outside the git repository {self.top}") from None
        else:
            rel = posixpath.normpath(posixpath.join(self.prefix, p.as_posix()))
        if rel == ".":
            return ""
        if rel.startswith("../") or rel == "..":
            raise UserError(f"{path}: outside the git repository {self.top}")
        return rel

    def exists(self, commit: str, rel: str) -> bool:
        proc = subprocess.run(
            ["git", "cat-file", "-e", f"{commit}:{rel}"], cwd=self.top, capture_output=True, check=False
        )
        return proc.returncode == 0

    def show(self, commit: str, rel: str) -> bytes:
        return self._git("show", f"{commit}:{rel}", what=f"read {rel} at {commit[:12]}")

    def export(self, commit: str, rels: Sequence[str], dest: Path) -> None:
        """Write the listed directories (or files) as they are at ``commit`` under ``dest``."""
        present = [r for r in dict.fromkeys(rels) if r == "" or self.exists(commit, r)]
        if not present:
            return
        paths = [r for r in present if r] if "" not in present else []
        data = self._git(
            "archive",
            "--format=tar",
            commit,
            "--",
            *paths,
            what=f"export {', '.join(paths) or 'the tree'} at {commit[:12]}",
        )
        try:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                tar.extractall(dest, filter=_inside_filter)
        except tarfile.TarError as exc:
            raise UserError(
                f"git: cannot export {', '.join(paths) or 'the tree'} at {commit[:12]}: {exc}"
            ) from None


def _inside_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """tarfile's ``data`` filter, skipping (not failing on) what it refuses: a symlink leading out
    of the tree is left out of the export, so reading it fails like a missing file."""
    try:
        return tarfile.data_filter(member, dest)
    except tarfile.FilterError:
        return None


@dataclass(frozen=True)
class CompileOptions:
    """The options ``plan OLD NEW`` applies to both sides."""

    files_dir: str | None = None
    variables: Mapping[str, str] | None = None
    platform: str | None = None


def _read_text(path: Path, label: str) -> str:
    """A config's text: a regular file (a FIFO is refused, never waited on) within the size limit."""
    try:
        return read_regular_file(path, LIMITS.source_bytes).decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"{label}: no such file") from None
    except LimitExceeded as exc:
        raise UserError(f"{label}: cannot read: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{label}: cannot read: {exc}") from None


def load_side(ref: str, opts: CompileOptions, work: Path, repo: GitRepo | None = None) -> CompiledConfig:
    """Compile ``ref`` (a file or ``git:REV:path``); ``work`` is a scratch directory for exports."""
    if not ref.startswith(GIT_PREFIX):
        path = Path(ref)
        text = _read_text(path, ref)
        files_dir = Path(opts.files_dir) if opts.files_dir is not None else path.parent
        return _compile(text, ref, files_dir, opts.variables, (), opts.platform)
    git = GitRef.parse(ref)
    repo = repo or GitRepo()
    commit = repo.commit(git.rev)
    rel = repo.repo_path(git.path)
    if not repo.exists(commit, rel):
        raise UserError(f"{ref}: {rel} does not exist at {git.rev} ({commit[:12]})")
    try:
        text = repo.show(commit, rel).decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{ref}: not UTF-8 text") from None
    root = work / commit
    if opts.files_dir is not None and Path(opts.files_dir).is_absolute():
        files_dir = Path(opts.files_dir)
    else:
        dir_rel = repo.repo_path(opts.files_dir) if opts.files_dir is not None else posixpath.dirname(rel)
        repo.export(commit, [dir_rel], root)
        files_dir = root / dir_rel
    return _compile(text, ref, files_dir, opts.variables, (), opts.platform)


def _compile(
    text: str,
    label: str,
    files_dir: Path,
    variables: Mapping[str, str] | None,
    snippets: Sequence[tuple[str, str]],
    platform: str | None,
    *,
    stamp: bool = True,
) -> CompiledConfig:
    # Stamped, as the stack program compiles it: the manifest (and so ``pulumi preview``) has the
    # stamp file ``/etc/flatcar-infra/config-hash`` too.
    return compile_config(
        text,
        filename=label,
        files_dir=files_dir,
        variables=variables,
        snippets=snippets,
        platform=platform,
        stamp_config=stamp,
    )


def plan_files(old: str, new: str, opts: CompileOptions, *, policy: Policy, secrets: SecretRules) -> Plan:
    """``plan OLD NEW``: one machine, named after NEW."""
    with tempfile.TemporaryDirectory(prefix="flatcar-plan-") as tmp:
        repo = GitRepo() if GIT_PREFIX in (old[:4], new[:4]) else None
        a = load_side(old, opts, Path(tmp), repo)
        b = load_side(new, opts, Path(tmp), repo)
    name = new if not new.startswith(GIT_PREFIX) else GitRef.parse(new).path
    mp = plan_machine(
        name,
        a.ignition,
        b.ignition,
        policy=policy,
        secrets=secrets,
        old_hash=a.hash,
        new_hash=b.hash,
        old_source=old,
        new_source=new,
    )
    return Plan((mp,))


# ---------------------------------------------------------------------------------------------
# Stacks


@dataclass(frozen=True)
class _Tree:
    """One side of a stack plan: the working tree, or the tree of a revision exported to a scratch
    directory. Every path a stack file names is read through ``inside``: within ``top``."""

    top: Path  # the repository's root on this side
    root: Path  # the project directory (parent of the stack directory)
    stack_dir: Path
    label: str  # how paths under top are named in messages ("" or "git:REV:")
    rel_project: str  # the project dir relative to the repository root
    cwd: Path  # working-tree paths are shown relative to it

    def inside(self, raw: str, source: str, key: str) -> Path:
        """The path a stack file gives at ``key``, if it stays inside the repository: relative
        (to the project directory), not through ``..`` above the root, not into ``.git``, and no
        symlink on the way leading out. Otherwise a ``UserError`` naming the stack file and key."""
        where = f"{source}: {PREFIX}{key}"
        hint = "plan --stack-dir reads only files inside the repository"
        if raw.startswith("~") or Path(raw).is_absolute():
            raise UserError(f"{where}: {raw!r} is an absolute path; {hint}",
                            advice="write it relative to the project directory")
        rel = posixpath.normpath(posixpath.join(self.rel_project, raw))
        if rel == ".." or rel.startswith("../"):
            raise UserError(f"{where}: {raw!r} leads outside the repository; {hint}")
        if ".git" in rel.split("/"):
            raise UserError(f"{where}: {raw!r} is inside .git; {hint}")
        path = self.top / rel if rel != "." else self.top
        real, top = Path(os.path.realpath(path)), Path(os.path.realpath(self.top))
        if not real.is_relative_to(top):
            raise UserError(f"{where}: {raw!r} is a symlink leading outside the repository; {hint}")
        if ".git" in real.relative_to(top).parts:
            raise UserError(f"{where}: {raw!r} is a symlink into .git; {hint}")
        return path


def _stack_files(tree: _Tree | None) -> dict[str, Path]:
    if tree is None or not tree.stack_dir.is_dir():
        return {}
    out = {}
    for p in sorted(tree.stack_dir.glob(STACK_GLOB)):
        tree.inside(p.relative_to(tree.root).as_posix(), _display(tree, p), "(stack file)")
        out[p.name[len("Pulumi.") : -len(".yaml")]] = p
    return out


def _load_stack(tree: _Tree, path: Path) -> StackSpec:
    """A stack file, checked against the limits (size, depth, alias expansion: a pull request
    controls it) before PyYAML builds it."""
    try:
        label = _display(tree, path)
        text = _read_text(path, label)
        bounded = parse_yaml(text, label)
        if any(d.is_error for d in bounded.diagnostics):
            raise ConfigError(bounded.diagnostics)
        return load_stack_file(path)
    except UserError as exc:
        raise _relabel(exc, tree) from None


def _relabel(exc: UserError, tree: _Tree) -> UserError:
    """Name files of an exported revision ``git:REV:path``, not by their scratch location."""
    if not tree.label:
        return exc
    prefix = str(tree.top) + "/"
    if isinstance(exc, ConfigError):
        return ConfigError(
            [
                Diagnostic(d.file.replace(prefix, tree.label), d.line, d.col, d.severity, d.message, d.path)
                for d in exc.diagnostics
            ]
        )
    return UserError(exc.message.replace(prefix, tree.label), exc.advice)


# Stands in for the reprovisioner's login key when this machine cannot read it (an encrypted key,
# or a local VM that is not running): both sides of a plan get the same value, so it never shows
# as a change, but the config hash then differs from the one Pulumi computes.
SSH_KEY_PLACEHOLDER = "ssh-ed25519 (the reprovisioner's login key)"


def _ssh_public_key(spec: StackSpec, machine: MachineSpec, tree: _Tree) -> str:
    """The ``ssh_public_key`` template variable (and the first authorized key), as the stack
    program passes it, when the stack gives the key or a key file inside the repository; otherwise
    (a key kept outside the repository, as it should be, or a local VM's key) the placeholder:
    ``plan --stack-dir`` reads nothing outside the repository."""
    ssh = spec.ssh
    files = {k: str(ssh[k]) for k in ("public_key_file", "private_key_file") if k in ssh}
    given = isinstance(ssh.get("public_key"), str) or isinstance(ssh.get("private_key"), str)
    if not given and not files:
        return SSH_KEY_PLACEHOLDER  # the target's own key (a local VM's state): outside the repository
    try:
        for key, raw in files.items():
            path = tree.inside(raw, spec.source, f"ssh.{key}")
            if not path.is_file():
                return SSH_KEY_PLACEHOLDER
            files[key] = str(path)
        keyed = replace(spec, ssh={**ssh, **files})
        return login_public_key(keyed, machine, tree.root) or SSH_KEY_PLACEHOLDER
    except (UserError, KeyError):
        return SSH_KEY_PLACEHOLDER


def _variables(spec: MachineSpec, ssh_public_key: str) -> dict[str, str] | None:
    """The same variables the stack program renders with (``machine_variables``), secrets masked."""
    variables = machine_variables(spec, ssh_public_key)
    if not variables:
        return None
    return {k: f"{SECRET_MARKER}{k}" if isinstance(v, SecureValue) else v for k, v in variables.items()}


def _compile_machine(
    tree: _Tree, stack: StackSpec, spec: MachineSpec, ssh_public_key: str
) -> CompiledConfig:
    """The config the stack program delivers: compiled, the machine's SSH access merged in
    (``stackconfig.machine_access``, as the machine components do), stamped. Every path the stack
    file gives is read through ``_Tree.inside``, and ``local:`` contents within the repository."""
    try:
        key = f"machines[{stack.machines.index(spec)}]"
        config = tree.inside(spec.config, stack.source, f"{key}.config")
        label = _display(tree, config)
        text = _read_text(config, label)
        if spec.files_dir:
            files_dir = tree.inside(spec.files_dir, stack.source, f"{key}.files_dir")
        else:
            files_dir = config.parent
        snippets = []
        for i, s in enumerate(spec.snippets):
            sp = tree.inside(s, stack.source, f"{key}.snippets[{i}]")
            snippets.append((_display(tree, sp), _read_text(sp, _display(tree, sp))))
        with local_reads_within(tree.top):
            variables = _variables(spec, ssh_public_key)
            compiled = _compile(text, label, files_dir, variables, snippets, spec.platform, stamp=False)
        doc = machine_access(stack, spec, ssh_public_key).apply(compiled.ignition)
        return finish(doc, source_kind=compiled.source_kind, warnings=compiled.warnings)
    except UserError as exc:
        raise _relabel(exc, tree) from None


def _display(tree: _Tree, path: Path) -> str:
    try:
        rel = posixpath.normpath(path.relative_to(tree.top).as_posix())
    except ValueError:
        return str(path)
    if tree.label:
        return tree.label + rel
    return os.path.relpath(path, tree.cwd)


def _secret_notices(old: MachineSpec | None, new: MachineSpec | None) -> tuple[Notice, ...]:
    if old is None or new is None:
        return ()
    out = []
    for k, v in new.variables.items():
        w = old.variables.get(k)
        if isinstance(v, SecureValue) and (not isinstance(w, SecureValue) or w.ciphertext != v.ciphertext):
            out.append(
                Notice(
                    "warning",
                    f"secret variable {k} changed or was re-encrypted: the plan "
                    "cannot compare its value (pulumi preview can)",
                )
            )
    return tuple(out)


@contextmanager
def _trees(repo: GitRepo, stack_dir: str, base: str) -> Iterator[tuple[_Tree | None, _Tree, str]]:
    commit = repo.commit(base)
    rel_stack = repo.repo_path(stack_dir)
    rel_project = posixpath.dirname(rel_stack)
    new_stack = repo.top / rel_stack
    if not new_stack.is_dir():
        raise UserError(f"{stack_dir}: no such directory", advice="the directory with Pulumi.<stack>.yaml")
    if not Path(os.path.realpath(new_stack)).is_relative_to(os.path.realpath(repo.top)):
        raise UserError(f"{stack_dir}: a symlink leading outside the git repository {repo.top}")
    new_tree = _Tree(repo.top, new_stack.parent, new_stack, "", rel_project, repo.cwd)
    with ExitStack() as stack:
        old_tree: _Tree | None = None
        if repo.exists(commit, rel_stack):
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flatcar-plan-")))
            repo.export(commit, [""], tmp)  # the revision's whole tree: configs may sit beside the project
            root = tmp / rel_project if rel_project else tmp
            stacks = root / posixpath.basename(rel_stack)
            old_tree = _Tree(tmp, root, stacks, f"git:{base}:", rel_project, repo.cwd)
        yield old_tree, new_tree, commit


def plan_stacks(
    stack_dir: str, base: str, *, secrets: SecretRules, stacks: Sequence[str] = (), cwd: str | Path = "."
) -> Plan:
    """Every machine of every stack, at ``base`` against the working tree."""
    repo = GitRepo(cwd)
    machines: list[MachinePlan] = []
    with _trees(repo, stack_dir, base) as (old_tree, new_tree, _commit):
        old_files, new_files = _stack_files(old_tree), _stack_files(new_tree)
        names = sorted(set(old_files) | set(new_files))
        unknown = [s for s in stacks if s not in names]
        if unknown:
            raise UserError(
                f"no stack named {', '.join(unknown)} in {stack_dir}", advice="stacks: " + ", ".join(names)
            )
        for stack_name in names:
            if stacks and stack_name not in stacks:
                continue
            old_spec = (
                _load_stack(old_tree, old_files[stack_name]) if old_tree and stack_name in old_files else None
            )
            new_spec = _load_stack(new_tree, new_files[stack_name]) if stack_name in new_files else None
            spec_for_policy = new_spec or old_spec
            assert spec_for_policy is not None
            policy = Policy.from_dict(spec_for_policy.policy)
            key_tree = new_tree if new_spec is not None or old_tree is None else old_tree
            # One login key for both sides unless the ssh settings changed (a key rotation shows)
            same_ssh = old_spec is None or new_spec is None or old_spec.ssh == new_spec.ssh
            old_m = {m.name: m for m in old_spec.machines} if old_spec else {}
            new_m = {m.name: m for m in new_spec.machines} if new_spec else {}
            for mname in sorted(set(old_m) | set(new_m), key=_machine_order(old_m, new_m)):
                o, n = old_m.get(mname), new_m.get(mname)
                key = _ssh_public_key(spec_for_policy, (n or o), key_tree)  # type: ignore[arg-type]
                a = b = None
                if o is not None and old_tree is not None and old_spec is not None:
                    old_key = key if same_ssh else _ssh_public_key(old_spec, o, old_tree)
                    a = _compile_machine(old_tree, old_spec, o, old_key)
                if n is not None and new_spec is not None:
                    b = _compile_machine(new_tree, new_spec, n, key)
                machines.append(
                    plan_machine(
                        mname,
                        a.ignition if a else None,
                        b.ignition if b else None,
                        stack=stack_name,
                        policy=policy,
                        secrets=secrets,
                        old_hash=a.hash if a else None,
                        new_hash=b.hash if b else None,
                        old_source=_display(old_tree, old_tree.root / o.config)
                        if o is not None and old_tree is not None
                        else None,
                        new_source=_display(new_tree, new_tree.root / n.config) if n else None,
                        extra_notices=_secret_notices(o, n),
                    )
                )
    return Plan(tuple(machines), base=base)


def _machine_order(
    old: Mapping[str, MachineSpec], new: Mapping[str, MachineSpec]
) -> Callable[[str], tuple[int, int, str]]:
    """Machines in the order of the new stack file, removed ones after."""
    order = {name: i for i, name in enumerate(new)}

    def key(name: str) -> tuple[int, int, str]:
        return (0, order[name], "") if name in order else (1, 0, name)

    return key


__all__ = ["CompileOptions", "GitRef", "GitRepo", "load_side", "plan_files", "plan_stacks"]
