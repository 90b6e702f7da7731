package ocibuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/oci/layout"

	"github.com/gocfs/gocfs/tests/registry"
)

// fixtures are the images the package provides.
func fixtures(t *testing.T) map[string]*Built {
	t.Helper()
	m := map[string]*Built{}
	for name, img := range map[string]*Image{"base": BaseImage(), "boot1": BootableImage(1), "boot2": BootableImage(2)} {
		b, err := Build(img)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		m[name] = b
	}
	return m
}

func TestBuildDeterministic(t *testing.T) {
	a, b := MustBuild(BaseImage()), MustBuild(BaseImage())
	if a.ManifestDigest != b.ManifestDigest || !bytes.Equal(a.Layers[1].Blob, b.Layers[1].Blob) {
		t.Fatal("two builds of the same image differ")
	}
}

func TestBootableVersions(t *testing.T) {
	f := fixtures(t)
	b1, b2 := f["boot1"], f["boot2"]
	if len(b1.Layers) != 20 || len(b2.Layers) != 20 || len(f["base"].Layers) != 5 {
		t.Fatal("wrong layer counts")
	}
	for i := range 20 {
		same := b1.Layers[i].Digest == b2.Layers[i].Digest
		if same != (i < 17) {
			t.Errorf("layer %d: shared %v", i+1, same)
		}
	}
	if b1.ManifestDigest == b2.ManifestDigest {
		t.Error("versions have the same manifest")
	}
}

// readEntries reads a layer archive back into entries, undoing what
// header does, so that it can be compared with the specification.
func readEntries(t *testing.T, data []byte) []Entry {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var es []Entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		e := Entry{
			Path:  path.Clean("/" + h.Name),
			Mode:  uint32(h.Mode),
			UID:   h.Uid,
			GID:   h.Gid,
			Mtime: h.ModTime.Unix(),
		}
		dir, base := path.Split(e.Path)
		switch h.Typeflag {
		case tar.TypeDir:
			e.Type = Dir
			if !strings.HasSuffix(h.Name, "/") {
				t.Errorf("%s: directory name without a slash", h.Name)
			}
		case tar.TypeReg:
			body, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case base == OpaqueName:
				e.Type, e.Path = Opaque, path.Clean(dir)
			case strings.HasPrefix(base, WhiteoutPrefix):
				e.Type, e.Path = Whiteout, path.Join(dir, base[len(WhiteoutPrefix):])
			default:
				e.Type, e.Content = File, body
			}
		case tar.TypeSymlink:
			e.Type, e.Target = Symlink, h.Linkname
		case tar.TypeLink:
			e.Type, e.Target = Hardlink, "/"+h.Linkname
		case tar.TypeChar, tar.TypeBlock:
			e.Type, e.Major, e.Minor = Char, uint32(h.Devmajor), uint32(h.Devminor)
			if h.Typeflag == tar.TypeBlock {
				e.Type = Block
			}
		case tar.TypeFifo:
			e.Type = Fifo
		default:
			t.Fatalf("%s: unexpected type %c", h.Name, h.Typeflag)
		}
		for k, v := range h.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if e.Xattrs == nil {
					e.Xattrs = map[string]string{}
				}
				e.Xattrs[name] = v
			}
		}
		es = append(es, e)
	}
	return es
}

// normalize makes a specification entry comparable with one read back.
func normalize(e Entry) Entry {
	if e.Type == File {
		e.Content, e.Size, e.Seed = e.Data(), 0, 0
		if e.Content == nil {
			e.Content = []byte{}
		}
	}
	if e.Type == Whiteout || e.Type == Opaque {
		e.Mode = 0o644
	}
	return e
}

func TestLayerArchives(t *testing.T) {
	for name, b := range fixtures(t) {
		for i, l := range b.Layers {
			got := readEntries(t, l.Tar)
			spec := b.Image.Layers[i].Entries
			if len(got) != len(spec) {
				t.Fatalf("%s layer %d: %d entries, want %d", name, i+1, len(got), len(spec))
			}
			for j := range spec {
				g, w := got[j], normalize(spec[j])
				if g.Type == File && len(g.Content) == 0 {
					g.Content = []byte{}
				}
				if !reflect.DeepEqual(g, w) {
					t.Errorf("%s layer %d entry %d:\n got %+v\nwant %+v", name, i+1, j, g, w)
				}
			}
			if digest.FromBytes(l.Tar) != l.DiffID || digest.FromBytes(l.Blob) != l.Digest {
				t.Errorf("%s layer %d: digests do not match the data", name, i+1)
			}
			if b.Image.Layers[i].RecordPadding && len(l.Tar)%recordSize != 0 {
				t.Errorf("%s layer %d: archive size %d is not padded to a record", name, i+1, len(l.Tar))
			}
			if un := decompress(t, l); !bytes.Equal(un, l.Tar) {
				t.Errorf("%s layer %d (%s): blob does not decompress to the archive", name, i+1, l.MediaType)
			}
		}
	}
}

func decompress(t *testing.T, l BuiltLayer) []byte {
	t.Helper()
	var r io.Reader
	switch l.MediaType {
	case v1.MediaTypeImageLayerGzip:
		zr, err := gzip.NewReader(bytes.NewReader(l.Blob))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case v1.MediaTypeImageLayerZstd:
		zr, err := zstd.NewReader(bytes.NewReader(l.Blob))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	case v1.MediaTypeImageLayer:
		return l.Blob
	default:
		t.Fatalf("media type %s", l.MediaType)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConfigAndManifest(t *testing.T) {
	b := MustBuild(BaseImage())
	var cfg v1.Image
	if err := json.Unmarshal(b.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(b.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	if digest.FromBytes(b.Config) != b.ConfigDigest || digest.FromBytes(b.Manifest) != b.ManifestDigest {
		t.Fatal("digests do not match the data")
	}
	if m.SchemaVersion != 2 || m.MediaType != v1.MediaTypeImageManifest ||
		m.Config.Digest != b.ConfigDigest || m.Config.Size != int64(len(b.Config)) || m.Config.MediaType != v1.MediaTypeImageConfig {
		t.Fatalf("manifest: %s", b.Manifest)
	}
	if cfg.RootFS.Type != "layers" || len(cfg.RootFS.DiffIDs) != 5 || len(m.Layers) != 5 || len(cfg.History) != 5 {
		t.Fatalf("config: %s", b.Config)
	}
	for i, l := range b.Layers {
		if cfg.RootFS.DiffIDs[i] != l.DiffID {
			t.Errorf("layer %d: diff_id %s, want %s", i+1, cfg.RootFS.DiffIDs[i], l.DiffID)
		}
		d := m.Layers[i]
		if d.Digest != l.Digest || d.Size != int64(len(l.Blob)) || d.MediaType != l.MediaType {
			t.Errorf("layer %d: descriptor %+v", i+1, d)
		}
	}
	if cfg.OS != "linux" || cfg.Created == nil || cfg.Created.Unix() != BaseImage().Created {
		t.Errorf("config platform or time: %s", b.Config)
	}
}

func TestBuildErrors(t *testing.T) {
	for _, e := range []Entry{
		{Path: "rel", Type: File},
		{Path: "/x", Type: 42},
		{Path: "/x", Type: File, Mode: 0o170644},
		{Path: "/x", Type: Dir, Size: 3},
	} {
		if _, err := Build(&Image{Layers: []Layer{{Entries: []Entry{e}}}}); err == nil || !strings.Contains(err.Error(), "layer 1") {
			t.Errorf("%+v: error %v", e, err)
		}
	}
	if _, err := Build(&Image{Layers: []Layer{{Compression: 9}}}); err == nil {
		t.Error("unknown compression accepted")
	}
}

func TestWriteLayout(t *testing.T) {
	b := MustBuild(BaseImage())
	dir := t.TempDir()
	if err := b.WriteLayout(dir, "v1"); err != nil {
		t.Fatal(err)
	}
	ref, err := layout.NewReference(dir, "v1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	src, err := ref.NewImageSource(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	m, mt, err := src.GetManifest(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m, b.Manifest) || mt != v1.MediaTypeImageManifest {
		t.Fatalf("manifest read back differs (%s)", mt)
	}
	for _, l := range b.Layers {
		got := readLayoutBlob(t, dir, l.Digest)
		if !bytes.Equal(got, l.Blob) {
			t.Fatalf("blob %s differs", l.Digest)
		}
	}
	if !bytes.Equal(readLayoutBlob(t, dir, b.ConfigDigest), b.Config) {
		t.Fatal("config differs")
	}
}

func readLayoutBlob(t *testing.T, dir string, d digest.Digest) []byte {
	t.Helper()
	b, err := os.ReadFile(dir + "/blobs/sha256/" + d.Encoded())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPush(t *testing.T) {
	reg := registry.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for name, b := range fixtures(t) {
		if err := b.Push(ctx, reg.Ref("gocfs/"+name, "latest"), reg.SystemContext()); err != nil {
			t.Fatalf("%s: %v\nregistry log:\n%s", name, err, reg.Log())
		}
		req, err := http.NewRequestWithContext(ctx, "GET", "http://"+reg.Host+"/v2/gocfs/"+name+"/manifests/latest", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", v1.MediaTypeImageManifest)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		m, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m, b.Manifest) || resp.Header.Get("Docker-Content-Digest") != b.ManifestDigest.String() {
			t.Fatalf("%s: registry serves manifest %s (%s), want the built one %s", name, m, resp.Header.Get("Docker-Content-Digest"), b.ManifestDigest)
		}
		for _, l := range b.Layers {
			stored, err := os.ReadFile(reg.BlobPath(l.Digest))
			if err != nil || !bytes.Equal(stored, l.Blob) {
				t.Fatalf("%s: layer blob %s not stored as built: %v", name, l.Digest, err)
			}
		}
	}
	if err := MustBuild(BaseImage()).Push(ctx, "oci:/nowhere:x", nil); err == nil {
		t.Error("push to a non-docker destination accepted")
	}
}
