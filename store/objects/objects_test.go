package objects

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/verity"
)

func TestPath(t *testing.T) {
	d := make([]byte, DigestSize)
	for i := range d {
		d[i] = byte(i * 7)
	}
	tests := []struct {
		digest []byte
		want   string
	}{
		{nil, ""},
		{[]byte{0xab}, "ab/"},
		{[]byte{0xab, 0xcd, 0x01}, "ab/cd01"},
		{d, "00/070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9"},
	}
	for _, tt := range tests {
		if got := Path(tt.digest); got != tt.want {
			t.Errorf("Path(%x) = %q, want %q", tt.digest, got, tt.want)
		}
	}
}

func umask() os.FileMode {
	m := unix.Umask(0)
	unix.Umask(m)
	return os.FileMode(m)
}

// modes runs f once with unnamed temporary files and once with named ones,
// and once more with the buffered copy instead of copy_file_range.
var modes = []struct {
	name        string
	noTmpfile   bool
	noCopyRange bool
}{
	{"tmpfile", false, false},
	{"named", true, false},
	{"buffered", false, true},
}

func openTestDir(t *testing.T, noTmpfile, noCopyRange bool) (*Dir, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "store", "objects")
	d, err := OpenDir(p, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	d.noTmpfile.Store(noTmpfile)
	d.noCopyRange.Store(noCopyRange)
	return d, p
}

func writeSource(t *testing.T, data []byte) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// checkStore verifies that the store holds exactly the given objects, with
// the right contents and modes, and nothing else (no temporary files).
func checkStore(t *testing.T, root string, want map[string][]byte) {
	t.Helper()
	got := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if e.IsDir() {
			if rel != "." && fi.Mode().Perm() != 0o755&^umask() {
				t.Errorf("%s: mode %v", rel, fi.Mode())
			}
			return nil
		}
		data, ok := want[rel]
		if !ok {
			t.Errorf("unexpected file %s in store", rel)
			return nil
		}
		got[rel] = true
		if fi.Mode() != 0o644 {
			t.Errorf("%s: mode %v, want 0644", rel, fi.Mode())
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(b, data) {
			t.Errorf("%s: content differs (%d bytes, want %d)", rel, len(b), len(data))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name := range want {
		if !got[name] {
			t.Errorf("object %s missing", name)
		}
	}
}

func testData(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31) ^ seed ^ byte(i>>12)
	}
	return b
}

func TestIngest(t *testing.T) {
	sizes := []int{0, 1, 4095, 4096, 4097, 300000, copyBufSize + 17}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			d, root := openTestDir(t, m.noTmpfile, m.noCopyRange)
			want := map[string][]byte{}
			for i, size := range sizes {
				data := testData(size, byte(i))
				digest := verity.DigestBytes(data, verity.SHA256)
				src := writeSource(t, data)
				// Ingest reads from offset 0 whatever the position.
				if _, err := src.Seek(int64(size/2), 0); err != nil {
					t.Fatal(err)
				}
				if ok, err := d.Has(digest); err != nil || ok {
					t.Fatalf("size %d: Has before ingest = %v, %v", size, ok, err)
				}
				if err := d.Ingest(src, digest); err != nil {
					t.Fatalf("size %d: %v", size, err)
				}
				if ok, err := d.Has(digest); err != nil || !ok {
					t.Fatalf("size %d: Has after ingest = %v, %v", size, ok, err)
				}
				want[Path(digest)] = data
			}
			checkStore(t, root, want)
			if m.noTmpfile != d.noTmpfile.Load() {
				t.Errorf("O_TMPFILE fallback used = %v", d.noTmpfile.Load())
			}
		})
	}
}

func TestIngestIdempotent(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			d, root := openTestDir(t, m.noTmpfile, m.noCopyRange)
			data := testData(10000, 1)
			digest := verity.DigestBytes(data, verity.SHA256)
			if err := d.Ingest(writeSource(t, data), digest); err != nil {
				t.Fatal(err)
			}
			obj := filepath.Join(root, Path(digest))
			before, err := os.Stat(obj)
			if err != nil {
				t.Fatal(err)
			}
			// A second ingest, even of different bytes, keeps the object
			// as it is: objects are immutable once present.
			if err := d.Ingest(writeSource(t, testData(5, 2)), digest); err != nil {
				t.Fatal(err)
			}
			if err := d.IngestReader(bytes.NewReader(data), digest); err != nil {
				t.Fatal(err)
			}
			after, err := os.Stat(obj)
			if err != nil {
				t.Fatal(err)
			}
			if !os.SameFile(before, after) {
				t.Error("existing object was replaced")
			}
			checkStore(t, root, map[string][]byte{Path(digest): data})
		})
	}
}

func TestIngestConcurrent(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			d, root := openTestDir(t, m.noTmpfile, m.noCopyRange)
			data := testData(200000, 3)
			digest := verity.DigestBytes(data, verity.SHA256)
			var wg sync.WaitGroup
			errs := make([]error, 8)
			for i := range errs {
				src := writeSource(t, data)
				wg.Go(func() {
					if i%2 == 0 {
						errs[i] = d.Ingest(src, digest)
					} else {
						errs[i] = d.IngestReader(bytes.NewReader(data), digest)
					}
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("writer %d: %v", i, err)
				}
			}
			checkStore(t, root, map[string][]byte{Path(digest): data})
		})
	}
}

func TestIngestReaderWrongDigest(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			d, root := openTestDir(t, m.noTmpfile, m.noCopyRange)
			data := testData(5000, 4)
			digest := verity.DigestBytes(testData(5000, 5), verity.SHA256)
			err := d.IngestReader(bytes.NewReader(data), digest)
			if err == nil || !strings.Contains(err.Error(), "fs-verity digest") {
				t.Fatalf("IngestReader with a wrong digest: %v", err)
			}
			if ok, err := d.Has(digest); err != nil || ok {
				t.Errorf("Has = %v, %v after a refused ingest", ok, err)
			}
			checkStore(t, root, map[string][]byte{})
		})
	}
}

func TestBadDigest(t *testing.T) {
	d, _ := openTestDir(t, false, false)
	for _, digest := range [][]byte{nil, make([]byte, 31), make([]byte, 64)} {
		if _, err := d.Has(digest); err == nil {
			t.Errorf("Has(%d bytes) succeeded", len(digest))
		}
		if err := d.Ingest(writeSource(t, nil), digest); err == nil {
			t.Errorf("Ingest(%d bytes) succeeded", len(digest))
		}
		if err := d.IngestReader(bytes.NewReader(nil), digest); err == nil {
			t.Errorf("IngestReader(%d bytes) succeeded", len(digest))
		}
		if _, err := d.Open(digest); err == nil {
			t.Errorf("Open(%d bytes) succeeded", len(digest))
		}
	}
}

func TestOpen(t *testing.T) {
	d, _ := openTestDir(t, false, false)
	data := testData(9000, 6)
	digest := verity.DigestBytes(data, verity.SHA256)
	if _, err := d.Open(digest); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a missing object: %v", err)
	}
	if err := d.IngestReader(bytes.NewReader(data), digest); err != nil {
		t.Fatal(err)
	}
	f, err := d.Open(digest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := verity.Digest(f, verity.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, digest) {
		t.Errorf("object digest %x, want %x", got, digest)
	}
}

func TestOpenDir(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a", "b")
	if _, err := OpenDir(p, false); err == nil {
		t.Fatal("OpenDir of a missing directory without create succeeded")
	}
	d, err := OpenDir(p, true)
	if err != nil {
		t.Fatal(err)
	}
	if d.Path() != p {
		t.Errorf("Path() = %q", d.Path())
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d, err = OpenDir(p, false)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDir(f, false); err == nil {
		t.Error("OpenDir of a regular file succeeded")
	}
}
