#!/bin/bash
# mkdracut.sh KERNEL_RELEASE MODULES_ROOT PREPARE_ROOT_BINARY OUT
#
# Builds a systemd-based dracut initramfs holding composefs-prepare-root and
# the project's dracut module (dracut/modules.d/37composefs), for a kernel
# that is not installed on this system:
#
#   KERNEL_RELEASE       the kernel's release, e.g. 6.18.15+deb13-amd64
#   MODULES_ROOT         a tree holding usr/lib/modules/KERNEL_RELEASE or
#                        lib/modules/KERNEL_RELEASE with depmod done (dpkg -x
#                        of Debian's kernel package, then depmod -b)
#   PREPARE_ROOT_BINARY  the composefs-prepare-root to put in the initramfs
#                        ("-" when the composefs module is not added)
#   OUT                  the initramfs: gzip-compressed when the name ends
#                        in .gz, a plain newc cpio archive otherwise
#
# The initramfs is dracut's generic one (--no-hostonly: nothing of this
# machine's disks or command line), with two cuts that make a QEMU boot
# faster under TCG: its kernel drivers are only virtio_blk, virtio_pci and
# ext4 (--drivers, where dracut would otherwise take every storage, USB and
# input driver), and the storage layers a test guest has none of (btrfs,
# crypt, dm, lvm, md, multipath, nvdimm) are left out, as their probing
# costs seconds. Without early microcode and unstripped, it is one cpio
# archive whose composefs-prepare-root is PREPARE_ROOT_BINARY byte for byte.
#
# dracut is not installed: on Debian, installing the dracut package removes
# initramfs-tools. Debian's dracut-core package is downloaded with apt-get,
# through private package lists (the system's sources, its lists untouched),
# and extracted once into $GOCFS_DRACUT_CACHE (default
# ~/.cache/gocfs/dracut); each build runs that dracut on a temporary copy of
# its module directory with our module added, and reads no dracut
# configuration of this system.
#
# GOCFS_DRACUT_MODULES, if set, lists the dracut modules added instead of
# the default "composefs" (the project's module): any other name is copied
# from this system's /usr/lib/dracut/modules.d, as NNname; "ostree" takes
# 98ostree of Debian's ostree-boot package, with the stock
# ostree-prepare-root.
#
# Requirements: Debian 12 or later, run as root; apt-get and dpkg; network
# access to the Debian archive the first time; and what dracut copies into
# the initramfs from this system: systemd, udev, kmod, util-linux, bash,
# cpio and gzip (apt-get install systemd udev kmod cpio).
set -euo pipefail

usage() {
    echo "usage: $0 KERNEL_RELEASE MODULES_ROOT PREPARE_ROOT_BINARY OUT" >&2
    exit 2
}
[ $# -eq 4 ] || usage
kver=$1 modroot=$2 prepare_root=$3 out=$4

die() {
    echo "mkdracut: $*" >&2
    exit 1
}

here=$(cd "$(dirname "$0")" && pwd)
modules=${GOCFS_DRACUT_MODULES:-composefs}
module_srcs=()
with_composefs=false
for m in $modules; do
    case $m in
    composefs)
        with_composefs=true
        src=$here/../../dracut/modules.d/37composefs
        ;;
    *[!a-z0-9_-]*) die "GOCFS_DRACUT_MODULES: bad module name \"$m\"" ;;
    *)
        src=
        for d in /usr/lib/dracut/modules.d/[0-9][0-9]"$m"; do
            [ -d "$d" ] && src=$d
        done
        [ -n "$src" ] || die "no dracut module $m in /usr/lib/dracut/modules.d (for ostree: apt-get install ostree-boot)"
        ;;
    esac
    [ -f "$src/module-setup.sh" ] || die "no dracut module at $src"
    module_srcs+=("$src")
done
[ ${#module_srcs[@]} -gt 0 ] || die "GOCFS_DRACUT_MODULES names no module"

kmoddir=
for d in "$modroot/usr/lib/modules/$kver" "$modroot/lib/modules/$kver"; do
    if [ -d "$d" ]; then
        kmoddir=$(cd "$d" && pwd)
        break
    fi
done
[ -n "$kmoddir" ] || die "$modroot holds neither usr/lib/modules/$kver nor lib/modules/$kver"
[ -f "$kmoddir/modules.dep" ] || die "$kmoddir/modules.dep is missing: run depmod -b $modroot $kver"
if $with_composefs; then
    [ -x "$prepare_root" ] || die "$prepare_root is not an executable file"
    prepare_root=$(cd "$(dirname "$prepare_root")" && pwd)/$(basename "$prepare_root")
fi
for tool in apt-get dpkg cpio gzip flock systemctl udevadm modprobe findmnt; do
    command -v "$tool" >/dev/null || die "$tool not found (see the requirements at the top of $0)"
done

# Debian's dracut-core, extracted once per cache; the lock keeps builds
# running side by side from fetching into each other.
cache=${GOCFS_DRACUT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gocfs/dracut}
dracut_root=$cache/root
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ ! -x "$dracut_root/usr/bin/dracut" ]; then
    apt_dir=$cache/apt
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$cache/debs"
    apt_opts=(-q -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
        -o APT::Sandbox::User=root -o Acquire::Languages=none)
    apt-get "${apt_opts[@]}" update >/dev/null
    rm -f "$cache"/debs/dracut-core_*.deb
    (cd "$cache/debs" && apt-get "${apt_opts[@]}" download dracut-core >/dev/null)
    rm -rf "$dracut_root.new"
    mkdir -p "$dracut_root.new"
    dpkg -x "$cache"/debs/dracut-core_*.deb "$dracut_root.new"
    rm -rf "$dracut_root"
    mv "$dracut_root.new" "$dracut_root"
fi
flock -u 9

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/conf.d" "$work/tmp"
cp -a "$dracut_root/usr/lib/dracut" "$work/base"
cp -a "${module_srcs[@]}" "$work/base/modules.d/"
if $with_composefs; then
    # Where the module takes the binary from; dracut configuration files
    # are shell, so the path is quoted for it.
    printf 'composefs_prepare_root=%q\n' "$prepare_root" >"$work/conf.d/composefs.conf"
fi

compress=--no-compress
case $out in
*.gz) compress=--gzip ;;
esac

outdir=$(cd "$(dirname "$out")" && pwd)
tmpout=$(mktemp "$outdir/.$(basename "$out").XXXXXX")
trap 'rm -rf "$work" "$tmpout"' EXIT

# A clean environment: dracut reads several variables (dracutbasedir,
# DRACUT_PATH, systemd directories...) that must come from here only.
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$HOME" LANG=C.UTF-8 \
    dracutbasedir="$work/base" \
    bash "$dracut_root/usr/bin/dracut" \
    --quiet --force \
    --conf /dev/null --confdir "$work/conf.d" --tmpdir "$work/tmp" \
    --kver "$kver" --kmoddir "$kmoddir" \
    --no-hostonly --no-hostonly-cmdline --no-early-microcode --nostrip --reproducible \
    --add "$modules" --drivers "virtio_blk virtio_pci ext4" \
    --omit "btrfs crypt dm dmraid lvm mdraid multipath nvdimm" \
    "$compress" "$tmpout"
chmod 0644 "$tmpout"
mv -f "$tmpout" "$out"
