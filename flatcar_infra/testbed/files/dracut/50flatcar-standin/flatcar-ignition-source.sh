#!/bin/sh
# Flatcar's precedence, first match wins: ignition.config.url on the kernel command line (usually
# from /oem/grub.cfg), then /oem/config.ign, then the platform's user-data (QEMU fw_cfg here).
# Ignition reads /usr/lib/ignition/user.ign instead of the platform config when it exists.
set -eu
log() { echo "flatcar-ignition-source: $*" > /dev/kmsg; }
url=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in ignition.config.url=*) url="${arg#ignition.config.url=}" ;; esac
done
mkdir -p /usr/lib/ignition
if [ -n "$url" ]; then
    # A replace pointer: Ignition itself fetches (and retries) the URL, with networking.
    printf '{"ignition":{"version":"3.3.0","config":{"replace":{"source":"%s"}}}}\n' "$url" \
        > /usr/lib/ignition/user.ign
    log "using ignition.config.url=$url"
    exit 0
fi
mkdir -p /run/flatcar-oem
if mount -o ro /dev/disk/by-label/OEM /run/flatcar-oem; then
    if [ -f /run/flatcar-oem/config.ign ]; then
        cp /run/flatcar-oem/config.ign /usr/lib/ignition/user.ign
        log "using /oem/config.ign"
    else
        log "no /oem/config.ign: using the platform user-data"
    fi
    umount /run/flatcar-oem
else
    log "OEM partition not mountable: using the platform user-data"
fi
