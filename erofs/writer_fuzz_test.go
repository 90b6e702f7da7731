package erofs

import (
	"bytes"
	"crypto/sha256"
	"os"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/erofs/dumpfile"
	"github.com/gocfs/gocfs/tests/golden"
)

// FuzzWrite writes every tree the dumpfile parser accepts: the writer must
// either refuse it or produce a well-formed, reproducible image, and never
// panic.
func FuzzWrite(f *testing.F) {
	for _, v := range golden.Vectors(f) {
		if strings.HasSuffix(v.Asset, ".gz") {
			continue
		}
		if in, err := v.Input(); err == nil {
			f.Add(in)
		}
	}
	for _, p := range golden.FuzzCorpus(f) {
		if in, err := os.ReadFile(p); err == nil && len(in) < 1<<20 {
			f.Add(in)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		root, err := dumpfile.Parse(bytes.NewReader(in), dumpfile.ParseOptions{})
		if err != nil {
			return
		}
		h1, h2 := sha256.New(), sha256.New()
		res, err := Write(h1, root, WriteOptions{})
		if err != nil {
			return
		}
		if res.Size%BlockSize != 0 {
			t.Fatalf("image of %d bytes", res.Size)
		}
		if _, err := Write(h2, root, WriteOptions{}); err != nil {
			t.Fatalf("second Write: %v", err)
		}
		if !bytes.Equal(h1.Sum(nil), h2.Sum(nil)) {
			t.Fatal("two writes of one tree differ")
		}
	})
}
