package objects

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gocfs/gocfs/store/internal/fakeverity"
	"github.com/gocfs/gocfs/verity"
)

func openOptions(t *testing.T, opts Options, noTmpfile bool) (*Dir, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "objects")
	d, err := OpenDirOptions(p, true, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	d.noTmpfile.Store(noTmpfile)
	return d, p
}

func TestParsePath(t *testing.T) {
	d := testData(64, 9)
	tests := []struct {
		path string
		size int
		want []byte
	}{
		{Path(d[:32]), 32, d[:32]},
		{Path(d), 64, d},
		{Path(d), 32, nil},
		{strings.ToUpper(Path(d[:32])), 32, nil},
		{"ab" + Path(d[:32])[3:] + "0", 32, nil},
		{Path(d[:32])[:2] + "x" + Path(d[:32])[3:], 32, nil},
		{"", 32, nil},
		{"zz/" + strings.Repeat("0", 62), 32, nil},
	}
	for _, tt := range tests {
		got, ok := ParsePath(tt.path, tt.size)
		if ok != (tt.want != nil) || !bytes.Equal(got, tt.want) {
			t.Errorf("ParsePath(%q, %d) = %x, %v", tt.path, tt.size, got, ok)
		}
	}
}

func TestAdd(t *testing.T) {
	for _, alg := range []verity.Algorithm{verity.SHA256, verity.SHA512} {
		for _, m := range modes {
			t.Run(alg.String()+"/"+m.name, func(t *testing.T) {
				d, root := openOptions(t, Options{Algorithm: alg, NoSync: true}, m.noTmpfile)
				d.noCopyRange.Store(m.noCopyRange)
				if d.Algorithm() != alg {
					t.Fatalf("Algorithm() = %v", d.Algorithm())
				}
				want := map[string][]byte{}
				for i, size := range []int{0, 1, 4096, 100000} {
					data := testData(size, byte(i))
					wantDigest := verity.DigestBytes(data, alg)
					got, err := d.Add(bytes.NewReader(data))
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, wantDigest) {
						t.Fatalf("Add digest %x, want %x", got, wantDigest)
					}
					// Adding the same content again, from a file, is a no-op.
					got, err = d.AddFile(writeSource(t, data))
					if err != nil || !bytes.Equal(got, wantDigest) {
						t.Fatalf("AddFile = %x, %v", got, err)
					}
					if ok, err := d.Has(got); !ok || err != nil {
						t.Fatalf("Has = %v, %v", ok, err)
					}
					want[Path(got)] = data
				}
				checkStore(t, root, want)
			})
		}
	}
}

func TestAddFileHashesTheCopy(t *testing.T) {
	d, root := openOptions(t, Options{}, false)
	data := testData(50000, 1)
	src := writeSource(t, data)
	got, err := d.AddFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, verity.DigestBytes(data, verity.SHA256)) {
		t.Errorf("digest %x", got)
	}
	checkStore(t, root, map[string][]byte{Path(got): data})
}

func TestAddConcurrent(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			d, root := openOptions(t, Options{Algorithm: verity.SHA512}, m.noTmpfile)
			data := testData(300000, 5)
			var wg sync.WaitGroup
			errs := make([]error, 8)
			for i := range errs {
				wg.Go(func() { _, errs[i] = d.Add(bytes.NewReader(data)) })
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			checkStore(t, root, map[string][]byte{Path(verity.DigestBytes(data, verity.SHA512)): data})
		})
	}
}

// TestAddReplacesTruncated checks that an object of the wrong size under a
// final name, what a power cut before a sync can leave, is replaced.
func TestAddReplacesTruncated(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			d, root := openOptions(t, Options{NoSync: true}, m.noTmpfile)
			data := testData(20000, 7)
			name := Path(verity.DigestBytes(data, verity.SHA256))
			if err := os.MkdirAll(filepath.Join(root, name[:2]), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, name), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Add(bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			checkStore(t, root, map[string][]byte{name: data})
		})
	}
}

func TestRequireVerity(t *testing.T) {
	k := &fakeverity.Kernel{}
	for _, m := range modes[:2] {
		t.Run(m.name, func(t *testing.T) {
			d, root := openOptions(t, Options{Algorithm: verity.SHA512, RequireVerity: true, Kernel: k}, m.noTmpfile)
			data := testData(9000, 3)
			got, err := d.Add(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, verity.DigestBytes(data, verity.SHA512)) {
				t.Errorf("digest %x", got)
			}
			if !k.Has(filepath.Join(root, Path(got))) {
				t.Error("new object has no fs-verity")
			}
			f, err := d.Open(got)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := d.Verify(f, got, false); err != nil {
				t.Errorf("Verify: %v", err)
			}
			bad := bytes.Clone(got)
			bad[0] ^= 1
			if err := d.Verify(f, bad, false); !errors.Is(err, ErrDigestMismatch) {
				t.Errorf("Verify with a wrong digest: %v", err)
			}
			// A claimed digest the kernel disagrees with is refused.
			other := testData(100, 4)
			if err := d.Ingest(writeSource(t, other), verity.DigestBytes(testData(100, 5), verity.SHA512)); !errors.Is(err, ErrDigestMismatch) {
				t.Errorf("Ingest under a wrong digest: %v", err)
			}
			checkStore(t, root, map[string][]byte{Path(got): data})
		})
	}
	t.Run("unsupported", func(t *testing.T) {
		d, root := openOptions(t, Options{RequireVerity: true, Kernel: &fakeverity.Kernel{Unsupported: true}}, false)
		if _, err := d.Add(bytes.NewReader([]byte("x"))); !errors.Is(err, verity.ErrNotSupported) {
			t.Errorf("Add without fs-verity: %v", err)
		}
		checkStore(t, root, map[string][]byte{})
	})
}

func TestVerifyWithoutVerity(t *testing.T) {
	d, _ := openOptions(t, Options{Kernel: &fakeverity.Kernel{Unsupported: true}}, false)
	data := testData(5000, 8)
	digest, err := d.Add(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	f, err := d.Open(digest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := d.Verify(f, digest, true); err != nil {
		t.Errorf("Verify: %v", err)
	}
	bad := bytes.Clone(digest)
	bad[5] ^= 0x80
	if err := d.Verify(f, bad, false); err != nil {
		t.Errorf("Verify without hashing: %v", err)
	}
	if err := d.Verify(f, bad, true); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Verify of a wrong digest: %v", err)
	}
}

func TestOpenDirOptionsBadAlgorithm(t *testing.T) {
	if _, err := OpenDirOptions(t.TempDir(), false, Options{Algorithm: 7}); err == nil {
		t.Error("OpenDirOptions with algorithm 7 succeeded")
	}
}
