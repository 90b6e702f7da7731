#!/bin/bash
# The end-to-end demonstration of what gocfs does today: build a composefs
# image and its object store from a directory, inspect it, and (as root, on
# a kernel with EROFS and overlayfs) mount it and read it back.
# Usage: demo.sh BINDIR
set -euo pipefail
bin=$(cd "${1:?usage: demo.sh BINDIR}" && pwd)
work=$(mktemp -d)
mnt=$work/mnt
cleanup() {
    mountpoint -q "$mnt" 2>/dev/null && umount "$mnt"
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "a source tree"
src=$work/src
mkdir -p "$src/etc" "$src/usr/bin" "$src/usr/share/doc"
echo "gocfs demo" > "$src/etc/motd"
head -c 200000 /dev/urandom > "$src/usr/bin/tool"
chmod 755 "$src/usr/bin/tool"
cp "$src/usr/bin/tool" "$src/usr/bin/tool-copy"
seq 1 2000 > "$src/usr/share/doc/numbers"
ln -s ../share/doc/numbers "$src/usr/bin/numbers-link"
find "$src" | sed "s|^$work/||"

step "mkcomposefs --digest-store (image + content-addressed objects)"
digest=$("$bin/mkcomposefs" --digest-store="$work/objects" --print-digest "$src" "$work/image.cfs")
echo "image fs-verity digest: $digest"
echo "image size: $(stat -c %s "$work/image.cfs") bytes"
echo "objects: $(find "$work/objects" -type f | wc -l) (identical files share one)"

step "composefs-info ls / objects / dump"
"$bin/composefs-info" ls "$work/image.cfs"
"$bin/composefs-info" objects "$work/image.cfs"
"$bin/composefs-info" dump "$work/image.cfs" | cut -c1-140

step "the dump rebuilds the identical image"
"$bin/composefs-info" dump "$work/image.cfs" | "$bin/mkcomposefs" --from-file - "$work/rebuilt.cfs"
cmp "$work/image.cfs" "$work/rebuilt.cfs" && echo "byte-identical"

if command -v fsck.erofs >/dev/null; then
    step "fsck.erofs (independent EROFS checker)"
    fsck.erofs "$work/image.cfs" && echo "fsck.erofs: no problems"
fi

if [ "$(id -u)" = 0 ] && grep -qw erofs /proc/filesystems && grep -qw overlay /proc/filesystems; then
    step "mount.composefs: EROFS + overlayfs with the objects as data layer (tier chosen for this kernel)"
    mkdir -p "$mnt"
    "$bin/mount.composefs" "$work/image.cfs" "$mnt" -o "basedir=$work/objects"
    grep " $mnt " /proc/self/mounts || true
    cat "$mnt/etc/motd"
    cmp "$mnt/usr/bin/tool" "$src/usr/bin/tool" && echo "usr/bin/tool: content served from the object store matches"
    listing() { (cd "$1" && find . \( -type d -printf '%p %M %U:%G\n' \) -o -printf '%p %M %U:%G %s %T@\n' | sort); }
    diff <(listing "$src") <(listing "$mnt") \
        && echo "every path, mode, owner, size and mtime matches the source"
    umount "$mnt"

    step "a repository: cfsctl create-image, mount by name, gc, fsck"
    repo=$work/repo
    "$bin/cfsctl" --repo "$repo" init --insecure
    "$bin/cfsctl" --repo "$repo" create-image "$src" demo
    "$bin/cfsctl" --repo "$repo" images
    "$bin/cfsctl" --repo "$repo" mount demo "$mnt"
    cat "$mnt/etc/motd"
    "$bin/cfsctl" --repo "$repo" gc --dry-run
    "$bin/cfsctl" umount "$mnt"
    "$bin/cfsctl" --repo "$repo" fsck
else
    echo "(not root or no erofs/overlay in this kernel: skipping the kernel mounts)"
fi
echo
echo "demo done"
