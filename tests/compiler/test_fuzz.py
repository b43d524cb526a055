"""Fuzzing in the suite: mutated corpus and conformance configs, plus generated attacks, through the
API and the CLI entry point. Seeded and bounded (about a thousand inputs), so it is the same run on
every machine; ``bench/fuzz.py`` runs the long version.

Every input runs in a worker subprocess with a deadline the test enforces (a hang fails the test,
not the suite) and a memory limit; a worker that dies is a crash. Zero tracebacks, hangs, crashes
and unlocated errors are allowed; a failure prints each cause with an input that shows it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.support.fuzz import generate, load_seeds, make_hostile_dir, run

SEED = 20261207
INPUTS = int(os.environ.get("FLATCAR_INFRA_FUZZ_INPUTS", "1000"))
DEADLINE = 20.0  # seconds per input: ~1000x what one needs, so only a real hang misses it


def test_fuzzed_configs_never_traceback_hang_or_crash_and_errors_are_located() -> None:
    seeds = load_seeds()
    if not seeds and not os.environ.get("CI"):
        pytest.skip("corpus/conformance not found (set FLATCAR_INFRA_SHARED or FLATCAR_INFRA_CORPUS)")
    assert len(seeds) > 300, "the corpus and conformance inputs are the fuzz seeds"
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        hostile = make_hostile_dir(Path(tmp))
        report = run(generate(SEED, INPUTS, seeds, hostile_dir=str(hostile)), deadline=DEADLINE)
    print(report.summary())
    assert report.inputs == INPUTS
    assert report.ok > INPUTS // 20 and report.errors > INPUTS // 2  # both paths are exercised
    assert report.findings == 0, report.summary()
