package erofs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/gocfs/gocfs/erofs/dumpfile"
	"github.com/gocfs/gocfs/tests/golden"
)

// fedoraRebuiltSHA256 is the image rebuilt from fuzzing-corpus/fedora's
// expected dump: there a hardlinked file's primary is not its first name in
// traversal order, so reading back and writing again moves the inode (see
// the golden README).
const fedoraRebuiltSHA256 = "91850ace1ebea965e2ff0c3f316785d9aafd06028df1081a26729ceec064d1d7"

func rdVersionOptions(v golden.Vector) WriteOptions {
	if v.MinVersion < 0 {
		return WriteOptions{}
	}
	return WriteOptions{Versions: &VersionRange{Min: v.MinVersion, Max: v.MaxVersion}}
}

// rdGoldenImage builds a vector's image with the writer and checks that it
// is the C tool's image, without which comparing read-backs is pointless.
func rdGoldenImage(t testing.TB, v golden.Vector) []byte {
	t.Helper()
	in, err := v.Input()
	if err != nil {
		t.Fatal(err)
	}
	root, err := dumpfile.Parse(bytes.NewReader(in), dumpfile.ParseOptions{Strict: v.Strict})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	var img bytes.Buffer
	if _, err := Write(&img, root, rdVersionOptions(v)); err != nil {
		t.Fatalf("write: %v", err)
	}
	if sum := sha256.Sum256(img.Bytes()); hex.EncodeToString(sum[:]) != v.SHA256 {
		t.Fatalf("the writer's image differs from the C tool's (sha256 %x, want %s)", sum, v.SHA256)
	}
	return img.Bytes()
}

// TestReadTreeGolden reads every golden image back: the dump of the tree
// must be the C composefs-info dump byte for byte, and writing the tree
// again must give the same image.
func TestReadTreeGolden(t *testing.T) {
	for _, v := range golden.Vectors(t) {
		if v.Fail {
			continue
		}
		t.Run(v.Name(), func(t *testing.T) {
			if testing.Short() && v.Size > 4<<20 {
				t.Skip("large vector")
			}
			img := rdGoldenImage(t, v)
			root, info, err := ReadTree(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			if info.Blocks*BlockSize != uint32(len(img)) || info.RootNid != 36 {
				t.Errorf("info %+v", info)
			}
			var dump bytes.Buffer
			if err := dumpfile.Write(&dump, root, dumpfile.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			want, err := v.ExpectedDump()
			if err != nil {
				t.Fatal(err)
			}
			if d := rdFirstDiff(dump.Bytes(), want); d != "" {
				t.Errorf("dump differs from composefs-info dump: %s", d)
			}

			var again bytes.Buffer
			if _, err := Write(&again, root, rdVersionOptions(v)); err != nil {
				t.Fatalf("writing the tree read back: %v", err)
			}
			if v.Asset == "fuzzing-corpus/fedora" {
				if sum := sha256.Sum256(again.Bytes()); hex.EncodeToString(sum[:]) != fedoraRebuiltSHA256 {
					t.Errorf("rebuilt fedora image sha256 %x, want %s", sum, fedoraRebuiltSHA256)
				}
				rdCheckFixedPoint(t, again.Bytes(), rdVersionOptions(v))
				return
			}
			if !bytes.Equal(again.Bytes(), img) {
				t.Errorf("image -> ReadTree -> Write gives a different image (%d bytes, want %d)", again.Len(), len(img))
			}
		})
	}
}

// rdCheckFixedPoint checks that img reads back to a tree that writes img.
func rdCheckFixedPoint(t testing.TB, img []byte, opts WriteOptions) {
	t.Helper()
	root, _, err := ReadTree(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatalf("reading a written image: %v", err)
	}
	var again bytes.Buffer
	if _, err := Write(&again, root, opts); err != nil {
		t.Fatalf("writing the tree read back: %v", err)
	}
	if !bytes.Equal(again.Bytes(), img) {
		t.Fatalf("write -> read -> write is not a fixed point (%d bytes, then %d)", len(img), again.Len())
	}
}

// rdFirstDiff describes the first line where got and want differ, or
// returns "" when they are equal.
func rdFirstDiff(got, want []byte) string {
	if bytes.Equal(got, want) {
		return ""
	}
	g, w := bytes.SplitAfter(got, []byte("\n")), bytes.SplitAfter(want, []byte("\n"))
	for i := range max(len(g), len(w)) {
		var gl, wl []byte
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if !bytes.Equal(gl, wl) {
			return fmt.Sprintf("line %d:\n got %q\nwant %q", i+1, rdTrim(gl), rdTrim(wl))
		}
	}
	return "same lines, different bytes"
}

func rdTrim(b []byte) []byte {
	if len(b) > 400 {
		return b[:400]
	}
	return b
}

// BenchmarkReadTree reads the largest golden image.
func BenchmarkReadTree(b *testing.B) {
	var img []byte
	for _, v := range golden.Vectors(b) {
		if v.Asset == "cs9-x86_64-developer.dump.gz" {
			img = rdGoldenImage(b, v)
		}
	}
	if img == nil {
		b.Fatal("golden vector cs9-x86_64-developer.dump.gz missing")
	}
	b.SetBytes(int64(len(img)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ReadTree(bytes.NewReader(img), int64(len(img))); err != nil {
			b.Fatal(err)
		}
	}
}
