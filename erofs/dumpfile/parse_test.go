package dumpfile

import (
	"errors"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/gocfs/gocfs/erofs/tree"
)

const (
	rootLine = "/ 4096 40755 2 0 0 0 0.0 - - -\n"
	digest   = "35d02f81325122d77ec1d11baba655bc9bf8a891ab26119a41c50fa03ddfb408"
)

func parse(t *testing.T, in string, strict bool) *tree.Inode {
	t.Helper()
	root, err := Parse(strings.NewReader(in), ParseOptions{Strict: strict})
	if err != nil {
		t.Fatalf("Parse(%q): %v", in, err)
	}
	return root
}

func resolve(t *testing.T, root *tree.Inode, path string) *tree.Inode {
	t.Helper()
	n, err := tree.Resolve(root, path)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestParseFields(t *testing.T) {
	in := "/ 4096 40555 3 1 2 0 1633950376.5 - - - trusted.foo1=bar-1 user.foo2=bar-2\n" +
		"/a\\x20dir 27 40755 2 1000 1000 0 -5.999999999 - - - user.x=\\x00\\xff\\x3d=\n" +
		"/a\\x20dir/ext 259 100644 1 1000 1000 0 1695368732.385062094 35/d02f - " + digest + " security.selinux=unconfined_u:object_r:unlabeled_t:s0\\x00\n" +
		"/a\\x20dir/inline 10 100600 1 0 0 0 1.1 - some-text\\n - \n" +
		"/a\\x20dir/dash 1 100600 1 0 0 0 1.1 \\x2d \\x2d -\n" +
		"/a\\x20dir/empty 0 100600 1 0 0 0 1.1 - - -\n" +
		"/a\\x20dir/emptycontent 0 100600 1 0 0 0 1.1 - - -\n" +
		"/blockdev 0 60777 1 0 0 107690 1633950376.0 - - -\n" +
		"/chardev 0 20777 1 0 0 10769 1633950376.0 - - -\n" +
		"/fifo 0 10777 1 0 0 0 1633950376.0 - - -\n" +
		"/highbits 1 20720777 1 0 0 0 0.0 x - -\n" +
		"/link 7 120777 1 0 0 0 0.0 /target - -\n" +
		"/sock 0 140777 1 0 0 0 0.0 - - -\n"
	root := parse(t, in, true)

	if root.Mode != 0o40555 || root.Nlink != 3 || root.UID != 1 || root.GID != 2 || root.Size != 4096 ||
		root.Mtime != (tree.Timespec{Sec: 1633950376, Nsec: 5}) {
		t.Errorf("root = %+v", root)
	}
	if want := []tree.Xattr{{Name: "trusted.foo1", Value: "bar-1"}, {Name: "user.foo2", Value: "bar-2"}}; !equalXattrs(root.Xattrs, want) {
		t.Errorf("root xattrs = %q, want %q", root.Xattrs, want)
	}

	dir := resolve(t, root, "a dir")
	if dir.Size != 27 || dir.Mtime != (tree.Timespec{Sec: -5, Nsec: 999999999}) {
		t.Errorf("dir = %+v", dir)
	}
	if want := []tree.Xattr{{Name: "user.x", Value: "\x00\xff=="}}; !equalXattrs(dir.Xattrs, want) {
		t.Errorf("dir xattrs = %q, want %q", dir.Xattrs, want)
	}

	ext := resolve(t, root, "a dir/ext")
	if ext.Size != 259 || ext.Payload != "35/d02f" || ext.Content != nil || len(ext.Digest) != 32 ||
		ext.Digest[0] != 0x35 || ext.Digest[31] != 0x08 {
		t.Errorf("ext = %+v", ext)
	}
	if v, _ := ext.Xattr("security.selinux"); v != "unconfined_u:object_r:unlabeled_t:s0\x00" {
		t.Errorf("ext selinux = %q", v)
	}
	if in := resolve(t, root, "a dir/inline"); string(in.Content) != "some-text\n" || in.Size != 10 || in.Payload != "" {
		t.Errorf("inline = %+v", in)
	}
	if d := resolve(t, root, "a dir/dash"); d.Payload != "-" || string(d.Content) != "-" {
		t.Errorf("dash = %+v", d)
	}
	for _, name := range []string{"a dir/empty", "a dir/emptycontent"} {
		if e := resolve(t, root, name); e.Content != nil || e.Size != 0 || e.Digest != nil {
			t.Errorf("%s = %+v", name, e)
		}
	}
	if b := resolve(t, root, "blockdev"); b.Rdev != 107690 || b.Type() != tree.TypeBlk {
		t.Errorf("blockdev = %+v", b)
	}
	if c := resolve(t, root, "chardev"); c.Rdev != 10769 || c.Type() != tree.TypeChr {
		t.Errorf("chardev = %+v", c)
	}
	if h := resolve(t, root, "highbits"); h.Mode != 0o20720777 || !h.IsSymlink() {
		t.Errorf("highbits mode = %o", h.Mode)
	}
	if l := resolve(t, root, "link"); l.Payload != "/target" || l.Size != 7 || !l.IsSymlink() {
		t.Errorf("link = %+v", l)
	}
	if len(root.Entries) != 7 {
		t.Errorf("root has %d entries", len(root.Entries))
	}
}

func equalXattrs(a, b []tree.Xattr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Fields that no image keeps for a type are dropped; the rest is kept as
// given.
func TestParseDropsIgnoredFields(t *testing.T) {
	in := rootLine +
		"/dir 3 40755 2 0 0 0 0.0 payload abc " + digest + "\n" +
		"/chr 1 20644 1 0 0 5 0.0 payload x " + digest + "\n" +
		"/lnk 3 120777 1 0 0 0 0.0 tgt abc " + digest + "\n" +
		"/reg 0 100644 1 0 0 0 0.0 payload - " + digest + "\n"
	root := parse(t, in, false)
	for _, name := range []string{"dir", "chr"} {
		n := resolve(t, root, name)
		if n.Payload != "" || n.Content != nil || n.Digest != nil {
			t.Errorf("%s = %+v", name, n)
		}
	}
	if n := resolve(t, root, "dir"); n.Size != 3 {
		t.Errorf("dir size = %d, want 3", n.Size)
	}
	if n := resolve(t, root, "chr"); n.Size != 1 || n.Rdev != 5 {
		t.Errorf("chr = %+v", n)
	}
	if n := resolve(t, root, "lnk"); n.Payload != "tgt" || n.Content != nil || n.Digest != nil {
		t.Errorf("lnk = %+v", n)
	}
	if n := resolve(t, root, "reg"); n.Payload != "payload" || n.Digest == nil {
		t.Errorf("reg = %+v", n)
	}
}

func TestParseStrictAndLenient(t *testing.T) {
	tests := []struct {
		name, in string
		err      string // in strict mode; lenient mode accepts all
		check    func(t *testing.T, root *tree.Inode)
	}{
		{
			name: "no final newline",
			in:   strings.TrimSuffix(rootLine, "\n"),
			err:  "line 1: missing newline",
		},
		{
			name: "symlink size",
			in:   rootLine + "/l 0 120777 1 0 0 0 0.0 target - -\n",
			err:  "symlink SIZE 0 differs from its target length 6",
			check: func(t *testing.T, root *tree.Inode) {
				if n := resolve(t, root, "l"); n.Size != 6 {
					t.Errorf("size = %d, want 6", n.Size)
				}
			},
		},
		{
			name: "symlink content",
			in:   rootLine + "/l 3 120777 1 0 0 0 0.0 tgt abc -\n",
			err:  "symlink with CONTENT",
		},
		{
			name: "rdev on a regular file",
			in:   rootLine + "/f 0 100644 1 0 0 7 0.0 - - -\n",
			err:  "RDEV 7 on a file that is not a device",
			check: func(t *testing.T, root *tree.Inode) {
				if n := resolve(t, root, "f"); n.Rdev != 0 {
					t.Errorf("rdev = %d, want 0", n.Rdev)
				}
			},
		},
		{
			name: "rdev on a directory",
			in:   "/ 4096 40755 2 0 0 1 0.0 - - -\n",
			err:  "RDEV 1 on a file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.in), ParseOptions{Strict: true})
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("strict: error %v, want %q", err, tt.err)
			}
			root := parse(t, tt.in, false)
			if tt.check != nil {
				tt.check(t, root)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	long := strings.Repeat("n", 256)
	tests := []struct {
		name, in string
		err      string
	}{
		{"empty input", "", "no entries"},
		{"empty line", "\n", "line 1: empty PATH"},
		{"trailing empty line", rootLine + "\n", "line 2: empty PATH"},
		{"NUL", rootLine + "/a\x00 0 100644 1 0 0 0 0.0 - - -\n", "line 2: NUL byte at column 3"},
		{"escaped NUL in path", rootLine + "/a\\x00b 0 100644 1 0 0 0 0.0 - - -\n", "PATH contains a NUL"},
		{"bad path escape", rootLine + "/a\\q 0 100644 1 0 0 0 0.0 - - -\n", "PATH: unsupported escape"},
		{"root not first", "/a 0 100644 1 0 0 0 0.0 - - -\n", `line 1: /a: root directory "/" must be the first entry`},
		{"relative root", "./ 4096 40755 2 0 0 0 0.0 - - -\n", "must be the first entry"},
		{"root not a directory", "/ 0 100644 1 0 0 0 0.0 - - -\n", "root must be a directory"},
		{"two roots", rootLine + rootLine, "line 2: /: root directory listed twice"},
		{"hardlinked root", "/ 0 @40755 1 0 0 0 0.0 - - -\n", "directories cannot be hardlinked"},
		{"relative path", rootLine + "a 0 100644 1 0 0 0 0.0 - - -\n", "path is not absolute"},
		{"double slash", rootLine + "//a 0 100644 1 0 0 0 0.0 - - -\n", "empty path component"},
		{"slash only", rootLine + "// 0 40755 2 0 0 0 0.0 - - -\n", "empty path component"},
		{"trailing slash", rootLine + "/a/ 0 40755 2 0 0 0 0.0 - - -\n", "empty path component"},
		{"inner double slash", rootLine + "/d 0 40755 2 0 0 0 0.0 - - -\n/d//a 0 100644 1 0 0 0 0.0 - - -\n", "empty path component"},
		{"dot", rootLine + "/. 0 40755 2 0 0 0 0.0 - - -\n", `invalid path component "."`},
		{"dotdot", rootLine + "/.. 0 40755 2 0 0 0 0.0 - - -\n", `invalid path component ".."`},
		{"inner dot", rootLine + "/./a 0 40755 2 0 0 0 0.0 - - -\n", `invalid path component "."`},
		{"long name", rootLine + "/" + long + " 0 100644 1 0 0 0 0.0 - - -\n", "name longer than 255 bytes"},
		{"missing parent", rootLine + "/x/y 0 100644 1 0 0 0 0.0 - - -\n", "line 2: /x/y: parent directory does not exist"},
		{"parent is a file", rootLine + "/f 0 100644 1 0 0 0 0.0 - - -\n/f/y 0 100644 1 0 0 0 0.0 - - -\n", "parent is not a directory"},
		{"parent is a hardlink", rootLine + "/f 0 100644 1 0 0 0 0.0 - - -\n/h 0 @100644 1 0 0 0 0.0 /f - -\n/h/y 0 100644 1 0 0 0 0.0 - - -\n", "line 4: /h/y: parent is not a directory"},
		{"duplicate", rootLine + "/a 0 100644 1 0 0 0 0.0 - - -\n/a 0 100644 1 0 0 0 0.0 - - -\n", "line 3: /a: already exists"},
		{"duplicate escaped", rootLine + "/a 0 100644 1 0 0 0 0.0 - - -\n/\\x61 0 100644 1 0 0 0 0.0 - - -\n", "already exists"},

		{"empty mode", rootLine + "/a 0  1 0 0 0 0.0 - - -\n", `invalid MODE ""`},
		{"bad mode", rootLine + "/a 0 10064x 1 0 0 0 0.0 - - -\n", "invalid MODE"},
		{"decimal mode", rootLine + "/a 0 100648 1 0 0 0 0.0 - - -\n", "invalid MODE"},
		{"huge mode", rootLine + "/a 0 77777777777 1 0 0 0 0.0 - - -\n", "invalid MODE"},
		{"no file type", rootLine + "/a 0 644 1 0 0 0 0.0 - - -\n", "MODE 644 has no valid file type"},
		{"zero mode", rootLine + "/a 0 0 1 0 0 0 0.0 - - -\n", "no valid file type"},
		{"unknown type", rootLine + "/a 0 170644 1 0 0 0 0.0 - - -\n", "no valid file type"},
		{"bare at", rootLine + "/a 0 @ 1 0 0 0 0.0 - - -\n", `invalid MODE "@"`},

		{"empty size", rootLine + "/a  100644 1 0 0 0 0.0 - - -\n", `invalid SIZE ""`},
		{"negative size", rootLine + "/a -1 100644 1 0 0 0 0.0 - - -\n", "invalid SIZE"},
		{"plus size", rootLine + "/a +1 100644 1 0 0 0 0.0 - - -\n", "invalid SIZE"},
		{"size overflow", rootLine + "/a 18446744073709551616 100644 1 0 0 0 0.0 - - -\n", "invalid SIZE"},
		{"nlink overflow", rootLine + "/a 0 100644 4294967296 0 0 0 0.0 - - -\n", "invalid NLINK"},
		{"bad uid", rootLine + "/a 0 100644 1 x 0 0 0.0 - - -\n", "invalid UID"},
		{"bad gid", rootLine + "/a 0 100644 1 1 x 0 0.0 - - -\n", "invalid GID"},
		{"bad rdev", rootLine + "/a 0 100644 1 1 1 x 0.0 - - -\n", "invalid RDEV"},
		{"short line", rootLine + "/a 0 100644\n", "invalid NLINK"},
		{"mtime without dot", rootLine + "/a 0 100644 1 0 0 0 0 - - -\n", `invalid MTIME "0"`},
		{"mtime without nsec", rootLine + "/a 0 100644 1 0 0 0 0. - - -\n", "invalid MTIME"},
		{"mtime without sec", rootLine + "/a 0 100644 1 0 0 0 .0 - - -\n", "invalid MTIME"},
		{"mtime two dots", rootLine + "/a 0 100644 1 0 0 0 1.2.3 - - -\n", "invalid MTIME"},
		{"mtime nsec overflow", rootLine + "/a 0 100644 1 0 0 0 1.4294967296 - - -\n", "invalid MTIME"},
		{"mtime bare minus", rootLine + "/a 0 100644 1 0 0 0 -.0 - - -\n", "invalid MTIME"},
		{"mtime negative nsec", rootLine + "/a 0 100644 1 0 0 0 0.-1 - - -\n", "invalid MTIME"},

		{"bad payload escape", rootLine + "/a 1 100644 1 0 0 0 0.0 \\z - -\n", "PAYLOAD: unsupported escape"},
		{"NUL in payload", rootLine + "/a 1 100644 1 0 0 0 0.0 a\\x00 - -\n", "PAYLOAD contains a NUL"},
		{"long payload", rootLine + "/a 1 100644 1 0 0 0 0.0 " + strings.Repeat("p", 4096) + " - -\n", "PAYLOAD longer than 4095"},
		{"symlink without target", rootLine + "/l 0 120777 1 0 0 0 0.0 - - -\n", "symlink without a target"},
		{"symlink empty target", rootLine + "/l 0 120777 1 0 0 0 0.0  - -\n", "symlink without a target"},
		{"long symlink", rootLine + "/l 4096 120777 1 0 0 0 0.0 " + strings.Repeat("t", 4096) + " - -\n", "symlink target longer than 4095"},
		{"content size", rootLine + "/a 3 100644 1 0 0 0 0.0 - ab -\n", "CONTENT has 2 bytes, SIZE says 3"},
		{"content escaped size", rootLine + "/a 2 100644 1 0 0 0 0.0 - \\x41 -\n", "CONTENT has 1 bytes, SIZE says 2"},
		{"empty content", rootLine + "/a 1 100644 1 0 0 0 0.0 -  -\n", "CONTENT has 0 bytes, SIZE says 1"},
		{"big content", rootLine + "/a 5001 100644 1 0 0 0 0.0 - " + strings.Repeat("c", 5001) + " -\n", "CONTENT longer than 5000"},
		{"bad content escape", rootLine + "/a 1 100644 1 0 0 0 0.0 - \\ -\n", "CONTENT: escape"},
		{"short digest", rootLine + "/a 1 100644 1 0 0 0 0.0 - - abcd\n", `DIGEST "abcd" is not 64 or 128 hex digits`},
		{"non-hex digest", rootLine + "/a 1 100644 1 0 0 0 0.0 - - " + strings.Repeat("g", 64) + "\n", "is not 64 or 128 hex digits"},
		{"odd-length digest", rootLine + "/a 1 100644 1 0 0 0 0.0 - - " + strings.Repeat("a", 129) + "\n", "is not 64 or 128 hex digits"},
		{"overlong digest", rootLine + "/a 1 100644 1 0 0 0 0.0 - - " + strings.Repeat("a", 300) + "\n", "is not 64 or 128 hex digits"},
		{"bad digest escape", rootLine + "/a 1 100644 1 0 0 0 0.0 - - \\y\n", "DIGEST: unsupported escape"},

		{"xattr without equals", rootLine + "/a 0 100644 1 0 0 0 0.0 - - - user.a\n", `xattr "user.a" without '='`},
		{"double space in xattrs", rootLine + "/a 0 100644 1 0 0 0 0.0 - - - user.a=1  user.b=2\n", `xattr "" without '='`},
		{"two trailing spaces", rootLine + "/a 0 100644 1 0 0 0 0.0 - - - user.a=1  \n", `xattr "" without '='`},
		{"empty xattr name", rootLine + "/a 0 100644 1 0 0 0 0.0 - - - =v\n", "empty xattr name"},
		{"NUL in xattr name", rootLine + "/a 0 100644 1 0 0 0 0.0 - - - user.\\x00=v\n", "contains a NUL"},
		{"long xattr name", rootLine + "/a 0 100644 1 0 0 0 0.0 - - - " + long + "=v\n", "xattr name longer than 255"},
		{"bad xattr name escape", rootLine + "/a 0 100644 1 0 0 0 0.0 - - - a\\q=v\n", "xattr name: unsupported escape"},
		{"trailing backslash in xattr name", rootLine + "/a 0 100644 1 0 0 0 0.0 - - - a\\=v\n", "xattr name: escape"},
		{"bad xattr value escape", rootLine + "/a 0 100644 1 0 0 0 0.0 - - - a=\\x\n", "xattr value: incomplete escape"},
		{"xattrs too big", rootLine + "/a 0 100644 1 0 0 0 0.0 - - - user.a=" + strings.Repeat("v", 32740) + " user.b=1\n", "xattrs larger than 32767 bytes"},
		{"xattr text too long", rootLine + "/a 0 100644 1 0 0 0 0.0 - - - user.a=" + strings.Repeat("\\x00", 16383) + "\n", "xattrs longer than 65535 bytes of text"},

		{"hardlink without target", rootLine + "/h 0 @100644 1 0 0 0 0.0 - - -\n", "hardlink without a target"},
		{"hardlink bad escape", rootLine + "/h 0 @100644 1 0 0 0 0.0 \\q - -\n", "PAYLOAD: unsupported escape"},
		{"hardlink to nothing", rootLine + "/h 0 @100644 1 0 0 0 0.0 /f - -\n", `line 2: /h: hardlink target "/f" does not exist`},
		{"hardlink to root", rootLine + "/h 0 @100644 1 0 0 0 0.0 / - -\n", `hardlink target "/" is a directory`},
		{"hardlink empty target", rootLine + "/h 0 @100644 1 0 0 0 0.0  - -\n", `hardlink target "" is a directory`},
		{"hardlink to directory", rootLine + "/d 0 40755 2 0 0 0 0.0 - - -\n/h 0 @100644 1 0 0 0 0.0 /d - -\n", "is a directory"},
		{"hardlink directory", rootLine + "/d 0 @40755 2 0 0 0 0.0 / - -\n", "directories cannot be hardlinked"},
		{"hardlink bad mode", rootLine + "/h 0 @644 1 0 0 0 0.0 /f - -\n", "no valid file type"},
		{"self hardlink", rootLine + "/h 0 @100644 1 0 0 0 0.0 /h - -\n", "hardlink to itself"},
		{"hardlink cycle", rootLine + "/a 0 @100644 1 0 0 0 0.0 /b - -\n/b 0 @100644 1 0 0 0 0.0 /a - -\n", "line 2: /a: hardlink cycle"},
		{"hardlink below a file", rootLine + "/f 0 100644 1 0 0 0 0.0 - - -\n/h 0 @100644 1 0 0 0 0.0 /f/x - -\n", "does not exist"},
		{"hardlink below a hardlink", rootLine + "/f 0 100644 1 0 0 0 0.0 - - -\n/g 0 @100644 1 0 0 0 0.0 /f - -\n/h 0 @100644 1 0 0 0 0.0 /g/x - -\n", "does not exist"},
		{"hardlink through dot", rootLine + "/f 0 100644 1 0 0 0 0.0 - - -\n/h 0 @100644 1 0 0 0 0.0 /./f - -\n", "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, err := Parse(strings.NewReader(tt.in), ParseOptions{})
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", root)
			}
			if !strings.Contains(err.Error(), tt.err) {
				t.Errorf("error %q, want %q", err, tt.err)
			}
		})
	}
}

func TestParseErrorType(t *testing.T) {
	_, err := Parse(strings.NewReader(rootLine+"/a 0 100644 1 0 0 0 0.0 - - - =x\n"), ParseOptions{})
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("error %v is not an *Error", err)
	}
	if perr.Line != 2 || perr.Path != "/a" || perr.Err == nil {
		t.Errorf("error = %+v", perr)
	}
	if got, want := err.Error(), "line 2: /a: empty xattr name"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}

func TestParseReadError(t *testing.T) {
	boom := errors.New("boom")
	_, err := Parse(iotest.ErrReader(boom), ParseOptions{})
	if !errors.Is(err, boom) {
		t.Errorf("error %v, want %v", err, boom)
	}
}

func TestParseLenientDetails(t *testing.T) {
	in := rootLine +
		// Only MODE and PAYLOAD of a hardlink line count.
		"/h garbage @100644 x y z w v /f junk junk =novalue\n" +
		"/f 3 100644 5 0 0 0 0.0 - abc -\n" +
		// A short line: CONTENT and DIGEST missing.
		"/short 0 100644 1 0 0 0 0.0 -\n" +
		// One space after the xattrs is fine.
		"/trailing 0 100644 1 0 0 0 0.0 - - - user.a=1 \n" +
		"/upper 1 100644 1 0 0 0 0.0 - - " + strings.ToUpper(digest) + "\n" +
		"/last 0 100644 1 0 0 0 0.0 - - -"
	root := parse(t, in, false)
	h := root.Lookup("h")
	f := root.Lookup("f")
	if !h.Hardlink || h.Inode != f.Inode || f.Hardlink || f.Inode.Nlink != 5 {
		t.Errorf("h = %+v, f = %+v", h, f)
	}
	if n := resolve(t, root, "short"); n.Digest != nil || n.Content != nil {
		t.Errorf("short = %+v", n)
	}
	if n := resolve(t, root, "trailing"); len(n.Xattrs) != 1 {
		t.Errorf("trailing xattrs = %q", n.Xattrs)
	}
	if n := resolve(t, root, "upper"); n.Digest[0] != 0x35 {
		t.Errorf("upper digest = %x", n.Digest)
	}
	if root.Lookup("last") == nil {
		t.Error("last line without newline is missing")
	}
}

func TestParseHardlinks(t *testing.T) {
	in := rootLine +
		// Forward reference, through a chain of hardlinks.
		"/a 0 @100644 1 0 0 0 0.0 /b - -\n" +
		"/b 0 @100644 1 0 0 0 0.0 /d/c - -\n" +
		"/d 0 40755 2 0 0 0 0.0 - - -\n" +
		"/d/c 0 100644 7 0 0 0 0.0 - - -\n" +
		// Empty components of a target are skipped, as in C.
		"/e 0 @100644 1 0 0 0 0.0 //d//c - -\n" +
		"/s 2 120777 1 0 0 0 0.0 /x - -\n" +
		"/t 0 @120777 1 0 0 0 0.0 /s - -\n"
	root := parse(t, in, true)
	c := resolve(t, root, "d/c")
	for _, name := range []string{"a", "b", "e"} {
		d := root.Lookup(name)
		if !d.Hardlink || d.Inode != c {
			t.Errorf("%s = %+v, want a hardlink to d/c", name, d)
		}
	}
	if c.Nlink != 7 {
		t.Errorf("nlink = %d, want 7 as given", c.Nlink)
	}
	if d := root.Lookup("t"); !d.Hardlink || d.Inode != resolve(t, root, "s") {
		t.Errorf("t = %+v", d)
	}
}

// A repeated xattr name replaces the earlier value; the last entry takes
// the freed slot, as in the C library.
func TestParseDuplicateXattrs(t *testing.T) {
	root := parse(t, "/ 0 40755 2 0 0 0 0.0 - - - a=1 b=2 c=3 a=4\n", true)
	want := []tree.Xattr{{Name: "c", Value: "3"}, {Name: "b", Value: "2"}, {Name: "a", Value: "4"}}
	if !equalXattrs(root.Xattrs, want) {
		t.Errorf("xattrs = %q, want %q", root.Xattrs, want)
	}
	// Replacing an xattr frees its size: 32767 bytes are the limit at any
	// point, not the sum of all values given.
	v := strings.Repeat("v", 32767-12-7-len("user.a"))
	parse(t, "/ 0 40755 2 0 0 0 0.0 - - - user.a="+v+" user.a="+v+"\n", true)
	if _, err := Parse(strings.NewReader("/ 0 40755 2 0 0 0 0.0 - - - user.a="+v+"v\n"), ParseOptions{}); err == nil {
		t.Error("one byte over the xattr limit accepted")
	}
}

// Lines longer than the read buffer are read whole.
func TestParseLongLines(t *testing.T) {
	junk := strings.Repeat("j", 3<<20)
	in := rootLine +
		"/f 0 100644 1 0 0 0 0.0 - - -\n" +
		// The fields after PAYLOAD of a hardlink line are not read.
		"/h 0 @100644 1 0 0 0 0.0 /f " + junk + " -\n" +
		"/g 0 100644 1 0 0 0 0.0 - - -\n"
	root, err := Parse(iotest.HalfReader(strings.NewReader(in)), ParseOptions{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(root.Entries) != 3 || !root.Entries[2].Hardlink {
		t.Errorf("entries = %+v", root.Entries)
	}
}
