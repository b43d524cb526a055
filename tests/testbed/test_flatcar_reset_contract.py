"""The stand-in's flatcar-reset is exactly as strict as Flatcar's (flatcar/init bin/flatcar-reset):
run for real, as root, in a Flatcar-shaped scratch root (``ScratchFlatcar``: /etc an overlay whose
upper dir is on ROOT, /usr, /boot and /oem file systems of their own), no VM.

Expected outputs are written by hand from the rules in shared/DOMAIN.md and the real tool's
behaviour (messages, exit codes, the order in which it checks), not computed by the code under test.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.testbed.scratch import MACHINE_ID, NOBODY, ScratchFlatcar

pytestmark = pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"),
                                reason="needs root (mount namespaces, overlayfs, chroot)")

TOOL = "/usr/sbin/flatcar-reset"
ALWAYS = "/flatcar-backup|/flatcar-backup/.*|/selective-os-reset)"
WARNING = ("WARNING: Running without --backup can cause data loss if the keep paths don't work as expected.\n"
           "Also check whether your regex works as wanted with --preview-delete and --preview-keep.\n\n")
NOTE = ("Note that it is ok to delete the /bin or /lib symlinks and any other OS files/directories like "
        "/etc or /.etc-work as they will be recreated.\n")
GRUB = "/usr/share/oem/grub.cfg"


@pytest.fixture
def host(tmp_path: Path) -> ScratchFlatcar:
    """A provisioned host: /etc files from the image (lower dir only), files the machine made or
    changed under /etc (upper dir), data under /var, a machine-id."""
    s = ScratchFlatcar(tmp_path / "host")
    (s.lower_etc / "motd").write_text("shipped motd\n")
    (s.root / "etc/motd").write_text("changed by the user\n")  # copied up: now on ROOT
    s.provision()
    return s


def tree(s: ScratchFlatcar) -> dict[str, tuple[str, str]]:
    """Every path of the scratch host (ROOT, ESP, OEM) with its type/mode and contents."""
    out: dict[str, tuple[str, str]] = {}
    for top in (s.root, s.boot, s.oem, s.lower_etc):
        for path in sorted(top.rglob("*")):
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                what = "-> " + os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                what = path.read_text(errors="replace")
            else:
                what = ""
            out[str(path)] = (oct(st.st_mode), what)
    return out


def run(s: ScratchFlatcar, *args: str, user: str | None = None, cwd: str = "/") -> tuple[int, str, str]:
    res = s.run(TOOL, *args, user=user, cwd=cwd)
    return res.returncode, res.stdout.decode(), res.stderr.decode()


# ---- refusals: message, exit 1, nothing changed --------------------------------------------------

BOTH = "Error: Can't specify both Ignition URL and Ignition file at the same time\n"
INVALID = "Error: Invalid path to keep, must be an absolute path or a regex for an absolute path: "


@pytest.mark.parametrize(("args", "stderr"), [
    (["-F", "a.ign", "-U", "http://x/c.ign"], BOTH),
    (["-U", "http://x/c.ign", "-F", "a.ign"], BOTH),
    (["--ignition-url=http://x", "--ignition-file", "a.ign"], BOTH),
    (["/var/log"], "Error: Found unused arguments: /var/log\n"),
    (["-M", "/var/log", "/home"], "Error: Found unused arguments: /var/log /home\n"),
    (["-K"], "Error: No paths to keep specified for --keep-paths argument\n"),
    (["--keep-paths", ""], "Error: No paths to keep specified for --keep-paths argument\n"),
    (["-K", "./x"], INVALID + "./x\n"),
    (["-K", "x"], INVALID + "x\n"),
    (["-K", "/ok", "var/log"], INVALID + "var/log\n"),
    (["-K", ".*"], INVALID + ".*\n"),
    (["-K", "~/x"], INVALID + "~/x\n"),
    (["-S", "-P"], "Error: Only one exclusive action allowed\n"),
    (["-W", "-D"], "Error: Only one exclusive action allowed\n"),
    (["--restore-backup", "--stop"], "Error: Only one exclusive action allowed\n"),
    (["-P", "-W", "-K", "/x"], "Error: Only one exclusive action allowed\n"),
    # the order of the checks: unused arguments and bad keep paths come before exclusive actions
    (["-S", "-P", "/x"], "Error: Found unused arguments: /x\n"),
    (["-S", "-P", "-K", "x"], INVALID + "x\n"),
    # getopt's own refusals
    (["--frobnicate"], "flatcar-reset: unrecognized option '--frobnicate'\n"),
    (["-X"], "flatcar-reset: invalid option -- 'X'\n"),
    (["-F"], "flatcar-reset: option requires an argument -- 'F'\n"),
    (["--ignition-url"], "flatcar-reset: option '--ignition-url' requires an argument\n"),
])
def test_refusals_change_nothing(host: ScratchFlatcar, args: list[str], stderr: str) -> None:
    before = tree(host)
    code, out, err = run(host, *args)
    assert (code, out, err) == (1, "", stderr)
    assert tree(host) == before


def test_help_exits_1_and_changes_nothing(host: ScratchFlatcar) -> None:
    before = tree(host)
    code, out, err = run(host, "--keep-paths", "/x", "-h")
    assert code == 1 and err == ""
    assert out.startswith("Usage: flatcar-reset ") and "--backup" in out and "--restore-backup" in out
    assert tree(host) == before


@pytest.mark.parametrize(("args", "shown"), [  # the arguments as getopt normalized them
    (["-S"], " -S --"),
    (["-W"], " -W --"),
    (["-K", "/var/log", "-M"], " -K -M -- '/var/log'"),
    (["--ignition-file", "/tmp/c.ign"], " --ignition-file '/tmp/c.ign' --"),
])
def test_non_root_is_refused_after_the_argument_checks(host: ScratchFlatcar, args: list[str],
                                                        shown: str) -> None:
    before = tree(host)
    assert run(host, *args, user=NOBODY) == (1, "", f"Need to be root: sudo {TOOL} {shown}\n")
    # an argument error wins over the missing root
    assert run(host, "-K", "rel", user=NOBODY) == (1, "", INVALID + "rel\n")
    assert tree(host) == before


# ---- the staged regex ---------------------------------------------------------------------------


@pytest.mark.parametrize(("keep", "regex"), [
    ([], "(" + ALWAYS),
    (["/var/log"], "(/var/log/.*|/var/log|" + ALWAYS),
    (["/var/log/"], "(/var/log/.*|/var/log|" + ALWAYS),
    (["/x//"], "(/x//.*|/x/|" + ALWAYS),
    (["/etc/ssh/ssh_host_.*"], "(/etc/ssh/ssh_host_.*|" + ALWAYS),
    (["/var/lib/x$"], "(/var/lib/x$|" + ALWAYS),
    (["/opt/[ab]"], "(/opt/[ab]|" + ALWAYS),
    (["/opt/x?"], "(/opt/x?|" + ALWAYS),
    (["/srv/(a|b)"], "(/srv/(a|b)|" + ALWAYS),
    (["^/srv"], "(^/srv|" + ALWAYS),
    (["(/a|/b)"], "((/a|/b)|" + ALWAYS),
    (["\\/x"], "(\\/x|" + ALWAYS),
    (["[/]x"], "([/]x|" + ALWAYS),
    (["$x", "{y"], "($x|{y|" + ALWAYS),
    (["", "/z"], "(|/z/.*|/z|" + ALWAYS),  # an empty entry passes the check, as on Flatcar
    (["/a", "/b/", "/c.*"], "(/a/.*|/a|/b/.*|/b|/c.*|" + ALWAYS),
])
def test_staging_writes_the_regex_flatcar_writes(host: ScratchFlatcar, keep: list[str], regex: str) -> None:
    args = ["--keep-paths", *keep] if keep else []
    code, out, err = run(host, *args)
    assert (code, err) == (0, "")
    assert (host.root / "selective-os-reset").read_text() == regex + "\n"
    assert (host.boot / "flatcar/first_boot").is_file()
    assert out == (WARNING
                   + f"Removed any hardcoded systemd.machine_id kernel cmdline parameter in {GRUB}\n"
                   + "Prepared /selective-os-reset and /boot/flatcar/first_boot\n"
                   + "Staged OS reset, you can reboot now\n")


def test_a_staged_reset_is_reported_and_stop_cancels_it(host: ScratchFlatcar) -> None:
    assert run(host, "-K", "/var/lib/keep")[0] == 0
    code, out, _ = run(host, "--preview-keep", "-K", "/var/lib/keep")
    assert code == 0 and out.startswith("INFO: An OS reset was staged already from a previous run.\n\n/")
    # the INFO line comes before the other checks (here the root check)
    assert run(host, "-S", user=NOBODY)[1] == "INFO: An OS reset was staged already from a previous run.\n\n"
    code, out, err = run(host, "--stop")
    assert (code, err) == (0, "")
    assert out == ("INFO: An OS reset was staged already from a previous run.\n\n"
                   "Removing /selective-os-reset and /boot/flatcar/first_boot\n")
    assert not (host.root / "selective-os-reset").exists()
    assert not (host.boot / "flatcar/first_boot").exists()


# ---- previews: /etc as ROOT holds it (the overlay's upper dir), mount points listed, not entered ---


def test_preview_keep_lists_what_the_regex_keeps_on_root(host: ScratchFlatcar) -> None:
    code, out, err = run(host, "-W", "-K", "/etc/ssh/ssh_host_.*", "/var/lib/keep")
    assert (code, err) == (0, "")
    assert sorted(out.splitlines()) == ["/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub",
                                        "/var/lib/keep", "/var/lib/keep/sub", "/var/lib/keep/sub/data"]


def test_preview_delete_walks_root_with_etc_unmounted(host: ScratchFlatcar) -> None:
    code, out, err = run(host, "--preview-delete", "--keep-paths", "/etc/ssh/ssh_host_.*", "/var/lib/keep")
    assert (code, err) == (0, "")
    assert out.endswith(NOTE)
    listed = out.removesuffix(NOTE).splitlines()
    assert listed[0] == "/"  # find prints its starting point
    assert set(listed) == {
        "/", "/etc", "/etc/ssh", "/etc/machine-id", "/etc/motd", "/etc/generation",
        "/.etc-work", "/.etc-work/work",
        "/var", "/var/lib", "/var/lib/other", "/var/lib/other/x", "/var/log", "/var/log/journal",
        "/var/log/journal/system.journal", "/home", "/home/core", "/home/core/.bash_history",
        "/usr", "/boot", "/oem", "/proc", "/dev", "/tmp", "/bin", "/sbin", "/lib", "/lib64",
    }
    # parents come before their contents (no -depth); lower-dir-only files are not on ROOT
    assert listed.index("/var/lib/other") < listed.index("/var/lib/other/x")
    assert "/etc/hostname" not in listed and "/etc/ssh/sshd_config" not in listed


def test_a_single_quote_in_a_keep_path_breaks_the_walk_as_on_flatcar(host: ScratchFlatcar) -> None:
    # flatcar-reset puts the regex between single quotes in an `sh -c` string: sh fails, nothing
    # is listed, and the tool still exits 0.
    code, out, err = run(host, "-P", "-K", "/var/lib/it's")
    assert code == 0 and out == NOTE and "failed to compile regular expression" in err


# ---- grub.cfg and config.ign ---------------------------------------------------------------------


def grub(s: ScratchFlatcar) -> str:
    return (s.oem / "grub.cfg").read_text()


BASE_GRUB = '# OEM settings sourced by GRUB\nset oem_id="qemu"\n'


def test_keep_machine_id_pins_it_once(host: ScratchFlatcar) -> None:
    line = f'set linux_append="$linux_append systemd.machine_id={MACHINE_ID}"\n'
    code, out, _ = run(host, "-M")
    assert code == 0 and f"Wrote machine ID as kernel cmdline parameter to {GRUB}\n" in out
    assert grub(host) == BASE_GRUB + line
    assert run(host, "--keep-machine-id")[0] == 0  # again: the old line empties and goes
    assert grub(host) == BASE_GRUB + line
    code, out, _ = run(host)  # without -M a pinned ID is removed
    assert f"Removed any hardcoded systemd.machine_id kernel cmdline parameter in {GRUB}\n" in out
    assert grub(host) == BASE_GRUB


def test_ignition_url_replaces_a_config_file_and_the_previous_url(host: ScratchFlatcar) -> None:
    (host.oem / "config.ign").write_text("{}")
    code, out, _ = run(host, "-U", "http://10.0.2.100/b/one.ign")
    assert code == 0
    assert "Removed Ignition file /usr/share/oem/config.ign\n" in out
    assert f"Wrote Ignition URL as kernel cmdline parameter to {GRUB}\n" in out
    assert not (host.oem / "config.ign").exists()
    assert grub(host) == BASE_GRUB + 'set linux_append="$linux_append ignition.config.url=http://10.0.2.100/b/one.ign"\n'
    assert run(host, "--ignition-url", "http://10.0.2.100/b/two.ign?X-Amz-Signature=a&b=c")[0] == 0
    assert grub(host) == (BASE_GRUB + 'set linux_append="$linux_append '
                          'ignition.config.url=http://10.0.2.100/b/two.ign?X-Amz-Signature=a&b=c"\n')


def test_ignition_file_is_copied_with_cp_and_drops_the_url(host: ScratchFlatcar) -> None:
    assert run(host, "-U", "http://10.0.2.100/b/one.ign")[0] == 0
    (host.root / "tmp/new.ign").write_text('{"ignition":{"version":"3.3.0"}}')
    code, out, err = run(host, "-F", "/tmp/new.ign", "-K", "/var/lib/keep")
    assert (code, err) == (0, "")
    assert f"Removed any ignition.config.url kernel cmdline parameter in {GRUB}\n" in out
    assert "Wrote Ignition file /usr/share/oem/config.ign\n" in out
    assert (host.oem / "config.ign").read_text() == '{"ignition":{"version":"3.3.0"}}'
    assert grub(host) == BASE_GRUB  # the emptied url line is gone
    # a relative path is relative to the caller's directory, and "-" is just a file name
    (host.root / "tmp/-").write_text('{"from":"a file named -"}')
    assert run(host, "-F", "-", cwd="/tmp")[0] == 0
    assert (host.oem / "config.ign").read_text() == '{"from":"a file named -"}'


def test_ignition_file_dash_is_not_stdin_and_fails_after_grub_was_edited(host: ScratchFlatcar) -> None:
    """``-F -`` fails like cp fails; by then the real tool has already rewritten grub.cfg (here: the
    machine-id pinned, the URL removed, its emptied line not yet cleaned up), but no reset is staged."""
    assert run(host, "-U", "http://10.0.2.100/b/one.ign")[0] == 0
    (host.root / "selective-os-reset").unlink()
    (host.boot / "flatcar/first_boot").unlink()
    res = host.run(TOOL, "-M", "-F", "-", "-K", "/var/lib/keep", stdin=b'{"ignition":{"version":"3.3.0"}}')
    assert res.returncode == 1
    assert res.stderr.decode() == "cp: cannot stat '-': No such file or directory\n"
    assert not res.stdout.decode().endswith("Staged OS reset, you can reboot now\n")
    assert not (host.oem / "config.ign").exists()
    assert not (host.root / "selective-os-reset").exists() and not (host.boot / "flatcar/first_boot").exists()
    assert grub(host) == (BASE_GRUB + 'set linux_append="$linux_append "\n'
                          + f'set linux_append="$linux_append systemd.machine_id={MACHINE_ID}"\n')


# ---- backups ------------------------------------------------------------------------------------


def test_backup_restore_and_delete(host: ScratchFlatcar) -> None:
    code, out, err = run(host, "--backup", "-K", "/etc/ssh/ssh_host_.*", "/var/lib/keep")
    assert (code, err) == (0, "")
    assert out.startswith("Removing existing /flatcar-backup/ directory\n"
                          "Copying files that will be deleted to /flatcar-backup/\n")
    assert "WARNING" not in out
    backup = host.root / "flatcar-backup"
    saved = sorted("/" + p.relative_to(backup).as_posix() for p in backup.rglob("*"))
    # what will be deleted, mount points and the overlay's work dir excepted; the kept paths not
    assert set(saved) == {
        "/bin", "/etc", "/etc/generation", "/etc/machine-id", "/etc/motd", "/etc/ssh", "/home", "/home/core",
        "/home/core/.bash_history", "/lib", "/lib64", "/sbin", "/tmp", "/var", "/var/lib", "/var/lib/other",
        "/var/lib/other/x", "/var/log", "/var/log/journal", "/var/log/journal/system.journal"}
    assert (backup / "etc/motd").read_text() == "changed by the user\n"
    assert (backup / "bin").is_symlink() and os.readlink(backup / "bin") == "usr/bin"
    # the backup keeps itself: it is in the staged regex
    assert (host.root / "selective-os-reset").read_text().endswith("|/flatcar-backup|/flatcar-backup/.*|"
                                                                   "/selective-os-reset)\n")

    # after a reset (simulated: the files are gone), --restore-backup brings them back onto ROOT
    (host.root / "var/lib/other/x").unlink()
    (host.root / "etc/motd").unlink()
    code, out, err = run(host, "-R")
    assert code == 0
    assert out.startswith("INFO: An OS reset was staged already from a previous run.\n\n"
                          "Restoring rootfs files from /flatcar-backup/\n")  # then rsync -v's lines
    assert out.endswith("You should reboot now\n")
    assert (host.root / "var/lib/other/x").read_text() == "x\n"
    assert (host.root / "etc/motd").read_text() == "changed by the user\n"  # into ROOT's /etc (upper dir)

    assert run(host, "-D") == (0, "INFO: An OS reset was staged already from a previous run.\n\n"
                                  "Removing /flatcar-backup/ directory\n", "")
    assert not backup.exists()
    code, out, err = run(host, "--restore-backup")
    assert (code, err) == (1, "Error: The directory /flatcar-backup/ does not exist\n")
