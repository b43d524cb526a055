"""Run one user hook command on a machine over SSH with its host key pinned.

``pulumi-command``'s remote connection cannot pin a host key, so hooks run as a
``pulumi_command.local.Command`` invoking this module with the target in its (secret)
environment, through the project's one SSH transport. Exit status is the command's.

The command stored in the state is ``HOOK_COMMAND``, the same text on every machine: the
interpreter is resolved when the hook runs (``$FLATCAR_INFRA_PYTHON``, else ``python3`` on
``PATH``), so ``pulumi up`` from another checkout or laptop does not see a changed command and
rerun every hook.
"""

from __future__ import annotations

import os
import sys

from flatcar_infra.errors import UserError
from flatcar_infra.ssh import SshTarget, connect, run_sync

ENV_PREFIX = "FLATCAR_INFRA_HOOK_"
HOOK_COMMAND = '"${FLATCAR_INFRA_PYTHON:-python3}" -m flatcar_infra.components.hookrun'
"""Run by ``/bin/sh -c`` (pulumi-command's interpreter). Set ``FLATCAR_INFRA_PYTHON`` to the
virtualenv's python when ``python3`` on ``PATH`` cannot import flatcar_infra."""


def main() -> int:
    env = {k[len(ENV_PREFIX) :].lower(): v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    missing = [k for k in ("host", "user", "private_key", "host_key", "command") if not env.get(k)]
    if missing:
        sys.stderr.write(f"hook: missing {', '.join(ENV_PREFIX + m.upper() for m in missing)}\n")
        return 2
    target = SshTarget(
        host=env["host"],
        port=int(env.get("port") or 22),
        user=env["user"],
        private_key=env["private_key"],
        host_key=env["host_key"],
    )

    async def go() -> int:
        session = await connect(target)
        try:
            result = await session.run(env["command"], check=False)
        finally:
            await session.close()
        sys.stdout.write(result.stdout.decode("utf-8", "replace"))
        sys.stderr.write(result.stderr.decode("utf-8", "replace"))
        return result.exit_status

    try:
        return run_sync(go)
    except UserError as exc:
        sys.stderr.write(f"hook: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
