#!/bin/bash
# Runs on the flagged boot when /selective-os-reset exists: delete every path of ROOT that the
# kept regex (written by flatcar-reset) does not match, drop /etc/machine-id so systemd sees a
# first boot (and applies presets), then let Ignition run. Directories holding a kept path survive.
set -euo pipefail
R=/sysroot
rx=$R/selective-os-reset
echo "flatcar-selective-reset: resetting ROOT, keeping $(cat "$rx")" > /dev/kmsg
# Batched (xargs): one rm per path would take minutes under emulation.
/usr/lib/flatcar/reset-paths delete-files "$R" "$rx" --null | sed -z "s|^|$R|" | xargs -0 -r rm -f --
/usr/lib/flatcar/reset-paths delete-dirs "$R" "$rx" --null | sed -z "s|^|$R|" |
    xargs -0 -r rmdir --ignore-fail-on-non-empty --
rm -f "$R/etc/machine-id" "$rx"
echo "flatcar-selective-reset: done" > /dev/kmsg
