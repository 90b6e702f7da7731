package ocibuild

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/verity"
)

// desc describes an inode in one line for comparisons.
func desc(n *tree.Inode) string {
	kind := map[uint32]string{tree.TypeDir: "dir", tree.TypeReg: "file", tree.TypeLnk: "symlink",
		tree.TypeChr: "char", tree.TypeBlk: "block", tree.TypeFifo: "fifo"}[n.Type()]
	s := fmt.Sprintf("%s %04o n=%d %d:%d @%d", kind, n.Mode&0o7777, n.Nlink, n.UID, n.GID, n.Mtime.Sec)
	switch {
	case n.IsDir():
		var names []string
		for _, e := range n.Entries {
			names = append(names, e.Name)
		}
		s += " [" + strings.Join(names, " ") + "]"
	case n.IsReg() && n.Payload != "":
		s += fmt.Sprintf(" size=%d object", n.Size)
	case n.IsReg():
		s += fmt.Sprintf(" size=%d %q", n.Size, n.Content)
	case n.IsSymlink():
		s += " -> " + n.Payload
	case n.Rdev != 0:
		s += fmt.Sprintf(" rdev=%#x", n.Rdev)
	}
	for _, x := range n.Xattrs {
		s += " " + x.Name
	}
	return s
}

func TestExpectedTreeRules(t *testing.T) {
	const base = `
/usr      dir mtime=10 uid=5 mode=0750 xattr.security.capability=cap xattr.user.x=y
/usr/bin  dir
/etc      dir
/etc/a    file content=a
/run      dir
/run/x    file content=x
`
	for _, tc := range []struct {
		name     string
		layers   []string
		bootable bool
		want     map[string]string // path -> desc, "" for absent
		err      string
	}{{
		name:   "root from usr, run emptied, xattrs filtered",
		layers: []string{"/ dir mode=0700 mtime=99 uid=9\n" + base},
		want: map[string]string{
			"/":      "dir 0750 n=5 5:0 @10 [etc run usr] security.capability",
			"/usr":   "dir 0750 n=3 5:0 @10 [bin] security.capability",
			"/run":   "dir 0755 n=2 0:0 @10 []",
			"/etc/a": `file 0644 n=1 0:0 @1 size=1 "a"`,
		},
	}, {
		name:   "directory over directory keeps content",
		layers: []string{base, "/etc dir mode=0700 mtime=50 xattr.security.selinux=x"},
		want:   map[string]string{"/etc": "dir 0700 n=2 0:0 @50 [a]"},
	}, {
		name:   "file replaces directory and directory replaces file",
		layers: []string{base, "/etc file content=e\n/usr/bin/f file", "/etc dir mtime=3"},
		want: map[string]string{
			"/etc":   "dir 0755 n=2 0:0 @3 []",
			"/etc/a": "",
		},
	}, {
		name:   "whiteouts and opaque directories",
		layers: []string{base + "/etc/b file\n/etc/c dir\n/etc/c/d file", "/etc/a whiteout\n/etc/c whiteout\n/etc/zz whiteout", "/usr opaque\n/usr/new file"},
		want: map[string]string{
			"/etc": "dir 0755 n=2 0:0 @1 [b]",
			"/usr": "dir 0750 n=2 5:0 @10 [new] security.capability",
		},
	}, {
		name:   "opaque marker of the root",
		layers: []string{base, "/ opaque\n/usr dir mtime=7"},
		want:   map[string]string{"/": "dir 0755 n=3 0:0 @7 [usr]"},
	}, {
		name: "hardlinks share the inode, even after the target is replaced",
		layers: []string{base + "/etc/h1 hardlink target=/etc/a\n/usr/bin/h2 hardlink target=/etc/a",
			"/etc/a file content=new\n/etc/h1 whiteout"},
		want: map[string]string{
			"/etc/a":      `file 0644 n=1 0:0 @1 size=3 "new"`,
			"/etc/h1":     "",
			"/usr/bin/h2": `file 0644 n=1 0:0 @1 size=1 "a"`,
		},
	}, {
		name:   "inline limit",
		layers: []string{base + "/etc/64 file size=64 seed=1\n/etc/65 file size=65 seed=1\n/etc/0 file"},
		want: map[string]string{
			"/etc/65": "file 0644 n=1 0:0 @1 size=65 object",
			"/etc/0":  `file 0644 n=1 0:0 @1 size=0 ""`,
		},
	}, {
		name:   "special files",
		layers: []string{base + "/etc/l symlink target=../x\n/etc/c char rdev=1:3\n/etc/b block rdev=259:65536\n/etc/p fifo mode=0600"},
		want: map[string]string{
			"/etc/l": "symlink 0777 n=1 0:0 @1 -> ../x",
			"/etc/c": "char 0644 n=1 0:0 @1 rdev=0x103",
			"/etc/b": "block 0644 n=1 0:0 @1 rdev=0x10010300",
			"/etc/p": "fifo 0600 n=1 0:0 @1",
		},
	}, {
		name:     "boot image",
		layers:   []string{base + "/boot dir mtime=3\n/boot/k file\n/sysroot dir\n/sysroot/s dir"},
		bootable: true,
		want: map[string]string{
			"/boot":    "dir 0755 n=2 0:0 @10 []",
			"/sysroot": "dir 0755 n=2 0:0 @10 []",
		},
	}, {
		name:     "boot image needs /sysroot",
		layers:   []string{base + "/boot dir"},
		bootable: true,
		err:      "/sysroot",
	}, {
		name:   "no /usr",
		layers: []string{"/etc dir"},
		err:    "root metadata",
	}, {
		name:   "missing parent",
		layers: []string{base + "/nope/x file"},
		err:    "layer 1: /nope/x: /nope: parent directory does not exist",
	}, {
		name:   "parent is not a directory",
		layers: []string{base + "/etc/a/x file"},
		err:    "not a directory",
	}, {
		name:   "hardlink to nothing",
		layers: []string{base, "/etc/h hardlink target=/etc/nope"},
		err:    "layer 2: /etc/h: hardlink target /etc/nope does not exist",
	}, {
		name:   "hardlink to a directory",
		layers: []string{base + "/etc/h hardlink target=/usr"},
		err:    "is a directory",
	}, {
		name:   "opaque marker of a missing directory",
		layers: []string{base + "/x opaque"},
		err:    "does not exist",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			img := &Image{}
			for _, l := range tc.layers {
				img.Layers = append(img.Layers, Layer{Entries: MustParseEntries(l, 1)})
			}
			root, err := (&Built{Image: img}).ExpectedTree(TreeOptions{Bootable: tc.bootable})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for p, want := range tc.want {
				n, err := tree.Resolve(root, p)
				if want == "" {
					if err == nil {
						t.Errorf("%s exists: %s", p, desc(n))
					}
					continue
				}
				if err != nil {
					t.Errorf("%s: %v", p, err)
					continue
				}
				if got := desc(n); got != want {
					t.Errorf("%s:\n got %s\nwant %s", p, got, want)
				}
			}
		})
	}
}

func TestExpectedTreeObjects(t *testing.T) {
	img := &Image{Layers: []Layer{{Entries: MustParseEntries(`
/usr       dir
/usr/a     file size=5000 seed=1
/usr/b     file size=5000 seed=1
/usr/c     file size=64 seed=2
`, 0)}, {Entries: MustParseEntries(`
/usr/a     whiteout
/usr/d     file size=100 seed=3
`, 0)}}}
	b := &Built{Image: img}
	for _, alg := range []verity.Algorithm{verity.SHA256, verity.SHA512} {
		root, err := b.ExpectedTree(TreeOptions{Algorithm: alg})
		if err != nil {
			t.Fatal(err)
		}
		n, err := tree.Resolve(root, "/usr/b")
		if err != nil {
			t.Fatal(err)
		}
		want := verity.DigestBytes(Generate(1, 5000), alg)
		if !bytes.Equal(n.Digest, want) || n.Payload != ObjectPath(want) || n.Content != nil || n.Size != 5000 {
			t.Fatalf("%v: /usr/b: digest %x payload %s", alg, n.Digest, n.Payload)
		}
		objs := b.LayerObjects(alg)
		if len(objs) != 2 || !objs[hex.EncodeToString(want)] {
			t.Fatalf("%v: layer objects %v", alg, objs)
		}
	}
	if _, err := b.ExpectedTree(TreeOptions{Algorithm: 7}); err == nil {
		t.Fatal("unknown algorithm accepted")
	}
	if ObjectPath([]byte{0xab, 0xcd, 0xef}) != "ab/cdef" {
		t.Fatal("ObjectPath")
	}
}

// TestFixtureTrees checks that the fixtures' trees can be written as
// images and read back unchanged, so that tests can compare them with
// what a repository makes.
func TestFixtureTrees(t *testing.T) {
	for name, b := range fixtures(t) {
		for _, bootable := range []bool{false, true} {
			if name == "base" && bootable {
				continue
			}
			root, err := b.ExpectedTree(TreeOptions{Bootable: bootable})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			var img bytes.Buffer
			if _, err := erofs.Write(&img, root, erofs.WriteOptions{}); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			back, _, err := erofs.ReadTree(bytes.NewReader(img.Bytes()), int64(img.Len()))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got, want := listing(back), listing(root); got != want {
				t.Fatalf("%s (bootable %v): image reads back differently:\n%s", name, bootable, firstDiff(got, want))
			}
		}
	}
	f := fixtures(t)
	root, err := f["boot1"].ExpectedTree(TreeOptions{Bootable: true})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{
		"/boot":                    "dir 0755 n=2 0:0 @1700010000 []",
		"/usr/lib/systemd/systemd": "file 0755 n=2 0:0 @1700010001 size=150000 object",
		"/etc/pkg4.conf":           "",
	} {
		n, err := tree.Resolve(root, p)
		switch {
		case want == "" && err == nil:
			t.Errorf("%s exists", p)
		case want != "" && err != nil:
			t.Errorf("%s: %v", p, err)
		case want != "" && desc(n) != want:
			t.Errorf("%s:\n got %s\nwant %s", p, desc(n), want)
		}
	}
}

// listing describes every inode of a tree, one per line, in path order.
func listing(root *tree.Inode) string {
	lines := []string{"/ " + desc(root)}
	tree.Walk(root, func(p string, d *tree.Dirent) error {
		lines = append(lines, "/"+p+" "+desc(d.Inode))
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var a, b string
		if i < len(g) {
			a = g[i]
		}
		if i < len(w) {
			b = w[i]
		}
		if a != b {
			return " got " + a + "\nwant " + b
		}
	}
	return ""
}
