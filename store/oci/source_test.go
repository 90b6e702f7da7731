package oci

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/tests/ocibuild"
)

// TestZstdSkippableFrames checks that a zstd layer made of several frames
// with skippable frames among them, as zstd:chunked layers are, reads as
// the concatenation of its frames.
func TestZstdSkippableFrames(t *testing.T) {
	parts := [][]byte{[]byte("first frame, "), bytes.Repeat([]byte("second frame "), 1000)}
	var blob []byte
	for _, p := range parts {
		enc, _ := zstd.NewWriter(nil)
		blob = enc.EncodeAll(p, blob)
		enc.Close()
		skippable := make([]byte, 8, 8+5)
		binary.LittleEndian.PutUint32(skippable, 0x184D2A50)
		binary.LittleEndian.PutUint32(skippable[4:], 5)
		blob = append(blob, append(skippable, "chunk"...)...)
	}
	r, closeR, err := decompressor(bytes.NewReader(blob), zstdCompressed)
	if err != nil {
		t.Fatal(err)
	}
	defer closeR()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := bytes.Join(parts, nil); !bytes.Equal(got, want) {
		t.Errorf("read %d bytes, want %d", len(got), len(want))
	}
}

// TestPullIndex pulls from a layout whose reference names an image index:
// the instance for this machine's platform is chosen.
func TestPullIndex(t *testing.T) {
	b := ocibuild.MustBuild(ocibuild.BaseImage())
	other := ocibuild.MustBuild(&ocibuild.Image{Layers: []ocibuild.Layer{
		{Compression: ocibuild.Gzip, Entries: ocibuild.MustParseEntries("/usr dir\n/usr/other file content=x\n", 1)},
	}})
	dir := filepath.Join(t.TempDir(), "index")
	if err := other.WriteLayout(dir, "other"); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteLayout(dir, "latest"); err != nil {
		t.Fatal(err)
	}
	arch := "s390x"
	if runtime.GOARCH == arch {
		arch = "riscv64"
	}
	index, _ := json.Marshal(v1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageIndex,
		Manifests: []v1.Descriptor{
			{MediaType: v1.MediaTypeImageManifest, Digest: other.ManifestDigest, Size: int64(len(other.Manifest)),
				Platform: &v1.Platform{OS: "linux", Architecture: arch}},
			{MediaType: v1.MediaTypeImageManifest, Digest: b.ManifestDigest, Size: int64(len(b.Manifest)),
				Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}},
		},
	})
	id := digest.FromBytes(index)
	os.WriteFile(filepath.Join(dir, "blobs", "sha256", id.Encoded()), index, 0o644)
	top, _ := json.Marshal(v1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageIndex,
		Manifests: []v1.Descriptor{{MediaType: v1.MediaTypeImageIndex, Digest: id, Size: int64(len(index)),
			Annotations: map[string]string{v1.AnnotationRefName: "multi"}}},
	})
	os.WriteFile(filepath.Join(dir, "index.json"), top, 0o644)

	repo := newRepo(t, true)
	res, err := Pull(t.Context(), repo, "oci:"+dir+":multi", PullOptions{Tag: "multi"})
	if err != nil {
		t.Fatal(err)
	}
	if res.ManifestDigest != b.ManifestDigest {
		t.Errorf("pulled %s, want the %s instance %s", res.ManifestDigest, runtime.GOARCH, b.ManifestDigest)
	}
	checkImage(t, repo, res.Image, b, false)
}

// openPTY returns the two ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("SKIP: no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("SKIP: unlock pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("SKIP: pseudo-terminal number: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("SKIP: open pseudo-terminal: %v", err)
	}
	if err := unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 100}); err != nil {
		t.Fatalf("pseudo-terminal size: %v", err)
	}
	return m, s
}

// TestPullProgress checks that bars are drawn on a terminal and nothing is
// written elsewhere.
func TestPullProgress(t *testing.T) {
	b := ocibuild.MustBuild(ocibuild.BaseImage())
	ref := layoutOf(t, b)

	var buf bytes.Buffer
	if _, err := Pull(t.Context(), newRepo(t, true), ref, PullOptions{Progress: &buf}); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Errorf("%d bytes of progress written to a buffer", buf.Len())
	}

	master, slave := openPTY(t)
	defer master.Close()
	out := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(master)
		out <- b
	}()
	_, err := Pull(t.Context(), newRepo(t, true), ref, PullOptions{Progress: slave})
	slave.Close()
	if err != nil {
		t.Fatal(err)
	}
	drawn := string(<-out)
	if !strings.Contains(drawn, shortDigest(b.Layers[0].Digest)) {
		t.Errorf("no bar for layer %s in %q", shortDigest(b.Layers[0].Digest), drawn)
	}
}
