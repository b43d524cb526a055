#!/bin/bash
# mmdebstrap customize hook for the Flatcar stand-in: customize.sh ROOTFS FILES_DIR
# Turns a minimal Debian into the stand-in's root: Flatcar identity and tools, user core, fstab,
# networking, SSH; then installs the kernel so that dracut builds the initramfs once, with
# Ignition and the stand-in's glue module. (image.py then moves /etc to /usr/share/flatcar/etc,
# the /etc overlay's lower dir.)
set -euo pipefail
R=$1 F=$2 KERNEL_PACKAGE=${3:-linux-image-amd64}
in_root() { chroot "$R" "$@"; }

# Owned by root and not group/other-writable whoever owns the checkout and whatever its umask;
# existing directories keep their modes. git keeps only the exec bit, so sudoers' mode is set.
tar -C "$F/rootfs" --owner=0 --group=0 --mode=go-w -cf - . | tar -C "$R" --no-overwrite-dir -xpf -
chmod 0440 "$R/etc/sudoers.d/flatcar"
rm -f "$R/etc/os-release"
ln -s ../usr/lib/os-release "$R/etc/os-release"

# Flatcar has no fixed hostname; DHCP or systemd's default names the host.
rm -f "$R/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' > "$R/etc/hosts"
cat > "$R/etc/fstab" <<'FSTAB'
# / (ROOT) and /usr (USR-A, read-only) are mounted by the initramfs from the kernel command line.
LABEL=EFI-SYSTEM  /boot  vfat  defaults,umask=0077  0 2
LABEL=OEM         /oem   ext4  defaults             0 2
FSTAB
# As on current Flatcar: the OEM partition is mounted at /oem and /usr/share/oem (on USR) points
# to it, so both paths reach the same files.
mkdir -p "$R/oem" "$R/boot"
ln -sfn /oem "$R/usr/share/oem"

# Stand-in only: udev may take longer than its 180 s default per event under software emulation.
printf '\n# flatcar-infra stand-in: slow software emulation\nevent_timeout=900\n' >> "$R/etc/udev/udev.conf"

# User core (uid 500 as on Flatcar), key-only SSH, passwordless sudo through group sudo.
in_root useradd --create-home --uid 500 --user-group --groups sudo --shell /bin/bash \
    --comment "CoreOS Admin" core
in_root systemctl enable ssh.service systemd-networkd.service
in_root systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
    e2scrub_reap.service fstrim.timer 2>/dev/null || true

# Stand-in only: services with their own short start timeouts wait up to 900 s (slow emulation).
in_root /usr/lib/flatcar-standin/extend-timeouts /usr/lib/systemd/system

# Drivers a VM never needs are not even unpacked (dpkg path-exclude), so that /usr and, above
# all, the initramfs stay small: every MiB of initramfs costs boot time under emulation.
mkdir -p "$R/etc/dpkg/dpkg.cfg.d"
for dir in drivers/net/ethernet drivers/net/wireless drivers/net/wwan drivers/net/can \
           drivers/net/usb drivers/infiniband drivers/gpu drivers/media sound drivers/staging \
           drivers/bluetooth drivers/isdn drivers/thunderbolt; do
    for prefix in /lib/modules /usr/lib/modules; do
        echo "path-exclude=$prefix/*/kernel/$dir/*"
    done
done > "$R/etc/dpkg/dpkg.cfg.d/90-flatcar-standin-modules"

# dracut configuration and module, then the kernel (its postinst runs dracut once).
mkdir -p "$R/etc/dracut.conf.d" "$R/usr/lib/dracut/modules.d"
cp "$F/dracut/90-flatcar-standin.conf" "$R/etc/dracut.conf.d/"
cp -r "$F/dracut/50flatcar-standin" "$R/usr/lib/dracut/modules.d/"
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$KERNEL_PACKAGE"

rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* "$R"/usr/share/doc/* \
       "$R"/usr/share/man/* "$R"/usr/share/locale/*
