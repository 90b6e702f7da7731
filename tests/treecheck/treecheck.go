// Package treecheck holds helpers for tests that build composefs images from
// directories, mount them with the kernel and compare what the mount shows
// with the source.
package treecheck

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/scan"
	"github.com/gocfs/gocfs/store/objects"
	"github.com/gocfs/gocfs/tests/golden"
)

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root to create devices, trusted xattrs and mounts")
	}
}

// RequireFUSE skips the test unless it can mount FUSE filesystems:
// directly as root, or through fusermount3.
func RequireFUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("SKIP: no /dev/fuse: %v", err)
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			t.Skip("SKIP: not root and no fusermount3")
		}
		// fusermount3 opens the device as the user.
		if err := unix.Access("/dev/fuse", unix.R_OK|unix.W_OK); err != nil {
			t.Skipf("SKIP: /dev/fuse: %v", err)
		}
	}
}

// RequireFilesystems skips the test unless the kernel has every named
// filesystem.
func RequireFilesystems(t testing.TB, names ...string) {
	t.Helper()
	if err := HasFilesystems(names...); err != nil {
		t.Skipf("SKIP: %v", err)
	}
}

// HasFilesystems says which of the named filesystems the kernel lacks, if
// any.
func HasFilesystems(names ...string) error {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return err
	}
	for _, n := range names {
		if !bytes.Contains(b, []byte("\t"+n+"\n")) {
			return fmt.Errorf("kernel has no %s filesystem", n)
		}
	}
	return nil
}

// BuildImage scans src, copies its external files into the object
// directory store and writes the image to img; epoch sets every mtime to 0.
func BuildImage(t testing.TB, src, store, img string, epoch bool) {
	t.Helper()
	st, err := objects.OpenDir(store, true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	root, err := scan.Dir(src, scan.Options{UseEpoch: epoch, Threads: 2, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := erofs.Write(f, root, erofs.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Compare says what differences CompareTrees expects.
type Compare struct {
	// Epoch: the image was built with every mtime 0.
	Epoch bool
	// Legacy: the object directories are plain lower layers below the
	// image. The root then merges with their roots, and a root directory
	// named like a fan-out directory ("00" to "ff"), for which the image
	// can have no whiteout, merges with theirs and shows their objects.
	// overlayfs gives merged directories link count 1.
	Legacy bool
}

// merged reports whether the directory rel merges with object directories.
func (c Compare) merged(rel string) bool {
	if !c.Legacy {
		return false
	}
	if rel == "." {
		return true
	}
	if len(rel) != 2 {
		return false
	}
	for _, r := range rel {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return false
		}
	}
	return true
}

// CompareTrees walks src and checks mnt shows the same, and nothing more.
// Known, documented differences of a composefs mount: hardlinks in a source
// directory become separate inodes (nlink 1); a 0:0 character device
// (whiteout) shows as an empty regular file with overlay whiteout xattrs, and
// its directory gains whiteouts/opaque xattrs; directory sizes differ between
// filesystems. It returns the number of entries compared.
func CompareTrees(t testing.TB, src, mnt string, c Compare) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		n++
		compareEntry(t, rel, p, filepath.Join(mnt, rel), c)
		if d.IsDir() {
			compareNames(t, rel, p, filepath.Join(mnt, rel), c.merged(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// compareNames checks that a directory of the mount lists the names of the
// source directory, and no others unless it is merged.
func compareNames(t testing.TB, rel, p, m string, merged bool) {
	t.Helper()
	want, err := os.ReadDir(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadDir(m)
	if err != nil {
		t.Errorf("%s: %v", rel, err)
		return
	}
	names := make(map[string]bool, len(got))
	for _, e := range got {
		names[e.Name()] = true
	}
	for _, e := range want {
		if !names[e.Name()] {
			t.Errorf("%s: the mount does not list %q", rel, e.Name())
		}
	}
	if !merged && len(got) != len(want) {
		t.Errorf("%s: %d entries in the mount, %d in the source", rel, len(got), len(want))
	}
}

func compareEntry(t testing.TB, rel, p, m string, c Compare) {
	t.Helper()
	var a, b unix.Stat_t
	if err := unix.Lstat(p, &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(m, &b); err != nil {
		t.Errorf("%s: missing in mount: %v", rel, err)
		return
	}
	whiteout := a.Mode&unix.S_IFMT == unix.S_IFCHR && a.Rdev == 0
	wantMode := a.Mode
	if whiteout {
		wantMode = unix.S_IFREG | a.Mode&^unix.S_IFMT
	}
	if b.Mode != wantMode || b.Uid != a.Uid || b.Gid != a.Gid {
		t.Errorf("%s: mode/uid/gid %o %d %d, source %o %d %d", rel, b.Mode, b.Uid, b.Gid, wantMode, a.Uid, a.Gid)
	}
	wantMtime := a.Mtim
	if c.Epoch {
		wantMtime = unix.Timespec{}
	}
	if b.Mtim != wantMtime {
		t.Errorf("%s: mtime %v, source %v", rel, b.Mtim, wantMtime)
	}
	isDir := a.Mode&unix.S_IFMT == unix.S_IFDIR
	if !isDir && !whiteout && b.Size != a.Size {
		t.Errorf("%s: size %d, source %d", rel, b.Size, a.Size)
	}
	if isDir && b.Nlink != a.Nlink && !(c.merged(rel) && b.Nlink == 1) {
		t.Errorf("%s: directory nlink %d, source %d", rel, b.Nlink, a.Nlink)
	}
	if !isDir && b.Nlink != 1 {
		t.Errorf("%s: nlink %d, want 1 (hardlinks are not kept from directories)", rel, b.Nlink)
	}
	switch a.Mode & unix.S_IFMT {
	case unix.S_IFCHR, unix.S_IFBLK:
		if !whiteout && b.Rdev != a.Rdev {
			t.Errorf("%s: rdev %x, source %x", rel, b.Rdev, a.Rdev)
		}
	case unix.S_IFLNK:
		x, _ := os.Readlink(p)
		y, err := os.Readlink(m)
		if err != nil || x != y {
			t.Errorf("%s: link %q (%v), source %q", rel, y, err, x)
		}
	case unix.S_IFREG:
		x, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(m)
		if err != nil || !bytes.Equal(x, y) {
			t.Errorf("%s: content differs (%d vs %d bytes, %v)", rel, len(y), len(x), err)
		}
	}
	want := Xattrs(t, p)
	got := Xattrs(t, m)
	if whiteout {
		want["trusted.overlay.whiteout"] = ""
		want["user.overlay.whiteout"] = ""
	}
	if isDir && hasWhiteout(t, p) {
		want["trusted.overlay.whiteouts"] = ""
		want["user.overlay.whiteouts"] = ""
		want["trusted.overlay.opaque"] = "x"
		want["user.overlay.opaque"] = "x"
	}
	if !mapsEqual(got, want) {
		t.Errorf("%s: xattrs\n got %q\nwant %q", rel, got, want)
	}
}

func hasWhiteout(t testing.TB, dir string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		var st unix.Stat_t
		if unix.Lstat(filepath.Join(dir, e.Name()), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
			return true
		}
	}
	return false
}

// Xattrs returns the extended attributes of p (not following a symlink).
func Xattrs(t testing.TB, p string) map[string]string {
	t.Helper()
	m := map[string]string{}
	sz, err := unix.Llistxattr(p, nil)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return m
		}
		t.Fatalf("%s: listxattr: %v", p, err)
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("%s: listxattr: %v", p, err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		vsz, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			t.Fatalf("%s: getxattr %s: %v", p, name, err)
		}
		v := make([]byte, vsz)
		vsz, err = unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("%s: getxattr %s: %v", p, name, err)
		}
		m[name] = string(v[:vsz])
	}
	return m
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// MakeHandmadeTree creates a small tree with every file type and the
// boundary sizes composefs cares about. It needs root.
func MakeHandmadeTree(t testing.TB, dir string) {
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

// MakeMktree runs the golden tree generator for a seed.
func MakeMktree(t testing.TB, dir string, seed int) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("SKIP: python3 is needed to run mktree.py")
	}
	script := filepath.Join(golden.Dir(t), "mktree", "mktree.py")
	out, err := exec.Command("python3", script, dir, fmt.Sprint(seed)).CombinedOutput()
	if err != nil {
		t.Fatalf("mktree.py %d: %v\n%s", seed, err, out)
	}
}

// SweepSeeds returns the generator seeds a sweep builds: those of
// GOCFS_MKTREE_SEEDS ("1-200", "3,7,40-45") when set, else def ("" for
// none). The C reference's expected images cover seeds 10 and 11 only;
// other seeds meet layouts those two do not.
func SweepSeeds(t testing.TB, def string) []int {
	t.Helper()
	spec := os.Getenv("GOCFS_MKTREE_SEEDS")
	if spec == "" {
		spec = def
	}
	seeds, err := ParseSeeds(spec)
	if err != nil {
		t.Fatalf("GOCFS_MKTREE_SEEDS: %v", err)
	}
	return seeds
}

// ParseSeeds reads a list of seeds and ranges: "1-3,7,40-45".
func ParseSeeds(spec string) ([]int, error) {
	var seeds []int
	if strings.TrimSpace(spec) == "" {
		return nil, nil
	}
	for part := range strings.SplitSeq(spec, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", part, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("%q: %w", part, err)
			}
		}
		if a < 0 || b < a {
			return nil, fmt.Errorf("%q: not a seed or a range of seeds", part)
		}
		for s := a; s <= b; s++ {
			seeds = append(seeds, s)
		}
	}
	return seeds, nil
}
