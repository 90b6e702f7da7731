package erofs

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/erofs/dumpfile"
	"github.com/gocfs/gocfs/tests/golden"
)

// TestWriteGolden builds every input of the C reference's test vectors and
// compares the image with the one the C mkcomposefs wrote.
func TestWriteGolden(t *testing.T) {
	for _, v := range golden.Vectors(t) {
		t.Run(v.Name(), func(t *testing.T) {
			if testing.Short() && v.Size > 4<<20 {
				t.Skip("large vector")
			}
			in, err := v.Input()
			if err != nil {
				t.Fatal(err)
			}
			root, perr := dumpfile.Parse(bytes.NewReader(in), dumpfile.ParseOptions{Strict: v.Strict})
			opts := WriteOptions{}
			if v.MinVersion >= 0 {
				opts.Versions = &VersionRange{Min: v.MinVersion, Max: v.MaxVersion}
			}
			if v.Fail {
				if perr != nil {
					t.Logf("parser rejects it: %v", perr)
					return
				}
				_, werr := Write(io.Discard, root, opts)
				if werr == nil {
					t.Fatalf("both the parser and the writer accept an input the C tools reject")
				}
				t.Logf("writer rejects it: %v", werr)
				return
			}
			if perr != nil {
				t.Fatalf("parse: %v", perr)
			}
			h := sha256.New()
			res, err := Write(h, root, opts)
			if err != nil {
				t.Fatalf("write: %v", err)
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != v.SHA256 || res.Size != v.Size {
				t.Errorf("image sha256 %s, %d bytes; want %s, %d bytes", got, res.Size, v.SHA256, v.Size)
			}
		})
	}
}

// wtFedoraRebuilt is the image built from fuzzing-corpus/fedora's expected
// dump, which names a different primary entry for one hardlinked inode
// than the input does (see the golden README).
const wtFedoraRebuilt = "91850ace1ebea965e2ff0c3f316785d9aafd06028df1081a26729ceec064d1d7"

// TestWriteGoldenDumps rebuilds every image from the C tools' dump of it:
// the canonical form of each tree must give the same image again.
func TestWriteGoldenDumps(t *testing.T) {
	for _, v := range golden.Vectors(t) {
		if v.Fail {
			continue
		}
		t.Run(v.Name(), func(t *testing.T) {
			if testing.Short() && v.Size > 4<<20 {
				t.Skip("large vector")
			}
			dump, err := v.ExpectedDump()
			if err != nil {
				t.Fatal(err)
			}
			want := v.SHA256
			if v.Asset == "fuzzing-corpus/fedora" {
				want = wtFedoraRebuilt
			}
			opts := WriteOptions{}
			if v.MinVersion >= 0 {
				opts.Versions = &VersionRange{Min: v.MinVersion, Max: v.MaxVersion}
			}
			wtCheckImage(t, dump, opts, want, v.Size)
		})
	}
}

// TestWriteGoldenMktree rebuilds the images the C tool made from the
// generated directory trees of golden/mktree, from their dumps.
func TestWriteGoldenMktree(t *testing.T) {
	dir := filepath.Join(golden.Dir(t), "mktree")
	f, err := os.ReadFile(filepath.Join(dir, "expected.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(f), "\n") {
		fs := strings.Split(line, "\t")
		if len(fs) != 6 || fs[1] != "dir-default" {
			continue
		}
		n++
		t.Run("seed"+fs[0], func(t *testing.T) {
			zr, err := os.Open(filepath.Join(dir, "seed"+fs[0]+".expected-dump.gz"))
			if err != nil {
				t.Fatal(err)
			}
			defer zr.Close()
			r, err := gzip.NewReader(zr)
			if err != nil {
				t.Fatal(err)
			}
			dump, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			size, err := strconv.ParseInt(strings.TrimPrefix(fs[5], "bytes="), 10, 64)
			if err != nil {
				t.Fatalf("expected.tsv: bad size %q", fs[5])
			}
			wtCheckImage(t, dump, WriteOptions{}, fs[3], size)
		})
	}
	if n == 0 {
		t.Fatal("expected.tsv lists no dir-default image")
	}
}

func wtCheckImage(t *testing.T, dump []byte, opts WriteOptions, wantSHA string, wantSize int64) {
	t.Helper()
	root, err := dumpfile.Parse(bytes.NewReader(dump), dumpfile.ParseOptions{Strict: true})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	h := sha256.New()
	res, err := Write(h, root, opts)
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != wantSHA || res.Size != wantSize {
		t.Errorf("image sha256 %s, %d bytes; want %s, %d bytes", got, res.Size, wantSHA, wantSize)
	}
}
