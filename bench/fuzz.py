"""Fuzz the compiler with many mutated inputs and print what went wrong, grouped by cause.

Inputs: the corpus and conformance configs mutated by a seeded RNG, plus generated attacks (alias
bombs, deep nesting, endless templates, ``--var`` injection); see ``tests/support/fuzz.py``. Each
runs in a worker subprocess (a segfault is counted, not fatal) with a per-input deadline and a
memory limit. Prints: inputs, tracebacks, hangs, crashes, unlocated errors, and the causes.
Run: ``python bench/fuzz.py [-n 22000] [--seed 12] [--deadline 10]``. Exit 1 on any finding.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.fuzz import generate, load_seeds, make_hostile_dir, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=22000, help="inputs (default 22000)")
    parser.add_argument("--seed", type=int, default=12, help="RNG seed (default 12)")
    parser.add_argument("--deadline", type=float, default=10.0, help="seconds per input (default 10)")
    parser.add_argument("--cli-share", type=float, default=0.2, help="share run through the CLI (0.2)")
    args = parser.parse_args(argv)
    seeds = load_seeds()
    if not seeds:
        print("no corpus/conformance seeds found (set FLATCAR_INFRA_SHARED)", file=sys.stderr)
        return 2
    import tempfile

    t0 = time.monotonic()
    last = [t0]

    def progress(report: object) -> None:
        if time.monotonic() - last[0] > 30:
            last[0] = time.monotonic()
            print(f"  ... {report.inputs} inputs, {report.findings} findings", file=sys.stderr)  # type: ignore[attr-defined]

    with tempfile.TemporaryDirectory(prefix="fuzz-bench-") as tmp:
        hostile = make_hostile_dir(Path(tmp))
        report = run(generate(args.seed, args.n, seeds, cli_share=args.cli_share, hostile_dir=str(hostile)),
                     deadline=args.deadline, progress=progress)
    elapsed = time.monotonic() - t0
    print(f"seeds: {len(seeds)}; seed {args.seed}; deadline {args.deadline:g}s; {elapsed:.0f}s "
          f"({elapsed / max(report.inputs, 1) * 1000:.1f} ms/input)")
    print(report.summary())
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
