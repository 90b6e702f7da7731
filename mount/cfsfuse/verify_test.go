package cfsfuse

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/store/objects"
	"github.com/gocfs/gocfs/tests/treecheck"
)

// verifyFixture is an image of external files whose objects are stored
// in two object directories, one of them then corrupted.
type verifyFixture struct {
	img        string
	dirs       []string
	content    map[string][]byte // file name -> content as stored
	objectPath map[string]string // file name -> object file
}

func newVerifyFixture(t *testing.T) *verifyFixture {
	t.Helper()
	work := t.TempDir()
	f := &verifyFixture{content: map[string][]byte{}, objectPath: map[string]string{}}
	root := &tree.Inode{Mode: tree.TypeDir | 0o755, Nlink: 2}
	var stores []*objects.Dir
	for i := range 2 {
		d := filepath.Join(work, "objects"+string(rune('0'+i)))
		st, err := objects.OpenDir(d, true)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		f.dirs = append(f.dirs, d)
		stores = append(stores, st)
	}
	add := func(name string, store int, content []byte, digest bool) *tree.Inode {
		d, err := stores[store].Add(bytes.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		n := &tree.Inode{Mode: tree.TypeReg | 0o644, Nlink: 1, Size: uint64(len(content)), Payload: objects.Path(d)}
		if digest {
			n.Digest = d
		}
		if err := root.Insert(&tree.Dirent{Name: name, Inode: n}); err != nil {
			t.Fatal(err)
		}
		f.content[name] = content
		f.objectPath[name] = filepath.Join(f.dirs[store], objects.Path(d))
		return n
	}
	block := func(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }
	add("good", 0, block('g', 100000), true)
	add("second-dir", 1, block('s', 5000), true)
	corrupt := add("corrupt", 0, block('c', 70000), true)
	add("no-digest", 0, block('n', 300), false)
	add("missing", 0, block('m', 200), true)
	if err := root.Insert(&tree.Dirent{Name: "corrupt-link", Inode: corrupt, Hardlink: true}); err != nil {
		t.Fatal(err)
	}
	corrupt.Nlink = 2
	f.img = writeImage(t, work, root, erofs.WriteOptions{})

	if err := os.Remove(f.objectPath["missing"]); err != nil {
		t.Fatal(err)
	}
	f.damage(t, "corrupt")
	return f
}

// damage flips a byte in the middle of a file's object, keeping its size.
func (f *verifyFixture) damage(t *testing.T, name string) {
	t.Helper()
	b := bytes.Clone(f.content[name])
	b[len(b)/2] ^= 0xff
	f.rewrite(t, name, b)
}

// rewrite replaces the content of a file's object in place.
func (f *verifyFixture) rewrite(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(f.objectPath[name], b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readErrno(p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	var e syscall.Errno
	if errors.As(err, &e) {
		return nil, e
	}
	return b, err
}

// TestVerify checks that with Verify an object that does not have the
// fs-verity digest the image names cannot be opened (EIO), nor can a file
// for which the image names no digest, as with overlayfs verity=require;
// that a repaired object is checked again; and that without Verify the
// objects are served as they are.
func TestVerify(t *testing.T) {
	treecheck.RequireFUSE(t)
	f := newVerifyFixture(t)
	cases := []struct {
		name           string
		verify, noVrfy error // nil: the content must be the original
	}{
		{"good", nil, nil},
		{"second-dir", nil, nil},
		{"corrupt", syscall.EIO, errDamaged},
		{"corrupt-link", syscall.EIO, errDamaged},
		{"no-digest", syscall.EIO, nil},
		{"missing", syscall.ENOENT, syscall.ENOENT},
	}
	content := func(name string) []byte { return f.content[strings.TrimSuffix(name, "-link")] }
	for _, verify := range []bool{true, false} {
		mnt := mountFUSE(t, f.img, Options{ObjectDirs: f.dirs, Verify: verify})
		for _, c := range cases {
			want := c.noVrfy
			if verify {
				want = c.verify
			}
			// Twice: the second open uses the kept verdict.
			for range 2 {
				b, err := readErrno(filepath.Join(mnt, c.name))
				switch {
				case want == errDamaged:
					if err != nil || bytes.Equal(b, content(c.name)) || len(b) != len(content(c.name)) {
						t.Errorf("verify=%v %s: read %d bytes, %v; want the damaged object", verify, c.name, len(b), err)
					}
				case want != nil:
					if err != want {
						t.Errorf("verify=%v %s: error %v, want %v", verify, c.name, err, want)
					}
				case err != nil || !bytes.Equal(b, content(c.name)):
					t.Errorf("verify=%v %s: read %d bytes, %v; want the original %d", verify, c.name, len(b), err, len(content(c.name)))
				}
			}
		}
	}

	// A repaired object is a new file version: it is checked again.
	mnt := mountFUSE(t, f.img, Options{ObjectDirs: f.dirs, Verify: true})
	if _, err := readErrno(filepath.Join(mnt, "corrupt")); err != syscall.EIO {
		t.Fatalf("damaged: %v, want EIO", err)
	}
	f.rewrite(t, "corrupt", f.content["corrupt"])
	if b, err := readErrno(filepath.Join(mnt, "corrupt")); err != nil || !bytes.Equal(b, f.content["corrupt"]) {
		t.Errorf("repaired: read %d bytes, %v", len(b), err)
	}
}

// errDamaged marks reads that must return the damaged object.
var errDamaged = errors.New("damaged content")
