package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/store/splitstream"
	"github.com/gocfs/gocfs/tests/ocibuild"
	"github.com/gocfs/gocfs/verity"
)

// newRepo makes an insecure repository (this test machine may lack
// fs-verity) whose images are in the given EROFS format version.
func newRepo(t *testing.T, erofsV0 bool) *store.Repository {
	t.Helper()
	repo, err := store.Init(filepath.Join(t.TempDir(), "repo"), store.InitOptions{Insecure: true, ErofsV0: erofsV0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Close() })
	return repo
}

// layoutOf writes an image as an OCI layout and returns its "oci:" ref.
func layoutOf(t *testing.T, b *ocibuild.Built) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	if err := b.WriteLayout(dir, "latest"); err != nil {
		t.Fatal(err)
	}
	return "oci:" + dir + ":latest"
}

// imageBytes reads a stored image.
func imageBytes(t *testing.T, repo *store.Repository, d Hex) []byte {
	t.Helper()
	f, _, err := repo.OpenImage(d.String())
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

// checkImage checks that a stored image is byte for byte the image of the
// expected tree.
func checkImage(t *testing.T, repo *store.Repository, d Hex, b *ocibuild.Built, bootable bool) {
	t.Helper()
	want, err := b.ExpectedTree(ocibuild.TreeOptions{Bootable: bootable, Algorithm: repo.Algorithm()})
	if err != nil {
		t.Fatal(err)
	}
	opts, err := writeOptions(repo)
	if err != nil {
		t.Fatal(err)
	}
	var wantImg bytes.Buffer
	if _, err := erofs.Write(&wantImg, want, opts); err != nil {
		t.Fatal(err)
	}
	got := imageBytes(t, repo, d)
	if bytes.Equal(got, wantImg.Bytes()) {
		return
	}
	gotTree, _, err := erofs.ReadTree(bytes.NewReader(got), int64(len(got)))
	if err != nil {
		t.Fatalf("image %s differs from the expected one and does not read: %v", d, err)
	}
	wantTree, _, _ := erofs.ReadTree(bytes.NewReader(wantImg.Bytes()), int64(wantImg.Len()))
	t.Fatalf("image %s differs from the expected one:\n%s\nwant:\n%s", d, dump(t, gotTree), dump(t, wantTree))
}

func TestPullOCILayout(t *testing.T) {
	for _, v0 := range []bool{true, false} {
		name := "erofs1"
		if v0 {
			name = "erofs0"
		}
		t.Run(name, func(t *testing.T) {
			repo := newRepo(t, v0)
			b := ocibuild.MustBuild(ocibuild.BaseImage())
			ref := layoutOf(t, b)
			res, err := Pull(t.Context(), repo, ref, PullOptions{Tag: "base", Progress: io.Discard})
			if err != nil {
				t.Fatal(err)
			}
			if res.ManifestDigest != b.ManifestDigest || res.ConfigDigest != b.ConfigDigest {
				t.Errorf("digests %s %s, want %s %s", res.ManifestDigest, res.ConfigDigest, b.ManifestDigest, b.ConfigDigest)
			}
			if res.Layers != 5 || res.LayersFetched != 5 || res.Artifact || res.BootImage != nil {
				t.Errorf("result %+v", res)
			}
			checkImage(t, repo, res.Image, b, false)
			checkLayers(t, repo, b)

			infos, err := Images(repo)
			if err != nil {
				t.Fatal(err)
			}
			if len(infos) != 1 || infos[0].Tag != "base" || !bytes.Equal(infos[0].Image, res.Image) ||
				infos[0].ManifestDigest != b.ManifestDigest || !infos[0].Container || infos[0].OS != "linux" || infos[0].Layers != 5 {
				t.Errorf("images: %+v", infos)
			}
			id, err := ComputeID(repo, "base", false)
			if err != nil || !bytes.Equal(id, res.Image) {
				t.Errorf("ComputeID: %s, %v; want %s", id, err, res.Image)
			}

			// A second pull fetches nothing and changes nothing.
			again, err := Pull(t.Context(), repo, ref, PullOptions{Tag: "base"})
			if err != nil {
				t.Fatal(err)
			}
			if again.LayersFetched != 0 || !bytes.Equal(again.Image, res.Image) ||
				!bytes.Equal(again.ManifestStream, res.ManifestStream) || !bytes.Equal(again.ConfigStream, res.ConfigStream) {
				t.Errorf("second pull: %+v\nfirst: %+v", again, res)
			}
		})
	}
}

// checkLayers checks that every layer stream reassembles to its archive
// and that the objects are all there.
func checkLayers(t *testing.T, repo *store.Repository, b *ocibuild.Built) {
	t.Helper()
	for i, l := range b.Layers {
		rd, _, err := repo.OpenStream(LayerStreamID(l.DiffID))
		if err != nil {
			t.Fatalf("layer %d: %v", i+1, err)
		}
		var out bytes.Buffer
		err = rd.Reassemble(&out, func(d []byte) (io.ReadCloser, error) { return repo.OpenObject(d) })
		if err != nil {
			t.Fatalf("layer %d: %v", i+1, err)
		}
		if !bytes.Equal(out.Bytes(), l.Tar) {
			t.Errorf("layer %d: reassembled archive differs", i+1)
		}
	}
	for h := range b.LayerObjects(repo.Algorithm()) {
		var d Hex
		if err := d.UnmarshalText([]byte(h)); err != nil {
			t.Fatal(err)
		}
		if ok, err := repo.HasObject(d); err != nil || !ok {
			t.Errorf("object %s missing (%v)", h, err)
		}
	}
}

func TestPullBootable(t *testing.T) {
	repo := newRepo(t, true)
	b1 := ocibuild.MustBuild(ocibuild.BootableImage(1))
	res1, err := Pull(t.Context(), repo, layoutOf(t, b1), PullOptions{Tag: "os:1", Bootable: true, Threads: 3})
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, repo, res1.Image, b1, false)
	checkImage(t, repo, res1.BootImage, b1, true)

	b2 := ocibuild.MustBuild(ocibuild.BootableImage(2))
	res2, err := Pull(t.Context(), repo, layoutOf(t, b2), PullOptions{Tag: "os:2", Bootable: true})
	if err != nil {
		t.Fatal(err)
	}
	if res2.LayersFetched != 3 {
		t.Errorf("second version fetched %d layers, want the 3 that differ", res2.LayersFetched)
	}
	checkImage(t, repo, res2.BootImage, b2, true)
	id, err := ComputeID(repo, "os:2", true)
	if err != nil || !bytes.Equal(id, res2.BootImage) {
		t.Errorf("ComputeID: %s, %v; want %s", id, err, res2.BootImage)
	}
}

func TestEnsureImages(t *testing.T) {
	repo := newRepo(t, true)
	b := ocibuild.MustBuild(ocibuild.BootableImage(1))
	res, err := Pull(t.Context(), repo, layoutOf(t, b), PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Adding the boot image rewrites the config and manifest streams.
	set, err := EnsureImages(repo, res.ManifestDigest, "os", true)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(set.Image, res.Image) || set.BootImage == nil {
		t.Fatalf("images %+v, pulled %s", set, res.Image)
	}
	checkImage(t, repo, set.BootImage, b, true)
	in, err := Inspect(repo, "os")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in.BootImage, set.BootImage) || in.ManifestDigest != res.ManifestDigest || !bytes.Equal(in.Manifest, b.Manifest) || !bytes.Equal(in.Config, b.Config) {
		t.Errorf("inspect: %+v", in.ImageInfo)
	}
	// Nothing more to do the second time.
	again, err := EnsureImages(repo, res.ManifestDigest, "", true)
	if err != nil || !bytes.Equal(again.BootImage, set.BootImage) {
		t.Errorf("again: %+v, %v", again, err)
	}
	// What the tag keeps survives a garbage collection.
	if _, err := repo.GC(store.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ComputeID(repo, "@"+res.ManifestDigest.String(), true); err != nil {
		t.Fatalf("after GC: %v", err)
	}
	imageBytes(t, repo, set.BootImage)
}

func TestTagUntag(t *testing.T) {
	repo := newRepo(t, true)
	b := ocibuild.MustBuild(ocibuild.BaseImage())
	res, err := Pull(t.Context(), repo, layoutOf(t, b), PullOptions{Tag: "a/b%c"})
	if err != nil {
		t.Fatal(err)
	}
	if err := Tag(repo, "a/b%c", "second"); err != nil {
		t.Fatal(err)
	}
	if err := Tag(repo, res.ManifestDigest.String(), "third"); err != nil {
		t.Fatal(err)
	}
	refs, err := repo.Refs(store.Streams)
	if err != nil {
		t.Fatal(err)
	}
	if refs["oci/a%2Fb%25c"] != ManifestStreamID(res.ManifestDigest) {
		t.Errorf("refs %v", refs)
	}
	infos, _ := Images(repo)
	var tags []string
	for _, i := range infos {
		tags = append(tags, i.Tag)
	}
	if strings.Join(tags, " ") != "a/b%c second third" {
		t.Errorf("tags %q", tags)
	}
	for _, tag := range []string{"a/b%c", "second", "third"} {
		if err := Untag(repo, tag); err != nil {
			t.Fatal(err)
		}
	}
	if err := Untag(repo, "second"); !errors.Is(err, ErrNotFound) {
		t.Errorf("untag twice: %v", err)
	}
	if _, err := Inspect(repo, "second"); !errors.Is(err, ErrNotFound) {
		t.Errorf("inspect untagged: %v", err)
	}
	for _, bad := range []string{"", "@x", ".hidden"} {
		if err := Tag(repo, "third", bad); err == nil {
			t.Errorf("tag %q accepted", bad)
		}
	}
}

// rawLayout writes an OCI layout from raw blobs: the manifest names the
// rest.
func rawLayout(t *testing.T, manifestJSON []byte, mediaType string, blobs ...[]byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "raw")
	bdir := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(bdir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range append(blobs, manifestJSON) {
		if err := os.WriteFile(filepath.Join(bdir, digest.FromBytes(b).Encoded()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	index, _ := json.Marshal(v1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: mediaType, Digest: digest.FromBytes(manifestJSON), Size: int64(len(manifestJSON)),
			Annotations: map[string]string{v1.AnnotationRefName: "latest"},
		}},
	})
	os.WriteFile(filepath.Join(dir, "index.json"), index, 0o644)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	return "oci:" + dir + ":latest"
}

// rebuild makes an OCI manifest for a config and layer blobs.
func rebuild(t *testing.T, config []byte, layers [][]byte, mediaTypes []string) []byte {
	t.Helper()
	m := v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Config:    v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: digest.FromBytes(config), Size: int64(len(config))},
	}
	for i, l := range layers {
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: mediaTypes[i], Digest: digest.FromBytes(l), Size: int64(len(l))})
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPullRejects(t *testing.T) {
	b := ocibuild.MustBuild(&ocibuild.Image{Layers: []ocibuild.Layer{
		{Compression: ocibuild.Gzip, Entries: ocibuild.MustParseEntries("/usr dir\n/usr/f file size=1000 seed=1\n", 1)},
		{Compression: ocibuild.Zstd, Entries: ocibuild.MustParseEntries("/usr/g file size=1000 seed=2\n", 1)},
	}})
	blobs := func() [][]byte { return [][]byte{bytes.Clone(b.Layers[0].Blob), bytes.Clone(b.Layers[1].Blob)} }
	types := []string{b.Layers[0].MediaType, b.Layers[1].MediaType}

	// A layer blob that is not what its digest says.
	corrupt := blobs()
	corrupt[1][len(corrupt[1])/2] ^= 1
	var cfg v1.Image
	json.Unmarshal(b.Config, &cfg)
	cfg.RootFS.DiffIDs[0] = digest.FromString("not the layer")
	wrongDiff, _ := json.Marshal(cfg)

	hostile := ocibuild.MustBuild(&ocibuild.Image{Layers: []ocibuild.Layer{{Compression: ocibuild.Gzip}}})
	hostileTar := tarBytes(t, []ent{{name: "usr/", typ: '5'}, {name: "usr/../../etc/passwd", body: "x"}}, 0)
	var cfg2 v1.Image
	json.Unmarshal(hostile.Config, &cfg2)
	cfg2.RootFS.DiffIDs = []digest.Digest{digest.FromBytes(hostileTar)}
	hostileCfg, _ := json.Marshal(cfg2)

	tests := []struct {
		name string
		ref  func(t *testing.T) string
		err  string
	}{
		{"corrupt layer blob", func(t *testing.T) string {
			// The layout names the blob by its digest but holds other bytes.
			dir := strings.TrimSuffix(strings.TrimPrefix(layoutOf(t, b), "oci:"), ":latest")
			p := filepath.Join(dir, "blobs", "sha256", b.Layers[1].Digest.Encoded())
			os.WriteFile(p, corrupt[1], 0o644)
			return "oci:" + dir + ":latest"
		}, "does not match its digest"},
		{"truncated layer blob", func(t *testing.T) string {
			dir := strings.TrimSuffix(strings.TrimPrefix(layoutOf(t, b), "oci:"), ":latest")
			p := filepath.Join(dir, "blobs", "sha256", b.Layers[0].Digest.Encoded())
			os.WriteFile(p, b.Layers[0].Blob[:len(b.Layers[0].Blob)-10], 0o644)
			return "oci:" + dir + ":latest"
		}, "unexpected EOF"},
		{"corrupt config blob", func(t *testing.T) string {
			dir := strings.TrimSuffix(strings.TrimPrefix(layoutOf(t, b), "oci:"), ":latest")
			p := filepath.Join(dir, "blobs", "sha256", b.ConfigDigest.Encoded())
			os.WriteFile(p, bytes.Replace(b.Config, []byte("linux"), []byte("LINUX"), 1), 0o644)
			return "oci:" + dir + ":latest"
		}, "does not match its digest"},
		{"wrong diff_id", func(t *testing.T) string {
			return rawLayout(t, rebuild(t, wrongDiff, blobs(), types), v1.MediaTypeImageManifest, append(blobs(), wrongDiff)...)
		}, "not the diff_id"},
		{"layer count", func(t *testing.T) string {
			return rawLayout(t, rebuild(t, b.Config, blobs()[:1], types), v1.MediaTypeImageManifest, append(blobs(), b.Config)...)
		}, "config lists 2 layers, the manifest 1"},
		{"hostile layer", func(t *testing.T) string {
			return rawLayout(t, rebuild(t, hostileCfg, [][]byte{hostileTar}, []string{v1.MediaTypeImageLayer}), v1.MediaTypeImageManifest, hostileTar, hostileCfg)
		}, `".." component`},
		{"unsupported layer type", func(t *testing.T) string {
			return rawLayout(t, rebuild(t, b.Config, blobs(), []string{"application/x-zip", types[1]}), v1.MediaTypeImageManifest, append(blobs(), b.Config)...)
		}, "unsupported layer media type"},
		{"no transport", func(t *testing.T) string { return "quay.io/x/y" }, "no transport"},
		{"unknown transport", func(t *testing.T) string { return "ftp://x" }, "unsupported transport"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := newRepo(t, true)
			_, err := Pull(t.Context(), repo, tt.ref(t), PullOptions{Tag: "x"})
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want one containing %q", err, tt.err)
			}
			refs, rerr := repo.Refs(store.Streams)
			if rerr != nil || len(refs) != 0 {
				t.Errorf("refs after a failed pull: %v %v", refs, rerr)
			}
			if tt.name == "corrupt layer blob" || tt.name == "wrong diff_id" {
				if _, ok, _ := repo.HasStream(LayerStreamID(b.Layers[0].DiffID)); ok && tt.name == "wrong diff_id" {
					t.Errorf("layer stream of a layer with a wrong diff_id was stored")
				}
				if _, ok, _ := repo.HasStream(LayerStreamID(b.Layers[1].DiffID)); ok && tt.name == "corrupt layer blob" {
					t.Errorf("layer stream of a corrupt blob was stored")
				}
			}
		})
	}
}

func TestPullArtifact(t *testing.T) {
	config := []byte(`{"kind":"example"}`)
	payload := bytes.Repeat([]byte("artifact payload "), 100)
	ocitar := ocibuild.MustBuild(&ocibuild.Image{Layers: []ocibuild.Layer{
		{Compression: ocibuild.Gzip, Entries: ocibuild.MustParseEntries("/usr dir\n/usr/f file size=1000 seed=1\n", 1)},
	}})
	m := v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Config:    v1.Descriptor{MediaType: "application/vnd.example.config+json", Digest: digest.FromBytes(config), Size: int64(len(config))},
		Layers: []v1.Descriptor{
			{MediaType: "application/vnd.example.data", Digest: digest.FromBytes(payload), Size: int64(len(payload))},
			// An archive layer of an artifact is split, and named by its blob digest.
			{MediaType: v1.MediaTypeImageLayerGzip, Digest: ocitar.Layers[0].Digest, Size: int64(len(ocitar.Layers[0].Blob))},
		},
	}
	mj, _ := json.Marshal(m)
	repo := newRepo(t, true)
	res, err := Pull(t.Context(), repo, rawLayout(t, mj, v1.MediaTypeImageManifest, config, payload, ocitar.Layers[0].Blob), PullOptions{Tag: "art"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Artifact || res.Image != nil || res.LayersFetched != 2 {
		t.Errorf("result %+v", res)
	}
	if rd, _, err := repo.OpenStream(LayerStreamID(ocitar.Layers[0].Digest)); err != nil || rd.ContentType() != splitstream.ContentTypeOCILayer {
		t.Errorf("archive layer stream: %v", err)
	}
	rd, _, err := repo.OpenStream(LayerStreamID(digest.FromBytes(payload)))
	if err != nil {
		t.Fatal(err)
	}
	data, err := streamData(repo, rd, splitstream.ContentTypeOCIBlob, 1<<20)
	if err != nil || !bytes.Equal(data, payload) {
		t.Errorf("blob stream: %v", err)
	}
	infos, err := Images(repo)
	if err != nil || len(infos) != 1 || infos[0].Container || infos[0].Error != "" {
		t.Errorf("images %+v %v", infos, err)
	}
	if _, err := ComputeID(repo, "art", false); err == nil {
		t.Error("ComputeID of an artifact succeeded")
	}
}

func TestPullDockerSchema2(t *testing.T) {
	b := ocibuild.MustBuild(ocibuild.BaseImage())
	s2 := manifest.Schema2FromComponents(
		manifest.Schema2Descriptor{MediaType: manifest.DockerV2Schema2ConfigMediaType, Digest: b.ConfigDigest, Size: int64(len(b.Config))},
		nil,
	)
	var blobs [][]byte
	for _, l := range b.Layers {
		mt := manifest.DockerV2Schema2LayerMediaType
		switch l.MediaType {
		case v1.MediaTypeImageLayer:
			mt = manifest.DockerV2SchemaLayerMediaTypeUncompressed
		case v1.MediaTypeImageLayerZstd:
			mt = manifest.DockerV2SchemaLayerMediaTypeZstd
		}
		s2.LayersDescriptors = append(s2.LayersDescriptors, manifest.Schema2Descriptor{MediaType: mt, Digest: l.Digest, Size: int64(len(l.Blob))})
		blobs = append(blobs, l.Blob)
	}
	raw, err := s2.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	repo := newRepo(t, true)
	res, err := Pull(t.Context(), repo, rawLayout(t, raw, manifest.DockerV2Schema2MediaType, append(blobs, b.Config)...), PullOptions{Tag: "docker"})
	if err != nil {
		t.Fatal(err)
	}
	if res.ManifestDigest != digest.FromBytes(raw) || res.ConfigDigest != b.ConfigDigest || res.Artifact {
		t.Errorf("result %+v", res)
	}
	checkImage(t, repo, res.Image, b, false)
	in, err := Inspect(repo, "docker")
	if err != nil {
		t.Fatal(err)
	}
	// Stored in OCI form, as composefs-rs stores it.
	om, err := manifest.OCI1FromManifest(in.Manifest)
	if err != nil || om.MediaType != v1.MediaTypeImageManifest || om.Config.Digest != b.ConfigDigest || len(om.Layers) != 5 || om.Layers[0].MediaType != v1.MediaTypeImageLayerGzip {
		t.Errorf("stored manifest %s (%v)", in.Manifest, err)
	}
}

func TestPullCancelled(t *testing.T) {
	repo := newRepo(t, true)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	b := ocibuild.MustBuild(ocibuild.BaseImage())
	if _, err := Pull(ctx, repo, layoutOf(t, b), PullOptions{Tag: "x"}); err == nil {
		t.Fatal("pull with a cancelled context succeeded")
	}
	if _, err := Inspect(repo, "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("tag after a cancelled pull: %v", err)
	}
}

func TestImportTar(t *testing.T) {
	repo := newRepo(t, true)
	data := tarBytes(t, baseLayer(), 10240)
	d, err := ImportTar(repo, bytes.NewReader(data), "my-layer")
	if err != nil {
		t.Fatal(err)
	}
	rd, sd, err := repo.OpenStream("my-layer")
	if err != nil || !bytes.Equal(sd, d) {
		t.Fatalf("open: %v", err)
	}
	var out bytes.Buffer
	if err := rd.Reassemble(&out, func(d []byte) (io.ReadCloser, error) { return repo.OpenObject(d) }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Error("reassembled archive differs")
	}
	root, err := TreeFromLayers(repo, [][]byte{d})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := tree.Resolve(root, "usr/bin/huge"); err != nil || n.Size != uint64(len(huge)) || n.Payload == "" {
		t.Errorf("usr/bin/huge: %v", err)
	}
}

func TestSHA512Repository(t *testing.T) {
	repo, err := store.Init(filepath.Join(t.TempDir(), "repo"), store.InitOptions{Insecure: true, Algorithm: verity.SHA512})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	d, err := ImportTar(repo, bytes.NewReader(tarBytes(t, baseLayer(), 0)), "layer")
	if err != nil {
		t.Fatal(err)
	}
	root, err := TreeFromLayers(repo, [][]byte{d})
	if err != nil {
		t.Fatal(err)
	}
	n, err := tree.Resolve(root, "usr/bin/medium")
	if err != nil || len(n.Digest) != 64 || len(n.Payload) != 129 {
		t.Errorf("usr/bin/medium: %v, digest of %d bytes, payload %q", err, len(n.Digest), n.Payload)
	}
	b := ocibuild.MustBuild(ocibuild.BaseImage())
	res, err := Pull(t.Context(), repo, layoutOf(t, b), PullOptions{Tag: "base"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Image) != 64 {
		t.Errorf("image digest %s", res.Image)
	}
	checkImage(t, repo, res.Image, b, false)
	checkLayers(t, repo, b)
}
