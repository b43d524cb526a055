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

# Deletes every path of ROOT the regex does not keep with bootengine's result (find -xdev -depth,
# never / or /usr; what tests -d goes to rmdir, which fails, and keeps it, while kept contents are
# inside or when it is a symlink; errors ignored) but in batches instead of a process per path,
# which costs seconds under emulation: first everything that is not a directory (their order does
# not matter), then the directories in find's order, contents first. A symlink to a directory is
# tested again when its turn comes, as bootengine tests it then: its target may be gone by then.
# find runs chrooted so that the regex sees ROOT's own paths; rm and rmdir run outside, because
# deleting ROOT's /lib64 breaks every later program started inside the chroot.
selective_reset() {
    local regex=$1 path dirs=() others=() batch=()
    while IFS= read -r -d '' path; do
        case "$path" in / | /usr | /usr/) continue ;; esac
        if [ -d "$R$path" ]; then dirs+=("$R$path"); else others+=("$R$path"); fi
    done < <(chroot "$R" /usr/bin/find / -xdev -depth -regextype egrep -not -regex "$regex" -print0)
    if [ "${#others[@]}" -gt 0 ]; then
        printf '%s\0' "${others[@]}" | xargs -0 rm -f -- || true
    fi
    for path in "${dirs[@]}"; do
        if [ -L "$path" ]; then
            rmdir_batch "${batch[@]}"
            batch=()
            if [ ! -d "$path" ]; then
                rm -f -- "$path" || true
                continue
            fi
        fi
        batch+=("$path")
    done
    rmdir_batch "${batch[@]}"
}

rmdir_batch() {
    if [ "$#" -gt 0 ]; then
        printf '%s\0' "$@" | xargs -0 rmdir -- 2>/dev/null || true
    fi
}

if [ -s "$R/selective-os-reset" ]; then
    log "selective OS reset, keeping $(cat "$R/selective-os-reset")"
    selective_reset "$(cat "$R/selective-os-reset")"
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
