package scan

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/store/objects"
	"github.com/gocfs/gocfs/verity"
)

func isRoot() bool { return os.Geteuid() == 0 }

func content(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*13) + seed
	}
	return b
}

// fixture builds a small tree covering every kind of entry a scan records.
// Entries that need root are made only when running as root.
type fixture struct {
	dir string
	t   *testing.T
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return &fixture{dir: filepath.Join(t.TempDir(), "src"), t: t}
}

func (f *fixture) path(p string) string { return filepath.Join(f.dir, p) }

func (f *fixture) check(err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
}

// file and mkdir take raw st_mode permission bits (setuid is 0o4000).
func (f *fixture) file(p string, data []byte, mode uint32) {
	f.t.Helper()
	f.check(os.MkdirAll(filepath.Dir(f.path(p)), 0o755))
	f.check(os.WriteFile(f.path(p), data, 0o600))
	f.check(unix.Chmod(f.path(p), mode))
}

func (f *fixture) mkdir(p string, mode uint32) {
	f.t.Helper()
	f.check(os.MkdirAll(f.path(p), 0o755))
	f.check(unix.Chmod(f.path(p), mode))
}

func (f *fixture) symlink(target, p string) {
	f.t.Helper()
	f.check(os.Symlink(target, f.path(p)))
}

func (f *fixture) mtime(p string, sec int64, nsec int64) {
	f.t.Helper()
	ts := []unix.Timespec{{Sec: sec, Nsec: nsec}, {Sec: sec, Nsec: nsec}}
	f.check(unix.UtimesNanoAt(unix.AT_FDCWD, f.path(p), ts, unix.AT_SYMLINK_NOFOLLOW))
}

func (f *fixture) xattr(p, name, value string) {
	f.t.Helper()
	f.check(unix.Lsetxattr(f.path(p), name, []byte(value), 0))
}

// noneMode is the mode of the file modes/none: no permissions at all, which
// only root can read.
func noneMode() uint32 {
	if isRoot() {
		return 0
	}
	return 0o400
}

const deepLevels = 40

var deepPath = strings.Repeat("d/", deepLevels) + "leaf"

// build makes the standard fixture.
func (f *fixture) build() {
	t := f.t
	f.mkdir("", 0o755)
	for _, n := range []int{0, 1, 63, 64, 65, 4095, 4096, 4097, 3*readBufSize + 5} {
		f.file(fmt.Sprintf("sizes/%d", n), content(n, byte(n)), 0o644)
	}
	f.file("modes/setuid", []byte("x"), 0o4755)
	f.file("modes/none", content(100, 1), noneMode())
	f.mkdir("modes/sticky", 0o1777)
	f.mkdir("modes/private", 0o700)
	f.file("links/a", content(5000, 7), 0o644)
	f.check(os.Link(f.path("links/a"), f.path("links/b")))
	f.file("links/dup", content(5000, 7), 0o600)
	f.symlink("a", "links/sym")
	f.symlink("/absolute/dangling target", "links/dangling")
	f.symlink(strings.Repeat("x/", 2047)+"y", "links/long")
	f.file("names/caf\xc3\xa9", nil, 0o644)
	f.file("names/bad-\xff\xfe", []byte("non-UTF-8"), 0o644)
	f.file("names/new\nline", nil, 0o644)
	f.file("names/-dash", nil, 0o644)
	f.file(deepPath, []byte("deep"), 0o644)
	f.mkdir("special", 0o755)
	f.check(unix.Mkfifo(f.path("special/fifo"), 0o640))
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: f.path("special/sock"), Net: "unix"})
	f.check(err)
	l.SetUnlinkOnClose(false)
	l.Close()
	f.file("xattrs/file", content(3000, 3), 0o644)
	f.xattr("xattrs/file", "user.a", "1")
	f.xattr("xattrs/file", "user.empty", "")
	f.xattr("xattrs/file", "user.bin", "\x00\xff\n=")
	f.file("xattrs/small", []byte("s"), 0o644)
	f.xattr("xattrs/small", "user.small", "v")
	f.file("xattrs/empty", nil, 0o644)
	f.xattr("xattrs/empty", "user.e", "on an empty file")
	f.xattr("xattrs", "user.dir", "d")
	f.xattr("", "user.root", "r")
	if isRoot() {
		f.xattr("xattrs/file", "trusted.t", "tv")
		f.xattr("xattrs/file", "trusted.overlay.opaque", "y")
		f.symlink("target", "xattrs/sym")
		f.xattr("xattrs/sym", "trusted.sym", "s")
		f.check(unix.Mknod(f.path("special/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		f.check(unix.Mknod(f.path("special/whiteout"), unix.S_IFCHR|0o600, 0))
		f.check(unix.Mknod(f.path("special/blk"), unix.S_IFBLK|0o600, int(unix.Mkdev(259, 70000))))
		f.check(os.Lchown(f.path("modes/setuid"), 70000, 65534))
		f.check(unix.Chmod(f.path("special/null"), 0o666))
		f.check(unix.Chmod(f.path("modes/setuid"), 0o4755)) // chown cleared it
		f.check(os.Lchown(f.path("links/sym"), 1000, 1001))
	} else {
		t.Log("not root: no devices, trusted.* xattrs or ownership changes in the fixture")
	}
	f.mtime("sizes/65", 1234567890, 123456789)
	f.mtime("links/sym", 5000000000, 1)
	f.mtime("special/fifo", 1, 0)
	f.mtime("", 1700000000, 500000000)
}

func scanOK(t *testing.T, dir string, opts Options) *tree.Inode {
	t.Helper()
	root, err := Dir(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func lookup(t *testing.T, root *tree.Inode, p string) *tree.Inode {
	t.Helper()
	n, err := tree.Resolve(root, p)
	if err != nil {
		t.Fatalf("%q: %v", p, err)
	}
	return n
}

func digest(b []byte) []byte { return verity.DigestBytes(b, verity.SHA256) }

func TestRegularFiles(t *testing.T) {
	f := newFixture(t)
	f.build()
	root := scanOK(t, f.dir, Options{})
	for _, n := range []int{0, 1, 63, 64, 65, 4095, 4096, 4097, 3*readBufSize + 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			data := content(n, byte(n))
			got := lookup(t, root, fmt.Sprintf("sizes/%d", n))
			want := tree.Inode{Mode: unix.S_IFREG | 0o644, Nlink: 1, Size: uint64(n), UID: got.UID, GID: got.GID, Mtime: got.Mtime}
			switch {
			case n == 0:
			case n <= InlineMax:
				want.Content = data
			default:
				want.Digest = digest(data)
				want.Payload = objects.Path(want.Digest)
			}
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("got  %+v\nwant %+v", *got, want)
			}
		})
	}
	if got := lookup(t, root, "sizes/65").Mtime; got != (tree.Timespec{Sec: 1234567890, Nsec: 123456789}) {
		t.Errorf("mtime %+v", got)
	}
}

func TestEntries(t *testing.T) {
	f := newFixture(t)
	f.build()
	root := scanOK(t, f.dir, Options{})
	tests := []struct {
		path     string
		mode     uint32
		size     uint64
		payload  string
		rdev     uint64
		uid      uint32
		gid      uint32
		rootOnly bool
	}{
		{path: "modes/setuid", mode: unix.S_IFREG | 0o4755, size: 1, uid: 70000, gid: 65534, rootOnly: true},
		{path: "modes/none", mode: unix.S_IFREG | noneMode(), size: 100, payload: objects.Path(digest(content(100, 1)))},
		{path: "modes/sticky", mode: unix.S_IFDIR | 0o1777, size: 4096},
		{path: "modes/private", mode: unix.S_IFDIR | 0o700, size: 4096},
		{path: "links/sym", mode: unix.S_IFLNK | 0o777, size: 1, payload: "a", uid: 1000, gid: 1001, rootOnly: true},
		{path: "links/dangling", mode: unix.S_IFLNK | 0o777, size: 25, payload: "/absolute/dangling target"},
		{path: "links/long", mode: unix.S_IFLNK | 0o777, size: 4095, payload: strings.Repeat("x/", 2047) + "y"},
		{path: "names/caf\xc3\xa9", mode: unix.S_IFREG | 0o644},
		{path: "names/new\nline", mode: unix.S_IFREG | 0o644},
		{path: "special/fifo", mode: unix.S_IFIFO | 0o640},
		{path: "special/sock", mode: unix.S_IFSOCK | 0o755&^uint32(umask())},
		{path: "special/null", mode: unix.S_IFCHR | 0o666, rdev: unix.Mkdev(1, 3), rootOnly: true},
		{path: "special/whiteout", mode: unix.S_IFCHR | 0o600, rootOnly: true},
		{path: "special/blk", mode: unix.S_IFBLK | 0o600, rdev: unix.Mkdev(259, 70000), rootOnly: true},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if tt.rootOnly && !isRoot() {
				t.Skip("needs root (mknod, chown)")
			}
			got := lookup(t, root, tt.path)
			if got.Mode != tt.mode || got.Size != tt.size || got.Payload != tt.payload || got.Rdev != tt.rdev {
				t.Errorf("mode %o size %d payload %q rdev %#x, want mode %o size %d payload %q rdev %#x",
					got.Mode, got.Size, got.Payload, got.Rdev, tt.mode, tt.size, tt.payload, tt.rdev)
			}
			if !got.IsDir() && got.Nlink != 1 {
				t.Errorf("nlink %d", got.Nlink)
			}
			if tt.rootOnly && (got.UID != tt.uid || got.GID != tt.gid) {
				t.Errorf("owner %d:%d, want %d:%d", got.UID, got.GID, tt.uid, tt.gid)
			}
		})
	}

	bad := lookup(t, root, "names/bad-\xff\xfe")
	if string(bad.Content) != "non-UTF-8" {
		t.Errorf("non-UTF-8 name: content %q", bad.Content)
	}
	deep := lookup(t, root, deepPath)
	if string(deep.Content) != "deep" {
		t.Errorf("%s: content %q", deepPath, deep.Content)
	}
	if got := lookup(t, root, "links/sym").Mtime; got != (tree.Timespec{Sec: 5000000000, Nsec: 1}) {
		t.Errorf("symlink mtime %+v", got)
	}
	if got := lookup(t, root, "special/fifo").Mtime; got != (tree.Timespec{Sec: 1}) {
		t.Errorf("fifo mtime %+v", got)
	}
}

func umask() int {
	m := unix.Umask(0)
	unix.Umask(m)
	return m
}

// Hardlinks are not detected: each name is an inode of its own, with nlink
// 1, sharing only the object.
func TestHardlinks(t *testing.T) {
	f := newFixture(t)
	f.build()
	root := scanOK(t, f.dir, Options{})
	links := lookup(t, root, "links")
	a, b := links.Lookup("a"), links.Lookup("b")
	if a == nil || b == nil {
		t.Fatal("links/a or links/b missing")
	}
	if a.Hardlink || b.Hardlink || a.Inode == b.Inode {
		t.Error("hardlinks were detected")
	}
	if a.Inode.Nlink != 1 || b.Inode.Nlink != 1 {
		t.Errorf("nlink %d, %d", a.Inode.Nlink, b.Inode.Nlink)
	}
	if !reflect.DeepEqual(*a.Inode, *b.Inode) {
		t.Errorf("hardlinked names differ: %+v, %+v", *a.Inode, *b.Inode)
	}
	if dup := lookup(t, root, "links/dup"); !bytes.Equal(dup.Digest, a.Inode.Digest) {
		t.Error("same content, different digests")
	}
}

func TestDirectories(t *testing.T) {
	f := newFixture(t)
	f.build()
	root := scanOK(t, f.dir, Options{})
	var st unix.Stat_t
	if err := unix.Lstat(f.dir, &st); err != nil {
		t.Fatal(err)
	}
	// The root is the source directory itself, with its own metadata.
	if root.Mode != unix.S_IFDIR|0o755 || root.UID != st.Uid || root.GID != st.Gid ||
		root.Mtime != (tree.Timespec{Sec: 1700000000, Nsec: 500000000}) {
		t.Errorf("root %+v", *root)
	}
	if v, ok := root.Xattr("user.root"); !ok || v != "r" {
		t.Errorf("root xattr user.root = %q, %v", v, ok)
	}
	// Names are sorted in byte order; nlink is 2 + subdirectories.
	err := tree.Walk(root, func(p string, d *tree.Dirent) error {
		n := d.Inode
		if !n.IsDir() {
			return nil
		}
		sub := 0
		for i, e := range n.Entries {
			if i > 0 && n.Entries[i-1].Name >= e.Name {
				t.Errorf("%s: %q sorted before %q", p, n.Entries[i-1].Name, e.Name)
			}
			if e.Inode.IsDir() {
				sub++
			}
		}
		if n.Nlink != uint32(2+sub) {
			t.Errorf("%s: nlink %d, want %d", p, n.Nlink, 2+sub)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range root.Entries {
		names = append(names, e.Name)
	}
	want := []string{"d", "links", "modes", "names", "sizes", "special", "xattrs"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("root entries %q, want %q", names, want)
	}
}

func xattrMap(n *tree.Inode) map[string]string {
	m := map[string]string{}
	for _, x := range n.Xattrs {
		m[x.Name] = x.Value
	}
	return m
}

func TestXattrs(t *testing.T) {
	f := newFixture(t)
	f.build()
	all := map[string]map[string]string{
		"xattrs/file":  {"user.a": "1", "user.empty": "", "user.bin": "\x00\xff\n="},
		"xattrs/small": {"user.small": "v"},
		"xattrs/empty": {"user.e": "on an empty file"},
		"xattrs":       {"user.dir": "d"},
		"sizes/4097":   {},
		"links/sym":    {},
	}
	if isRoot() {
		all["xattrs/file"]["trusted.t"] = "tv"
		all["xattrs/file"]["trusted.overlay.opaque"] = "y"
		all["xattrs/sym"] = map[string]string{"trusted.sym": "s"}
	}
	userOnly := map[string]map[string]string{}
	for p, xs := range all {
		userOnly[p] = map[string]string{}
		for k, v := range xs {
			if strings.HasPrefix(k, "user.") {
				userOnly[p][k] = v
			}
		}
	}
	tests := []struct {
		name string
		opts Options
		want map[string]map[string]string
	}{
		{"all", Options{}, all},
		{"user", Options{UserXattrs: true}, userOnly},
		{"skip", Options{SkipXattrs: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := scanOK(t, f.dir, tt.opts)
			if tt.want == nil {
				tree.Walk(root, func(p string, d *tree.Dirent) error {
					if len(d.Inode.Xattrs) != 0 {
						t.Errorf("%s: xattrs %v", p, d.Inode.Xattrs)
					}
					return nil
				})
				if len(root.Xattrs) != 0 {
					t.Errorf("root xattrs %v", root.Xattrs)
				}
				return
			}
			for p, want := range tt.want {
				// Filesystems may add xattrs of their own (SELinux labels):
				// compare the ones the fixture set.
				got := xattrMap(lookup(t, root, p))
				for k := range got {
					if _, ok := want[k]; !ok && (strings.HasPrefix(k, "user.") || strings.HasPrefix(k, "trusted.")) {
						t.Errorf("%s: unexpected xattr %q", p, k)
					}
				}
				for k, v := range want {
					if g, ok := got[k]; !ok || g != v {
						t.Errorf("%s: xattr %q = %q, %v; want %q", p, k, g, ok, v)
					}
				}
			}
		})
	}
}

func TestXattrSpace(t *testing.T) {
	type x struct {
		name  string
		value int
	}
	long := strings.Repeat("n", 255)
	tests := []struct {
		name   string
		xattrs []x
		ok     bool
	}{
		{"one", []x{{"user.a", 1}}, true},
		{"name 255", []x{{long, 0}}, true},
		{"name 256", []x{{long + "n", 0}}, false},
		{"empty name", []x{{"", 0}}, false},
		{"value 65535", []x{{"user.v", 65535}}, false}, // within the value limit, over the total
		{"value 65536", []x{{"user.v", 65536}}, false},
		// 12 + 7 + 6 + 32742 = 32767: exactly the limit.
		{"total at limit", []x{{"user.v", 32742}}, true},
		{"total over limit", []x{{"user.v", 32743}}, false},
		{"two at limit", []x{{"user.a", 16000}, {"user.b", 16729}}, true},
		{"two over limit", []x{{"user.a", 16000}, {"user.b", 16730}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s xattrSpace
			var err error
			for _, xa := range tt.xattrs {
				if err = s.add(xa.name, xa.value); err != nil {
					break
				}
			}
			if (err == nil) != tt.ok {
				t.Errorf("error %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestOptions(t *testing.T) {
	f := newFixture(t)
	f.build()

	t.Run("UseEpoch", func(t *testing.T) {
		root := scanOK(t, f.dir, Options{UseEpoch: true})
		if root.Mtime != (tree.Timespec{}) {
			t.Errorf("root mtime %+v", root.Mtime)
		}
		tree.Walk(root, func(p string, d *tree.Dirent) error {
			if d.Inode.Mtime != (tree.Timespec{}) {
				t.Errorf("%s: mtime %+v", p, d.Inode.Mtime)
			}
			return nil
		})
	})

	t.Run("SkipDevices", func(t *testing.T) {
		root := scanOK(t, f.dir, Options{SkipDevices: true})
		var names []string
		for _, e := range lookup(t, root, "special").Entries {
			names = append(names, e.Name)
		}
		// Whiteouts are character devices too; fifos and sockets stay.
		if want := []string{"fifo", "sock"}; !reflect.DeepEqual(names, want) {
			t.Errorf("special/ holds %q, want %q", names, want)
		}
		if !isRoot() {
			t.Skip("no devices in the fixture without root")
		}
		full := scanOK(t, f.dir, Options{})
		if n := len(lookup(t, full, "special").Entries); n != 5 {
			t.Errorf("without SkipDevices special/ has %d entries, want 5", n)
		}
	})

	t.Run("conflict", func(t *testing.T) {
		if _, err := Dir(f.dir, Options{SkipXattrs: true, UserXattrs: true}); err == nil {
			t.Error("SkipXattrs with UserXattrs accepted")
		}
	})
	t.Run("threads", func(t *testing.T) {
		if _, err := Dir(f.dir, Options{Threads: -1}); err == nil {
			t.Error("negative thread count accepted")
		}
	})
}

// The tree does not depend on how many goroutines read the files.
func TestDeterminism(t *testing.T) {
	f := newFixture(t)
	f.build()
	// Enough files that workers really interleave.
	for i := range 300 {
		f.file(fmt.Sprintf("many/%03d/f", i%17)+fmt.Sprint(i), content(i*37, byte(i)), 0o644)
	}
	want := scanOK(t, f.dir, Options{Threads: 1})
	for _, threads := range []int{2, 8, 0} {
		for range 3 {
			got := scanOK(t, f.dir, Options{Threads: threads})
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Threads=%d gives a different tree than Threads=1", threads)
			}
		}
	}
}

func TestStore(t *testing.T) {
	f := newFixture(t)
	f.build()
	storeDir := filepath.Join(t.TempDir(), "objects")
	store, err := objects.OpenDir(storeDir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	root := scanOK(t, f.dir, Options{Store: store, Threads: 4})

	want := map[string][]byte{}
	err = tree.Walk(root, func(p string, d *tree.Dirent) error {
		n := d.Inode
		if n.IsReg() && n.Digest != nil {
			data, err := os.ReadFile(filepath.Join(f.dir, p))
			if err != nil {
				return err
			}
			want[n.Payload] = data
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	err = filepath.WalkDir(storeDir, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(storeDir, p)
		got[rel] = true
		data, ok := want[rel]
		if !ok {
			t.Errorf("unexpected file %s in the store", rel)
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(b, data) {
			t.Errorf("object %s differs from its source", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("%d objects in the store, want %d", len(got), len(want))
	}
	// sizes 65 to 3*readBufSize+5, modes/none, xattrs/file, and one object
	// shared by links/a, links/b and links/dup; inline files have none.
	if len(want) != 8 {
		t.Errorf("%d distinct external files, want 8", len(want))
	}

	// A second scan into the full store adds nothing and gives the same tree.
	again := scanOK(t, f.dir, Options{Store: store, Threads: 1})
	if !reflect.DeepEqual(again, root) {
		t.Error("second scan differs")
	}
}

func TestErrors(t *testing.T) {
	f := newFixture(t)
	f.build()
	file := f.path("sizes/1")
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(f.dir, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"missing", f.path("nonexistent"), "no such file"},
		{"file", file, "not a directory"},
		{"symlink", link, "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Dir(tt.path, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.path) {
				t.Errorf("Dir(%q): %v, want an error naming the path and saying %q", tt.path, err, tt.want)
			}
		})
	}

	t.Run("unreadable", func(t *testing.T) {
		if isRoot() {
			t.Skip("root reads files whatever their mode")
		}
		u := newFixture(t)
		u.file("sub/secret", content(100, 1), 0)
		_, err := Dir(u.dir, Options{})
		if err == nil || !strings.Contains(err.Error(), "sub/secret") || !errors.Is(err, fs.ErrPermission) {
			t.Errorf("unreadable file: %v", err)
		}
	})
}

// A file that shrinks while it is read is refused, whether it is read or
// mapped; a mapped one must not crash the process.
func TestFileShrinks(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, content(10, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		size uint64
		hash func(w *worker, fd int, size uint64) error
	}{
		{"read", 1000, (*worker).hashRead},
		{"mapped", 3 * readBufSize, (*worker).hashMapped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fd, err := unix.Open(p, unix.O_RDONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			w := &worker{buf: make([]byte, readBufSize), h: verity.New(verity.SHA256)}
			done := make(chan error)
			go func() {
				debug.SetPanicOnFault(true) // as the scan's workers do
				done <- tt.hash(w, fd, tt.size)
			}()
			if err := <-done; err != errChanged {
				t.Errorf("got %v, want %v", err, errChanged)
			}
		})
	}
}
