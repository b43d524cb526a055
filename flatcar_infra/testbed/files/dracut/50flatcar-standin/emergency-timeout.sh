# Sourced by dracut-emergency (emergency hook) before it starts a shell. Like Flatcar's
# 99emergency-timeout: when Ignition failed, show its log on the console; then offer the emergency
# shell and, with no key press, reboot after 5 minutes. The first-boot flag is still set, so the
# next boot runs Ignition again with whatever the config source then serves.
#
# The one documented deviation of the stand-in: a test may shorten the wait by giving QEMU the
# fw_cfg file opt/org.flatcar-infra/emergency-timeout (seconds), e.g. VmFactory.boot(...,
# emergency_timeout=20). Without it the wait is Flatcar's 300 s.

_fi_emergency_wait() {
    local timeout=300 interval=15 knob answer left minutes seconds label
    [ -e /.emergency-shell-confirmed ] && return 0

    knob=/sys/firmware/qemu_fw_cfg/by_name/opt/org.flatcar-infra/emergency-timeout/raw
    modprobe -q qemu_fw_cfg 2>/dev/null
    if [ -r "$knob" ]; then
        answer=$(cat "$knob")
        case "$answer" in '' | *[!0-9]*) ;; *) timeout=$((10#$answer)) ;; esac  # zero-padded decimal
    fi

    if systemctl show ignition-setup.service ignition-fetch-offline.service ignition-fetch.service \
        ignition-disks.service ignition-mount.service ignition-files.service | grep -q '^ActiveState=failed$'; then
        # Keep the kernel quiet and let systemd's last lines pass, so that the log stays readable.
        dmesg --console-off
        sleep 3
        echo "-------------------------------------------------------------------------------"
        echo "Ignition has failed. Check the config with ignition-validate; this Ignition accepts"
        echo "config spec 3.0.0 to 3.3.0. Ignition's log:"
        journalctl -t ignition --no-pager --no-hostname -o cat
        echo "-------------------------------------------------------------------------------"
    fi

    left=$timeout
    while [ "$left" -gt 0 ]; do
        minutes=$((left / 60)) seconds=$((left % 60)) label=minutes
        [ "$minutes" = 1 ] && label=minute
        if [ "$seconds" != 0 ]; then
            echo -n -e "Press Enter for emergency shell or wait $minutes $label $seconds seconds for reboot.      \r"
        else
            echo -n -e "Press Enter for emergency shell or wait $minutes $label for reboot.                 \r"
        fi
        [ "$interval" -le "$left" ] || interval=$left
        if read -r -t "$interval" answer; then
            : > /.emergency-shell-confirmed
            return 0
        fi
        left=$((left - interval))
    done
    echo -e "\nRebooting."
    # reboot.target would conflict with the emergency target's goal: force it.
    systemctl reboot --force
    exit 0
}

_fi_emergency_wait < /dev/console > /dev/console 2>&1
