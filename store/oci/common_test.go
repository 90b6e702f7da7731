package oci

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocfs/gocfs/erofs/dumpfile"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/store/splitstream"
	"github.com/gocfs/gocfs/verity"
)

// memStore is an object store in memory.
type memStore struct {
	mu      sync.Mutex
	objects map[string][]byte
	calls   int
}

func newMemStore() *memStore { return &memStore{objects: map[string][]byte{}} }

func (m *memStore) EnsureObject(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	d := verity.DigestBytes(b, verity.SHA256)
	m.mu.Lock()
	m.objects[string(d)] = b
	m.calls++
	m.mu.Unlock()
	return d, nil
}

func (m *memStore) open(d []byte) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objects[string(d)]
	if !ok {
		return nil, fmt.Errorf("no object %x", d)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// ent describes a tar entry for tarBytes.
type ent struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	mtime    int64
	body     string
	link     string
	major    int64
	minor    int64
	pax      map[string]string
	size     int64 // overrides len(body) in the header when not zero
	format   tar.Format
}

// tarBytes writes an archive of the entries; padTo pads it with zeros to a
// multiple of padTo bytes when not zero.
func tarBytes(t testing.TB, es []ent, padTo int) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{
			Name:       e.name,
			Typeflag:   e.typ,
			Mode:       e.mode,
			Uid:        e.uid,
			Gid:        e.gid,
			ModTime:    time.Unix(e.mtime, 0),
			Linkname:   e.link,
			Devmajor:   e.major,
			Devminor:   e.minor,
			PAXRecords: e.pax,
			Format:     e.format,
		}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if e.size != 0 {
			h.Size = e.size
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %s: %v", e.name, err)
		}
		if e.body != "" {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatalf("tar body %s: %v", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if padTo > 0 && len(b)%padTo != 0 {
		b = append(b, make([]byte, padTo-len(b)%padTo)...)
	}
	return b
}

// splitBytes splits an archive into a layer splitstream held in memory.
func splitBytes(t testing.TB, store *memStore, tarData []byte) (*splitstream.Reader, splitStats, error) {
	t.Helper()
	sw := splitstream.NewWriter(verity.SHA256, splitstream.ContentTypeOCILayer)
	ing := newIngester(t.Context(), store, 4)
	st, err := splitTar(bytes.NewReader(tarData), sw, ing)
	if err != nil {
		return nil, st, err
	}
	var out bytes.Buffer
	if _, err := sw.WriteTo(&out); err != nil {
		t.Fatalf("splitstream: %v", err)
	}
	rd, err := splitstream.NewReader(bytes.NewReader(out.Bytes()), int64(out.Len()))
	if err != nil {
		t.Fatalf("splitstream reader: %v", err)
	}
	return rd, st, nil
}

// applyLayers splits and applies the archives in order and finishes the
// tree.
func applyLayers(t testing.TB, store *memStore, layers ...[]byte) (*tree.Inode, error) {
	t.Helper()
	a := newLayerApplier()
	for i, l := range layers {
		rd, _, err := splitBytes(t, store, l)
		if err != nil {
			t.Fatalf("layer %d: split: %v", i+1, err)
		}
		cr, err := rd.ChunkReader()
		if err != nil {
			t.Fatal(err)
		}
		err = a.apply(cr)
		cr.Close()
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i+1, err)
		}
	}
	return a.finish()
}

// dump returns the dumpfile of a tree.
func dump(t testing.TB, root *tree.Inode) string {
	t.Helper()
	var b strings.Builder
	if err := dumpfile.Write(&b, root, dumpfile.WriteOptions{}); err != nil {
		t.Fatalf("dump: %v", err)
	}
	return b.String()
}

// normDump parses and rewrites a dumpfile written by hand, so that it
// compares with dump's output.
func normDump(t testing.TB, s string) string {
	t.Helper()
	root, err := dumpfile.Parse(strings.NewReader(s), dumpfile.ParseOptions{})
	if err != nil {
		t.Fatalf("expected dump: %v", err)
	}
	return dump(t, root)
}
