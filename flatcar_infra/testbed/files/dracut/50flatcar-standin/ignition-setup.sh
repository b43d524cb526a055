#!/bin/bash
# ignition-setup on the stand-in (Flatcar bootengine: ignition-setup.sh "normal"): the OEM
# partition's config.ign becomes Ignition's system user config, /usr/lib/ignition/user.ign, and
# base/base.ign a base config. Ignition itself then picks, first match wins: ignition.config.url on
# the kernel command line, this user.ign, the platform's user-data.
set -e
src=/mnt/oem
dst=/usr/lib/ignition
mkdir -p "$src" "$dst/base.d"
mount -o ro /dev/disk/by-label/OEM "$src"
if [ -e "$src/base/base.ign" ]; then
    cp "$src/base/base.ign" "$dst/base.d/"
fi
if [ -e "$src/config.ign" ]; then
    cp "$src/config.ign" "$dst/user.ign"
    echo "ignition-setup: /oem/config.ign copied to $dst/user.ign"
fi
umount "$src"
