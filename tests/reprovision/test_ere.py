"""Keep-path regexes as GNU ERE: the offline lexer (``ere_problems``) held against the engines that
really apply them, GNU ``grep -E`` (the test bed) and ``find -regextype egrep`` (Flatcar)."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flatcar_infra.reprovision.ere import ere_problems
from flatcar_infra.reprovision.kept import keep_regex


def gnu_rejects(rx: str) -> str:
    """GNU's own verdict: find's compile error, or grep's error/warning (e.g. '* at start')."""
    f = subprocess.run(
        ["find", "/dev/null", "-maxdepth", "0", "-regextype", "egrep", "-regex", rx],
        capture_output=True,
        text=True,
    )
    g = subprocess.run(["grep", "-E", "-e", rx], input="", capture_output=True, text=True)
    return (f.stderr + g.stderr).strip()


def find_rejects(rx: str) -> str:
    return subprocess.run(
        ["find", "/dev/null", "-maxdepth", "0", "-regextype", "egrep", "-regex", rx],
        capture_output=True,
        text=True,
    ).stderr.strip()


def gnu_matches(rx: str, path: str) -> bool:
    return subprocess.run(["grep", "-Exq", "-e", rx], input=path + "\n", text=True).returncode == 0


@pytest.mark.parametrize(
    ("rx", "needle"),
    [
        ("/var/lib/app\\d+", "[0-9]"),
        ("/var/lib/(?:a|b)", "plain ( ) group"),
        ("/var/(?=x)y", "lookaround"),
        ("/x[\\d]", "[0-9]"),
        ("/x[\\s]", "[[:space:]]"),
        ("/a*?", "lazy"),
        ("/a++", "possessive"),
        ("/a\\Z", "$"),
        ("/a\\n", "not an ERE escape"),
        ("(/a)\\1", "back reference"),
    ],
)
def test_python_only_constructs_are_errors(rx: str, needle: str) -> None:
    problems = ere_problems(rx)
    assert problems and needle in problems[0], problems
    # the engine that applies them (find, in the initramfs) takes them silently: this is the data
    # loss the check prevents
    assert not find_rejects(rx) or "back reference" in needle


def test_the_issue_example_keeps_nothing_under_gnu() -> None:
    assert gnu_matches("/var/lib/app[0-9]+", "/var/lib/app1")
    assert not gnu_matches("/var/lib/app\\d+", "/var/lib/app1")  # why '\\d' must be refused
    assert gnu_matches("/var/lib/app\\d+", "/var/lib/appd")


@pytest.mark.parametrize(
    "rx",
    [
        "/a(",
        "/x[a",
        "/x[z-a]",
        "/x[[:foo:]]",
        "/a{2,1}",
        "*a",
        "/a\\",
        "/x[:digit:]",
        "/a{}",
        "/a{1,2,3}",
    ],
)
def test_syntax_errors_agree_with_gnu(rx: str) -> None:
    assert ere_problems(rx), rx
    assert gnu_rejects(rx), rx


@pytest.mark.parametrize(
    "rx",
    [
        "/etc/ssh/ssh_host_.*",
        "/var/lib/flatcar-infra",
        "/var/lib/app[0-9]+",
        "/var/log/(journal|app)",
        "/x[[:digit:]]{2}",
        "/x[]a]",
        "/x[^]a]",
        "/x[a-]",
        "/a\\.b",
        "/a\\w+\\b",
        "/a{,3}",
        "/a{x}",
        "/home/[^/]+/\\.ssh/authorized_keys.*",
        "^/opt/(a|b)$",
        "/var/lib/docker/volumes/?",
    ],
)
def test_valid_eres_pass_both(rx: str) -> None:
    assert ere_problems(rx) == []
    assert not gnu_rejects(rx)
    # and survive flatcar-reset's composition into one regex
    assert not gnu_rejects(keep_regex([rx]))


ALPHABET = st.sampled_from([*list("/ab.*+?()[]{}|^$\\-,:1d2"), "[:digit:]", "(?:", "\\d", "\\w", "{2}"])


@settings(max_examples=300, deadline=None)
@given(st.lists(ALPHABET, min_size=1, max_size=8).map(lambda parts: "/" + "".join(parts)))
def test_whatever_the_lexer_accepts_gnu_accepts(rx: str) -> None:
    """Never more lenient than the real engine: an entry the lexer passes compiles in GNU without
    an error or a warning."""
    if not ere_problems(rx):
        assert not gnu_rejects(rx), rx
