package ostree_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/ostreecompat/gvariant"
	"github.com/gocfs/gocfs/ostreecompat/ostree"
)

func newRepo(t *testing.T, mode ostree.Mode) *ostree.Repo {
	t.Helper()
	r, err := ostree.Create(filepath.Join(t.TempDir(), "repo"), mode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestCreateOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "repo")
	r, err := ostree.Create(dir, ostree.ModeBareUser)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	b, err := os.ReadFile(filepath.Join(dir, "config"))
	if err != nil || string(b) != "[core]\nrepo_version=1\nmode=bare-user\n" {
		t.Errorf("config %q (%v)", b, err)
	}
	for _, d := range []string{"objects", "tmp", "refs/heads", "refs/remotes", "refs/mirrors", "state", "extensions"} {
		if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", d, err)
		}
	}
	if r, err = ostree.Create(dir, ostree.ModeBareUser); err != nil {
		t.Errorf("create again: %v", err)
	} else {
		r.Close()
	}
	if _, err := ostree.Create(dir, ostree.ModeBare); err == nil {
		t.Error("create with another mode succeeded")
	}
	for _, tc := range []struct{ config, want string }{
		{"[core]\nrepo_version=1\nmode=archive-z2\n", "not supported"},
		{"[core]\nrepo_version=2\nmode=bare\n", "repo_version"},
		{"[core]\nmode=bare\n", "repo_version"},
		{"repo_version=1\n", "outside any group"},
		{"[core\n", "bad group"},
		{"[core]\nnonsense\n", "not a key=value"},
	} {
		if err := os.WriteFile(filepath.Join(dir, "config"), []byte(tc.config), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ostree.Open(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %q: got %v, want %q", tc.config, err, tc.want)
		}
	}
	if _, err := ostree.Open(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("open of an empty directory: %v", err)
	}
}

func TestConfigValue(t *testing.T) {
	r := newRepo(t, ostree.ModeBareUser)
	cfg := filepath.Join(r.Path(), "config")
	if err := os.WriteFile(cfg, []byte("# comment\n[core]\nrepo_version=1\nmode=bare-user\n\n[remote \"x\"]\nurl=http://example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	steps := []struct{ group, key, value string }{
		{"composefs", "unified", "true"},
		{"composefs", "unified", "false"},
		{"core", "min-free-space-percent", "3"},
	}
	for _, s := range steps {
		if err := r.SetConfigValue(s.group, s.key, s.value); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(cfg)
	want := "# comment\n[core]\nrepo_version=1\nmode=bare-user\nmin-free-space-percent=3\n\n[remote \"x\"]\nurl=http://example.com\n\n[composefs]\nunified=false\n"
	if string(b) != want {
		t.Errorf("config\n%s\nwant\n%s", b, want)
	}
	if v, ok, err := r.ConfigValue("composefs", "unified"); v != "false" || !ok || err != nil {
		t.Errorf("ConfigValue = %q %v %v", v, ok, err)
	}
	if _, ok, _ := r.ConfigValue("composefs", "nothing"); ok {
		t.Error("absent key found")
	}
	for _, bad := range [][3]string{{"core", "mode", "bare"}, {"g", "k", "a\nb"}, {"g]", "k", "v"}, {"g", "k=", "v"}, {"", "k", "v"}} {
		if err := r.SetConfigValue(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("SetConfigValue%q succeeded", bad)
		}
	}
	if _, err := ostree.Open(r.Path()); err != nil {
		t.Errorf("reopen: %v", err)
	}
}

// writeSmall writes a small tree and commit and returns the commit.
func writeSmall(t *testing.T, r *ostree.Repo) string {
	t.Helper()
	root := &tree.Inode{Mode: tree.TypeDir | 0o755}
	f := &tree.Inode{Mode: tree.TypeReg | 0o644, Content: []byte("content\n"), Size: 8}
	for _, e := range []*tree.Dirent{
		{Name: "a", Inode: f},
		{Name: "b", Inode: f, Hardlink: true},
		{Name: "l", Inode: &tree.Inode{Mode: tree.TypeLnk | 0o777, Payload: "a", Size: 1}},
		{Name: "d", Inode: &tree.Inode{Mode: tree.TypeDir | 0o700}},
	} {
		if err := root.Insert(e); err != nil {
			t.Fatal(err)
		}
	}
	rt, err := r.WriteTree(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.WriteCommit(&ostree.Commit{RootTree: rt.Tree, RootMeta: rt.Meta, Subject: "small", Timestamp: 1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRefs(t *testing.T) {
	r := newRepo(t, ostree.ModeBareUser)
	c := writeSmall(t, r)
	for _, name := range []string{"main", "a/b/c", "x-1.2_3"} {
		if err := r.SetRef(name, c); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if got, err := r.ResolveRef(name); got != c || err != nil {
			t.Errorf("%s resolves to %s (%v)", name, got, err)
		}
	}
	if err := r.SetRef("origin:main", c); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(r.Path(), "refs", "remotes", "origin", "main")); err != nil || string(b) != c+"\n" {
		t.Errorf("remote ref file %q (%v)", b, err)
	}
	for _, bad := range []string{"", "a//b", "../x", "a/./b", "sp ace", "é", "/abs", "a:b:c"} {
		if err := r.SetRef(bad, c); !errors.Is(err, ostree.ErrInvalid) {
			t.Errorf("SetRef(%q): %v", bad, err)
		}
	}
	missing := strings.Repeat("0", 64)
	if err := r.SetRef("m", missing); !errors.Is(err, ostree.ErrNotFound) {
		t.Errorf("SetRef to a missing commit: %v", err)
	}
	if got, err := r.ResolveRef(missing); got != missing || err != nil {
		t.Errorf("a checksum resolves to %q (%v)", got, err)
	}
	if _, err := r.ResolveRef("nothing"); !errors.Is(err, ostree.ErrNotFound) {
		t.Errorf("missing ref: %v", err)
	}
	refs, err := r.Refs()
	if err != nil || len(refs) != 3 || refs["a/b/c"] != c {
		t.Errorf("Refs = %v (%v)", refs, err)
	}
	if err := r.DeleteRef("main"); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteRef("main"); !errors.Is(err, ostree.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
}

func TestWriteTreeRefuses(t *testing.T) {
	r := newRepo(t, ostree.ModeBareUser)
	for _, tc := range []struct {
		name  string
		entry *tree.Dirent
		want  string
	}{
		{"name", &tree.Dirent{Name: "n\xff", Inode: &tree.Inode{Mode: tree.TypeReg | 0o644}}, `"/sub/n\xff"`},
		{"target", &tree.Dirent{Name: "l", Inode: &tree.Inode{Mode: tree.TypeLnk | 0o777, Payload: "\xff"}}, `"/sub/l"`},
		{"device", &tree.Dirent{Name: "c", Inode: &tree.Inode{Mode: tree.TypeChr | 0o600, Rdev: 5}}, `"/sub/c"`},
		{"content", &tree.Dirent{Name: "f", Inode: &tree.Inode{Mode: tree.TypeReg | 0o644, Size: 3}}, `"/sub/f"`},
		{"dot", &tree.Dirent{Name: "..", Inode: &tree.Inode{Mode: tree.TypeReg | 0o644}}, `"/sub/.."`},
	} {
		sub := &tree.Inode{Mode: tree.TypeDir | 0o755, Entries: []*tree.Dirent{tc.entry}}
		root := &tree.Inode{Mode: tree.TypeDir | 0o755, Entries: []*tree.Dirent{{Name: "sub", Inode: sub}}}
		_, err := r.WriteTree(root, nil)
		if !errors.Is(err, ostree.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
}

func TestHardlinkWrittenOnce(t *testing.T) {
	r := newRepo(t, ostree.ModeBareUser)
	calls := 0
	root := &tree.Inode{Mode: tree.TypeDir | 0o755}
	f := &tree.Inode{Mode: tree.TypeReg | 0o644, Content: []byte("x"), Size: 1}
	root.Insert(&tree.Dirent{Name: "a", Inode: f})
	root.Insert(&tree.Dirent{Name: "b", Inode: f, Hardlink: true})
	_, err := r.WriteTree(root, func(p string, n *tree.Inode) (string, error) {
		calls++
		return r.WriteFile(ostree.FileMetaOf(n), bytes.NewReader(n.Content))
	})
	if err != nil || calls != 1 {
		t.Errorf("%d calls (%v)", calls, err)
	}
}

func TestCommitMeta(t *testing.T) {
	r := newRepo(t, ostree.ModeBareUser)
	c := writeSmall(t, r)
	if md, err := r.ReadCommitMeta(c); md != nil || err != nil {
		t.Errorf("no commitmeta: %v %v", md, err)
	}
	v, _ := gvariant.NewVariant("aay", []any{[]byte{1, 2}, []byte{3}})
	if err := r.WriteCommitMeta(c, []ostree.Metadata{{Key: "ostree.sign.ed25519", Value: v}}); err != nil {
		t.Fatal(err)
	}
	md, err := r.ReadCommitMeta(c)
	if err != nil || len(md) != 1 || md[0].Key != "ostree.sign.ed25519" || md[0].Value.Type.String() != "aay" {
		t.Errorf("commitmeta %v (%v)", md, err)
	}
	if err := r.VerifyCommit(c); err != nil {
		t.Error(err)
	}
}

// TestVerifyCommitCorruption changes objects behind the writer's back.
func TestVerifyCommitCorruption(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, r *ostree.Repo, c *ostree.Commit)
		want   string
	}{
		{"content", func(t *testing.T, r *ostree.Repo, c *ostree.Commit) {
			appendTo(t, fileObject(t, r, c, "a"), "more")
		}, "metadata and content have checksum"},
		{"ostreemeta", func(t *testing.T, r *ostree.Repo, c *ostree.Commit) {
			m := &ostree.FileMeta{Mode: tree.TypeReg | 0o755}
			other, err := r.WriteFile(m, strings.NewReader("content\n"))
			if err != nil {
				t.Fatal(err)
			}
			// The object of a with the metadata of another.
			os.Remove(fileObject(t, r, c, "a"))
			if err := os.Link(filepath.Join(r.Path(), "objects", ostree.LoosePath(other, ostree.ObjFile)), fileObject(t, r, c, "a")); err != nil {
				t.Fatal(err)
			}
		}, "metadata and content have checksum"},
		{"dirtree", func(t *testing.T, r *ostree.Repo, c *ostree.Commit) {
			appendTo(t, filepath.Join(r.Path(), "objects", ostree.LoosePath(c.RootTree, ostree.ObjDirTree)), "\x00")
		}, "content has checksum"},
		{"missing", func(t *testing.T, r *ostree.Repo, c *ostree.Commit) {
			os.Remove(fileObject(t, r, c, "l"))
		}, "file does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRepo(t, ostree.ModeBareUser)
			sum := writeSmall(t, r)
			c, err := r.ReadCommit(sum)
			if err != nil {
				t.Fatal(err)
			}
			tc.damage(t, r, c)
			if err := r.VerifyCommit(sum); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func fileObject(t *testing.T, r *ostree.Repo, c *ostree.Commit, name string) string {
	t.Helper()
	dt, err := r.ReadDirTree(c.RootTree)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range dt.Files {
		if f.Name == name {
			return filepath.Join(r.Path(), "objects", ostree.LoosePath(f.Checksum, ostree.ObjFile))
		}
	}
	t.Fatalf("no file %s", name)
	return ""
}

func appendTo(t *testing.T, p, s string) {
	t.Helper()
	os.Chmod(p, 0o644)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(s)
	f.Close()
}

func TestParseRejects(t *testing.T) {
	sum := bytes.Repeat([]byte{1}, 32)
	enc := func(sig string, v any) []byte {
		b, err := gvariant.Marshal(gvariant.MustParseType(sig), v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	dirtree := "(a(say)a(sayay))"
	for _, tc := range []struct {
		name  string
		parse func([]byte) error
		data  []byte
	}{
		{"dirtree unsorted", parseDirTree, enc(dirtree, []any{[]any{[]any{"b", sum}, []any{"a", sum}}, []any{}})},
		{"dirtree file and dir", parseDirTree, enc(dirtree, []any{[]any{[]any{"a", sum}}, []any{[]any{"a", sum, sum}}})},
		{"dirtree short checksum", parseDirTree, enc(dirtree, []any{[]any{[]any{"a", sum[:31]}}, []any{}})},
		{"dirtree slash", parseDirTree, enc(dirtree, []any{[]any{[]any{"a/b", sum}}, []any{}})},
		{"dirtree not normal", parseDirTree, []byte{0, 0}},
		{"dirmeta file mode", parseDirMeta, enc("(uuua(ayay))", []any{uint32(0), uint32(0), uint32(0xa4810000), []any{}})},
		{"dirmeta xattr without NUL", parseDirMeta, enc("(uuua(ayay))", []any{uint32(0), uint32(0), uint32(0xed410000), []any{[]any{[]byte("user.x"), []byte("v")}}})},
		{"commit short root", parseCommit, enc("(a{sv}aya(say)sstayay)", []any{[]any{}, []byte{}, []any{}, "", "", uint64(0), sum[:4], sum})},
		{"commit short parent", parseCommit, enc("(a{sv}aya(say)sstayay)", []any{[]any{}, sum[:5], []any{}, "", "", uint64(0), sum, sum})},
		{"metadata empty key", parseMetadata, enc("a{sv}", []any{gvariant.DictEntry{Key: "", Value: gvariant.Variant{Type: gvariant.MustParseType("b"), Value: true}}})},
	} {
		if err := tc.parse(tc.data); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func parseDirTree(b []byte) error { _, err := ostree.ParseDirTree(b); return err }
func parseDirMeta(b []byte) error { _, err := ostree.ParseDirMeta(b); return err }
func parseCommit(b []byte) error  { _, err := ostree.ParseCommit(b); return err }
func parseMetadata(b []byte) error {
	_, err := ostree.ParseMetadata(b)
	return err
}

func TestFileMetaRejects(t *testing.T) {
	for _, m := range []ostree.FileMeta{
		{Mode: tree.TypeDir | 0o755},
		{Mode: tree.TypeReg | 0o644, Target: "x"},
		{Mode: tree.TypeLnk | 0o777},
		{Mode: tree.TypeLnk | 0o777, Target: "a\x00b"},
		{Mode: tree.TypeReg | 0o644 | 1<<20},
		{Mode: tree.TypeReg | 0o644, Xattrs: []tree.Xattr{{Name: "user.a", Value: "1"}, {Name: "user.a", Value: "2"}}},
		{Mode: tree.TypeReg | 0o644, Xattrs: []tree.Xattr{{Name: "", Value: "1"}}},
	} {
		if _, err := m.Header(); !errors.Is(err, ostree.ErrInvalid) {
			t.Errorf("%+v: %v", m, err)
		}
	}
	// Empty values are left out, order does not matter.
	a := ostree.FileMeta{Mode: tree.TypeReg | 0o644, Xattrs: []tree.Xattr{{Name: "user.b", Value: "2"}, {Name: "user.e"}, {Name: "user.a", Value: "1"}}}
	b := ostree.FileMeta{Mode: tree.TypeReg | 0o644, Xattrs: []tree.Xattr{{Name: "user.a", Value: "1"}, {Name: "user.b", Value: "2"}}}
	ha, _ := a.Header()
	hb, _ := b.Header()
	if !bytes.Equal(ha, hb) {
		t.Errorf("headers differ:\n%x\n%x", ha, hb)
	}
}
