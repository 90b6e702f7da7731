#!/bin/bash
# Fetches the Debian kernels the boot tests run on, without installing them
# and without touching the system's apt configuration: each suite gets apt
# lists and a package cache of its own under the cache directory, the
# kernel package is downloaded (apt checks it against the signed index) and
# unpacked with dpkg -x, and depmod writes the modules.dep the package does
# not ship.
#
# Usage: fetch-kernels.sh [CACHEDIR [NAME...]]
#   CACHEDIR defaults to .cache/vm at the repository root; without NAMEs,
#   every kernel below is fetched.
#
# For each kernel NAME it leaves CACHEDIR/NAME/ with
#   vmlinuz              the kernel
#   release              its release (uname -r)
#   lib/modules/RELEASE/ the module tree, with modules.dep and the rest of depmod's files
#
#   6.1   bookworm: what linux-image-amd64 depends on
#   6.12  bookworm-backports: what linux-image-amd64 depends on
#   6.18  trixie-backports: linux-image-6.18.15+deb13-amd64, or what
#         linux-image-amd64 depends on once backports has dropped it (from
#         6.19 on the kernel and modules are split into linux-binary-,
#         linux-modules- and linux-base- packages)
#
# A kernel already in the cache is left alone; delete its directory to fetch
# it again. The mirror is the first Debian archive in the system's apt
# sources (DEBIAN_MIRROR overrides it, the archive root such as
# http://deb.debian.org/debian). On a system without apt, dpkg or depmod it
# prints SKIP and exits 0: the boot tests then skip too.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${1:-$root/.cache/vm}
shift || true
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(6.1 6.12 6.18)
pinned_618=6.18.15+deb13-amd64
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

for tool in apt-get apt-cache dpkg depmod; do
    if ! command -v "$tool" >/dev/null; then
        echo "SKIP fetch-kernels: $tool not found (Debian's apt, dpkg and kmod are needed)"
        exit 0
    fi
done
if [ ! -r "$keyring" ]; then
    echo "SKIP fetch-kernels: $keyring missing (package debian-archive-keyring)"
    exit 0
fi

# mirror prints the first Debian archive URI of the system's apt sources,
# one-line (.list) or deb822 (.sources), leaving out the security archive.
mirror() {
    local f uri
    shopt -s nullglob
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/ && $i !~ /=/) { print $i; break } }' "$f" |
            grep -E '/debian/?$' | head -n1 || true)
        [ -n "$uri" ] && { echo "${uri%/}"; return; }
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        uri=$(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f" |
            grep -E '/debian/?$' | head -n1 || true)
        [ -n "$uri" ] && { echo "${uri%/}"; return; }
    done
    echo http://deb.debian.org/debian
}
archive=${DEBIAN_MIRROR:-$(mirror)}

# fetch NAME SUITE PACKAGE: PACKAGE is a linux-image-ABI name, or
# "linux-image-amd64" for whatever ABI the suite's metapackage depends on.
fetch() {
    local name=$1 suite=$2 want=$3
    local dest=$cache/$name
    if [ -f "$dest/release" ] && [ -f "$dest/vmlinuz" ] && [ -f "$dest/lib/modules/$(cat "$dest/release")/modules.dep" ]; then
        echo "kernel $name: $(cat "$dest/release") (cached in $dest)"
        return
    fi
    local work=$cache/.work-$name
    rm -rf "$work"
    local apt=$work/apt
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/empty" "$work/debs"
    echo "deb [signed-by=$keyring] $archive $suite main" >"$apt/sources.list"
    local o=(-o "Dir::State::Lists=$apt/lists" -o "Dir::Etc::SourceList=$apt/sources.list"
        -o "Dir::Etc::SourceParts=$apt/empty" -o "Dir::Cache=$apt/cache"
        -o Dir::Etc::Preferences=/dev/null -o "Dir::Etc::PreferencesParts=$apt/empty"
        -o Acquire::Languages=none -o APT::Architecture=amd64 -o APT::Architectures=amd64)
    [ "$(id -u)" = 0 ] && o+=(-o APT::Sandbox::User=root)
    echo "kernel $name: reading $archive $suite"
    apt-get "${o[@]}" -q update >"$work/update.log" 2>&1 || { cat "$work/update.log" >&2; return 1; }

    local abi
    if [ "$want" != linux-image-amd64 ] && apt-cache "${o[@]}" show "$want" >/dev/null 2>&1; then
        abi=${want#linux-image-}
    else
        [ "$want" != linux-image-amd64 ] && echo "kernel $name: $want is not in $suite any more, taking the newest"
        abi=$(apt-cache "${o[@]}" depends linux-image-amd64 |
            awk '/Depends: linux-image-[0-9]/ { sub("linux-image-", "", $2); if ($2 !~ /unsigned/) { print $2; exit } }')
        [ -n "$abi" ] || { echo "kernel $name: no linux-image-amd64 in $suite" >&2; return 1; }
    fi
    local pkgs=("linux-image-$abi")
    if apt-cache "${o[@]}" show "linux-binary-$abi" >/dev/null 2>&1; then
        pkgs=("linux-binary-$abi" "linux-modules-$abi" "linux-base-$abi")
    fi
    echo "kernel $name: downloading ${pkgs[*]}"
    (cd "$work/debs" && apt-get "${o[@]}" -q download "${pkgs[@]}" >"$work/download.log" 2>&1) ||
        { cat "$work/download.log" >&2; return 1; }

    local tree=$work/root
    mkdir -p "$tree"
    local p
    for p in "${pkgs[@]}"; do
        dpkg -x "$work/debs/${p}"_*.deb "$tree"
    done
    # depmod -b looks in BASE/lib/modules; merged-/usr packages put the
    # modules in usr/lib/modules.
    if [ -d "$tree/usr/lib/modules/$abi" ] && [ ! -e "$tree/lib" ]; then
        ln -s usr/lib "$tree/lib"
    fi
    depmod -b "$tree" "$abi"
    local kernel=$tree/boot/vmlinuz-$abi
    [ -f "$kernel" ] || kernel=$tree/lib/modules/$abi/vmlinuz
    [ -f "$kernel" ] || { echo "kernel $name: no vmlinuz in ${pkgs[*]}" >&2; return 1; }

    local out=$work/out
    mkdir -p "$out/lib/modules"
    mv "$kernel" "$out/vmlinuz"
    mv "$(readlink -f "$tree/lib/modules/$abi")" "$out/lib/modules/$abi"
    echo "$abi" >"$out/release"
    rm -rf "$dest"
    mv "$out" "$dest"
    rm -rf "$work"
    echo "kernel $name: $abi in $dest"
}

mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
for name in "${names[@]}"; do
    case $name in
    6.1) fetch 6.1 bookworm linux-image-amd64 ;;
    6.12) fetch 6.12 bookworm-backports linux-image-amd64 ;;
    6.18) fetch 6.18 trixie-backports "linux-image-$pinned_618" ;;
    *)
        echo "fetch-kernels: unknown kernel $name (6.1, 6.12 or 6.18)" >&2
        exit 2
        ;;
    esac
done
