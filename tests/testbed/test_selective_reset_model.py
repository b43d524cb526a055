"""The stand-in's batched selective reset leaves exactly what bootengine's per-path loop leaves.

bootengine (``initrd-setup-root``) walks ``find / -xdev -depth -not -regex RX`` and, path by path
as find prints them, runs ``rmdir`` on what tests ``-d`` (following links, at that moment) and
``rm`` on the rest. The stand-in deletes in batches, which is what makes a reset boot affordable
under emulation; this test runs the real initramfs script (no VM, as root) on random trees of
files, directories and relative links (to directories, to files, dangling) and compares what is
left with that loop, replayed in Python on a copy of the tree in the order find walks the original.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.testbed.scratch import ScratchFlatcar
from tests.testbed.test_initrd_contract import SETUP_ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"),
                                reason="needs root (mount namespaces, overlayfs, chroot)")

TOP = "data"  # the random trees live in /data, which neither the base layout nor /etc touch
TREES = 40


def random_tree(top: Path, rnd: random.Random) -> list[str]:
    """Files, directories and relative links below ``top``; returns the directories (ROOT paths)."""
    dirs = [f"/{TOP}"]
    top.mkdir(parents=True)
    for i in range(rnd.randint(5, 50)):
        parent = rnd.choice(dirs)
        rel = f"{parent}/{rnd.choice('abck')}{i}"
        path = top.parent / rel.lstrip("/")
        kind = rnd.random()
        if kind < 0.35:
            path.mkdir()
            dirs.append(rel)
        elif kind < 0.75:
            path.write_text(rel)
        else:  # a relative link: to a directory (most), else dangling
            target = rnd.choice(dirs) if rnd.random() < 0.7 else f"/{TOP}/missing"
            path.symlink_to(os.path.relpath(top.parent / target.lstrip("/"), path.parent))
    return dirs


def find_order(root: Path, regex: str) -> list[str]:
    """The ROOT paths ``find -xdev -depth -not -regex`` prints, in its order (readdir's)."""
    found = subprocess.run(
        ["find", str(root / TOP), "-xdev", "-depth", "-regextype", "egrep", "-not", "-regex",
         f"{root}({regex})", "-print0"], capture_output=True, check=True).stdout
    return ["/" + str(Path(raw.decode()).relative_to(root)) for raw in filter(None, found.split(b"\0"))]


def bootengine_loop(model: Path, order: list[str]) -> None:
    """bootengine's loop, path by path in ``order``: what tests -d (following links, now) goes to
    rmdir, which refuses links and directories with kept contents; the rest to rm."""
    for rel in order:
        path = model / rel.lstrip("/")
        with contextlib.suppress(OSError):
            if os.path.isdir(path):
                os.rmdir(path)
            else:
                os.unlink(path)


def left(root: Path) -> set[tuple[str, str]]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root / TOP):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            kind = "link" if p.is_symlink() else "dir" if p.is_dir() else "file"
            out.add((str(p.relative_to(root)), kind))
    return out


@pytest.mark.parametrize("seed", range(TREES))
def test_batched_reset_leaves_what_the_per_path_loop_leaves(tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    host = ScratchFlatcar(tmp_path / "host")
    (host.usr_files / "share/factory").mkdir(parents=True)  # an empty base layout: /data is ours
    dirs = random_tree(host.root / TOP, rnd)
    kept = rnd.sample(dirs[1:], k=min(len(dirs) - 1, rnd.randint(0, 3)))
    regex = "(" + "".join(f"{k}/.*|{k}|" for k in kept) + "/selective-os-reset)"
    model = tmp_path / "model"
    (model / TOP).parent.mkdir(parents=True)
    shutil.copytree(host.root / TOP, model / TOP, symlinks=True)
    bootengine_loop(model, find_order(host.root, regex))  # the order the script's find sees

    (host.root / "selective-os-reset").write_text(regex + "\n")
    res = host.boot_initramfs(SETUP_ROOT)
    assert res.returncode == 0, res.stderr.decode()
    assert b"selective OS reset done" in res.stdout
    assert left(host.root) == left(model), (regex, sorted(left(host.root) ^ left(model)))
