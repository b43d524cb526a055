#!/bin/bash
# Glue that makes Debian's Ignition dracut module (30ignition) follow Flatcar's boot contract:
# config source precedence (ignition.config.url > /oem/config.ign > platform user-data), the
# selective OS reset staged by flatcar-reset, refilling ROOT from /usr/share/factory, and clearing
# the first_boot flag once Ignition succeeded.

check() { return 0; }

depends() { echo ignition; }

install_unit() {
    inst_simple "$moddir/$1" "$systemdsystemunitdir/$1"
    mkdir -p "$initdir/$systemdsystemunitdir/ignition-complete.target.requires"
    ln_r "$systemdsystemunitdir/$1" "$systemdsystemunitdir/ignition-complete.target.requires/$1"
}

install() {
    # Debian's Ignition is built with SELinux relabelling: give it a no-op setfiles.
    inst_script "$moddir/setfiles-stub.sh" /usr/sbin/setfiles
    inst_script "$moddir/flatcar-ignition-source.sh" /usr/sbin/flatcar-ignition-source
    inst_script "$moddir/flatcar-selective-reset.sh" /usr/sbin/flatcar-selective-reset
    inst_script "$moddir/flatcar-setup-root.sh" /usr/sbin/flatcar-setup-root
    inst_script "$moddir/flatcar-first-boot-done.sh" /usr/sbin/flatcar-first-boot-done
    inst_script /usr/lib/flatcar/reset-paths /usr/lib/flatcar/reset-paths
    inst_multiple bash mount umount cp mkdir rm rmdir ln chmod sed grep find sort cat tr printf xargs
    for unit in flatcar-ignition-source.service flatcar-selective-reset.service \
                flatcar-setup-root.service flatcar-selinux-stub.service \
                flatcar-first-boot-done.service; do
        install_unit "$unit"
    done
}
