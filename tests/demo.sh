#!/bin/bash
# The end-to-end demonstration of what gocfs does today: build a composefs
# image and its object store from a directory, inspect it, and (as root, on
# a kernel with EROFS and overlayfs) mount it and read it back. Then, as
# root with QEMU, boot one: an OCI image served by a local registry is
# pulled into a repository on a guest disk and booted by a Debian kernel
# (fetched once into .cache/vm) through composefs-prepare-root, the digest
# coming from an initramfs extension.
# Usage: demo.sh BINDIR
set -euo pipefail
bin=$(cd "${1:?usage: demo.sh BINDIR}" && pwd)
work=$(mktemp -d)
mnt=$work/mnt
reg_pid=
cleanup() {
    mountpoint -q "$mnt" 2>/dev/null && umount "$mnt"
    [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null && wait "$reg_pid" 2>/dev/null
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

# As root on Debian, install what the boot part needs when it is missing:
# QEMU, e2fsprogs (mkfs.ext4 -d), the registry the image is served from, and
# kmod (depmod for the fetched kernel).
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    need=()
    command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
    command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
    command -v docker-registry >/dev/null || need+=(docker-registry)
    command -v depmod >/dev/null || need+=(kmod)
    if [ ${#need[@]} -gt 0 ]; then
        step "installing ${need[*]} for the QEMU boot"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" ||
            { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"; }
    fi
fi

# boot_skip prints why the boot part cannot run here, if it cannot.
boot_skip() {
    if [ "$(id -u)" != 0 ]; then
        echo "not root (the guest disk's tree must be owned by root)"
        return
    fi
    local tool
    for tool in qemu-system-x86_64 mkfs.ext4 docker-registry go; do
        if ! command -v "$tool" >/dev/null; then
            echo "$tool not found (Debian packages qemu-system-x86, e2fsprogs, docker-registry; Go)"
            return
        fi
    done
}
why=$(boot_skip)
if [ -n "$why" ]; then
    echo
    echo "($why: skipping the QEMU boot)"
    echo
    echo "demo done"
    exit 0
fi

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${GOCFS_VM_CACHE:-$root/.cache/vm}

step "a Debian kernel for QEMU (fetched once, not installed)"
bash "$root/tests/vm/fetch-kernels.sh" "$cache" 6.18
kdir=$cache/6.18
krel=$(cat "$kdir/release")

step "an OCI image served by a local registry (its /sbin/init checks the root it finds)"
(cd "$root" && go build -trimpath -ldflags "-s -w" -o "$work/guestinit" ./tests/vm/guestinit &&
    go build -tags containers_image_openpgp -o "$work/demoimage" ./tests/vm/demoimage)
"$work/demoimage" -init "$work/guestinit" -dir "$work/registry" >"$work/ref" 2>"$work/registry.log" &
reg_pid=$!
for _ in $(seq 100); do
    [ -s "$work/ref" ] && break
    kill -0 "$reg_pid" 2>/dev/null || { cat "$work/registry.log" >&2; exit 1; }
    sleep 0.1
done
ref=$(head -n1 "$work/ref")
echo "serving $ref"

step "cfsctl oci pull into a repository on what becomes the guest's disk"
guest=$work/guest
"$bin/cfsctl" --repo "$guest/composefs" init --insecure
"$bin/cfsctl" --repo "$guest/composefs" oci pull --tls-verify=false "$ref" demo | tee "$work/pull"
kill "$reg_pid" && wait "$reg_pid" 2>/dev/null || true
reg_pid=
digest=$(awk '$1 == "image" { print $2 }' "$work/pull")
truncate -s 256M "$work/disk.img"
mkfs.ext4 -q -F -b 4096 -O verity -E root_owner=0:0 -d "$guest" "$work/disk.img"
echo "guest disk: ext4 holding composefs/ (the repository); the image is $digest"

step "a minimal initramfs for Linux $krel, and an extension that pins the image"
"$bin/cfsctl" initramfs build --kernel-release "$krel" --modules-dir "$kdir/lib/modules" \
    --prepare-root "$bin/composefs-prepare-root" -o "$work/initramfs.img"
# The repository has no fs-verity (this host cannot enable it): "?" allows
# the image to boot unverified; without it prepare-root would refuse.
"$bin/cfsctl" initramfs extension --digest "?v1-sha256-12:$digest" -o "$work/ext.cpio"
"$bin/cfsctl" initramfs append "$work/initramfs.img" "$work/ext.cpio" "$work/initramfs-cfs.img"
ls -l "$work/initramfs.img" "$work/ext.cpio" "$work/initramfs-cfs.img" | sed "s|$work/||"

step "boot it in QEMU (TCG): kernel -> initramfs -> composefs-prepare-root -> the image's init"
# No digest on the command line: the extension names the image.
# gocfs.vm.digest only tells the guest's checks what to expect.
timeout 300 qemu-system-x86_64 -accel tcg -nodefaults -no-user-config -display none -serial stdio \
    -no-reboot -m 1024 -kernel "$kdir/vmlinuz" -initrd "$work/initramfs-cfs.img" \
    -drive "file=$work/disk.img,format=raw,if=virtio" \
    -append "console=ttyS0 panic=-1 quiet root=/dev/vda rw gocfs.vm.digest=$digest gocfs.vm.boots=0" |
    tr -d '\r' | tee "$work/console" | grep -E 'composefs-prepare-root|GOCFS-VM' || true
if grep -q "GOCFS-VM-CHECK root PASS overlay composefs:$digest" "$work/console" && ! grep -q "GOCFS-VM-CHECK .* FAIL" "$work/console"; then
    echo "inside the guest, / is the composefs image $digest"
else
    echo "the guest did not boot into the image: console log follows" >&2
    cat "$work/console" >&2
    exit 1
fi
echo
echo "demo done"
