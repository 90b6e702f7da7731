package ostree_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gocfs/gocfs/ostreecompat/ostree"
	"github.com/gocfs/gocfs/ostreecompat/ostree/ostreetest"
)

// FuzzParse feeds arbitrary bytes to the object parsers: they may refuse
// them but never panic, and commits, dirtrees and metadata they accept
// encode again (dirtrees to the same bytes: their entries must be sorted and
// valid).
func FuzzParse(f *testing.F) {
	exts := map[string]uint8{".commit": 0, ".dirtree": 1, ".dirmeta": 2, ".commitmeta": 3}
	dir := filepath.Join(ostreetest.GoldenDir(f), "expected", "metadata-objects")
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		f.Add(exts[filepath.Ext(p)], b)
		return err
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		switch kind % 4 {
		case 0:
			if c, err := ostree.ParseCommit(data); err == nil {
				if _, err := c.MarshalBinary(); err != nil {
					t.Fatalf("commit %x parses but does not encode: %v", data, err)
				}
			}
		case 1:
			if d, err := ostree.ParseDirTree(data); err == nil {
				if b, err := d.MarshalBinary(); err != nil || string(b) != string(data) {
					t.Fatalf("dirtree %x encodes as %x (%v)", data, b, err)
				}
			}
		case 2:
			// Xattrs are accepted in any order (the bytes are checked
			// against their checksum, not re-encoded).
			if m, err := ostree.ParseDirMeta(data); err == nil && m.Mode&0o170000 != 0o040000 {
				t.Fatalf("dirmeta of mode %#o accepted", m.Mode)
			}
		case 3:
			if md, err := ostree.ParseMetadata(data); err == nil {
				if _, err := ostree.MarshalMetadata(md); err != nil {
					t.Fatalf("metadata %x parses but does not encode: %v", data, err)
				}
			}
		}
	})
}
