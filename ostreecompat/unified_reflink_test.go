package ostreecompat

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/scan"
	"github.com/gocfs/gocfs/ostreecompat/ostree"
	"github.com/gocfs/gocfs/ostreecompat/ostree/ostreetest"
	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/tests/treecheck"
)

// loopFS makes a sparse file of size bytes, formats it with mkfs (the
// command and its options; the file is appended) and mounts it on a new
// directory through a loop device, which umount frees; everything goes when
// the test ends. It skips the test without root, the tool or the kernel's
// filesystem.
func loopFS(t *testing.T, fstype string, size int64, mkfs ...string) string {
	t.Helper()
	treecheck.RequireRoot(t)
	treecheck.RequireFilesystems(t, fstype)
	for _, tool := range []string{mkfs[0], "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s not installed", tool)
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, fstype+".img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	run(t, append(mkfs, img)...)
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "mount", "-t", fstype, "-o", "loop", img, mnt)
	t.Cleanup(func() {
		clearImmutable(t, mnt)
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// The filesystems the reflink tests use: XFS with reflinks (the default of
// recent xfsprogs, explicit here) of 300 MB or more, the smallest mkfs.xfs
// makes since xfsprogs 5.19, btrfs, and ext4, which has no reflinks.
var (
	xfsFS   = func(t *testing.T) string { return loopFS(t, "xfs", 320<<20, "mkfs.xfs", "-q", "-m", "reflink=1") }
	btrfsFS = func(t *testing.T) string { return loopFS(t, "btrfs", 320<<20, "mkfs.btrfs", "-q") }
	ext4FS  = func(t *testing.T) string { return loopFS(t, "ext4", 128<<20, "mkfs.ext4", "-q", "-F") }
)

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// clearImmutable removes the immutable flag deployments get, so that the
// test's directories can be removed.
func clearImmutable(t *testing.T, root string) {
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			if err := setImmutable(p, false); err != nil {
				t.Logf("clear immutable: %v", err)
			}
		}
		return nil
	})
}

func TestProbeReflinkFilesystems(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mk    func(*testing.T) string
		share bool
	}{
		{"xfs", xfsFS, true},
		{"btrfs", btrfsFS, true},
		{"ext4", ext4FS, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mnt := tc.mk(t)
			a, b := filepath.Join(mnt, "a"), filepath.Join(mnt, "b")
			for _, d := range []string{a, b} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			ok, err := ProbeReflink(a, b)
			if err != nil || ok != tc.share {
				t.Errorf("ProbeReflink on %s = %v, %v; want %v", tc.name, ok, err, tc.share)
			}
			if got := Filesystem(a); got != tc.name {
				t.Errorf("Filesystem = %q", got)
			}
			// Two filesystems never share blocks.
			other := t.TempDir()
			if ok, err := ProbeReflink(a, other); ok || err != nil {
				t.Errorf("ProbeReflink across filesystems = %v, %v", ok, err)
			}
		})
	}
}

// makeOSTreeSource writes at dir a tree for ostree: no devices, fifos or
// sockets, UTF-8 names, owners, modes, xattrs, hardlinks, symlinks, empty
// and large files, a kernel and os-release, usr/etc and the top-level
// directories a deployment mounts on. Its file data come to about dataMiB
// MiB; it returns their exact size.
func makeOSTreeSource(t *testing.T, dir string, dataMiB int) (dataBytes int64) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(7, 11))
	file := func(p string, size int, mode os.FileMode) {
		t.Helper()
		data := make([]byte, size+7)
		for i := 0; i < size; i += 8 {
			binary.LittleEndian.PutUint64(data[i:], rng.Uint64())
		}
		data = data[:size]
		must(os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755))
		must(os.WriteFile(filepath.Join(dir, p), data, mode))
		must(os.Chmod(filepath.Join(dir, p), mode))
		dataBytes += int64(size)
	}
	for _, d := range []string{"usr/bin", "usr/lib/modules/6.1.0-test", "usr/etc/conf.d", "usr/share/doc/empty", "boot", "var", "sysroot", "opt/app"} {
		must(os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	must(os.Chmod(filepath.Join(dir, "opt/app"), 0o750))
	file("usr/lib/modules/6.1.0-test/vmlinuz", 3<<20, 0o644)
	file("usr/lib/modules/6.1.0-test/initramfs.img", 2<<20, 0o600)
	must(os.WriteFile(filepath.Join(dir, "usr/lib/os-release"), []byte("ID=testos\nPRETTY_NAME=\"Test OS 1\"\n"), 0o644))
	must(os.Symlink("../usr/lib/os-release", filepath.Join(dir, "usr/etc/os-release")))
	must(os.WriteFile(filepath.Join(dir, "usr/etc/hosts"), []byte("127.0.0.1 localhost\n"), 0o644))
	file("usr/etc/conf.d/secret", 5000, 0o600)
	must(os.Chown(filepath.Join(dir, "usr/etc/conf.d/secret"), 0, 42))
	must(unix.Lsetxattr(filepath.Join(dir, "usr/etc/conf.d"), "user.dir", []byte("on a directory"), 0))
	file("usr/bin/setuid", 70000, 0o4755)
	file("usr/bin/empty", 0, 0o644)
	file("usr/bin/tiny", 10, 0o755)
	must(os.Link(filepath.Join(dir, "usr/bin/setuid"), filepath.Join(dir, "usr/bin/setuid-alias")))
	must(os.Symlink("setuid", filepath.Join(dir, "usr/bin/link")))
	must(os.Symlink("/usr/lib/os-release", filepath.Join(dir, "usr/bin/abs-link")))
	must(unix.Lsetxattr(filepath.Join(dir, "usr/bin/tiny"), "user.b", []byte("2"), 0))
	must(unix.Lsetxattr(filepath.Join(dir, "usr/bin/tiny"), "user.a", []byte("1"), 0))
	must(unix.Lsetxattr(filepath.Join(dir, "usr/bin/tiny"), "trusted.t", bytes.Repeat([]byte("x"), 300), 0))
	file("opt/app/owned", 4096, 0o640)
	must(os.Lchown(filepath.Join(dir, "opt/app/owned"), 1000, 1001))
	must(os.Lchown(filepath.Join(dir, "opt/app"), 1000, 1001))
	// Same bytes, different metadata: two ostree objects, one store
	// object, and with reflinks one copy of the blocks.
	file("opt/app/dup-a", 1<<20, 0o644)
	must(copyFile(filepath.Join(dir, "opt/app/dup-a"), filepath.Join(dir, "opt/app/dup-b"), 0o600))
	dataBytes += 1 << 20
	for done := 0; int64(done) < int64(dataMiB)<<20; {
		size := 1 << (10 + rng.IntN(11)) // 1 KiB to 1 MiB
		size += rng.IntN(size)
		file(fmt.Sprintf("usr/share/data/d%02d/f%04d", done%37, done%9973), size, 0o644)
		done += size
	}
	return dataBytes
}

func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}

// buildStoreImage builds an image of src into the store, named ref, and
// returns its digest.
func buildStoreImage(t *testing.T, st *store.Repository, src, ref string) string {
	t.Helper()
	root, err := scan.Dir(src, scan.Options{UseEpoch: true, Threads: 2, Store: st.Objects()})
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := erofs.Write(pw, root, erofs.WriteOptions{Versions: &erofs.VersionRange{Min: st.ErofsVersion(), Max: erofs.MaxFormatVersion}})
		pw.CloseWithError(err)
	}()
	id, err := st.WriteImage(pr, ref)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", id)
}

// sysrootStores makes a composefs store and an ostree bare repository laid
// out as on a sysroot: mnt/composefs and mnt/ostree/repo.
func sysrootStores(t *testing.T, mnt string) (*store.Repository, *ostree.Repo) {
	t.Helper()
	st, err := store.Init(filepath.Join(mnt, "composefs"), store.InitOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	repo, err := ostree.Create(filepath.Join(mnt, "ostree", "repo"), ostree.ModeBare)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Close() })
	return st, repo
}

// usedBytes is what the filesystem at dir uses, after syncing it so that
// delayed allocations count.
func usedBytes(t *testing.T, dir string) int64 {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

// TestUnifiedReflink synthesizes a commit from a store image on XFS and
// btrfs with policy enabled: the commit passes `ostree fsck`, checks out to
// the image's tree, costs next to no space, and its files share the store
// objects' extents.
func TestUnifiedReflink(t *testing.T) {
	for _, tc := range []struct {
		name string
		mk   func(*testing.T) string
	}{{"xfs", xfsFS}, {"btrfs", btrfsFS}} {
		t.Run(tc.name, func(t *testing.T) {
			mnt := tc.mk(t)
			st, repo := sysrootStores(t, mnt)
			src := filepath.Join(t.TempDir(), "src")
			data := makeOSTreeSource(t, src, 48)
			img := buildStoreImage(t, st, src, "test")

			before := usedBytes(t, mnt)
			res, err := Commit(context.Background(), st, repo, "test", CommitOptions{Branch: "test/main", Policy: PolicyEnabled})
			if err != nil {
				t.Fatal(err)
			}
			grown := usedBytes(t, mnt) - before
			t.Logf("commit %s of image %s: %d bytes used for %d bytes of data (%.2f%%)", res.Commit, img, grown, data, 100*float64(grown)/float64(data))
			if !res.Reflinked || res.Image != img {
				t.Errorf("result %+v", res)
			}
			if grown > data/20 {
				t.Errorf("the commit used %d bytes, more than 5%% of the image's %d bytes of data", grown, data)
			}
			checkShared(t, repo.Path())
			ostreetest.Fsck(t, repo.Path())
			co := filepath.Join(mnt, "checkout")
			run(t, "ostree", "checkout", "--repo="+repo.Path(), "--force-copy", "test/main", co)
			compareCheckout(t, src, co)
			for _, ref := range []string{"test/main", ImageRef(img)} {
				if c, err := repo.ResolveRef(ref); err != nil || c != res.Commit {
					t.Errorf("ref %s = %s, %v; want %s", ref, c, err, res.Commit)
				}
			}
		})
	}
}

// checkShared checks every ostree file object of a block or more shares
// all its extents.
func checkShared(t *testing.T, repoDir string) {
	t.Helper()
	var files, sharedBytes, totalBytes uint64
	err := filepath.WalkDir(filepath.Join(repoDir, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || !strings.HasSuffix(p, ".file") {
			return err
		}
		fi, err := d.Info()
		if err != nil || fi.Size() < 4096 {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		shared, total, err := ExtentSharing(f)
		if err != nil {
			return err
		}
		files++
		sharedBytes += shared
		totalBytes += total
		if shared != total || total == 0 {
			t.Errorf("%s: %d of %d bytes of extents shared", p, shared, total)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("no file objects of a block or more")
	}
	t.Logf("%d file objects, %d of %d bytes of extents shared", files, sharedBytes, totalBytes)
}

// compareCheckout compares a copying `ostree checkout` of a commit with
// the tree it was made from: types, modes, owners, sizes, contents,
// symlink targets and xattrs. ostree keeps no mtimes (files get 0,
// directories the checkout's time) and checkouts do not keep hardlinks.
func compareCheckout(t *testing.T, src, co string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		q := filepath.Join(co, rel)
		n++
		var a, b unix.Stat_t
		if err := unix.Lstat(p, &a); err != nil {
			return err
		}
		if err := unix.Lstat(q, &b); err != nil {
			t.Errorf("%s: missing from the checkout: %v", rel, err)
			return nil
		}
		if a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid {
			t.Errorf("%s: mode/uid/gid %o %d %d, source %o %d %d", rel, b.Mode, b.Uid, b.Gid, a.Mode, a.Uid, a.Gid)
		}
		switch a.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			x, err1 := os.ReadFile(p)
			y, err2 := os.ReadFile(q)
			if err := errors.Join(err1, err2); err != nil || !bytes.Equal(x, y) {
				t.Errorf("%s: content differs (%d vs %d bytes, %v)", rel, len(y), len(x), err)
			}
		case unix.S_IFLNK:
			x, _ := os.Readlink(p)
			if y, err := os.Readlink(q); err != nil || x != y {
				t.Errorf("%s: link %q (%v), source %q", rel, y, err, x)
			}
		case unix.S_IFDIR:
			x, _ := os.ReadDir(p)
			y, _ := os.ReadDir(q)
			if len(x) != len(y) {
				t.Errorf("%s: %d entries in the checkout, %d in the source", rel, len(y), len(x))
			}
		}
		if x, y := treecheck.Xattrs(t, p), treecheck.Xattrs(t, q); fmt.Sprint(x) != fmt.Sprint(y) {
			t.Errorf("%s: xattrs %q, source %q", rel, y, x)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("compared %d entries", n)
}

// TestPolicyExt4 checks the policies on ext4, which cannot share blocks:
// enabled fails, naming the filesystem, and leaves neither commit nor
// marker; enabled-with-copy copies; set-unified records only what
// succeeded.
func TestPolicyExt4(t *testing.T) {
	mnt := ext4FS(t)
	st, repo := sysrootStores(t, mnt)
	src := filepath.Join(t.TempDir(), "src")
	makeOSTreeSource(t, src, 4)
	img := buildStoreImage(t, st, src, "test")
	ctx := context.Background()

	_, err := Commit(ctx, st, repo, "test", CommitOptions{Branch: "test/main", Policy: PolicyEnabled})
	if !errors.Is(err, ErrNoReflink) || !strings.Contains(err.Error(), "ext4") || !strings.Contains(err.Error(), "enabled-with-copy") {
		t.Errorf("enabled on ext4: %v", err)
	}
	if _, err := SetUnified(ctx, st, repo, UnifyOptions{Scope: ScopeComposefs, Policy: PolicyEnabled}); !errors.Is(err, ErrNoReflink) {
		t.Errorf("set-unified enabled on ext4: %v", err)
	}
	checkUnmarked(t, st, repo)
	if c, err := repo.ResolveRef(ImageRef(img)); err == nil {
		t.Errorf("a failed commit left ref %s -> %s", ImageRef(img), c)
	}

	res, err := Commit(ctx, st, repo, "test", CommitOptions{Branch: "test/main", Policy: PolicyEnabledWithCopy})
	if err != nil {
		t.Fatal(err)
	}
	if res.Reflinked {
		t.Error("ext4 reflinked")
	}
	checkUnmarked(t, st, repo)
	ostreetest.Fsck(t, repo.Path())

	u, err := SetUnified(ctx, st, repo, UnifyOptions{Scope: ScopeFull, Policy: PolicyEnabledWithCopy})
	if err != nil {
		t.Fatal(err)
	}
	if u.State != StateUnified || len(u.Commits) != 1 || u.Commits[0].Commit != res.Commit || !u.Commits[0].Reused {
		t.Errorf("set-unified: %+v", u)
	}
	s, err := ReadStatus(st.Path(), repo)
	if err != nil || s.State != StateUnified || s.Marker.Unified != PolicyEnabledWithCopy || s.Problem != "" {
		t.Errorf("status after set-unified: %+v, %v", s, err)
	}
	if _, err := SetUnified(ctx, st, repo, UnifyOptions{Policy: PolicyDisabled}); err != nil {
		t.Fatal(err)
	}
	checkUnmarked(t, st, repo)
}

// checkUnmarked checks neither marker says the stores are unified.
func checkUnmarked(t *testing.T, st *store.Repository, repo *ostree.Repo) {
	t.Helper()
	s, err := ReadStatus(st.Path(), repo)
	if err != nil {
		t.Fatal(err)
	}
	if s.State != StateNone || s.Marker != nil || s.Bound {
		t.Errorf("unexpected unified-storage state: %+v", s)
	}
}

// TestSetUnifiedFull binds a repository holding a classic commit (made by
// the ostree CLI from the image's source tree, so its objects are copies)
// with scope full: its objects then share the store objects' blocks, and
// both `ostree fsck` and Fsck pass.
func TestSetUnifiedFull(t *testing.T) {
	mnt := xfsFS(t)
	st, repo := sysrootStores(t, mnt)
	src := filepath.Join(t.TempDir(), "src")
	makeOSTreeSource(t, src, 16)
	buildStoreImage(t, st, src, "test")
	ostreetest.Run(t, "commit", "--repo="+repo.Path(), "--branch=classic", "--tree=dir="+src, "--subject=classic")

	ctx := context.Background()
	res, err := SetUnified(ctx, st, repo, UnifyOptions{Scope: ScopeFull, Policy: PolicyEnabled})
	if err != nil {
		t.Fatal(err)
	}
	d := res.Dedupe
	t.Logf("dedupe: %+v", d)
	if res.State != StateUnified || len(res.Commits) != 1 || d == nil || d.Deduped == 0 || d.Bytes < 16<<20 {
		t.Errorf("set-unified full: %+v", res)
	}
	checkShared(t, repo.Path())
	ostreetest.Fsck(t, repo.Path())
	s, err := ReadStatus(st.Path(), repo)
	if err != nil || s.State != StateUnified || !s.Bound || s.Marker == nil || s.Marker.Scope != ScopeFull || s.Marker.OSTreeRepo != "../ostree/repo" {
		t.Errorf("status: %+v, %v", s, err)
	}
	rep, err := Fsck(ctx, st, repo, FsckOptions{})
	if err != nil || !rep.OK || len(rep.Images) != 1 || len(rep.Refs) != 1 {
		t.Errorf("Fsck: %+v, %v", rep, err)
	}

	// Again: everything is shared already.
	res, err = SetUnified(ctx, st, repo, UnifyOptions{Scope: ScopeFull, Policy: PolicyEnabled})
	if err != nil || res.Dedupe.Deduped != 0 || !res.Commits[0].Reused {
		t.Errorf("second set-unified full: %+v, %v", res, err)
	}
}
