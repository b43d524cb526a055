#!/bin/sh
# Flatcar recreates its base /etc and /var from /usr after a wipe or reset. The stand-in ships a
# copy of its pristine ROOT (without machine-id and host keys) in /usr/share/factory and copies
# whatever is missing, never overwriting what is there (kept paths, an untouched ROOT).
set -eu
R=/sysroot
F=$R/usr/share/factory
if [ ! -d "$F/etc" ]; then
    echo "flatcar-setup-root: $F is missing" > /dev/kmsg
    exit 1
fi
cp -a -n "$F/." "$R/"
