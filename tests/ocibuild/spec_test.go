package ocibuild

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestParseEntries(t *testing.T) {
	got, err := ParseEntries(`
# comment
/                 dir
/a\sb             file mode=4755 uid=7 gid=8 mtime=-5 content=x\ty\n\x00\\
/big              file size=100 seed=3
/l                symlink target=a\sb
/h                hardlink target=/a\sb
/dev/null         char rdev=1:3
/dev/sda          block rdev=8:0 mode=0660
/p                fifo
/gone             whiteout
/d                opaque
/x                file xattr.security.capability=\x01\x02 xattr.user.a=b
`, 42)
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{Path: "/", Type: Dir, Mode: 0o755, Mtime: 42},
		{Path: "/a b", Type: File, Mode: 0o4755, UID: 7, GID: 8, Mtime: -5, Content: []byte("x\ty\n\x00\\")},
		{Path: "/big", Type: File, Mode: 0o644, Mtime: 42, Size: 100, Seed: 3},
		{Path: "/l", Type: Symlink, Mode: 0o777, Mtime: 42, Target: "a b"},
		{Path: "/h", Type: Hardlink, Mode: 0o644, Mtime: 42, Target: "/a b"},
		{Path: "/dev/null", Type: Char, Mode: 0o644, Mtime: 42, Major: 1, Minor: 3},
		{Path: "/dev/sda", Type: Block, Mode: 0o660, Mtime: 42, Major: 8},
		{Path: "/p", Type: Fifo, Mode: 0o644, Mtime: 42},
		{Path: "/gone", Type: Whiteout, Mode: 0o644, Mtime: 42},
		{Path: "/d", Type: Opaque, Mode: 0o644, Mtime: 42},
		{Path: "/x", Type: File, Mode: 0o644, Mtime: 42, Xattrs: map[string]string{"security.capability": "\x01\x02", "user.a": "b"}},
	}
	if !reflect.DeepEqual(got, want) {
		for i := range max(len(got), len(want)) {
			var g, w Entry
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("entry %d:\n got %+v\nwant %+v", i, g, w)
			}
		}
	}
}

func TestParseEntriesErrors(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"/a", "want PATH TYPE"},
		{"/a socket", "unknown type"},
		{"a file", "not absolute and clean"},
		{"/a/../b file", "not absolute and clean"},
		{"/a/ dir", "not absolute and clean"},
		{"/ file", "root can only be"},
		{"/ whiteout", "root can only be"},
		{"/a file mode", "not KEY=VALUE"},
		{"/a file colour=red", "unknown key"},
		{"/a file mode=999", "mode"},
		{"/a file mode=10000", "mode"},
		{"/a file uid=-1", "uid"},
		{"/a file size=-1", "size"},
		{"/a file size=3 content=x", "both content and size"},
		{"/a dir content=x", "content or size on a dir"},
		{"/a symlink", "target is required"},
		{"/a file target=b", "target is required"},
		{"/a hardlink target=b", "not absolute and clean"},
		{"/a file rdev=1:2", "rdev on a file"},
		{"/a char rdev=1", "MAJOR:MINOR"},
		{"/a file content=\\", "trailing backslash"},
		{"/a file content=\\q", "unknown escape"},
		{"/a file content=\\x4", "short \\x escape"},
		{"/a file content=\\xzz", "bad \\x escape"},
		{"/a\\ file", "trailing backslash"},
	} {
		_, err := ParseEntries("# first\n"+tc.spec, 0)
		if err == nil {
			t.Errorf("%q: no error", tc.spec)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%q: error %q, want it to mention line 2 and %q", tc.spec, err, tc.want)
		}
	}
}

func TestGenerate(t *testing.T) {
	a, b, c := Generate(1, 1000), Generate(1, 1000), Generate(2, 1000)
	if len(a) != 1000 || !bytes.Equal(a, b) || bytes.Equal(a, c) {
		t.Fatal("Generate is not a deterministic function of the seed")
	}
	if !bytes.Equal(Generate(1, 10), a[:10]) {
		t.Fatal("shorter output is not a prefix")
	}
	e := Entry{Type: File, Size: 5, Seed: 1}
	if !bytes.Equal(e.Data(), a[:5]) || e.DataSize() != 5 {
		t.Fatal("Entry.Data does not use Generate")
	}
	e = Entry{Type: File, Content: []byte("abc")}
	if string(e.Data()) != "abc" || e.DataSize() != 3 {
		t.Fatal("Entry.Data ignores Content")
	}
}

func TestTypeString(t *testing.T) {
	if Opaque.String() != "opaque" || Type(0).String() != "type(0)" || Type(99).String() != "type(99)" {
		t.Fatal("Type.String")
	}
}
