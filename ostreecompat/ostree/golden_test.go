package ostree_test

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/ostreecompat/gvariant"
	"github.com/gocfs/gocfs/ostreecompat/ostree"
	"github.com/gocfs/gocfs/ostreecompat/ostree/ostreetest"
)

type manifestEntry struct {
	Path       string            `json:"path"`
	Type       string            `json:"type"`
	Mode       string            `json:"mode"`
	UID        uint32            `json:"uid"`
	GID        uint32            `json:"gid"`
	Xattrs     map[string]string `json:"xattrs"`
	ContentHex string            `json:"content_hex"`
	Target     string            `json:"target"`
	Checksum   string            `json:"ostree_checksum"`
}

func readManifest(t *testing.T, name string) []manifestEntry {
	b, err := os.ReadFile(filepath.Join(ostreetest.GoldenDir(t), "input", name))
	if err != nil {
		t.Fatal(err)
	}
	var m []manifestEntry
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestGoldenFileHeaders checks every file of both manifests: the header
// bytes and the content checksum.
func TestGoldenFileHeaders(t *testing.T) {
	dir := ostreetest.GoldenDir(t)
	n := 0
	for _, man := range []string{"manifest-v1.json", "manifest-v2.json"} {
		for _, e := range readManifest(t, man) {
			if e.Type == "dir" {
				continue
			}
			var mode uint32
			if _, err := fmtSscanOctal(e.Mode, &mode); err != nil {
				t.Fatalf("%s: mode %q", e.Path, e.Mode)
			}
			m := &ostree.FileMeta{UID: e.UID, GID: e.GID, Mode: mode, Target: e.Target}
			for k, v := range e.Xattrs {
				b, err := hex.DecodeString(v)
				if err != nil {
					t.Fatal(err)
				}
				m.Xattrs = append(m.Xattrs, tree.Xattr{Name: k, Value: string(b)})
			}
			content, err := hex.DecodeString(e.ContentHex)
			if err != nil {
				t.Fatal(err)
			}
			hdr, err := m.Header()
			if err != nil {
				t.Fatalf("%s: %v", e.Path, err)
			}
			want, err := os.ReadFile(filepath.Join(dir, "expected", "file-headers", e.Checksum+".header"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(hdr, want[8:]) {
				t.Errorf("%s: header\n%x\nwant\n%x", e.Path, hdr, want[8:])
			}
			c, err := ostree.ContentChecksum(m, bytes.NewReader(content))
			if err != nil || c != e.Checksum {
				t.Errorf("%s: checksum %s (%v), want %s", e.Path, c, err, e.Checksum)
			}
			n++
		}
	}
	if n < 11 {
		t.Errorf("only %d files checked", n)
	}
}

func fmtSscanOctal(s string, v *uint32) (int, error) {
	var x uint64
	for _, c := range s {
		if c < '0' || c > '7' {
			return 0, ostree.ErrInvalid
		}
		x = x*8 + uint64(c-'0')
	}
	*v = uint32(x)
	return 1, nil
}

type goldenCommit struct {
	Label       string  `json:"label"`
	Checksum    string  `json:"checksum"`
	Parent      *string `json:"parent"`
	Subject     string  `json:"subject"`
	Body        string  `json:"body"`
	Timestamp   uint64  `json:"timestamp"`
	Metadata    [][3]json.RawMessage
	RootDirtree string `json:"root_dirtree"`
	RootDirmeta string `json:"root_dirmeta"`
	Content     string `json:"content_checksum"`
}

func (g *goldenCommit) commit(t *testing.T) *ostree.Commit {
	c := &ostree.Commit{Subject: g.Subject, Body: g.Body, Timestamp: g.Timestamp, RootTree: g.RootDirtree, RootMeta: g.RootDirmeta}
	if g.Parent != nil {
		c.Parent = *g.Parent
	}
	for _, m := range g.Metadata {
		var key, sig string
		if json.Unmarshal(m[0], &key) != nil || json.Unmarshal(m[1], &sig) != nil {
			t.Fatalf("%s: bad metadata %s", g.Label, m)
		}
		var v any
		switch sig {
		case "s":
			var s string
			if err := json.Unmarshal(m[2], &s); err != nil {
				t.Fatal(err)
			}
			v = s
		case "as":
			var ss []string
			if err := json.Unmarshal(m[2], &ss); err != nil {
				t.Fatal(err)
			}
			var xs []any
			for _, s := range ss {
				xs = append(xs, s)
			}
			v = xs
		default:
			t.Fatalf("%s: metadata type %s", g.Label, sig)
		}
		vv, err := gvariant.NewVariant(sig, v)
		if err != nil {
			t.Fatal(err)
		}
		c.Metadata = append(c.Metadata, ostree.Metadata{Key: key, Value: vv})
	}
	return c
}

func goldenCommits(t *testing.T) map[string]*goldenCommit {
	b, err := os.ReadFile(filepath.Join(ostreetest.GoldenDir(t), "expected", "commits.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cs []*goldenCommit
	if err := json.Unmarshal(b, &cs); err != nil {
		t.Fatal(err)
	}
	m := map[string]*goldenCommit{}
	for _, c := range cs {
		m[c.Label] = c
	}
	return m
}

// writeGolden writes the golden trees and the four commits into a new
// repository of the mode, checking every checksum on the way, and returns
// the repository and the trees.
func writeGolden(t *testing.T, mode ostree.Mode) (*ostree.Repo, map[string]*tree.Inode) {
	dir := ostreetest.GoldenDir(t)
	r, err := ostree.Create(filepath.Join(t.TempDir(), "repo"), mode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	trees := map[string]*tree.Inode{
		"v1": ostreetest.TarTree(t, filepath.Join(dir, "input", "tree-v1.tar")),
		"v2": ostreetest.TarTree(t, filepath.Join(dir, "input", "tree-v2.tar")),
	}
	gc := goldenCommits(t)
	for _, label := range []string{"v1", "v1-meta", "v2", "v1-detached"} {
		g := gc[label]
		root, err := r.WriteTree(trees[label[:2]], nil)
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		if root.Tree != g.RootDirtree || root.Meta != g.RootDirmeta {
			t.Fatalf("%s: root %v, want %s %s", label, root, g.RootDirtree, g.RootDirmeta)
		}
		c := g.commit(t)
		sum, err := r.WriteCommit(c)
		if err != nil {
			t.Fatal(err)
		}
		if sum != g.Checksum {
			t.Errorf("%s: commit %s, want %s", label, sum, g.Checksum)
		}
		if c.ContentChecksum() != g.Content {
			t.Errorf("%s: content checksum %s, want %s", label, c.ContentChecksum(), g.Content)
		}
		if label == "v1-detached" {
			v, _ := gvariant.NewVariant("s", "example-value")
			if err := r.WriteCommitMeta(sum, []ostree.Metadata{{Key: "example.key", Value: v}}); err != nil {
				t.Fatal(err)
			}
		}
		ref := map[string]string{"v1": "vectors/v1", "v1-meta": "vectors/meta", "v2": "vectors/main", "v1-detached": "vectors/detached"}[label]
		if err := r.SetRef(ref, sum); err != nil {
			t.Fatal(err)
		}
	}
	return r, trees
}

func TestGoldenRepository(t *testing.T) {
	for _, mode := range []ostree.Mode{ostree.ModeBare, ostree.ModeBareUser} {
		t.Run(mode.String(), func(t *testing.T) {
			if mode == ostree.ModeBare {
				ostreetest.RequireRoot(t)
			}
			r, _ := writeGolden(t, mode)
			dir := ostreetest.GoldenDir(t)

			// Every golden metadata object, byte for byte.
			n := 0
			err := filepath.WalkDir(filepath.Join(dir, "expected", "metadata-objects"), func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(filepath.Join(dir, "expected", "metadata-objects"), p)
				want, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				got, err := os.ReadFile(filepath.Join(r.Path(), "objects", rel))
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s: %v\n got %x\nwant %x", rel, err, got, want)
				}
				n++
				return nil
			})
			if err != nil || n != 14 {
				t.Fatalf("%d metadata objects compared: %v", n, err)
			}

			// Every object of checksums.tsv exists under its name.
			checkChecksumsTSV(t, r, dir)
			checkContentObjects(t, r, dir, mode)

			for _, label := range []string{"vectors/v1", "vectors/meta", "vectors/main", "vectors/detached"} {
				c, err := r.ResolveRef(label)
				if err != nil {
					t.Fatal(err)
				}
				if err := r.VerifyCommit(c); err != nil {
					t.Errorf("%s: %v", label, err)
				}
			}
			t.Run("fsck", func(t *testing.T) { ostreetest.Fsck(t, r.Path()) })
		})
	}
}

func checkChecksumsTSV(t *testing.T, r *ostree.Repo, dir string) {
	f, err := os.Open(filepath.Join(dir, "expected", "checksums.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	types := map[string]ostree.ObjectType{"file": ostree.ObjFile, "dirtree": ostree.ObjDirTree,
		"dirmeta": ostree.ObjDirMeta, "commit": ostree.ObjCommit, "commitmeta": ostree.ObjCommitMeta}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		fs := strings.Split(sc.Text(), "\t")
		if strings.HasPrefix(fs[0], "#") {
			continue
		}
		ok, err := r.HasObject(types[fs[0]], fs[1])
		if err != nil || !ok {
			t.Errorf("%s %s (%s) missing: %v", fs[0], fs[1], fs[2], err)
		}
		n++
	}
	if n != 29 {
		t.Errorf("%d rows of checksums.tsv, want 29", n)
	}
}

// checkContentObjects compares the content object inodes with the dump of
// libostree's: permissions, and user.ostreemeta in bare-user mode.
func checkContentObjects(t *testing.T, r *ostree.Repo, dir string, mode ostree.Mode) {
	b, err := os.ReadFile(filepath.Join(dir, "dumps", "content-objects.txt"))
	if err != nil {
		t.Fatal(err)
	}
	section := "### repo-" + mode.String() + " content objects"
	_, rest, ok := strings.Cut(string(b), section)
	if !ok {
		t.Fatalf("no %q in content-objects.txt", section)
	}
	rest, _, _ = strings.Cut(rest, "\n### ")
	var obj string
	n := 0
	for _, l := range strings.Split(rest, "\n") {
		fs := strings.Fields(l)
		switch {
		case len(fs) >= 5 && strings.HasSuffix(fs[4], ".file"):
			obj = filepath.Join(r.Path(), "objects", strings.TrimPrefix(fs[4], "./"))
			var st unix.Stat_t
			if err := unix.Lstat(obj, &st); err != nil {
				t.Errorf("%v", err)
				continue
			}
			if got := modeString(st.Mode); got != fs[0] {
				t.Errorf("%s: mode %s, want %s", obj, got, fs[0])
			}
			if owner := fmt.Sprintf("%d:%d", st.Uid, st.Gid); owner != fs[1] && (mode == ostree.ModeBare || os.Geteuid() == 0) {
				t.Errorf("%s: owner %s, want %s", obj, owner, fs[1])
			}
			if st.Mode&unix.S_IFMT != unix.S_IFLNK && st.Mtim.Sec != 0 {
				t.Errorf("%s: mtime %d", obj, st.Mtim.Sec)
			}
			n++
		case len(fs) == 1 && strings.HasPrefix(fs[0], "user.ostreemeta=0x"):
			want, _ := hex.DecodeString(strings.TrimPrefix(fs[0], "user.ostreemeta=0x"))
			got := make([]byte, 4096)
			k, err := unix.Lgetxattr(obj, "user.ostreemeta", got)
			if err != nil || !bytes.Equal(got[:k], want) {
				t.Errorf("%s: user.ostreemeta %x (%v), want %x", obj, got[:max(k, 0)], err, want)
			}
		case len(fs) == 1 && strings.Contains(fs[0], "=0x"):
			name, v, _ := strings.Cut(fs[0], "=0x")
			want, _ := hex.DecodeString(v)
			got := make([]byte, 4096)
			k, err := unix.Lgetxattr(obj, name, got)
			if err != nil || !bytes.Equal(got[:k], want) {
				t.Errorf("%s: %s %x (%v), want %x", obj, name, got[:max(k, 0)], err, want)
			}
		}
	}
	if n != 11 {
		t.Errorf("%d content objects compared, want 11", n)
	}
}

func modeString(m uint32) string {
	var b strings.Builder
	switch m & unix.S_IFMT {
	case unix.S_IFLNK:
		b.WriteByte('l')
	case unix.S_IFDIR:
		b.WriteByte('d')
	default:
		b.WriteByte('-')
	}
	const rwx = "rwxrwxrwx"
	for i := range 9 {
		if m&(1<<(8-i)) != 0 {
			b.WriteByte(rwx[i])
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}

// TestGoldenCheckout checks out our commit with the ostree CLI and compares
// it with the input tree.
func TestGoldenCheckout(t *testing.T) {
	ostreetest.RequireRoot(t)
	ostreetest.Ostree(t)
	for _, mode := range []ostree.Mode{ostree.ModeBare, ostree.ModeBareUser} {
		t.Run(mode.String(), func(t *testing.T) {
			r, trees := writeGolden(t, mode)
			out := filepath.Join(t.TempDir(), "co")
			ostreetest.Run(t, "checkout", "--repo="+r.Path(), "vectors/main", out)
			ostreetest.CompareDir(t, out, trees["v2"], func(n *tree.Inode) []byte { return n.Content },
				func(string) bool { return false })
		})
	}
}

// TestReadTree reads the commit back: the tree equals the input but for
// mtimes and inline contents, which become object payloads.
func TestReadTree(t *testing.T) {
	r, trees := writeGolden(t, ostree.ModeBareUser)
	c, err := r.ReadCommit(mustResolve(t, r, "vectors/main"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.ReadTree(ostree.Root{Tree: c.RootTree, Meta: c.RootMeta})
	if err != nil {
		t.Fatal(err)
	}
	want := trees["v2"]
	err = tree.Walk(want, func(p string, d *tree.Dirent) error {
		g, err := tree.Resolve(got, p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			return nil
		}
		w := d.Inode
		if g.Mode != w.Mode || g.UID != w.UID || g.GID != w.GID || g.Mtime != (tree.Timespec{}) {
			t.Errorf("%s: %#o %d:%d mtime %v, want %#o %d:%d", p, g.Mode, g.UID, g.GID, g.Mtime, w.Mode, w.UID, w.GID)
		}
		switch {
		case w.IsSymlink():
			if g.Payload != w.Payload {
				t.Errorf("%s: target %q", p, g.Payload)
			}
		case w.IsReg():
			if g.Size != w.Size || (w.Size == 0) != (g.Payload == "") {
				t.Errorf("%s: size %d payload %q", p, g.Size, g.Payload)
			}
			if g.Payload != "" {
				b, err := os.ReadFile(filepath.Join(r.Path(), "objects", g.Payload))
				if err != nil || !bytes.Equal(b, w.Content) {
					t.Errorf("%s: object %s: %v", p, g.Payload, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustResolve(t *testing.T, r *ostree.Repo, ref string) string {
	c, err := r.ResolveRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
