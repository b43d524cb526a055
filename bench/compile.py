"""Compile the whole config corpus vs. only parsing its YAML with libyaml, in one run.

Prints the time to ``yaml.load(text, CSafeLoader)`` every corpus source N times, the time to
``compile_file`` every one of them N times (files-dir and platform as the corpus README says),
and the ratio compile/parse (target: <= 4x). Both are measured in this process, back to back,
so the ratio does not depend on the machine. Run: ``python bench/compile.py [-n N] [--profile]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from flatcar_infra.compiler import compile_file

TARGET = 4.0
CLC_PLATFORMS = {"11": "custom", "12": "ec2"}


def corpus_dir() -> Path:
    env = os.environ.get("FLATCAR_INFRA_CORPUS")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


def corpus_jobs(corpus: Path) -> list[tuple[Path, Path, str | None]]:
    """(source, files_dir, platform) for every corpus config that is meant to compile."""
    jobs: list[tuple[Path, Path, str | None]] = []
    for path in sorted((corpus / "clc").glob("*.yaml")):
        jobs.append((path, corpus / "clc" / "files", CLC_PLATFORMS.get(path.name[:2])))
    for path in sorted((corpus / "butane").glob("*.yaml")):
        # the ones real Butane compiles (its output is kept beside them); it rejects the others
        if path.with_name(path.name.removesuffix(".yaml") + ".butane-v0.29.ign.json").exists():
            jobs.append((path, corpus / "butane" / "files", None))
    return jobs


def timed(fn: Callable[[], None]) -> float:
    """CPU seconds of this process: the machine is shared, and wall time counts the others' work."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def stages(
    jobs: list[tuple[Path, Path, str | None]], texts: list[str], n: int, repeats: int
) -> dict[str, float]:
    """Where compile time goes: positioned YAML parse, translation, validation (best of repeats)."""
    from flatcar_infra.compiler.butane import translate_butane
    from flatcar_infra.compiler.clc import translate_clc
    from flatcar_infra.compiler.validate import validate_document
    from flatcar_infra.compiler.yamlsrc import YMap, parse_yaml

    docs = [parse_yaml(t, str(p)) for t, (p, _, _) in zip(texts, jobs, strict=True)]

    def translate_one(i: int) -> object:
        doc, (_, files_dir, platform) = docs[i], jobs[i]
        if isinstance(doc.root, YMap) and "variant" in doc.root:
            return translate_butane(doc, files_dir=files_dir)
        return translate_clc(doc, files_dir=files_dir, platform=platform)

    outputs = [translate_one(i).document for i in range(len(jobs))]  # type: ignore[attr-defined]

    def parse() -> None:
        for _ in range(n):
            for text, (path, _, _) in zip(texts, jobs, strict=True):
                parse_yaml(text, str(path))

    def translate() -> None:
        for _ in range(n):
            for i in range(len(jobs)):
                translate_one(i)

    def validate() -> None:
        for _ in range(n):
            for doc in outputs:
                validate_document(doc, filename="bench")

    return {
        name: min(timed(fn) for _ in range(repeats))
        for name, fn in (("yamlsrc.parse_yaml", parse), ("translate", translate), ("validate", validate))
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="passes over the corpus per timing (default 20)")
    parser.add_argument("--repeats", type=int, default=3, help="timings; the best counts (default 3)")
    parser.add_argument("--profile", action="store_true", help="profile the compile pass with cProfile")
    args = parser.parse_args(argv)

    jobs = corpus_jobs(corpus_dir())
    if not jobs:
        print(f"no corpus at {corpus_dir()} (set FLATCAR_INFRA_CORPUS)", file=sys.stderr)
        return 1
    texts = [p.read_text(encoding="utf-8") for p, _, _ in jobs]
    size = sum(len(t.encode()) for t in texts)

    def parse() -> None:
        for _ in range(args.n):
            for text in texts:
                yaml.load(text, Loader=yaml.CSafeLoader)

    def compile_all() -> None:
        for _ in range(args.n):
            for path, files_dir, platform in jobs:
                compile_file(path, files_dir=files_dir, platform=platform)

    compile_all()  # warm up: imports, schema loading, caches
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(compile_all)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    # Interleaved, best of each: both see the same load from whatever else runs on the machine.
    parse_s = compile_s = float("inf")
    for _ in range(args.repeats):
        parse_s = min(parse_s, timed(parse))
        compile_s = min(compile_s, timed(compile_all))
    ratio = compile_s / parse_s
    per = args.n * len(jobs)
    print(f"corpus: {len(jobs)} configs, {size / 1024:.1f} KiB; {args.n} passes, best of {args.repeats}")
    print(f"parse only (yaml.CSafeLoader): {parse_s * 1000:8.1f} ms  ({parse_s / per * 1e6:7.0f} us/config)")
    print(
        f"compile (compile_file):        {compile_s * 1000:8.1f} ms  ({compile_s / per * 1e6:7.0f} us/config)"
    )
    for stage, seconds in stages(jobs, texts, args.n, args.repeats).items():
        print(f"  of which {stage:<20} {seconds * 1000:8.1f} ms  ({seconds / parse_s:4.2f}x parse)")
    print(
        f"ratio compile/parse: {ratio:.2f}x (target <= {TARGET:.0f}x) {'OK' if ratio <= TARGET else 'OVER'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
