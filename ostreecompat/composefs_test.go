package ostreecompat

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/ostreecompat/gvariant"
	"github.com/gocfs/gocfs/ostreecompat/ostree"
	"github.com/gocfs/gocfs/ostreecompat/ostree/ostreetest"
	"github.com/gocfs/gocfs/verity"
)

// TestWriteComposefsImage writes the image of the golden commit v2 and
// reads it back: the tree libostree builds (every file its own inode, mtime
// 0, objects named XX/<rest>.file with their sha256 fs-verity digest, the
// mount point directories added), format version 0.
func TestWriteComposefsImage(t *testing.T) {
	for _, mode := range []ostree.Mode{ostree.ModeBareUser, ostree.ModeBare} {
		t.Run(mode.String(), func(t *testing.T) {
			if mode == ostree.ModeBare {
				ostreetest.RequireRoot(t)
			}
			src := ostreetest.TarTree(t, filepath.Join(ostreetest.GoldenDir(t), "input", "tree-v2.tar"))
			r := synthRepo(t, "", mode)
			root, err := r.WriteTree(src, nil)
			if err != nil {
				t.Fatal(err)
			}
			v, _ := gvariant.NewVariant("s", "x")
			commit, err := r.WriteCommit(&ostree.Commit{RootTree: root.Tree, RootMeta: root.Meta, Metadata: []ostree.Metadata{{Key: "k", Value: v}}})
			if err != nil {
				t.Fatal(err)
			}
			var img bytes.Buffer
			d, err := WriteComposefsImage(r, commit, &img)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(d, verity.DigestBytes(img.Bytes(), verity.SHA256)) {
				t.Errorf("digest %x is not the image's", d)
			}
			got, info, err := erofs.ReadTree(bytes.NewReader(img.Bytes()), int64(img.Len()))
			if err != nil {
				t.Fatal(err)
			}
			if info.Version != 0 {
				t.Errorf("format version %d", info.Version)
			}
			for _, name := range []string{"boot", "var", "sysroot"} {
				n, err := tree.Resolve(got, name)
				if err != nil || n.Mode != tree.TypeDir|0o755 || n.UID != 0 || len(n.Entries) != 0 {
					t.Errorf("/%s: %+v %v", name, n, err)
				}
			}
			if len(got.Entries) != len(src.Entries)+3 {
				t.Errorf("%d entries at the top, want %d", len(got.Entries), len(src.Entries)+3)
			}
			err = tree.Walk(src, func(p string, e *tree.Dirent) error {
				w := e.Inode
				g, err := tree.Resolve(got, p)
				if err != nil {
					t.Errorf("%s: %v", p, err)
					return nil
				}
				if g.Mode != w.Mode || g.UID != w.UID || g.GID != w.GID || g.Mtime != (tree.Timespec{}) {
					t.Errorf("%s: %#o %d:%d %v", p, g.Mode, g.UID, g.GID, g.Mtime)
				}
				var wx []tree.Xattr
				for _, x := range w.Xattrs {
					if x.Value != "" {
						wx = append(wx, x)
					}
				}
				g.SortXattrs()
				if len(g.Xattrs) != len(wx) || len(wx) > 0 && !equalXattrs(g.Xattrs, wx) {
					t.Errorf("%s: xattrs %q, want %q", p, g.Xattrs, wx)
				}
				switch {
				case w.IsReg() && w.Size > 0:
					sum, _ := ostree.ContentChecksum(ostree.FileMetaOf(w), bytes.NewReader(w.Content))
					if g.Payload != ostree.LoosePath(sum, ostree.ObjFile) || g.Size != w.Size ||
						!bytes.Equal(g.Digest, verity.DigestBytes(w.Content, verity.SHA256)) {
						t.Errorf("%s: payload %q size %d digest %x", p, g.Payload, g.Size, g.Digest)
					}
				case w.IsReg():
					if g.Payload != "" || g.Digest != nil || g.Size != 0 {
						t.Errorf("%s: empty file with payload %q digest %x", p, g.Payload, g.Digest)
					}
				case w.IsSymlink():
					if g.Payload != w.Payload {
						t.Errorf("%s: target %q", p, g.Payload)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			// Digests given for the objects give the same image.
			d2, err := composefsDigest(r, root, map[string][]byte{})
			if err != nil || !bytes.Equal(d2, d) {
				t.Errorf("composefsDigest %x (%v), want %x", d2, err, d)
			}
		})
	}
}

func equalXattrs(a, b []tree.Xattr) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
