package tests

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	goerofs "github.com/erofs/go-erofs"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/dumpfile"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/tests/golden"
)

// goldenImages builds the image of every golden vector that has one.
func goldenImages(t *testing.T) map[string][]byte {
	t.Helper()
	imgs := map[string][]byte{}
	for _, v := range golden.Vectors(t) {
		if v.Fail {
			continue
		}
		in, err := v.Input()
		if err != nil {
			t.Fatal(err)
		}
		root, err := dumpfile.Parse(bytes.NewReader(in), dumpfile.ParseOptions{Strict: v.Strict})
		if err != nil {
			t.Fatalf("%s: %v", v.Asset, err)
		}
		var opts erofs.WriteOptions
		if v.MinVersion >= 0 {
			opts.Versions = &erofs.VersionRange{Min: v.MinVersion, Max: v.MaxVersion}
		}
		var buf bytes.Buffer
		if _, err := erofs.Write(&buf, root, opts); err != nil {
			t.Fatalf("%s: %v", v.Asset, err)
		}
		imgs[v.Name()] = buf.Bytes()
	}
	return imgs
}

// TestFsckErofs runs Debian's fsck.erofs over every golden image.
func TestFsckErofs(t *testing.T) {
	fsck, err := exec.LookPath("fsck.erofs")
	if err != nil {
		t.Skip("SKIP: fsck.erofs not installed (Debian package erofs-utils)")
	}
	for name, img := range goldenImages(t) {
		p := filepath.Join(t.TempDir(), "img")
		if err := os.WriteFile(p, img, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(fsck, p).CombinedOutput()
		if err != nil {
			t.Errorf("%s: fsck.erofs: %v\n%s", name, err, out)
		}
	}
}

// TestGoErofsReadsImages opens every golden image with an independent EROFS
// reader and checks that it sees the same files, metadata and inline data
// as our reader.
func TestGoErofsReadsImages(t *testing.T) {
	for name, img := range goldenImages(t) {
		t.Run(name, func(t *testing.T) {
			fsys, err := goerofs.Open(bytes.NewReader(img))
			if err != nil {
				t.Fatalf("go-erofs: %v", err)
			}
			root, _, err := erofs.ReadTree(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			ours := map[string]*tree.Inode{}
			tree.Walk(root, func(p string, d *tree.Dirent) error {
				ours[p] = d.Inode
				return nil
			})
			seen := 0
			err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if p == "." {
					return nil
				}
				n, ok := ours[p]
				if !ok {
					if !strings.Contains(p, "/") && len(p) == 2 {
						return nil // one of the 256 root whiteouts
					}
					t.Errorf("%s: not in our reader's tree", p)
					return nil
				}
				seen++
				fi, err := d.Info()
				if err != nil {
					return err
				}
				st := fi.Sys().(*goerofs.Stat)
				wantType := n.Mode & tree.TypeMask
				if n.IsWhiteout() {
					wantType = tree.TypeReg
				}
				if uint32(st.Mode&fs.ModePerm) != n.Mode&0o777 || modeType(fi.Mode()) != wantType {
					t.Errorf("%s: mode %v, ours %o", p, fi.Mode(), n.Mode)
				}
				if st.UID != n.UID || st.GID != n.GID {
					t.Errorf("%s: owner %d:%d, ours %d:%d", p, st.UID, st.GID, n.UID, n.GID)
				}
				if int64(st.Mtime) != n.Mtime.Sec || st.MtimeNs != n.Mtime.Nsec {
					t.Errorf("%s: mtime %d.%d, ours %d.%d", p, st.Mtime, st.MtimeNs, n.Mtime.Sec, n.Mtime.Nsec)
				}
				switch {
				case n.IsSymlink():
					target, err := fs.ReadLink(fsys, p)
					if err != nil || target != n.Payload {
						t.Errorf("%s: link %q (%v), ours %q", p, target, err, n.Payload)
					}
				case n.IsReg() && !n.IsWhiteout():
					if st.Size != int64(n.Size) {
						t.Errorf("%s: size %d, ours %d", p, st.Size, n.Size)
					}
					if n.Content != nil {
						b, err := fs.ReadFile(fsys, p)
						if err != nil || !bytes.Equal(b, n.Content) {
							t.Errorf("%s: inline content differs (%v)", p, err)
						}
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if seen != len(ours) {
				t.Errorf("go-erofs saw %d of our %d entries", seen, len(ours))
			}
		})
	}
}

func modeType(m fs.FileMode) uint32 {
	switch {
	case m.IsDir():
		return tree.TypeDir
	case m&fs.ModeSymlink != 0:
		return tree.TypeLnk
	case m&fs.ModeNamedPipe != 0:
		return tree.TypeFifo
	case m&fs.ModeSocket != 0:
		return tree.TypeSock
	case m&fs.ModeCharDevice != 0:
		return tree.TypeChr
	case m&fs.ModeDevice != 0:
		return tree.TypeBlk
	}
	return tree.TypeReg
}
