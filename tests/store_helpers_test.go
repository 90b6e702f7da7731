package tests

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/dumpfile"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/store/oci"
	"github.com/gocfs/gocfs/store/splitstream"
	"github.com/gocfs/gocfs/tests/ocibuild"
	"github.com/gocfs/gocfs/tests/registry"
	"github.com/gocfs/gocfs/verity"
)

// pullTimeout bounds one pull of a fixture image from the local registry.
const pullTimeout = 2 * time.Minute

// pushFixtures builds images and pushes each to the registry as
// gocfs/NAME:latest.
func pushFixtures(t *testing.T, reg *registry.Registry, imgs map[string]*ocibuild.Image) map[string]*ocibuild.Built {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), pullTimeout)
	defer cancel()
	built := map[string]*ocibuild.Built{}
	for name, img := range imgs {
		b, err := ocibuild.Build(img)
		if err != nil {
			t.Fatalf("build %s: %v", name, err)
		}
		if err := b.Push(ctx, fixtureRef(reg, name), reg.SystemContext()); err != nil {
			t.Fatalf("%v\nregistry log:\n%s", err, reg.Log())
		}
		built[name] = b
	}
	return built
}

func fixtureRef(reg *registry.Registry, name string) string { return reg.Ref("gocfs/"+name, "latest") }

// initRepo creates a repository at dir/repo with repoOptions and opens it
// for the test.
func initRepo(t *testing.T, dir string) *store.Repository {
	t.Helper()
	return initRepoWith(t, dir, repoOptions)
}

func initRepoWith(t *testing.T, dir string, opts store.InitOptions) *store.Repository {
	t.Helper()
	r, err := store.Init(filepath.Join(dir, "repo"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// repoOptions make an insecure repository (the host has no fs-verity)
// whose images the C tools can rebuild (sha256).
var repoOptions = store.InitOptions{Algorithm: verity.SHA256, Insecure: true}

func pull(t *testing.T, repo *store.Repository, reg *registry.Registry, ref, tag string, bootable bool) *oci.PullResult {
	t.Helper()
	res, err := tryPull(repo, reg, ref, tag, bootable)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return res
}

func tryPull(repo *store.Repository, reg *registry.Registry, ref, tag string, bootable bool) (*oci.PullResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), pullTimeout)
	defer cancel()
	return oci.Pull(ctx, repo, ref, oci.PullOptions{Tag: tag, Bootable: bootable, SystemContext: reg.SystemContext()})
}

// expectedImage is the EROFS image the repository must make of b: the
// expected tree written in the repository's format version.
func expectedImage(t *testing.T, repo *store.Repository, b *ocibuild.Built, bootable bool) (*tree.Inode, []byte) {
	t.Helper()
	root, err := b.ExpectedTree(ocibuild.TreeOptions{Algorithm: repo.Algorithm(), Bootable: bootable})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := erofs.Write(&buf, root, erofsOptions(t, repo)); err != nil {
		t.Fatal(err)
	}
	return root, buf.Bytes()
}

func erofsOptions(t *testing.T, repo *store.Repository) erofs.WriteOptions {
	switch v := repo.ErofsVersion(); v {
	case 0:
		return erofs.WriteOptions{}
	case 1:
		return erofs.WriteOptions{Versions: &erofs.VersionRange{Min: 1, Max: 1}}
	default:
		t.Fatalf("repository makes EROFS format %d, which these tests do not know", v)
		return erofs.WriteOptions{}
	}
}

// mkcomposefsArgs are the mkcomposefs version options that make images in
// the repository's format.
func mkcomposefsArgs(t *testing.T, repo *store.Repository) []string {
	if o := erofsOptions(t, repo); o.Versions != nil {
		return []string{"--min-version=1", "--max-version=1"}
	}
	return nil
}

// readImage returns the content of the repository's image named by digest.
func readImage(t *testing.T, repo *store.Repository, d []byte) []byte {
	t.Helper()
	if len(d) == 0 {
		t.Fatal("no image digest")
	}
	f, got, err := repo.OpenImage(hex.EncodeToString(d))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !bytes.Equal(got, d) {
		t.Fatalf("OpenImage(%x) opened %x", d, got)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if v := verity.DigestBytes(b, repo.Algorithm()); !bytes.Equal(v, d) {
		t.Fatalf("image %x has fs-verity digest %x", d, v)
	}
	return b
}

// checkImage checks that the image digest names is the image expected of
// b, and that every object it names is in the repository with the right
// content: that the image reads completely.
func checkImage(t *testing.T, repo *store.Repository, d []byte, b *ocibuild.Built, bootable bool) {
	t.Helper()
	root, want := expectedImage(t, repo, b, bootable)
	got := readImage(t, repo, d)
	if !bytes.Equal(got, want) {
		t.Fatalf("image %x (bootable %v) differs from the expected one:\n%s", d, bootable, imageDiff(t, got, want))
	}
	checkObjects(t, repo, root)
}

// imageDiff shows the first difference between the dumps of two images.
func imageDiff(t *testing.T, got, want []byte) string {
	t.Helper()
	dump := func(img []byte) []byte {
		root, _, err := erofs.ReadTree(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			return []byte("unreadable image: " + err.Error())
		}
		var b bytes.Buffer
		if err := dumpfile.Write(&b, root, dumpfile.WriteOptions{}); err != nil {
			return []byte("undumpable image: " + err.Error())
		}
		return b.Bytes()
	}
	g, w := dump(got), dump(want)
	if bytes.Equal(g, w) {
		return "(same dump; the images differ in layout)"
	}
	return firstDiff(g, w)
}

// checkObjects checks that every external file of root is an object of the
// repository with the content its digest names.
func checkObjects(t *testing.T, repo *store.Repository, root *tree.Inode) {
	t.Helper()
	seen := map[string]bool{}
	err := tree.Walk(root, func(p string, d *tree.Dirent) error {
		n := d.Inode
		if !n.IsReg() || n.Digest == nil || seen[n.Payload] {
			return nil
		}
		seen[n.Payload] = true
		f, err := repo.OpenObject(n.Digest)
		if err != nil {
			return err
		}
		defer f.Close()
		got, err := verity.Digest(f, repo.Algorithm())
		if err != nil {
			return err
		}
		if !bytes.Equal(got, n.Digest) {
			return errors.New("/" + p + ": object " + n.Payload + " has other content")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("image objects: %v", err)
	}
}

// checkLayers checks that the repository holds every layer of b as a
// stream that reassembles to the layer archive.
func checkLayers(t *testing.T, repo *store.Repository, b *ocibuild.Built) {
	t.Helper()
	for i, l := range b.Layers {
		content := streamContent(t, repo, oci.LayerStreamID(l.DiffID))
		if digest.FromBytes(content) != l.DiffID {
			t.Fatalf("layer %d stream does not reassemble to the layer (diff_id %s)", i+1, l.DiffID)
		}
	}
}

// streamContent reassembles a stream of the repository.
func streamContent(t *testing.T, repo *store.Repository, id string) []byte {
	t.Helper()
	sr, _, err := repo.OpenStream(id)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err = sr.Reassemble(&buf, func(d []byte) (io.ReadCloser, error) { return repo.OpenObject(d) })
	if err != nil {
		t.Fatalf("stream %s: %v", id, err)
	}
	return buf.Bytes()
}

// fsckClean runs a check of the repository and fails the test on any
// finding.
func fsckClean(t *testing.T, repo *store.Repository) {
	t.Helper()
	rep, err := repo.Fsck(store.FsckOptions{})
	if err != nil {
		t.Fatalf("fsck: %v", err)
	}
	if !rep.OK() {
		j, _ := json.MarshalIndent(rep, "", "  ")
		t.Fatalf("fsck findings:\n%s", j)
	}
}

// repoState is the content of a repository's directories, read without the
// store package: object digests, and the digests the entries of streams/
// and images/ name.
type repoState struct {
	objects map[string]bool
	streams map[string]string // stream id -> digest
	images  map[string]bool
}

func readState(t *testing.T, repo *store.Repository) repoState {
	t.Helper()
	dir := repo.Path()
	st := repoState{objects: map[string]bool{}, streams: map[string]string{}, images: map[string]bool{}}
	fans, err := os.ReadDir(filepath.Join(dir, "objects"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fans {
		if !f.IsDir() || len(f.Name()) != 2 {
			continue
		}
		objs, err := os.ReadDir(filepath.Join(dir, "objects", f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if o.Type().IsRegular() && !strings.HasPrefix(o.Name(), ".") {
				st.objects[f.Name()+o.Name()] = true
			}
		}
	}
	for _, kind := range []string{"streams", "images"} {
		ents, err := os.ReadDir(filepath.Join(dir, kind))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Type()&fs.ModeSymlink == 0 {
				continue
			}
			d := linkDigest(t, filepath.Join(dir, kind, e.Name()))
			if kind == "streams" {
				st.streams[e.Name()] = d
			} else {
				if d != e.Name() {
					t.Fatalf("images/%s points to object %s", e.Name(), d)
				}
				st.images[d] = true
			}
		}
	}
	return st
}

// linkDigest returns the digest of the object a symlink points to (into
// objects/XX/REST), or "" if it points elsewhere.
func linkDigest(t *testing.T, link string) string {
	t.Helper()
	target, err := os.Readlink(link)
	if err != nil {
		t.Fatal(err)
	}
	return objectName(target)
}

// objectName returns the digest of the object at path (".../objects/XX/REST"),
// or "" if path is not in an object directory.
func objectName(path string) string {
	parts := strings.Split(path, "/")
	if n := len(parts); n >= 3 && parts[n-3] == "objects" {
		return parts[n-2] + parts[n-1]
	}
	return ""
}

// reachable computes from the repository's files what its refs reach,
// independently of the store's own GC: every ref is a root; a stream
// reaches its object refs and, recursively, the streams and images its
// named refs name; an image reaches the objects its files name.
func reachable(t *testing.T, repo *store.Repository) map[string]bool {
	t.Helper()
	st := readState(t, repo)
	isStream := map[string]bool{}
	for _, d := range st.streams {
		isStream[d] = true
	}
	live := map[string]bool{}
	var visit func(d string)
	visit = func(d string) {
		if live[d] {
			return
		}
		live[d] = true
		switch {
		case st.images[d]:
			img := readObject(t, repo, d)
			root, _, err := erofs.ReadTree(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatalf("image %s: %v", d, err)
			}
			tree.Walk(root, func(_ string, de *tree.Dirent) error {
				if p := de.Inode.Payload; de.Inode.IsReg() && p != "" {
					live[strings.ReplaceAll(p, "/", "")] = true
				}
				return nil
			})
		case isStream[d]:
			data := readObject(t, repo, d)
			sr, err := splitstream.NewReader(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatalf("stream %s: %v", d, err)
			}
			for _, o := range sr.ObjectRefs() {
				live[hex.EncodeToString(o)] = true
			}
			for _, nr := range sr.NamedRefs() {
				visit(hex.EncodeToString(nr.Digest))
			}
		}
	}
	for _, kind := range []string{"streams", "images"} {
		refs := filepath.Join(repo.Path(), kind, "refs")
		err := filepath.WalkDir(refs, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) && p == refs {
					return nil
				}
				return err
			}
			if e.Type()&fs.ModeSymlink == 0 {
				return nil
			}
			target, err := filepath.EvalSymlinks(p)
			if err != nil {
				return err
			}
			d := objectName(target)
			if d == "" {
				t.Fatalf("ref %s leads to %s, not to an object", p, target)
			}
			visit(d)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return live
}

func readObject(t *testing.T, repo *store.Repository, hexDigest string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo.Path(), "objects", hexDigest[:2], hexDigest[2:]))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// setDiff returns the members of a that are not in b, sorted.
func setDiff(a, b map[string]bool) []string {
	d := map[string]bool{}
	for k := range a {
		if !b[k] {
			d[k] = true
		}
	}
	return ocibuild.SortedObjects(d)
}
