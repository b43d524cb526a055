#!/bin/bash
# initrd-setup-root on the stand-in: what Flatcar's bootengine (dracut/99setup-root) does on every
# boot with ROOT mounted at /sysroot and /sysroot/etc not yet mounted, in the same order:
#   1. a selective OS reset staged by flatcar-reset (/selective-os-reset non-empty): every path of
#      ROOT the kept regex does not match is deleted (find -xdev -depth in a chroot, directories with
#      rmdir so kept contents keep their parents, never /usr, errors ignored), then the marker and
#      /etc/machine-id are removed;
#   2. the base layout of ROOT is recreated (Flatcar: systemd-tmpfiles baselayout rules; stand-in:
#      whatever is missing is copied from /usr/share/factory, never over what is there);
#   3. files of the /etc upper dir identical to the lower dir are dropped (unless
#      /etc/.no-dup-update exists), so that an updated /usr can show its own versions;
#   4. /etc is mounted as an overlay: lower /usr/share/flatcar/etc (USR), upper ROOT's /etc, work
#      dir /.etc-work. Ignition's files stage runs after this, so what it writes lands in the upper dir.
set -e
R=/sysroot
lower=/usr/share/flatcar/etc

log() { echo "initrd-setup-root: $*"; }

# Calls ACTION PATH for every path below TOP on ROOT that find's remaining arguments select,
# contents before their directory. find runs chrooted so that a regex sees ROOT's own paths.
walk_sysroot() {
    local top=$1 action=$2 path
    shift 2
    while IFS= read -r -d '' path; do
        "$action" "$path" || true
    done < <(chroot "$R" /usr/bin/find "$top" -xdev -depth "$@" -print0)
    true
}

delete_unkept() {
    local path=$R$1
    case "$1" in / | /usr | /usr/) return 0 ;; esac
    if [ -d "$path" ]; then
        rmdir "$path" 2>/dev/null || true   # fails while kept contents are inside: they keep it
    else
        rm "$path" || true
    fi
    true
}

if [ -s "$R/selective-os-reset" ]; then
    log "selective OS reset, keeping $(cat "$R/selective-os-reset")"
    walk_sysroot / delete_unkept -regextype egrep -not -regex "$(cat "$R/selective-os-reset")"
    rm -f "$R/selective-os-reset"
    # Without /etc/machine-id systemd sees a first boot; systemd.machine_id= keeps the old ID.
    rm -f "$R/etc/machine-id"
    log "selective OS reset done"
fi

# A user who deleted one of these left a whiteout in the upper dir: drop it so the file is back.
for db in passwd group shadow gshadow; do
    if [ -c "$R/etc/$db" ]; then
        rm -f "$R/etc/$db"
    fi
done

cp -a -n "$R/usr/share/factory/." "$R/"

# Drops an upper-dir entry of /etc that the lower dir holds unchanged (same mode, owner, type and
# contents), unless a parent directory is opaque (recreated by the user). ACLs are not compared:
# the stand-in has no ACL tools (Flatcar also compares them).
same_as_lower() {
    local path=$R$1 shipped=$R$lower${1#/etc}
    [ "$path" != "$R/etc" ] || return 0
    [ -L "$shipped" ] || [ -e "$shipped" ] || return 0
    [ "$(stat -c '%a %u %g %F' "$path")" = "$(stat -c '%a %u %g %F' "$shipped")" ] || return 0
    local dir=$path
    while true; do
        dir=$(dirname "$dir")
        case "$dir" in "$R") break ;; '' | / | .) return 0 ;; esac
        [ "$(getfattr --absolute-names --only-values -n trusted.overlay.opaque "$dir" 2>/dev/null)" != y ] || return 0
    done
    if [ -L "$path" ]; then
        [ "$(readlink "$path")" != "$(readlink "$shipped")" ] || rm "$path" || true
    elif [ -d "$path" ]; then
        if [ "$(getfattr --absolute-names --only-values -n trusted.overlay.opaque "$path" 2>/dev/null)" != y ]; then
            rmdir "$path" 2>/dev/null || true
        fi
    elif [ -f "$path" ]; then
        ! cmp -s "$path" "$shipped" || rm "$path" || true
    fi
    true
}

mkdir -p "$R/etc"
if [ ! -e "$R/etc/.no-dup-update" ]; then
    walk_sysroot /etc same_as_lower
fi

if ! mountpoint -q "$R/etc"; then
    mkdir -p "$R/.etc-work"
    mount -t overlay overlay \
        -o "lowerdir=$R$lower,upperdir=$R/etc,workdir=$R/.etc-work,redirect_dir=on,metacopy=off,noatime" "$R/etc"
fi
log "/etc is an overlay: lower $lower, upper ROOT's /etc, work dir /.etc-work"
