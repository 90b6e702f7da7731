package oci

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"
)

// FuzzLayer feeds arbitrary bytes to the layer import and the tree builder:
// neither may panic, and whatever imports must reassemble to its input.
func FuzzLayer(f *testing.F) {
	f.Add(tarBytes(f, []ent{
		{name: "usr/", typ: tar.TypeDir},
		{name: "usr/a", body: "small"},
		{name: "usr/b", body: big},
		{name: "usr/l", typ: tar.TypeLink, link: "usr/b"},
		{name: "usr/s", typ: tar.TypeSymlink, link: "a"},
		{name: "usr/.wh.a"},
		{name: "usr/x", body: "x", pax: map[string]string{"SCHILY.xattr.security.capability": "cap"}},
	}, 0))
	f.Add(tarBytes(f, []ent{{name: "../x", body: "x"}, {name: "usr/" + long, body: big, format: tar.FormatGNU}}, 10240))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		store := newMemStore()
		rd, _, err := splitBytes(t, store, data)
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := rd.Reassemble(&out, store.open); err != nil {
			t.Fatalf("reassemble: %v", err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("reassembled %d bytes, want the %d imported", out.Len(), len(data))
		}
		cr, err := rd.ChunkReader()
		if err != nil {
			t.Fatal(err)
		}
		defer cr.Close()
		a := newLayerApplier()
		if err := a.apply(cr); err != nil {
			return
		}
		root, err := a.finish()
		if err != nil {
			return
		}
		_ = dump(t, root)
	})
}

var _ io.Reader = (*chunkStream)(nil)
