package tests

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/scan"
	"github.com/gocfs/gocfs/store/objects"
	"github.com/gocfs/gocfs/tests/golden"
)

// TestKernelMountMatchesSource builds images from directories, mounts them
// with the host kernel (EROFS plus overlayfs with the object store as data
// layer) and compares every path, type, mode, owner, size, mtime, xattr and
// byte of content with the source.
func TestKernelMountMatchesSource(t *testing.T) {
	requireRoot(t)
	requireFilesystems(t, "erofs", "overlay")

	sources := map[string]func(t *testing.T, dir string){
		"handmade": makeHandmadeTree,
		"mktree10": func(t *testing.T, dir string) { makeMktree(t, dir, 10) },
	}
	for name, mk := range sources {
		for _, epoch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/epoch=%v", name, epoch), func(t *testing.T) {
				work := t.TempDir()
				src := filepath.Join(work, "src")
				mk(t, src)
				store := filepath.Join(work, "objects")
				img := filepath.Join(work, "image.cfs")
				buildImage(t, src, store, img, epoch)
				mnt := mountComposefs(t, img, store)
				compareTrees(t, src, mnt, epoch)
			})
		}
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root to create devices, trusted xattrs and mounts")
	}
}

func requireFilesystems(t *testing.T, names ...string) {
	t.Helper()
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		t.Skipf("SKIP: cannot read /proc/filesystems: %v", err)
	}
	for _, n := range names {
		if !bytes.Contains(b, []byte("\t"+n+"\n")) {
			t.Skipf("SKIP: kernel has no %s filesystem", n)
		}
	}
}

func buildImage(t *testing.T, src, store, img string, epoch bool) {
	t.Helper()
	st, err := objects.OpenDir(store, true)
	if err != nil {
		t.Fatal(err)
	}
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

// mountComposefs mounts img read-only on a new directory and returns it; the
// mounts are removed when the test ends.
func mountComposefs(t *testing.T, img, store string) string {
	t.Helper()
	work := t.TempDir()
	lower := filepath.Join(work, "lower")
	mnt := filepath.Join(work, "mnt")
	for _, d := range []string{lower, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount(img, lower, "erofs", unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("mount erofs %s: %v", img, err)
	}
	t.Cleanup(func() { unix.Unmount(lower, unix.MNT_DETACH) })
	opts := fmt.Sprintf("ro,metacopy=on,redirect_dir=on,lowerdir=%s::%s", lower, store)
	if err := unix.Mount("composefs", mnt, "overlay", unix.MS_RDONLY, opts); err != nil {
		t.Fatalf("mount overlay %s: %v", opts, err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	return mnt
}

// compareTrees walks src and checks mnt shows the same. Known, documented
// differences of a composefs mount: hardlinks in a source directory become
// separate inodes (nlink 1); a 0:0 character device (whiteout) shows as an
// empty regular file with overlay whiteout xattrs, and its directory gains
// whiteouts/opaque xattrs; directory sizes differ between filesystems.
func compareTrees(t *testing.T, src, mnt string, epoch bool) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		m := filepath.Join(mnt, rel)
		n++
		var a, b unix.Stat_t
		if err := unix.Lstat(p, &a); err != nil {
			return err
		}
		if err := unix.Lstat(m, &b); err != nil {
			t.Errorf("%s: missing in mount: %v", rel, err)
			return nil
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
		if epoch {
			wantMtime = unix.Timespec{}
		}
		if b.Mtim != wantMtime {
			t.Errorf("%s: mtime %v, source %v", rel, b.Mtim, wantMtime)
		}
		isDir := a.Mode&unix.S_IFMT == unix.S_IFDIR
		if !isDir && !whiteout && b.Size != a.Size {
			t.Errorf("%s: size %d, source %d", rel, b.Size, a.Size)
		}
		if isDir && b.Nlink != a.Nlink {
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
				return err
			}
			y, err := os.ReadFile(m)
			if err != nil || !bytes.Equal(x, y) {
				t.Errorf("%s: content differs (%d vs %d bytes, %v)", rel, len(y), len(x), err)
			}
		}
		want := xattrs(t, p)
		got := xattrs(t, m)
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
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("compared %d entries", n)
}

func hasWhiteout(t *testing.T, dir string) bool {
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

func xattrs(t *testing.T, p string) map[string]string {
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

// makeHandmadeTree creates a small tree with every file type and the
// boundary sizes composefs cares about.
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
	for _, size := range []int{0, 1, 64, 65, 4095, 4096, 4097, 3 << 20} {
		data := bytes.Repeat([]byte{byte(size)}, size)
		must(os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", size)), data, 0o644))
	}
	must(os.WriteFile(filepath.Join(dir, "a/b/c/d/e/f/deep"), []byte("deep file content that is longer than sixty-four bytes, so external"), 0o600))
	must(os.Link(filepath.Join(dir, "f4096"), filepath.Join(dir, "a/hardlink")))
	must(os.Symlink("../f1", filepath.Join(dir, "a/rel")))
	must(os.Symlink("/etc/passwd", filepath.Join(dir, "abs")))
	must(os.Symlink(strings.Repeat("x", 1000), filepath.Join(dir, "dangling")))
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	must(unix.Mknod(filepath.Join(dir, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Mknod(filepath.Join(dir, "blk"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 200))))
	must(unix.Mknod(filepath.Join(dir, "wh/gone"), unix.S_IFCHR, 0))
	must(os.WriteFile(filepath.Join(dir, "odd name\twith\nbytes\xff"), []byte("x"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "x"), []byte("xattrs"), 0o644))
	must(unix.Lsetxattr(filepath.Join(dir, "x"), "user.a", []byte("1"), 0))
	must(unix.Lsetxattr(filepath.Join(dir, "x"), "trusted.b", []byte("two"), 0))
	must(unix.Lsetxattr(filepath.Join(dir, "x"), "trusted.overlay.custom", []byte("esc"), 0))
	must(unix.Lsetxattr(filepath.Join(dir, "f1"), "user.a", []byte("1"), 0))
	must(os.Chown(filepath.Join(dir, "f65"), 70000, 70001))
	must(unix.Chmod(filepath.Join(dir, "f64"), 0o4755))
	must(unix.Chmod(filepath.Join(dir, "f0"), 0o1777))
	must(unix.UtimesNano(filepath.Join(dir, "f1"), []unix.Timespec{{Sec: 5, Nsec: 6}, {Sec: 1234567890, Nsec: 123456789}}))
}

// makeMktree runs the golden tree generator for a seed.
func makeMktree(t *testing.T, dir string, seed int) {
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
