"""CLI start-up: one ``flatcar-infra render`` of a small config against ``python -c 'import yaml'``.

Both run as fresh processes with the same interpreter, interleaved, several times each; the medians
are compared (target: render <= 2x the baseline, which is interpreter start-up plus the YAML
library every config tool needs). The verdict uses each process's CPU time (user + system), which
other load on a shared machine disturbs far less than wall time; both are printed.
``--importtime`` prints where the render's import time goes.
Run: ``python bench/cli.py [-n 15] [--importtime]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = 2.0
SMALL = """\
variant: flatcar
version: 1.1.0
passwd:
  users:
    - name: core
      ssh_authorized_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOJ4m1Y+5nM0vL core@example]
storage:
  files:
    - path: /etc/hostname
      mode: 0644
      contents: {inline: web-1}
systemd:
  units:
    - name: app.service
      enabled: true
      contents: |
        [Service]
        ExecStart=/usr/bin/sleep infinity
        [Install]
        WantedBy=multi-user.target
"""


def render_command(config: Path) -> list[str]:
    """The installed console script when it sits beside this interpreter, else ``-m``."""
    script = Path(sys.executable).parent / "flatcar-infra"
    if script.is_file() and script.read_bytes()[:2] == b"#!":
        return [sys.executable, str(script), "render", str(config)]
    return [sys.executable, "-m", "flatcar_infra.cli.main", "render", str(config)]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one run of ``cmd``."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def import_breakdown(cmd: list[str], env: dict[str, str], top: int = 15) -> str:
    """The largest cumulative import times of one render (``python -X importtime``), our modules
    and the third-party ones they pull in."""
    proc = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=env, capture_output=True, text=True,
                          check=True)
    rows = []
    for line in proc.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].strip()))
    rows.sort(reverse=True)
    return "\n".join(f"  {us / 1000:7.1f} ms  {name}" for us, name in rows[:top])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=15, help="runs of each (default 15)")
    parser.add_argument("--importtime", action="store_true", help="print the render's import breakdown")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        # bytecode cached as an installed package has it (in a scratch dir, not in the repository)
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        config = Path(tmp) / "small.bu"
        config.write_text(SMALL)
        render = render_command(config)
        baseline = [sys.executable, "-c", "import yaml"]
        timed(render, env)  # warm the page cache and bytecode
        timed(baseline, env)
        base_runs = []
        render_runs = []
        for _ in range(args.n):
            base_runs.append(timed(baseline, env))
            render_runs.append(timed(render, env))
        breakdown = import_breakdown(render, env) if args.importtime else ""
    bw, bc = (statistics.median(x) for x in zip(*base_runs, strict=True))
    rw, rc = (statistics.median(x) for x in zip(*render_runs, strict=True))
    print(f"{'':31} {'wall':>9} {'CPU':>9}   (medians of {args.n} runs, interleaved)")
    print(f"python -c 'import yaml'         {bw * 1000:6.1f} ms {bc * 1000:6.1f} ms")
    print(f"flatcar-infra render small.bu   {rw * 1000:6.1f} ms {rc * 1000:6.1f} ms   ({render[1]})")
    if breakdown:
        print("largest cumulative imports of the render:\n" + breakdown)
    ratio = rc / bc
    print(f"ratio render/baseline: {ratio:.2f}x CPU, {rw / bw:.2f}x wall (target <= {TARGET:g}x, judged on "
          f"CPU time, which other load on the machine disturbs least) {'OK' if ratio <= TARGET else 'OVER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
