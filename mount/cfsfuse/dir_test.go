package cfsfuse

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/scan"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/store/objects"
	"github.com/gocfs/gocfs/tests/treecheck"
)

// TestDirectorySources builds images from generated directories (every
// file type, boundary sizes, hardlinks, whiteouts, xattrs and ACLs, odd
// names and owners) with their objects stored as a directory scan stores
// them, and compares what cfsmount shows with the source directory and
// the kernel's mount.
func TestDirectorySources(t *testing.T) {
	requireRoot(t) // the trees hold devices, foreign owners and trusted xattrs
	requireFUSE(t)
	sources := []struct {
		name string
		make func(t *testing.T, dir string)
	}{
		{"handmade", makeHandmadeTree},
		{"mktree10", func(t *testing.T, dir string) { treecheck.MakeMktree(t, dir, 10) }},
	}
	for _, src := range sources {
		for _, epoch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/epoch=%v", src.name, epoch), func(t *testing.T) {
				t.Parallel()
				work := t.TempDir()
				dir := filepath.Join(work, "src")
				src.make(t, dir)
				store := fastTempDir(t)
				st, err := objects.OpenDir(store, true)
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				root, err := scan.Dir(dir, scan.Options{UseEpoch: epoch, Threads: 2, Store: st})
				if err != nil {
					t.Fatal(err)
				}
				imgPath := writeImage(t, work, root, erofs.WriteOptions{})
				info := loadImage(t, imgPath).Info()

				// The builds with epoch mtimes are also served without
				// passthrough, as for unprivileged mounts.
				opts := Options{ObjectDirs: []string{store}, Verify: true, NoPassthrough: epoch}
				got := takeSnapshot(mountFUSE(t, imgPath, opts))
				ondisk := func(p string, _ *tree.Inode) string { return contentSum(filepath.Join(dir, p), make([]byte, 64<<10)) }
				compareExpected(t, "cfsmount vs source", got, expectTree(root, info, ondisk))
				compareExact(t, "cfsmount vs kernel", got, takeSnapshot(mountKernel(t, imgPath, store)))
			})
		}
	}
}

// makeHandmadeTree creates a small tree with every file type, the
// boundary sizes composefs cares about and the xattrs the overlay view
// transforms.
func makeHandmadeTree(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "a/b/c/d/e/f"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "wh"), 0o750))
	must(os.MkdirAll(filepath.Join(dir, "opaque"), 0o700))
	for _, size := range []int{0, 1, 64, 65, 4095, 4096, 4097, 1<<20 + 3, 3 << 20} {
		data := bytes.Repeat([]byte{byte(size), byte(size >> 8), 7}, size/3+1)[:size]
		must(os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", size)), data, 0o644))
	}
	must(os.WriteFile(filepath.Join(dir, "a/b/c/d/e/f/deep"), []byte(strings.Repeat("deep file content ", 10)), 0o600))
	must(os.Link(filepath.Join(dir, "f4096"), filepath.Join(dir, "a/hardlink")))
	must(os.Symlink("../f1", filepath.Join(dir, "a/rel")))
	must(os.Symlink("/etc/passwd", filepath.Join(dir, "abs")))
	must(os.Symlink(strings.Repeat("x", 4000), filepath.Join(dir, "long-dangling")))
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	must(unix.Mknod(filepath.Join(dir, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Mknod(filepath.Join(dir, "blk"), unix.S_IFBLK|0o660, int(unix.Mkdev(259, 1<<19))))
	must(unix.Mknod(filepath.Join(dir, "wh/gone"), unix.S_IFCHR, 0))
	must(unix.Mknod(filepath.Join(dir, "00"), unix.S_IFCHR|0o600, 0))
	must(os.WriteFile(filepath.Join(dir, "0a"), []byte("shadows a root whiteout"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "odd name\twith\nbytes\xff"), []byte("x"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "x"), []byte("xattrs"), 0o644))
	must(unix.Lsetxattr(filepath.Join(dir, "x"), "user.a", []byte("1"), 0))
	must(unix.Lsetxattr(filepath.Join(dir, "x"), "user.empty", nil, 0))
	must(unix.Lsetxattr(filepath.Join(dir, "x"), "trusted.b", []byte("two"), 0))
	must(unix.Lsetxattr(filepath.Join(dir, "x"), "security.c", []byte("three\x00"), 0))
	must(unix.Lsetxattr(filepath.Join(dir, "x"), "trusted.overlay.custom", []byte("escaped"), 0))
	must(unix.Lsetxattr(filepath.Join(dir, "x"), "trusted.overlay.overlay.twice", []byte("escaped twice"), 0))
	must(unix.Lsetxattr(filepath.Join(dir, "x"), "user.overlay.redirect", []byte("/not/followed"), 0))
	must(unix.Lsetxattr(filepath.Join(dir, "f1"), "user.a", []byte("1"), 0))
	must(unix.Lsetxattr(filepath.Join(dir, "f65"), "user.big", bytes.Repeat([]byte("v"), 3000), 0))
	must(unix.Lsetxattr(filepath.Join(dir, "opaque"), "trusted.overlay.opaque", []byte("y"), 0))
	must(unix.Lsetxattr(filepath.Join(dir, "abs"), "trusted.link", []byte("on a symlink"), 0))
	// A POSIX ACL: system.posix_acl_access for user:nobody:r-- and the
	// mask, in the kernel's xattr encoding.
	acl := []byte{2, 0, 0, 0,
		1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, // user::rw-
		2, 0, 4, 0, 0xfe, 0xff, 0, 0, // user:65534:r--
		4, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, // group::r--
		0x10, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, // mask::r--
		0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, // other::r--
	}
	must(unix.Lsetxattr(filepath.Join(dir, "f64"), "system.posix_acl_access", acl, 0))
	must(os.Chown(filepath.Join(dir, "f65"), 70000, 70001))
	must(os.Lchown(filepath.Join(dir, "abs"), 5, 6))
	must(unix.Chmod(filepath.Join(dir, "f0"), 0o1777))
	must(unix.Chmod(filepath.Join(dir, "f4097"), 0o4755))
	must(unix.UtimesNano(filepath.Join(dir, "f1"), []unix.Timespec{{Sec: 5, Nsec: 6}, {Sec: 1234567890, Nsec: 123456789}}))
	must(unix.UtimesNano(filepath.Join(dir, "f0"), []unix.Timespec{{Sec: 5, Nsec: 6}, {Sec: 0, Nsec: 1}}))
}
