package ocibuild

import (
	"fmt"
	"strings"
)

// baseTime is the mtime of the fixture images' entries, give or take.
const baseTime = 1700000000

// BaseImage is a 5-layer image that exercises what layers can do: every
// file type, inline and external files (64 and 65 bytes, and a file large
// enough for a two-level Merkle tree), duplicate content, hardlinks within
// and across layers, a replaced hardlinked file, whiteouts of files and of a
// whole directory, an opaque directory, a directory turned into a symlink
// and a file into a directory, directory metadata updated by a later layer,
// xattrs that are kept (security.capability, binary) and dropped, setuid and
// sticky bits, a PAX uid, long names and link targets, names that need
// escaping, a non-empty /run, a root directory entry, and all three
// compressions with GNU record padding on one layer.
func BaseImage() *Image {
	long := strings.Repeat("d", 60) + `/` + strings.Repeat("f", 80)
	longTarget := strings.Repeat("../", 10) + strings.Repeat("t", 90)
	return &Image{
		Created:     baseTime + 1000,
		Cmd:         []string{"/bin/sh"},
		Labels:      map[string]string{"org.opencontainers.image.title": "gocfs base fixture"},
		Annotations: map[string]string{"org.opencontainers.image.description": "gocfs base fixture"},
		Layers: []Layer{
			{Compression: Gzip, Entries: MustParseEntries(`
/                        dir mode=0700
/usr                     dir
/usr/bin                 dir
/usr/bin/busybox         file mode=0755 size=300000 seed=1
/usr/bin/cp              hardlink target=/usr/bin/busybox
/usr/bin/sh              symlink target=busybox
/usr/lib                 dir
/usr/lib/libc.so.6       file mode=0755 size=1500000 seed=2
/usr/lib/os-release      file content=NAME=gocfs\nID=gocfs\n
/usr/share               dir
/usr/share/doc           dir
/usr/share/doc/README    file size=5000 seed=3
/usr/share/doc/old       file content=old
/etc                     dir
/etc/hostname            file content=base\n
/etc/passwd              file content=root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n
/etc/exactly64           file size=64 seed=4
/etc/exactly65           file size=65 seed=5
/etc/empty               file
/etc/old.conf            file content=stale
/bin                     symlink target=usr/bin
/dev                     dir
/dev/null                char rdev=1:3 mode=0666
/dev/sda                 block rdev=8:0 mode=0660 gid=6
/dev/initctl             fifo mode=0600
/tmp                     dir mode=1777
/run                     dir
/run/lock                dir
/run/lock/stale          file content=1234
/opt                     dir
/opt/legacy              dir
/opt/legacy/a            file size=100 seed=6
/opt/legacy/b            file content=b
/var                     dir
/var/tmp                 dir mode=1777
`, baseTime)},
			{Compression: Zstd, Entries: append(MustParseEntries(`
/usr                     dir mtime=1700000100 xattr.user.comment=usr
/usr/bin/ping            file mode=04755 size=2000 seed=7 xattr.security.capability=\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00 xattr.security.selinux=system_u:object_r:ping_exec_t:s0
/usr/bin/ls              hardlink target=/usr/bin/busybox
/usr/share/doc/duplicate file size=5000 seed=3
/etc/hostname            file content=layer2\n
/etc/group               file content=root:x:0:\n
/home                    dir
/home/user               dir mode=0700 uid=1000 gid=1000
/home/user/.profile      file uid=1000 gid=1000 content=export\sPATH\n
/home/user/with\sspace\s=\sand\x5c  file uid=1000 gid=1000 content=odd\sname
/home/user/ünïcødé       file uid=1000 gid=1000 content=utf-8
/home/big-ids            file uid=3000000 gid=4000000 content=ids
/var/tmp                 symlink target=../tmp
`, baseTime+100),
				Entry{Path: "/home/user/" + long[:60], Type: Dir, Mode: 0o755, UID: 1000, GID: 1000, Mtime: baseTime + 100},
				Entry{Path: "/home/user/" + long, Type: File, Mode: 0o644, Size: 4097, Seed: 12, Mtime: baseTime + 100},
				Entry{Path: "/home/user/longlink", Type: Symlink, Mode: 0o777, Target: longTarget, Mtime: baseTime + 100},
			)},
			{Compression: Uncompressed, RecordPadding: true, Entries: MustParseEntries(`
/etc                     dir mode=0750 mtime=1700000300
/etc/old.conf            whiteout
/opt/legacy              whiteout
/usr/share/doc           opaque
/usr/share/doc/NEW       file size=3000 seed=8
/usr/bin/busybox         file mode=0755 size=310000 seed=9
/tmp/nothing             whiteout
`, baseTime+300)},
			{Compression: Gzip, Entries: MustParseEntries(`
/etc/exactly65           dir
/etc/exactly65/inside    file content=x
/run/newstuff            file content=run
/usr/local               dir
/usr/local/bin           dir
/usr/local/bin/tool      file mode=0755 size=70000 seed=10
`, baseTime+400)},
			{Compression: Gzip, Entries: MustParseEntries(`
/usr                     dir mtime=1700000500
/etc/hostname            file content=final\n
/usr/bin/cp              whiteout
/var/lib                 dir
/var/lib/data            file size=200000 seed=11
/var/lib/data-copy       file mode=0600 size=200000 seed=11
`, baseTime+500)},
		},
	}
}

// BootableImage is a 20-layer bootable image (/boot, /sysroot, /usr, /etc,
// a static init placeholder, a kernel and its modules) in two versions,
// 1 and 2, that share their first 17 layers and differ in the last three
// (kernel and modules, /boot content, release files and an updated
// library).
func BootableImage(version int) *Image {
	if version != 1 && version != 2 {
		panic(fmt.Sprintf("BootableImage: no version %d", version))
	}
	t := int64(baseTime + 10000)
	layers := []Layer{{Compression: Gzip, Entries: MustParseEntries(`
/usr            dir
/usr/bin        dir
/usr/sbin       dir
/usr/lib        dir
/usr/lib/modules dir
/usr/share      dir
/usr/share/doc  dir
/etc            dir
/boot           dir
/sysroot        dir
/var            dir
/var/lib        dir
/run            dir
/tmp            dir mode=1777
/home           dir
/root           dir mode=0700
/proc           dir mode=0555
/sys            dir mode=0555
/dev            dir
/bin            symlink target=usr/bin
/sbin           symlink target=usr/sbin
/lib            symlink target=usr/lib
`, t)}, {Compression: Gzip, Entries: MustParseEntries(`
/usr/sbin/init            file mode=0755 size=150000 seed=100
/usr/lib/systemd          dir
/usr/lib/systemd/systemd  hardlink target=/usr/sbin/init
/etc/fstab                file content=#\sempty\n
`, t+1)}}
	// Layers 3 to 16 install a "package" each.
	for k := 3; k <= 16; k++ {
		c := Gzip
		if k == 7 {
			c = Zstd
		}
		layers = append(layers, Layer{Compression: c, Entries: pkgEntries(k, uint64(1000*k), t+int64(k))})
	}
	layers = append(layers, Layer{Compression: Gzip, Entries: MustParseEntries(`
/etc/pkg4.conf           whiteout
/usr/share/doc/pkg5      opaque
/usr/share/doc/pkg5/NEWS file size=300 seed=17000
/etc/motd                file content=welcome\n
`, t+17)})

	v := uint64(version)
	kver := fmt.Sprintf("6.1.0-%d", version)
	tv := t + 100*int64(version)
	layers = append(layers,
		Layer{Compression: Gzip, Entries: MustParseEntries(fmt.Sprintf(`
/usr/lib/modules/%[1]s             dir
/usr/lib/modules/%[1]s/vmlinuz     file size=400000 seed=%[2]d
/usr/lib/modules/%[1]s/modules.dep file content=kernel/fs/erofs/erofs.ko:\n
/usr/lib/modules/%[1]s/kernel      dir
/usr/lib/modules/%[1]s/kernel/erofs.ko file size=90000 seed=%[3]d
`, kver, 18000+v, 18100+v), tv+18)},
		Layer{Compression: Zstd, Entries: MustParseEntries(fmt.Sprintf(`
/boot/vmlinuz-%[1]s                file mode=0600 size=400000 seed=%[2]d
/boot/initramfs-%[1]s.img          file mode=0600 size=120000 seed=%[3]d
/boot/loader                       dir
/boot/loader/entries               dir
/boot/loader/entries/gocfs-%[1]s.conf file content=title\sgocfs\s%[1]s\nlinux\s/vmlinuz-%[1]s\n
/sysroot/ostree                    dir
/sysroot/ostree/placeholder        file content=x
`, kver, 18000+v, 19100+v), tv+19)},
		Layer{Compression: Gzip, Entries: MustParseEntries(fmt.Sprintf(`
/usr/lib/os-release        file content=NAME=gocfs\nVERSION_ID=%[1]d\n
/etc/os-release            symlink target=../usr/lib/os-release
/usr/lib/pkg5/lib.so       file mode=0755 size=50000 seed=%[2]d
/var/lib/version           file content=%[1]d
`, version, 20000+v), tv+20)},
	)
	return &Image{
		Created: tv + 21,
		Cmd:     []string{"/usr/sbin/init"},
		Labels:  map[string]string{"containers.bootc": "1", "version": fmt.Sprint(version)},
		Layers:  layers,
	}
}

// pkgEntries is the content of package k: a library, a tool, small and
// medium files, documentation and a configuration file.
func pkgEntries(k int, seed uint64, mtime int64) []Entry {
	return MustParseEntries(fmt.Sprintf(`
/usr/lib/pkg%[1]d              dir
/usr/lib/pkg%[1]d/lib.so       file mode=0755 size=%[3]d seed=%[2]d
/usr/lib/pkg%[1]d/data.bin     file size=%[4]d seed=%[5]d
/usr/lib/pkg%[1]d/small        file size=40 seed=%[6]d
/usr/bin/tool%[1]d             file mode=0755 size=12000 seed=%[7]d
/usr/bin/alias%[1]d            symlink target=tool%[1]d
/usr/share/doc/pkg%[1]d        dir
/usr/share/doc/pkg%[1]d/README file size=900 seed=%[8]d
/etc/pkg%[1]d.conf             file content=enabled=%[1]d\n
`, k, seed, 20000+1000*k, 4096*k, seed+1, seed+2, seed+3, seed+4), mtime)
}
