#!/bin/bash
# dracut module: composefs-prepare-root, run by systemd in the initramfs
# between sysroot.mount and initrd-root-fs.target (see
# composefs-prepare-root.service for the ordering and the conditions).
#
# The binary is installed from /usr/lib/composefs/composefs-prepare-root, or
# from the path a dracut configuration file gives in composefs_prepare_root=;
# in the initramfs it is always /usr/lib/composefs/composefs-prepare-root.
# /usr/lib/composefs/prepare-root.conf and /etc/composefs/prepare-root.conf
# are taken along when present.

composefs_dest=/usr/lib/composefs/composefs-prepare-root

composefs_source() {
    printf '%s\n' "${composefs_prepare_root:-$composefs_dest}"
}

# Included whenever the tool is installed. The module is installed with the
# tool, so a missing tool is worth a warning: with --add composefs the build
# then fails.
check() {
    local src
    [[ $mount_needs ]] && return 1
    require_binaries "$systemdutildir"/systemd || return 1
    src=$(composefs_source)
    if [[ ! -x $src ]]; then
        dwarn "composefs: $src is missing or not executable (composefs_prepare_root= in a dracut configuration file names another path)"
        return 1
    fi
    return 0
}

depends() {
    echo systemd systemd-initrd
    return 0
}

installkernel() {
    # A host-only build on a host that has not mounted composefs must still
    # get these. loop is for kernels that cannot back EROFS with a file.
    hostonly='' instmods -c erofs overlay loop
    # fs-verity's hashes, on kernels where they are modules.
    hostonly='' instmods crypto-sha256 crypto-sha512
}

install() {
    local src conf
    src=$(composefs_source)
    if ! inst "$src" "$composefs_dest"; then
        dfatal "composefs: cannot install $src"
        return 1
    fi
    for conf in /usr/lib/composefs/prepare-root.conf /etc/composefs/prepare-root.conf; do
        if [[ -e $conf ]]; then
            inst_simple "$conf" || return 1
        fi
    done
    inst_simple "$moddir/composefs-prepare-root.service" \
        "$systemdsystemunitdir/composefs-prepare-root.service" || return 1
    $SYSTEMCTL -q --root "$initdir" add-wants initrd-root-fs.target composefs-prepare-root.service
}
