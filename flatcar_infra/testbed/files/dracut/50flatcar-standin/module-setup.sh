#!/bin/bash
# The stand-in's initramfs glue around Debian's Ignition dracut module (30ignition), following
# Flatcar's bootengine: ignition-setup (/oem/config.ign -> /usr/lib/ignition/user.ign),
# initrd-setup-root (selective reset, base layout, the /etc overlay; every boot), ignition-quench
# (first_boot removed after the disks and files stages), the emergency timeout (reboot after
# 5 minutes when Ignition failed), and generous timeouts for software emulation.

check() { return 0; }

depends() { echo ignition; }

require_unit() {  # install UNIT and make TARGET require it
    local unit=$1 target=$2
    inst_simple "$moddir/$unit" "$systemdsystemunitdir/$unit"
    mkdir -p "$initdir/$systemdsystemunitdir/$target.requires"
    ln_r "$systemdsystemunitdir/$unit" "$systemdsystemunitdir/$target.requires/$unit"
}

install() {
    # Debian's Ignition is built with SELinux relabelling: give it a no-op setfiles.
    inst_script "$moddir/setfiles-stub.sh" /usr/sbin/setfiles
    inst_script "$moddir/ignition-setup.sh" /usr/sbin/ignition-setup
    inst_script "$moddir/initrd-setup-root.sh" /sbin/initrd-setup-root
    inst_multiple bash mount umount mountpoint cp mkdir rm rmdir chroot cat stat cmp readlink \
        dirname getfattr dmesg journalctl sleep modprobe grep xargs

    require_unit ignition-setup.service ignition-complete.target
    require_unit ignition-quench.service ignition-complete.target
    require_unit initrd-setup-root.service initrd.target
    inst_simple "$moddir/boot.mount" "$systemdsystemunitdir/boot.mount"
    for unit in ignition-mount.service ignition-files.service; do
        inst_simple "$moddir/ignition-needs-setup-root.conf" \
            "$systemdsystemunitdir/$unit.d/10-flatcar-setup-root.conf"
    done

    inst_hook emergency 99 "$moddir/emergency-timeout.sh"

    # Generous waits under software emulation (stand-in only; see the README).
    inst_simple /usr/lib/systemd/system.conf.d/50-flatcar-standin-timeouts.conf
    inst_simple /etc/udev/udev.conf
    /usr/lib/flatcar-standin/extend-timeouts "$initdir$systemdsystemunitdir"
    inst_simple "$moddir/standin-timeouts.cmdline.conf" /etc/cmdline.d/50-flatcar-standin-timeouts.conf
}
