package oci

import (
	"archive/tar"
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/verity"
)

const capValue = "\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

func digestHex(s string) string {
	return hex.EncodeToString(verity.DigestBytes([]byte(s), verity.SHA256))
}

func external(s string) string {
	h := digestHex(s)
	return h[:2] + "/" + h[2:] + " - " + h
}

var (
	big    = strings.Repeat("b", 65)
	medium = strings.Repeat("medium ", 20000)
	huge   = strings.Repeat("0123456789abcdef", 1<<17) + "xyz" // more than bufferedMax
	long   = strings.Repeat("n", 150)
)

func baseLayer() []ent {
	return []ent{
		{name: "./", typ: tar.TypeDir, mode: 0o700, uid: 5, mtime: 10},
		{name: "usr/", typ: tar.TypeDir, mode: 0o755, mtime: 100, pax: map[string]string{"SCHILY.xattr.security.selinux": "system_u:object_r:usr_t:s0"}},
		{name: "usr/bin/", typ: tar.TypeDir, mode: 0o755, mtime: 101},
		{name: "usr/bin/small", body: "hello\n", mtime: 102},
		{name: "usr/bin/exact", body: strings.Repeat("e", 64), mtime: 103},
		{name: "usr/bin/big", body: big, mode: 0o4755, uid: 1, gid: 2, mtime: 104,
			pax: map[string]string{"SCHILY.xattr.security.capability": capValue, "SCHILY.xattr.user.foo": "bar"}},
		{name: "usr/bin/medium", body: medium, mtime: 105},
		{name: "usr/bin/huge", body: huge, mtime: 106},
		{name: "usr/bin/empty", body: "", mtime: 107},
		{name: "usr/bin/link", typ: tar.TypeLink, link: "usr/bin/big"},
		{name: "usr/bin/sym", typ: tar.TypeSymlink, link: "big", mode: 0o777, mtime: 108},
		{name: "usr/share/", typ: tar.TypeDir, mode: 0o755, mtime: 109},
		{name: "usr/share/" + long, body: "long name\n", mtime: 110, format: tar.FormatGNU},
		{name: "dev/", typ: tar.TypeDir, mode: 0o755, mtime: 111},
		{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3, mtime: 112},
		{name: "dev/sda", typ: tar.TypeBlock, mode: 0o660, major: 8, minor: 0, mtime: 113},
		{name: "dev/fifo", typ: tar.TypeFifo, mode: 0o600, mtime: 114},
		{name: "run/", typ: tar.TypeDir, mode: 0o755, mtime: 115},
		{name: "run/x", body: "gone", mtime: 116},
		{name: "etc/", typ: tar.TypeDir, mode: 0o755, mtime: 117},
		{name: "etc/a", body: "a", mtime: 118},
		{name: "etc/b", body: "b", mtime: 119},
		{name: "etc/sub/", typ: tar.TypeDir, mode: 0o755, mtime: 120},
		{name: "etc/sub/c", body: "c", mtime: 121},
	}
}

func upperLayer() []ent {
	return []ent{
		{name: "etc/.wh.a", body: ""},
		{name: "etc/sub/", typ: tar.TypeDir, mode: 0o700, mtime: 200},
		{name: "etc/sub/.wh..wh..opq", body: ""},
		{name: "etc/sub/d", body: "d", mtime: 201},
		{name: "usr/bin/big", body: "new", mtime: 202},
		{name: "/usr/bin/abs", body: "absolute names stay inside", mtime: 203},
	}
}

func TestSplitRoundTrip(t *testing.T) {
	for _, pad := range []int{0, 10240} {
		t.Run(fmt.Sprintf("pad%d", pad), func(t *testing.T) {
			store := newMemStore()
			data := tarBytes(t, baseLayer(), pad)
			rd, st, err := splitBytes(t, store, data)
			if err != nil {
				t.Fatal(err)
			}
			if st.Objects != 3 || st.ObjectBytes != int64(len(big)+len(medium)+len(huge)) {
				t.Errorf("stats %+v: want 3 objects of %d bytes", st, len(big)+len(medium)+len(huge))
			}
			if st.InlineBytes+st.ObjectBytes != int64(len(data)) || rd.StreamSize() != int64(len(data)) {
				t.Errorf("stream size %d, inline %d + objects %d, want %d", rd.StreamSize(), st.InlineBytes, st.ObjectBytes, len(data))
			}
			var out bytes.Buffer
			if err := rd.Reassemble(&out, store.open); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), data) {
				t.Fatalf("reassembled %d bytes differ from the %d of the archive", out.Len(), len(data))
			}
			if len(rd.ObjectRefs()) != 3 {
				t.Errorf("%d object refs, want 3", len(rd.ObjectRefs()))
			}
		})
	}
}

func TestApplyLayers(t *testing.T) {
	store := newMemStore()
	root, err := applyLayers(t, store, tarBytes(t, baseLayer(), 0), tarBytes(t, upperLayer(), 10240))
	if err != nil {
		t.Fatal(err)
	}
	want := normDump(t, fmt.Sprintf(`/ 0 40755 6 0 0 0 100.0 - - -
/dev 0 40755 2 0 0 0 111.0 - - -
/dev/fifo 0 10600 1 0 0 0 114.0 - - -
/dev/null 0 20666 1 0 0 259 112.0 - - -
/dev/sda 0 60660 1 0 0 2048 113.0 - - -
/etc 0 40755 3 0 0 0 117.0 - - -
/etc/b 1 100644 1 0 0 0 119.0 - b -
/etc/sub 0 40700 2 0 0 0 200.0 - - -
/etc/sub/d 1 100644 1 0 0 0 201.0 - d -
/run 0 40755 2 0 0 0 100.0 - - -
/usr 0 40755 4 0 0 0 100.0 - - -
/usr/bin 0 40755 2 0 0 0 101.0 - - -
/usr/bin/abs 26 100644 1 0 0 0 203.0 - absolute\x20names\x20stay\x20inside -
/usr/bin/big 3 100644 1 0 0 0 202.0 - new -
/usr/bin/empty 0 100644 1 0 0 0 107.0 - - -
/usr/bin/exact 64 100644 1 0 0 0 103.0 - %s -
/usr/bin/huge %d 100644 1 0 0 0 106.0 %s
/usr/bin/link 65 104755 1 1 2 0 104.0 %s security.capability=%s
/usr/bin/medium %d 100644 1 0 0 0 105.0 %s
/usr/bin/small 6 100644 1 0 0 0 102.0 - hello\n -
/usr/bin/sym 3 120777 1 0 0 0 108.0 big - -
/usr/share 0 40755 2 0 0 0 109.0 - - -
/usr/share/%s 10 100644 1 0 0 0 110.0 - long\x20name\n -
`, strings.Repeat("e", 64), len(huge), external(huge), external(big), escapeXattr(capValue),
		len(medium), external(medium), long))
	if got := dump(t, root); got != want {
		t.Errorf("tree:\n%s\nwant:\n%s", got, want)
	}
}

// escapeXattr writes a value as a dumpfile does.
func escapeXattr(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x21 || c > 0x7e || c == '\\' || c == '=' {
			fmt.Fprintf(&b, "\\x%02x", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func TestHardlinks(t *testing.T) {
	layer := []ent{
		{name: "usr/", typ: tar.TypeDir, mode: 0o755},
		{name: "usr/a", body: big},
		{name: "usr/b", typ: tar.TypeLink, link: "/usr/a"},
		{name: "usr/c", typ: tar.TypeLink, link: "./usr/b"},
		{name: "usr/s", body: "small"},
		{name: "usr/t", typ: tar.TypeLink, link: "usr/s"},
	}
	root, err := applyLayers(t, newMemStore(), tarBytes(t, layer, 0))
	if err != nil {
		t.Fatal(err)
	}
	usr, _ := tree.Resolve(root, "usr")
	a, b, c := usr.Lookup("a"), usr.Lookup("b"), usr.Lookup("c")
	if a.Inode != b.Inode || a.Inode != c.Inode || a.Inode.Nlink != 3 {
		t.Errorf("a, b, c: not one inode with 3 links (nlink %d)", a.Inode.Nlink)
	}
	if a.Hardlink || !b.Hardlink || !c.Hardlink {
		t.Errorf("hardlink marks %v %v %v, want false true true", a.Hardlink, b.Hardlink, c.Hardlink)
	}
	if s, tt := usr.Lookup("s"), usr.Lookup("t"); s.Inode != tt.Inode || s.Inode.Nlink != 2 {
		t.Errorf("s and t: not one inode with 2 links")
	}
}

func TestHostileLayers(t *testing.T) {
	usr := ent{name: "usr/", typ: tar.TypeDir, mode: 0o755}
	tests := []struct {
		name   string
		layers [][]ent
		err    string // substring of the error; empty for success
		check  func(t *testing.T, root *tree.Inode)
	}{
		{"dotdot", [][]ent{{usr, {name: "../etc/passwd", body: "x"}}}, `".." component`, nil},
		{"dotdot inside", [][]ent{{usr, {name: "usr/../../x", body: "x"}}}, `".." component`, nil},
		{"absolute", [][]ent{{usr, {name: "/usr/x", body: "x"}}}, "", func(t *testing.T, root *tree.Inode) {
			if _, err := tree.Resolve(root, "usr/x"); err != nil {
				t.Error(err)
			}
		}},
		{"symlinked parent", [][]ent{
			{usr, {name: "usr/lib", typ: tar.TypeSymlink, link: "/etc"}},
			{{name: "usr/lib/passwd", body: "x"}},
		}, "is a symlink", nil},
		{"symlinked parent to dotdot", [][]ent{
			{usr, {name: "usr/up", typ: tar.TypeSymlink, link: "../../.."}, {name: "usr/up/x", body: "x"}},
		}, "is a symlink", nil},
		{"file as parent", [][]ent{{usr, {name: "usr/f", body: "x"}, {name: "usr/f/x", body: "x"}}}, "not a directory", nil},
		{"missing parent", [][]ent{{usr, {name: "usr/no/x", body: "x"}}}, "does not exist", nil},
		{"whiteout missing parent", [][]ent{{usr}, {{name: "opt/.wh.x"}}}, "does not exist", nil},
		{"hardlink to missing", [][]ent{{usr, {name: "usr/l", typ: tar.TypeLink, link: "usr/none"}}}, "does not exist", nil},
		{"hardlink to directory", [][]ent{{usr, {name: "usr/l", typ: tar.TypeLink, link: "usr"}}}, "is a directory", nil},
		{"hardlink outside", [][]ent{{usr, {name: "usr/l", typ: tar.TypeLink, link: "../../etc/passwd"}}}, `".." component`, nil},
		{"hardlink to root", [][]ent{{usr, {name: "usr/l", typ: tar.TypeLink, link: "./"}}}, "root directory", nil},
		{"hardlink through symlink", [][]ent{
			{usr, {name: "usr/d", typ: tar.TypeSymlink, link: "/"}, {name: "usr/l", typ: tar.TypeLink, link: "usr/d/usr"}},
		}, "is a symlink", nil},
		{"duplicate entries", [][]ent{{usr, {name: "usr/x", body: "first"}, {name: "usr/x", body: "second"}}}, "",
			func(t *testing.T, root *tree.Inode) {
				if n, err := tree.Resolve(root, "usr/x"); err != nil || string(n.Content) != "second" {
					t.Errorf("usr/x: %v, content %q, want the later entry", err, n.Content)
				}
			}},
		{"directory replaces file", [][]ent{{usr, {name: "usr/x", body: "file"}, {name: "usr/x/", typ: tar.TypeDir}, {name: "usr/x/y", body: "y"}}}, "", nil},
		{"huge name", [][]ent{{usr, {name: "usr/" + strings.Repeat("x", 256), body: "x", format: tar.FormatPAX}}}, "more than 255", nil},
		{"root not a directory", [][]ent{{usr, {name: ".", body: ""}}}, "root of the tree", nil},
		{"empty symlink", [][]ent{{usr, {name: "usr/s", typ: tar.TypeSymlink, link: ""}}}, "empty target", nil},
		{"huge owner", [][]ent{{usr, {name: "usr/x", body: "x", uid: 1 << 40, format: tar.FormatPAX}}}, "out of range", nil},
		{"unknown type", [][]ent{{usr, {name: "usr/v", typ: 'V'}}}, "unsupported entry type", nil},
		{"no usr", [][]ent{{{name: "etc/", typ: tar.TypeDir}}}, "no /usr", nil},
		{"usr not a directory", [][]ent{{{name: "usr", typ: tar.TypeSymlink, link: "x"}}}, "/usr is not a directory", nil},
		{"run not a directory", [][]ent{{usr, {name: "run", body: "x"}}}, "/run is not a directory", nil},
		{"opaque then whiteout", [][]ent{
			{usr, {name: "usr/a/", typ: tar.TypeDir}, {name: "usr/a/x", body: "x"}, {name: "usr/b", body: "b"}},
			{{name: "usr/.wh.b"}, {name: "usr/a/.wh..wh..opq"}, {name: "usr/.wh.none"}},
		}, "", func(t *testing.T, root *tree.Inode) {
			u, _ := tree.Resolve(root, "usr")
			if len(u.Entries) != 1 || u.Entries[0].Name != "a" || len(u.Entries[0].Inode.Entries) != 0 {
				t.Errorf("usr: %d entries, want only an empty a", len(u.Entries))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var layers [][]byte
			for _, l := range tt.layers {
				layers = append(layers, tarBytes(t, l, 0))
			}
			root, err := applyLayers(t, newMemStore(), layers...)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tt.check != nil {
					tt.check(t, root)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want one containing %q", err, tt.err)
			}
		})
	}
}

func TestCheckHeader(t *testing.T) {
	tests := []struct {
		hdr tar.Header
		err string
	}{
		{tar.Header{Typeflag: tar.TypeReg, Size: 10}, ""},
		{tar.Header{Typeflag: tar.TypeGNUSparse, Size: 10}, "sparse"},
		{tar.Header{Typeflag: tar.TypeReg, PAXRecords: map[string]string{"GNU.sparse.major": "1"}}, "sparse"},
		{tar.Header{Typeflag: tar.TypeSymlink, Size: 5}, "claims 5 bytes"},
		{tar.Header{Typeflag: tar.TypeLink, Size: 1}, "claims 1 bytes"},
		{tar.Header{Typeflag: tar.TypeDir, Size: 512}, "claims 512 bytes"},
	}
	for _, tt := range tests {
		err := checkHeader(&tt.hdr)
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%c size %d: error %v, want %q", tt.hdr.Typeflag, tt.hdr.Size, err, tt.err)
		}
	}
}

func TestSplitBadArchives(t *testing.T) {
	good := tarBytes(t, []ent{{name: "usr/", typ: tar.TypeDir}, {name: "usr/huge", body: huge}, {name: "usr/big", body: big}}, 0)
	tests := []struct {
		name string
		data []byte
		err  string
	}{
		{"truncated in a large body", good[:len(good)/2], "unexpected EOF"},
		{"truncated in a small body", good[:len(good)-1024-512+10], "unexpected EOF"},
		{"truncated in a header", good[:700], "unexpected EOF"},
		{"not an archive", bytes.Repeat([]byte("garbage!"), 128), "invalid tar header"},
		{"stray zero block", append(append(make([]byte, 512), good[:512]...), make([]byte, 1024)...), "invalid tar header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := splitBytes(t, newMemStore(), tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want one containing %q", err, tt.err)
			}
		})
	}
}
