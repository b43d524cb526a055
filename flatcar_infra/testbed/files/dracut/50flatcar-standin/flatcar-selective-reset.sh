#!/bin/bash
# Runs on the flagged boot when /selective-os-reset exists: delete every path of ROOT that the
# kept regex (written by flatcar-reset) does not match, drop /etc/machine-id so systemd sees a
# first boot (and applies presets), then let Ignition run. Directories holding a kept path survive.
set -euo pipefail
R=/sysroot
echo "flatcar-selective-reset: resetting ROOT, keeping $(cat $R/selective-os-reset)" > /dev/kmsg
/usr/lib/flatcar/reset-paths delete "$R" "$R/selective-os-reset" --null |
while IFS= read -r -d '' path; do
    target="$R$path"
    if [ -d "$target" ] && [ ! -L "$target" ]; then
        rmdir "$target" 2>/dev/null || true   # still holds kept paths
    else
        rm -f "$target"
    fi
done
rm -f "$R/etc/machine-id" "$R/selective-os-reset"
echo "flatcar-selective-reset: done" > /dev/kmsg
