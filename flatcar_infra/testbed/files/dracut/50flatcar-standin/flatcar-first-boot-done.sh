#!/bin/sh
set -eu
mkdir -p /run/flatcar-esp
mount -t vfat -o codepage=437,iocharset=iso8859-1 /dev/disk/by-label/EFI-SYSTEM /run/flatcar-esp
rm -f /run/flatcar-esp/flatcar/first_boot
umount /run/flatcar-esp
echo "flatcar-first-boot-done: removed flatcar/first_boot" > /dev/kmsg
