#!/usr/bin/env bash
# The main job on the built-in local target, no cloud account needed:
#   compile a Butane config -> host it in a bucket (local S3 API server) -> boot a Flatcar-like VM
#   whose user-data is a pointer to that object -> change the config -> reprovision the SAME machine
#   in place over SSH (flatcar-reset, reboot, Ignition reruns, verified) -> show what survived.
# Needs root (the VM image is built once with mmdebstrap and cached).
# Everything the demo starts (the VM, and the local bucket server unless other local machines use
# it) is stopped when it ends, also on failure or Ctrl-C. KEEP=1 leaves them running.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${NAME:-demo}
config=stacks/configs/local.bu
work=$(mktemp -d)

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    rm -rf "$work"
    if [ "${KEEP:-0}" = 1 ]; then
        echo "== KEEP=1: '$name' and the local bucket server keep running (flatcar-infra local down --name $name)" >&2
    else
        echo "== cleaning up: stopping '$name' (and the local bucket server when no other local machine uses it)" >&2
        flatcar-infra local down --name "$name" >&2 || echo "== cleanup failed: run 'flatcar-infra local down --all'" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'echo "== interrupted" >&2; exit 130' INT TERM

echo "== 1. boot '$name' from v1 (pointer user-data -> bucket object)" >&2
state=$(flatcar-infra local up --name "$name" --config "$config" --var greeting="hello from v1")
echo "$state"
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$state" "$1"; }
host=$(field host); port=$(field port); user=$(field user); identity=$(field identity_file)
host_key=$(field host_key)

remote() { python3 - "$host" "$port" "$user" "$identity" "$host_key" "$1" <<'PY'
import sys
from flatcar_infra.ssh import SshTarget, connect, run_sync
host, port, user, identity, host_key, cmd = sys.argv[1:]
target = SshTarget(host, int(port), user, identity_file=identity, host_key=host_key)
async def go() -> str:
    async with await connect(target) as s:
        return (await s.run(cmd, check=True)).text
print(run_sync(go), end="")
PY
}

echo "== 2. data the machine made, which must survive" >&2
remote 'sudo sh -c "echo precious > /var/lib/app/data"; cat /etc/flatcar-infra/greeting; cat /etc/machine-id'

echo "== 3. what would change (plan), then reprovision in place with v2" >&2
pub=$(ssh-keygen -y -f "$identity")
v1=$work/v1.ign; v2=$work/v2.ign
flatcar-infra render "$config" --var greeting="hello from v1" --var ssh_public_key="$pub" -o "$v1"
flatcar-infra render "$config" --var greeting="hello from v2" --var ssh_public_key="$pub" -o "$v2"
flatcar-infra plan "$v1" "$v2" --keep-path /var/lib/app
# The exact config the machine booted with (what `local up` put in the bucket): the rollback target
# until the machine keeps its own copy (after its first reprovision).
running=$work/running.ign
python3 - "$name" "$running" <<'PY'
import sys
from flatcar_infra.testbed.local import load_machine, machine_bucket, object_key
name, out = sys.argv[1:]
open(out, "wb").write(machine_bucket(load_machine(name)).get(object_key(name)))
PY
flatcar-infra reprovision --host "$host" --port "$port" --user "$user" --identity "$identity" \
  --host-key "$host_key" --config "$config" --var greeting="hello from v2" \
  --var ssh_public_key="$pub" --keep-path /var/lib/app --health 'systemctl is-active greeting.service' \
  --previous-config "$running"

echo "== 4. same machine (same port, same pinned host key, same machine-id), new config, data kept" >&2
remote 'cat /etc/flatcar-infra/greeting; cat /var/lib/app/data; cat /etc/machine-id; cat /etc/flatcar-infra/config-hash'
