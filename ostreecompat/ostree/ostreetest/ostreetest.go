// Package ostreetest holds helpers for tests of ostree repositories: the
// golden input trees, the ostree CLI as a checker, and comparisons of
// checkouts with trees.
package ostreetest

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/tests/golden"
)

// GoldenDir returns the directory of the ostree golden vectors.
func GoldenDir(t testing.TB) string {
	t.Helper()
	return filepath.Join(golden.Dir(t), "ostree")
}

// TarTree reads a tar archive into a tree: regular files with their bytes
// inline, xattrs from the PAX SCHILY.xattr records, owners numeric, mtimes
// kept. The entry "./" sets the root's metadata.
func TarTree(t testing.TB, p string) *tree.Inode {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	root := &tree.Inode{Mode: tree.TypeDir | 0o755, Nlink: 1}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return root
		}
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		n := &tree.Inode{
			Mode:  uint32(h.Mode) & 0o7777,
			UID:   uint32(h.Uid),
			GID:   uint32(h.Gid),
			Nlink: 1,
			Mtime: tree.Timespec{Sec: h.ModTime.Unix()},
		}
		for k, v := range h.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				n.Xattrs = append(n.Xattrs, tree.Xattr{Name: name, Value: v})
			}
		}
		n.SortXattrs()
		switch h.Typeflag {
		case tar.TypeDir:
			n.Mode |= tree.TypeDir
		case tar.TypeReg:
			n.Mode |= tree.TypeReg
			if n.Content, err = io.ReadAll(tr); err != nil {
				t.Fatalf("%s: %s: %v", p, h.Name, err)
			}
			n.Size = uint64(len(n.Content))
		case tar.TypeSymlink:
			n.Mode |= tree.TypeLnk
			n.Payload = h.Linkname
			n.Size = uint64(len(h.Linkname))
		default:
			t.Fatalf("%s: %s: unexpected type %c", p, h.Name, h.Typeflag)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." {
			n.Entries = root.Entries
			*root = *n
			continue
		}
		dir := path.Dir(name)
		if dir == "." {
			dir = ""
		}
		parent, err := tree.Resolve(root, dir)
		if err != nil {
			t.Fatalf("%s: %s: %v", p, h.Name, err)
		}
		if err := parent.Insert(&tree.Dirent{Name: path.Base(name), Inode: n}); err != nil {
			t.Fatalf("%s: %s: %v", p, h.Name, err)
		}
	}
}

// Ostree returns the path of the ostree CLI, or skips the test.
func Ostree(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("ostree")
	if err != nil {
		t.Skip("SKIP: the ostree CLI is not installed (Debian package ostree)")
	}
	return p
}

// Run runs the ostree CLI and returns its output, failing the test when it
// fails.
func Run(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(Ostree(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("ostree %s: %v\n%s", strings.Join(args, " "), err, out.Bytes())
	}
	return out.String()
}

// Fsck runs `ostree fsck` on a repository and fails the test on any error
// or warning it prints.
func Fsck(t testing.TB, repo string) {
	t.Helper()
	out := Run(t, "fsck", "--repo="+repo)
	low := strings.ToLower(out)
	if !strings.Contains(out, "- no errors found") || strings.Contains(low, "warning") || strings.Contains(low, "corrupt") {
		t.Fatalf("ostree fsck --repo=%s:\n%s", repo, out)
	}
}

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root (owners and xattrs of bare repositories)")
	}
}

// CompareDir compares the directory dir on disk with the tree want: names,
// types, permissions, owners, symlink targets, contents and xattrs, but not
// mtimes. content returns the bytes of a regular file of want. Xattrs the
// filesystem adds by itself are ignored when ignoreXattr says so.
func CompareDir(t testing.TB, dir string, want *tree.Inode, content func(*tree.Inode) []byte, ignoreXattr func(string) bool) {
	t.Helper()
	var walk func(p string, n *tree.Inode)
	walk = func(p string, n *tree.Inode) {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Errorf("%s: %v", p, err)
			return
		}
		if st.Mode&tree.TypeMask != n.Type() || st.Mode&0o7777 != n.Mode&0o7777 || st.Uid != n.UID || st.Gid != n.GID {
			t.Errorf("%s: mode %#o %d:%d, want %#o %d:%d", p, st.Mode, st.Uid, st.Gid, n.Mode, n.UID, n.GID)
		}
		got := xattrs(t, p, ignoreXattr)
		var wantX []tree.Xattr
		for _, x := range n.Xattrs {
			if x.Value != "" && !ignoreXattr(x.Name) {
				wantX = append(wantX, x)
			}
		}
		slices.SortFunc(wantX, func(a, b tree.Xattr) int { return strings.Compare(a.Name, b.Name) })
		if !slices.Equal(got, wantX) {
			t.Errorf("%s: xattrs %q, want %q", p, got, wantX)
		}
		switch {
		case n.IsSymlink():
			if l, err := os.Readlink(p); err != nil || l != n.Payload {
				t.Errorf("%s: symlink to %q (%v), want %q", p, l, err, n.Payload)
			}
		case n.IsReg():
			b, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(b, content(n)) {
				t.Errorf("%s: content differs (%v)", p, err)
			}
		case n.IsDir():
			ents, err := os.ReadDir(p)
			if err != nil {
				t.Errorf("%s: %v", p, err)
				return
			}
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			var wantNames []string
			for _, d := range n.Entries {
				wantNames = append(wantNames, d.Name)
			}
			if !slices.Equal(names, wantNames) {
				t.Errorf("%s: entries %q, want %q", p, names, wantNames)
				return
			}
			for _, d := range n.Entries {
				walk(filepath.Join(p, d.Name), d.Inode)
			}
		}
	}
	walk(dir, want)
}

func xattrs(t testing.TB, p string, ignore func(string) bool) []tree.Xattr {
	t.Helper()
	buf := make([]byte, 1<<16)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		t.Fatalf("%s: %v", p, err)
	}
	var xs []tree.Xattr
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" || ignore(name) {
			continue
		}
		v := make([]byte, 1<<16)
		k, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("%s: %s: %v", p, name, err)
		}
		if k > 0 {
			xs = append(xs, tree.Xattr{Name: name, Value: string(v[:k])})
		}
	}
	slices.SortFunc(xs, func(a, b tree.Xattr) int { return strings.Compare(a.Name, b.Name) })
	return xs
}
