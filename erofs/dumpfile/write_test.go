package dumpfile

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/erofs/tree"
)

func write(t *testing.T, root *tree.Inode, opts WriteOptions) string {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, root, opts); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func dir(mode uint32, entries ...*tree.Dirent) *tree.Inode {
	return &tree.Inode{Mode: tree.TypeDir | mode, Nlink: 2, Entries: entries}
}

func TestWriteFields(t *testing.T) {
	dg := bytes.Repeat([]byte{0xab}, 32)
	file := &tree.Inode{Mode: tree.TypeReg | 0o644, Nlink: 2, UID: 1000, GID: 100, Size: 259,
		Mtime: tree.Timespec{Sec: -1, Nsec: 5}, Payload: "ab/cd", Digest: dg,
		Xattrs: []tree.Xattr{{Name: "user.b", Value: "x=y z"}, {Name: "user.a=", Value: ""}}}
	root := dir(0o755,
		&tree.Dirent{Name: "a hardlink", Inode: file, Hardlink: true},
		&tree.Dirent{Name: "dash", Inode: &tree.Inode{Mode: tree.TypeReg | 0o600, Size: 1, Payload: "-", Content: []byte("-")}},
		&tree.Dirent{Name: "dev", Inode: &tree.Inode{Mode: tree.TypeChr | 0o666, Rdev: 259}},
		&tree.Dirent{Name: "file", Inode: file},
		&tree.Dirent{Name: "high", Inode: &tree.Inode{Mode: 0o20720777, Size: 1, Payload: "t"}},
		&tree.Dirent{Name: "inline", Inode: &tree.Inode{Mode: tree.TypeReg | 0o644, Size: 6, Content: []byte("a\\\n\t\x00=")}},
		&tree.Dirent{Name: "sub", Inode: dir(0o700,
			&tree.Dirent{Name: "link", Inode: &tree.Inode{Mode: tree.TypeLnk | 0o777, Size: 5, Payload: "../x "}},
		)},
	)
	root.Size = 4096
	root.Xattrs = []tree.Xattr{{Name: "security.selinux", Value: "l\x00"}}
	want := `/ 4096 40755 2 0 0 0 0.0 - - - security.selinux=l\x00
/a\x20hardlink 259 @100644 2 1000 100 0 -1.5 /file - abababababababababababababababababababababababababababababababab user.b=x\x3dy\x20z user.a\x3d=
/dash 1 100600 0 0 0 0 0.0 \x2d \x2d -
/dev 0 20666 0 0 0 259 0.0 - - -
/file 259 100644 2 1000 100 0 -1.5 ab/cd - abababababababababababababababababababababababababababababababab user.b=x\x3dy\x20z user.a\x3d=
/high 1 20720777 0 0 0 0 0.0 t - -
/inline 6 100644 0 0 0 0 0.0 - a\\\n\t\x00= -
/sub 0 40700 2 0 0 0 0.0 - - -
/sub/link 5 120777 0 0 0 0 0.0 ../x\x20 - -
`
	if got := write(t, root, WriteOptions{}); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteHardlinkPrimary(t *testing.T) {
	f := &tree.Inode{Mode: tree.TypeReg | 0o644, Nlink: 3}
	root := dir(0o755,
		&tree.Dirent{Name: "a", Inode: dir(0o755, &tree.Dirent{Name: "x", Inode: f, Hardlink: true})},
		&tree.Dirent{Name: "b", Inode: dir(0o755, &tree.Dirent{Name: "x", Inode: f})},
		&tree.Dirent{Name: "c", Inode: dir(0o755, &tree.Dirent{Name: "x", Inode: f, Hardlink: true})},
	)
	want := `/ 0 40755 2 0 0 0 0.0 - - -
/a 0 40755 2 0 0 0 0.0 - - -
/a/x 0 @100644 3 0 0 0 0.0 /b/x - -
/b 0 40755 2 0 0 0 0.0 - - -
/b/x 0 100644 3 0 0 0 0.0 - - -
/c 0 40755 2 0 0 0 0.0 - - -
/c/x 0 @100644 3 0 0 0 0.0 /b/x - -
`
	if got := write(t, root, WriteOptions{}); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}

	// Without a primary entry, the first entry printed takes its place.
	root.Remove("b")
	want = `/ 0 40755 2 0 0 0 0.0 - - -
/a 0 40755 2 0 0 0 0.0 - - -
/a/x 0 100644 3 0 0 0 0.0 - - -
/c 0 40755 2 0 0 0 0.0 - - -
/c/x 0 @100644 3 0 0 0 0.0 /a/x - -
`
	if got := write(t, root, WriteOptions{}); got != want {
		t.Errorf("without primary: got:\n%s\nwant:\n%s", got, want)
	}
}

type failWriter struct{}

var errWrite = errors.New("write failed")

func (failWriter) Write([]byte) (int, error) { return 0, errWrite }

func TestWriteErrors(t *testing.T) {
	reg := func() *tree.Inode { return &tree.Inode{Mode: tree.TypeReg | 0o644} }
	tests := []struct {
		name string
		root *tree.Inode
		opts WriteOptions
		err  string
	}{
		{"nil root", nil, WriteOptions{}, "root is not a directory"},
		{"file root", reg(), WriteOptions{}, "root is not a directory"},
		{"hardlink to directory", dir(0o755, &tree.Dirent{Name: "d", Inode: dir(0o755), Hardlink: true}), WriteOptions{}, "hardlink to a directory"},
		{"no inode", dir(0o755, &tree.Dirent{Name: "x"}), WriteOptions{}, "entry without inode"},
		{"nil entry", dir(0o755, nil), WriteOptions{}, "nil directory entry"},
		{"empty name", dir(0o755, &tree.Dirent{Name: "", Inode: reg()}), WriteOptions{}, "invalid name"},
		{"dot", dir(0o755, &tree.Dirent{Name: ".", Inode: reg()}), WriteOptions{}, "invalid name"},
		{"dotdot", dir(0o755, &tree.Dirent{Name: "..", Inode: reg()}), WriteOptions{}, "invalid name"},
		{"slash", dir(0o755, &tree.Dirent{Name: "a/b", Inode: reg()}), WriteOptions{}, "invalid name"},
		{"NUL", dir(0o755, &tree.Dirent{Name: "a\x00", Inode: reg()}), WriteOptions{}, "invalid name"},
		{"nested bad name", dir(0o755, &tree.Dirent{Name: "d", Inode: dir(0o755, &tree.Dirent{Name: "..", Inode: reg()})}), WriteOptions{}, "invalid name"},
		{"digest size", dir(0o755, &tree.Dirent{Name: "f", Inode: &tree.Inode{Mode: tree.TypeReg, Digest: []byte{1}}}), WriteOptions{}, "/f: digest of 1 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Write(&bytes.Buffer{}, tt.root, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("error %v, want %q", err, tt.err)
			}
		})
	}
	if err := Write(failWriter{}, dir(0o755), WriteOptions{}); !errors.Is(err, errWrite) {
		t.Errorf("error %v, want %v", err, errWrite)
	}
}

func TestRoundTrip(t *testing.T) {
	in := "/ 4096 40755 2 0 0 0 0.0 - - - user.a=1\n" +
		"/h1 0 @100644 1 0 0 0 0.0 /z/f - -\n" +
		"/l 3 120777 1 0 0 0 0.0 a\\x20b - -\n" +
		"/s\\x3d\\x2d 0 140755 1 0 0 0 0.0 - - -\n" +
		"/z 0 40755 2 0 0 0 0.0 - - -\n" +
		"/z/f 3 100644 2 5 6 0 -7.8 - a\\x00b " + digest + " user.\\x3d=\\x3d trusted.x=\\xff\n" +
		"/z/h2 0 @100644 1 0 0 0 0.0 /h1 - -\n"
	root := parse(t, in, true)
	out := write(t, root, WriteOptions{})
	want := "/ 4096 40755 2 0 0 0 0.0 - - - user.a=1\n" +
		"/h1 3 @100644 2 5 6 0 -7.8 /z/f a\\x00b " + digest + " user.\\x3d=\\x3d trusted.x=\\xff\n" +
		"/l 3 120777 1 0 0 0 0.0 a\\x20b - -\n" +
		"/s=- 0 140755 1 0 0 0 0.0 - - -\n" +
		"/z 0 40755 2 0 0 0 0.0 - - -\n" +
		"/z/f 3 100644 2 5 6 0 -7.8 - a\\x00b " + digest + " user.\\x3d=\\x3d trusted.x=\\xff\n" +
		"/z/h2 3 @100644 2 5 6 0 -7.8 /z/f a\\x00b " + digest + " user.\\x3d=\\x3d trusted.x=\\xff\n"
	if out != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
	if again := write(t, parse(t, out, true), WriteOptions{}); again != out {
		t.Errorf("second round trip differs:\n%s", again)
	}
}
