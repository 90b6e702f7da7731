package store

import (
	"bytes"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/store/objects"
	"github.com/gocfs/gocfs/store/splitstream"
)

// useKernel makes the package use a fake fs-verity for the test.
func useKernel(t *testing.T, k objects.Kernel) {
	t.Helper()
	old := kernel
	kernel = k
	t.Cleanup(func() { kernel = old })
}

// newRepo makes an insecure repository in a temporary directory.
func newRepo(t *testing.T, opts InitOptions) *Repository {
	t.Helper()
	opts.Insecure = true
	r, err := Init(filepath.Join(t.TempDir(), "repo"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func data(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*131) ^ seed ^ byte(i>>11)
	}
	return b
}

func mustObject(t *testing.T, r *Repository, b []byte) []byte {
	t.Helper()
	d, err := r.EnsureObject(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// streamSpec is a stream to write: objects as external chunks between
// inline text, and named references.
type streamSpec struct {
	objects [][]byte // contents, stored first
	named   map[string][]byte
}

func mustStream(t *testing.T, r *Repository, id, ref string, s streamSpec) []byte {
	t.Helper()
	w := splitstream.NewWriter(r.Algorithm(), splitstream.ContentTypeOCILayer)
	for i, o := range s.objects {
		w.WriteInline([]byte(strings.Repeat("h", i+1)))
		w.WriteExternal(mustObject(t, r, o), int64(len(o)))
	}
	w.WriteInline([]byte("end"))
	for name, d := range s.named {
		w.AddNamedRef(name, d)
	}
	d, err := r.WriteStream(id, w, ref)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// image returns an EROFS image whose files are the given contents, storing
// those over 64 bytes as objects.
func image(t *testing.T, r *Repository, files map[string][]byte) []byte {
	t.Helper()
	b, err := buildImage(r, files)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func buildImage(r *Repository, files map[string][]byte) ([]byte, error) {
	root := &tree.Inode{Mode: tree.TypeDir | 0o755, Nlink: 2}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		content := files[name]
		n := &tree.Inode{Mode: tree.TypeReg | 0o644, Nlink: 1, Size: uint64(len(content))}
		if len(content) <= 64 {
			n.Content = content
		} else {
			d, err := r.EnsureObject(bytes.NewReader(content))
			if err != nil {
				return nil, err
			}
			n.Payload = objects.Path(d)
			n.Digest = d
		}
		if err := root.Insert(&tree.Dirent{Name: name, Inode: n}); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	if _, err := erofs.Write(&buf, root, erofs.WriteOptions{}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func mustImage(t *testing.T, r *Repository, ref string, files map[string][]byte) []byte {
	t.Helper()
	d, err := r.WriteImage(bytes.NewReader(image(t, r, files)), ref)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// objectSet lists the digests of the objects in the repository, in hex.
func objectSet(t *testing.T, r *Repository) []string {
	t.Helper()
	var out []string
	root := filepath.Join(r.Path(), objectsDir)
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if e.IsDir() {
			return nil
		}
		if strings.HasPrefix(e.Name(), tempPrefix) {
			t.Errorf("temporary file %s in the object store", rel)
			return nil
		}
		out = append(out, strings.Replace(rel, "/", "", 1))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func hexes(ds ...[]byte) []string {
	var out []string
	for _, d := range ds {
		out = append(out, hexDigest(d))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func readObject(t *testing.T, r *Repository, d []byte) []byte {
	t.Helper()
	f, err := r.OpenObject(d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func linkTarget(t *testing.T, r *Repository, name string) string {
	t.Helper()
	s, err := os.Readlink(filepath.Join(r.Path(), name))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
