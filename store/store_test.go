package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gocfs/gocfs/store/internal/fakeverity"
	"github.com/gocfs/gocfs/store/objects"
	"github.com/gocfs/gocfs/store/splitstream"
	"github.com/gocfs/gocfs/verity"
)

// TestMetaJSON checks meta.json byte for byte against what cfsctl init
// writes for the same settings.
func TestMetaJSON(t *testing.T) {
	tests := []struct {
		name string
		opts InitOptions
		want string
	}{
		{"sha512", InitOptions{Algorithm: verity.SHA512}, `{
  "version": 1,
  "algorithm": "fsverity-sha512-12",
  "features": {
    "compatible": [],
    "read-only-compatible": [
      "v1_erofs"
    ],
    "incompatible": []
  },
  "erofs_formats": {
    "default": 1
  }
}
`},
		{"sha256 default", InitOptions{}, `{
  "version": 1,
  "algorithm": "fsverity-sha256-12",
  "features": {
    "compatible": [],
    "read-only-compatible": [
      "v1_erofs"
    ],
    "incompatible": []
  },
  "erofs_formats": {
    "default": 1
  }
}
`},
		{"erofs v0", InitOptions{ErofsV0: true}, `{
  "version": 1,
  "algorithm": "fsverity-sha256-12",
  "features": {
    "compatible": [],
    "read-only-compatible": [],
    "incompatible": []
  },
  "erofs_formats": {
    "default": 0
  }
}
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRepo(t, tt.opts)
			got, err := os.ReadFile(filepath.Join(r.Path(), metaName))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("meta.json\n%s\nwant\n%s", got, tt.want)
			}
			wantV := 1
			if tt.opts.ErofsV0 {
				wantV = 0
			}
			if r.ErofsVersion() != wantV || r.ErofsExtraVersions() != nil {
				t.Errorf("ErofsVersion %d, extra %v", r.ErofsVersion(), r.ErofsExtraVersions())
			}
			st, err := os.Stat(r.Path())
			if err != nil || st.Mode().Perm() != 0o700 {
				t.Errorf("repository directory mode %v, %v", st.Mode(), err)
			}
		})
	}
}

// TestMetaCompat opens repositories with meta.json files as composefs-rs
// versions write them.
func TestMetaCompat(t *testing.T) {
	tests := []struct {
		name     string
		meta     string
		wantErr  string
		readOnly bool
		alg      verity.Algorithm
		erofs    int
		extra    []int
	}{
		{name: "minimal", meta: `{"version":1,"algorithm":"fsverity-sha512-12"}`, alg: verity.SHA512, erofs: 2},
		{name: "legacy v1 flag", meta: `{"version":1,"algorithm":"fsverity-sha256-12","features":{"read-only-compatible":["v1_erofs"]}}`,
			alg: verity.SHA256, erofs: 1},
		{name: "dual format", meta: `{"version":1,"algorithm":"fsverity-sha512-12","features":{"compatible":[],"read-only-compatible":["v1_erofs"],"incompatible":[]},"erofs_formats":{"default":1,"extra":[2]}}`,
			alg: verity.SHA512, erofs: 1, extra: []int{2}},
		{name: "unknown field", meta: `{"version":1,"algorithm":"fsverity-sha256-12","future":{"x":1}}`, alg: verity.SHA256, erofs: 2},
		{name: "unknown compatible feature", meta: `{"version":1,"algorithm":"fsverity-sha256-12","features":{"compatible":["shiny"]}}`, alg: verity.SHA256, erofs: 2},
		{name: "unknown ro-compat feature", meta: `{"version":1,"algorithm":"fsverity-sha256-12","features":{"read-only-compatible":["shiny"]}}`,
			alg: verity.SHA256, erofs: 2, readOnly: true},
		{name: "unknown incompat feature", meta: `{"version":1,"algorithm":"fsverity-sha256-12","features":{"incompatible":["shiny"]}}`,
			wantErr: "unknown incompatible features"},
		{name: "version 2", meta: `{"version":2,"algorithm":"fsverity-sha256-12"}`, wantErr: "format version 2"},
		{name: "64k blocks", meta: `{"version":1,"algorithm":"fsverity-sha256-16"}`, wantErr: "4096-byte"},
		{name: "bad algorithm", meta: `{"version":1,"algorithm":"sha256"}`, wantErr: "not of the form"},
		{name: "no algorithm", meta: `{"version":1}`, wantErr: "no algorithm"},
		{name: "not json", meta: `{"version":1,`, wantErr: "meta.json"},
		{name: "trailing data", meta: `{"version":1,"algorithm":"fsverity-sha256-12"} {}`, wantErr: "after the JSON"},
		{name: "bad erofs format", meta: `{"version":1,"algorithm":"fsverity-sha256-12","erofs_formats":{"default":7}}`, wantErr: "EROFS format version 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, metaName), []byte(tt.meta), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(dir, objectsDir), 0o755); err != nil {
				t.Fatal(err)
			}
			r, err := Open(dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Open error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if ro, _ := r.ReadOnly(); ro != tt.readOnly {
				t.Errorf("ReadOnly = %v", ro)
			}
			if r.Algorithm() != tt.alg || r.ErofsVersion() != tt.erofs || fmt.Sprint(r.ErofsExtraVersions()) != fmt.Sprint(tt.extra) || r.Secure() {
				t.Errorf("alg %v erofs %d extra %v secure %v", r.Algorithm(), r.ErofsVersion(), r.ErofsExtraVersions(), r.Secure())
			}
			_, err = r.EnsureObject(strings.NewReader("x"))
			if tt.readOnly != errors.Is(err, ErrReadOnly) || (!tt.readOnly && err != nil) {
				t.Errorf("EnsureObject: %v", err)
			}
		})
	}
	if _, err := Open(t.TempDir()); !errors.Is(err, ErrNotRepository) {
		t.Errorf("Open of an empty directory: %v", err)
	}
}

func TestInitAgain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "repo")
	r, err := Init(dir, InitOptions{Algorithm: verity.SHA512, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	r, err = Init(dir, InitOptions{Algorithm: verity.SHA512, Insecure: true})
	if err != nil {
		t.Fatalf("Init with the same settings: %v", err)
	}
	r.Close()
	for _, opts := range []InitOptions{{Insecure: true}, {Algorithm: verity.SHA512, Insecure: true, ErofsV0: true}} {
		if _, err := Init(dir, opts); err == nil || !strings.Contains(err.Error(), "other settings") {
			t.Errorf("Init %+v over a repository: %v", opts, err)
		}
	}
	if _, err := Init(dir, InitOptions{Algorithm: 5}); err == nil {
		t.Error("Init with algorithm 5 succeeded")
	}
}

func TestInitSecure(t *testing.T) {
	k := &fakeverity.Kernel{}
	useKernel(t, k)
	dir := filepath.Join(t.TempDir(), "repo")
	r, err := Init(dir, InitOptions{Algorithm: verity.SHA512})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !r.Secure() {
		t.Fatal("repository with fs-verity on meta.json is not secure")
	}
	if !k.Has(filepath.Join(dir, metaName)) {
		t.Error("meta.json has no fs-verity")
	}
	d := mustObject(t, r, data(10000, 1))
	if !k.Has(filepath.Join(dir, objectPath(d))) {
		t.Error("object has no fs-verity")
	}
	if got := readObject(t, r, d); !bytes.Equal(got, data(10000, 1)) {
		t.Error("object content differs")
	}

	// An object without fs-verity in a secure repository is refused.
	plain := data(500, 2)
	pd := verity.DigestBytes(plain, verity.SHA512)
	p := filepath.Join(dir, objectPath(pd))
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, plain, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.OpenObject(pd); !errors.Is(err, verity.ErrNoVerity) {
		t.Errorf("OpenObject of an object without fs-verity: %v", err)
	}

	useKernel(t, &fakeverity.Kernel{Unsupported: true})
	// The existing repository opens on a machine without fs-verity, as
	// insecure.
	again, err := Init(dir, InitOptions{Algorithm: verity.SHA512})
	if err != nil {
		t.Fatalf("Init of an existing repository without fs-verity: %v", err)
	}
	if again.Secure() {
		t.Error("repository secure without fs-verity")
	}
	again.Close()
	_, err = Init(filepath.Join(t.TempDir(), "repo"), InitOptions{})
	if !errors.Is(err, verity.ErrNotSupported) || !strings.Contains(err.Error(), "insecure") {
		t.Errorf("secure Init without fs-verity: %v", err)
	}
	r2, err := Init(filepath.Join(t.TempDir(), "repo"), InitOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if r2.Secure() {
		t.Error("insecure repository is secure")
	}
}

func TestEnsureObject(t *testing.T) {
	for _, alg := range []verity.Algorithm{verity.SHA256, verity.SHA512} {
		t.Run(alg.String(), func(t *testing.T) {
			r := newRepo(t, InitOptions{Algorithm: alg})
			b := data(70000, 3)
			d := mustObject(t, r, b)
			if !bytes.Equal(d, verity.DigestBytes(b, alg)) {
				t.Fatalf("digest %x", d)
			}
			name := filepath.Base(objectPath(d))
			if len(name) != 2*alg.Size()-2 {
				t.Errorf("object file name %q has %d characters", name, len(name))
			}
			src := filepath.Join(t.TempDir(), "src")
			os.WriteFile(src, b, 0o600)
			f, err := os.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			d2, err := r.EnsureObjectFromFile(f)
			if err != nil || !bytes.Equal(d2, d) {
				t.Fatalf("EnsureObjectFromFile = %x, %v", d2, err)
			}
			if got := objectSet(t, r); fmt.Sprint(got) != fmt.Sprint(hexes(d)) {
				t.Errorf("objects %v", got)
			}
			if ok, err := r.HasObject(d); !ok || err != nil {
				t.Errorf("HasObject = %v, %v", ok, err)
			}
			if !bytes.Equal(readObject(t, r, d), b) {
				t.Error("content differs")
			}
		})
	}
}

// TestConcurrentIngest stores the same objects from many goroutines through
// two Repository values: one object each, no temporary file left.
func TestConcurrentIngest(t *testing.T) {
	r := newRepo(t, InitOptions{})
	r2, err := Open(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	contents := [][]byte{data(0, 0), data(1, 1), data(5000, 2), data(300000, 3)}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 16 {
		repo := []*Repository{r, r2}[i%2]
		wg.Go(func() {
			for _, c := range contents {
				if _, err := repo.EnsureObject(bytes.NewReader(c)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var want [][]byte
	for _, c := range contents {
		want = append(want, verity.DigestBytes(c, verity.SHA256))
	}
	if got := objectSet(t, r); fmt.Sprint(got) != fmt.Sprint(hexes(want...)) {
		t.Errorf("objects %v, want %v", got, hexes(want...))
	}
}

func TestStreams(t *testing.T) {
	r := newRepo(t, InitOptions{Algorithm: verity.SHA512})
	objs := [][]byte{data(100, 1), data(5000, 2)}
	layer := mustStream(t, r, "oci-layer-sha256:aa", "", streamSpec{objects: objs})
	cfg := mustStream(t, r, "oci-config-sha256:bb", "oci/img%3Atag", streamSpec{named: map[string][]byte{"sha256:aa": layer}})

	if got := linkTarget(t, r, "streams/oci-layer-sha256:aa"); got != "../objects/"+objects.Path(layer) {
		t.Errorf("stream link %q", got)
	}
	if got := linkTarget(t, r, "streams/refs/oci/img%3Atag"); got != "../../oci-config-sha256:bb" {
		t.Errorf("ref link %q", got)
	}
	d, ok, err := r.HasStream("oci-layer-sha256:aa")
	if err != nil || !ok || !bytes.Equal(d, layer) {
		t.Errorf("HasStream = %x, %v, %v", d, ok, err)
	}
	if _, ok, err := r.HasStream("oci-layer-sha256:cc"); ok || err != nil {
		t.Errorf("HasStream of a missing stream = %v, %v", ok, err)
	}
	for _, name := range []string{"oci-config-sha256:bb", "refs/oci/img%3Atag", "oci/img%3Atag"} {
		rd, d, err := r.OpenStream(name)
		if err != nil {
			t.Fatalf("OpenStream(%q): %v", name, err)
		}
		if !bytes.Equal(d, cfg) || !bytes.Equal(rd.NamedRef("sha256:aa"), layer) {
			t.Errorf("OpenStream(%q) = %x", name, d)
		}
	}
	rd, _, err := r.OpenStream("oci-layer-sha256:aa")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = rd.Reassemble(&out, func(d []byte) (io.ReadCloser, error) { return r.OpenObject(d) })
	if err != nil {
		t.Fatal(err)
	}
	if want := "h" + string(objs[0]) + "hh" + string(objs[1]) + "end"; out.String() != want {
		t.Error("reassembled stream differs")
	}
	if _, _, err := r.OpenStream("nothing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("OpenStream of a missing stream: %v", err)
	}

	// The object of a stream gone, the stream is gone.
	os.Remove(filepath.Join(r.Path(), objectPath(layer)))
	if _, ok, err := r.HasStream("oci-layer-sha256:aa"); ok || err != nil {
		t.Errorf("HasStream of a dangling stream = %v, %v", ok, err)
	}

	for _, id := range []string{"", ".hidden", "refs", "a/b", "x\x00"} {
		if _, err := r.WriteStream(id, splitstream.NewWriter(verity.SHA512, 0), ""); err == nil {
			t.Errorf("WriteStream(%q) succeeded", id)
		}
	}
	if _, err := r.WriteStream("ok", splitstream.NewWriter(verity.SHA512, 0), "a//b"); err == nil {
		t.Error("WriteStream with ref a//b succeeded")
	}
	if _, err := r.WriteStream("ok", splitstream.NewWriter(verity.SHA256, 0), ""); err == nil {
		t.Error("sha256 splitstream in a sha512 repository accepted")
	}
}

func TestImages(t *testing.T) {
	r := newRepo(t, InitOptions{})
	big := data(20000, 5)
	img := mustImage(t, r, "os/v1", map[string][]byte{"big": big, "small": []byte("hi")})
	hexImg := hexDigest(img)
	if got := linkTarget(t, r, "images/"+hexImg); got != "../objects/"+objects.Path(img) {
		t.Errorf("image link %q", got)
	}
	if got := linkTarget(t, r, "images/refs/os/v1"); got != "../../"+hexImg {
		t.Errorf("image ref link %q", got)
	}
	for _, name := range []string{hexImg, "refs/os/v1", "os/v1"} {
		f, d, err := r.OpenImage(name)
		if err != nil {
			t.Fatalf("OpenImage(%q): %v", name, err)
		}
		f.Close()
		if !bytes.Equal(d, img) {
			t.Errorf("OpenImage(%q) digest %x", name, d)
		}
	}
	var objs []string
	if err := r.imageObjects(img, func(o []byte) { objs = append(objs, hexDigest(o)) }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(objs) != fmt.Sprint(hexes(verity.DigestBytes(big, verity.SHA256))) {
		t.Errorf("image objects %v", objs)
	}

	// An image named by digest is verified even without fs-verity.
	p := filepath.Join(r.Path(), objectPath(img))
	b, _ := os.ReadFile(p)
	b[len(b)-1] ^= 1
	os.Remove(p)
	os.WriteFile(p, b, 0o644)
	if _, _, err := r.OpenImage(hexImg); !errors.Is(err, objects.ErrDigestMismatch) {
		t.Errorf("OpenImage of a corrupt image by digest: %v", err)
	}
	if f, _, err := r.OpenImage("refs/os/v1"); err != nil {
		t.Errorf("OpenImage by ref: %v", err)
	} else {
		f.Close()
	}
}

func TestRefs(t *testing.T) {
	r := newRepo(t, InitOptions{})
	s := mustStream(t, r, "s1", "", streamSpec{objects: [][]byte{data(99, 1)}})
	img := mustImage(t, r, "", map[string][]byte{"f": data(100, 2)})
	if err := r.SetRef(Streams, "a/b/c", "s1"); err != nil {
		t.Fatal(err)
	}
	if err := r.SetRef(Streams, "top", "s1"); err != nil {
		t.Fatal(err)
	}
	if err := r.SetRef(Images, "boot", hexDigest(img)); err != nil {
		t.Fatal(err)
	}
	if got := linkTarget(t, r, "streams/refs/a/b/c"); got != "../../../s1" {
		t.Errorf("nested ref link %q", got)
	}
	if got := linkTarget(t, r, "images/refs/boot"); got != "../"+hexDigest(img) {
		t.Errorf("image ref link %q", got)
	}
	refs, err := r.Refs(Streams)
	if err != nil || fmt.Sprint(refs) != "map[a/b/c:s1 top:s1]" {
		t.Errorf("stream refs %v, %v", refs, err)
	}
	refs, err = r.Refs(Images)
	if err != nil || fmt.Sprint(refs) != fmt.Sprintf("map[boot:%x]", img) {
		t.Errorf("image refs %v, %v", refs, err)
	}
	// Replacing a ref keeps no temporary link.
	mustStream(t, r, "s2", "", streamSpec{})
	if err := r.SetRef(Streams, "top", "s2"); err != nil {
		t.Fatal(err)
	}
	if _, d, err := r.OpenStream("refs/top"); err != nil || bytes.Equal(d, s) {
		t.Errorf("re-pointed ref opens %x, %v", d, err)
	}
	ents, _ := os.ReadDir(filepath.Join(r.Path(), "streams/refs"))
	if len(ents) != 2 {
		t.Errorf("streams/refs holds %d entries", len(ents))
	}
	if err := r.SetRef(Streams, "x", "missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetRef to a missing stream: %v", err)
	}
	if err := r.DeleteRef(Streams, "a/b/c"); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteRef(Streams, "a/b/c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteRef: %v", err)
	}
	if err := r.DeleteRef(Streams, "a/b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteRef of a directory: %v", err)
	}
	refs, _ = r.Refs(Streams)
	if fmt.Sprint(refs) != "map[top:s2]" {
		t.Errorf("refs after delete %v", refs)
	}
	for _, name := range []string{"", "/abs", "a/../b", "a/./b", ".x", "a/"} {
		if err := r.SetRef(Streams, name, "s1"); err == nil {
			t.Errorf("SetRef(%q) succeeded", name)
		}
	}
}

func TestRelLink(t *testing.T) {
	for _, tt := range []struct{ name, target, want string }{
		{"streams/x", "objects/ab/cd", "../objects/ab/cd"},
		{"streams/refs/x", "streams/x", "../x"},
		{"streams/refs/oci/tag", "streams/oci-manifest-sha256:1", "../../oci-manifest-sha256:1"},
		{"images/refs/a/b/c", "images/00ff", "../../../00ff"},
	} {
		if got := relLink(tt.name, tt.target); got != tt.want {
			t.Errorf("relLink(%q, %q) = %q, want %q", tt.name, tt.target, got, tt.want)
		}
	}
}

func TestClosed(t *testing.T) {
	r := newRepo(t, InitOptions{})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := r.EnsureObject(strings.NewReader("x")); err == nil {
		t.Error("EnsureObject after Close succeeded")
	}
	if _, err := r.GC(GCOptions{}); err == nil {
		t.Error("GC after Close succeeded")
	}
}
