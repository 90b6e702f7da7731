// Package golden locates the shared golden test vectors, which live beside the
// project's root in ../shared/golden, and reads the C reference's table of
// expected results.
package golden

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Dir returns the golden directory. A test that needs it fails loudly when it
// is missing: silently skipping would hide a broken set-up.
func Dir(t testing.TB) string {
	t.Helper()
	d, err := find()
	if err != nil {
		t.Fatalf("golden vectors: %v", err)
	}
	return d
}

func find() (string, error) {
	if d := os.Getenv("GOCFS_GOLDEN"); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			g := filepath.Join(dir, "..", "shared", "golden")
			if _, err := os.Stat(filepath.Join(g, "composefs-c", "golden.tsv")); err != nil {
				return "", fmt.Errorf("not found at %s (set GOCFS_GOLDEN to override): %w", g, err)
			}
			return g, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.mod above %s", wd)
		}
	}
}

// Vector is one row of composefs-c/golden.tsv.
type Vector struct {
	Asset       string // path relative to the composefs-c directory
	MinVersion  int    // -1 when the row uses the defaults
	MaxVersion  int
	Strict      bool
	Fail        bool   // the build must exit 1
	SHA256      string // image sha256, hex
	VeritySHA   string // image fs-verity sha256 digest, hex
	Size        int64
	ExpectedDir string // composefs-c directory
}

// Path returns the absolute path of the vector's input.
func (v Vector) Path() string { return filepath.Join(v.ExpectedDir, v.Asset) }

// Input returns the decompressed input dumpfile.
func (v Vector) Input() ([]byte, error) { return readMaybeGzip(v.Path()) }

// ExpectedDump returns the expected `composefs-info dump` output.
func (v Vector) ExpectedDump() ([]byte, error) {
	p := v.Path() + ".expected-dump"
	if _, err := os.Stat(p); err == nil {
		return os.ReadFile(p)
	}
	return readMaybeGzip(p + ".gz")
}

// Name is a short name usable as a subtest name.
func (v Vector) Name() string { return strings.ReplaceAll(v.Asset, "/", "_") }

func readMaybeGzip(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(p, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		r = zr
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return b, nil
}

// Vectors returns every row of composefs-c/golden.tsv.
func Vectors(t testing.TB) []Vector {
	t.Helper()
	dir := filepath.Join(Dir(t), "composefs-c")
	f, err := os.Open(filepath.Join(dir, "golden.tsv"))
	if err != nil {
		t.Fatalf("golden vectors: %v", err)
	}
	defer f.Close()
	var vs []Vector
	sc := bufio.NewScanner(f)
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue
		}
		fs := strings.Split(sc.Text(), "\t")
		if len(fs) != 6 {
			t.Fatalf("golden.tsv: bad row %q", sc.Text())
		}
		v := Vector{Asset: fs[0], MinVersion: -1, MaxVersion: -1, Strict: fs[2] == "1", ExpectedDir: dir}
		if fs[1] != "" {
			if _, err := fmt.Sscanf(fs[1], "--min-version=%d --max-version=%d", &v.MinVersion, &v.MaxVersion); err != nil {
				t.Fatalf("golden.tsv: bad version args %q", fs[1])
			}
		}
		if fs[3] == "FAIL" {
			v.Fail = true
		} else {
			v.SHA256, v.VeritySHA = fs[3], fs[4]
			if _, err := fmt.Sscan(fs[5], &v.Size); err != nil {
				t.Fatalf("golden.tsv: bad size %q", fs[5])
			}
		}
		vs = append(vs, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("golden.tsv: %v", err)
	}
	return vs
}

// FuzzCorpus returns the paths of the C project's fuzzing seed corpus inputs
// (the expected dumps beside them excluded).
func FuzzCorpus(t testing.TB) []string {
	t.Helper()
	dir := filepath.Join(Dir(t), "composefs-c", "fuzzing-corpus")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("golden vectors: %v", err)
	}
	var ps []string
	for _, e := range ents {
		if !strings.Contains(e.Name(), ".expected-dump") {
			ps = append(ps, filepath.Join(dir, e.Name()))
		}
	}
	return ps
}
