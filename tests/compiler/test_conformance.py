"""The shared conformance suites, one test per case: Butane's own test cases (by meaning and
exactly) and ct's (by meaning), compared as ``<shared>/conformance/README.md`` says.

A case we deliberately decide differently is listed, with the reason, in
``docs/compiler-conformance.md``; it is an expected failure here, strictly, so a case that starts
agreeing is noticed (and its row removed).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flatcar_infra.compiler import compile_config
from flatcar_infra.errors import ConfigError
from tests.compiler.conformance import (
    BUTANE_CASES,
    CONFORMANCE,
    CT_CASES,
    Rendered,
    deliberate_differences,
    judge_butane,
    prepared,
    run_butane,
    run_ct,
)
from tests.support.ignition import requires_ignition

if not CONFORMANCE.is_dir() and not os.environ.get("CI"):  # on CI a missing suite fails
    pytest.skip(f"conformance suites not found at {CONFORMANCE}", allow_module_level=True)

DIFFERENCES = deliberate_differences()


def _expect(suite: str, case: Path, check: str, request: pytest.FixtureRequest) -> None:
    for c in (check, "meaning") if check == "exact" else (check,):
        diff = DIFFERENCES.get((suite, case.name, c))
        if diff is not None:
            request.applymarker(pytest.mark.xfail(reason=f"deliberate: {diff.reason}", strict=True))
            return


def test_suites_are_there_and_the_differences_name_real_cases() -> None:
    assert len(BUTANE_CASES) >= 168 and len(CT_CASES) >= 118
    names = {("butane", c.name) for c in BUTANE_CASES} | {("ct", c.name) for c in CT_CASES}
    assert {(d.suite, d.case) for d in DIFFERENCES.values()} <= names


@pytest.mark.parametrize("case", BUTANE_CASES, ids=lambda p: p.name)
def test_butane_by_meaning(case: Path, request: pytest.FixtureRequest) -> None:
    _expect("butane", case, "meaning", request)
    verdict = run_butane(case)
    assert verdict.ok, "\n".join(verdict.meaning)


@pytest.mark.parametrize("case", BUTANE_CASES, ids=lambda p: p.name)
def test_butane_exact(case: Path, request: pytest.FixtureRequest) -> None:
    _expect("butane", case, "exact", request)
    verdict = run_butane(case)
    assert verdict.exact_ok, "\n".join(verdict.meaning + verdict.exact)


def _only_files_dir_differs(case: Path) -> bool:
    return all(d.reason.startswith("default files dir") for d in DIFFERENCES.values() if d.case == case.name)


@pytest.mark.parametrize(
    "case",
    [c for c in BUTANE_CASES if not (c / "files").is_dir() and _only_files_dir_differs(c)],
    ids=lambda p: p.name,
)
def test_butane_without_a_files_dir_through_the_api(case: Path) -> None:
    """``compile_config`` with ``files_dir=None`` is Butane without ``-d``: the default-files-dir
    differences above disappear; everything else still agrees, exactly."""
    with prepared(case) as work:
        try:
            compiled = compile_config(
                (work / "input.bu").read_text(), filename=str(work / "input.bu"), files_dir=None
            )
            result = Rendered(compiled, compiled.warnings)
        except ConfigError as exc:
            result = Rendered(None, exc.diagnostics)
    verdict = judge_butane(case, result)
    assert verdict.exact_ok, "\n".join(verdict.meaning + verdict.exact)


@pytest.mark.ignition
@requires_ignition
@pytest.mark.parametrize("case", CT_CASES, ids=lambda p: p.name)
def test_ct_by_meaning(case: Path, request: pytest.FixtureRequest) -> None:
    _expect("ct", case, "meaning", request)
    verdict = run_ct(case)
    assert verdict.ok, "\n".join(verdict.meaning)
