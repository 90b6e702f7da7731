package verity

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// verityDir returns where to try fs-verity: $GOCFS_VERITY_DIR when set (for
// example a directory on an ext4 made with -O verity), else a temporary
// directory, whose filesystem may or may not support it.
func verityDir(t *testing.T) string {
	if dir := os.Getenv("GOCFS_VERITY_DIR"); dir != "" {
		dir, err := os.MkdirTemp(dir, "verity-test-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return t.TempDir()
}

// readOnlyFile creates a file holding data in dir and opens it read-only, as
// FS_IOC_ENABLE_VERITY requires.
func readOnlyFile(t *testing.T, dir, name string, data []byte) *os.File {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestKernel checks Enable and Measure against what the kernel says: either
// it has no fs-verity for this filesystem, and both report ErrNotSupported
// (Measure may instead report ErrNoVerity when only the filesystem lacks the
// feature), or Enable works and Measure returns the userspace digest.
func TestKernel(t *testing.T) {
	dir := verityDir(t)
	supported, err := Supported(dir)
	if err != nil {
		t.Fatalf("Supported(%s): %v", dir, err)
	}
	t.Logf("fs-verity supported in %s: %v", dir, supported)

	for _, alg := range []Algorithm{SHA256, SHA512} {
		t.Run(alg.String(), func(t *testing.T) {
			data := patternBytes(t, 3*4096+17)
			f := readOnlyFile(t, dir, "data-"+alg.String(), data)

			_, _, err := Measure(f)
			if !errors.Is(err, ErrNoVerity) && !errors.Is(err, ErrNotSupported) {
				t.Fatalf("Measure before Enable: %v, want ErrNoVerity or ErrNotSupported", err)
			}

			err = Enable(f, alg)
			if errors.Is(err, ErrNotSupported) {
				if supported {
					t.Fatalf("Supported said yes, but Enable: %v", err)
				}
				if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOTTY) {
					t.Errorf("Enable: %v does not wrap EOPNOTSUPP or ENOTTY", err)
				}
				_, _, merr := Measure(f)
				if !errors.Is(merr, ErrNotSupported) && !errors.Is(merr, ErrNoVerity) {
					t.Errorf("Measure after unsupported Enable: %v, want ErrNotSupported or ErrNoVerity", merr)
				}
				t.Skipf("kernel or filesystem has no fs-verity (%v); checked that Enable and Measure say so, cannot compare the kernel's digest", err)
			}
			if errors.Is(err, unix.ENOPKG) && alg != SHA256 {
				t.Skipf("kernel lacks the %v hash for fs-verity: %v", alg, err)
			}
			if err != nil {
				t.Fatalf("Enable: %v", err)
			}
			if !supported {
				t.Errorf("Enable worked but Supported(%s) said no", dir)
			}
			if err := Enable(f, alg); err != nil {
				t.Errorf("second Enable: %v, want nil", err)
			}
			gotAlg, digest, err := Measure(f)
			if err != nil {
				t.Fatalf("Measure: %v", err)
			}
			if want := DigestBytes(data, alg); gotAlg != alg || !bytes.Equal(digest, want) {
				t.Errorf("Measure = %v %x, want %v %x", gotAlg, digest, alg, want)
			}
		})
	}
}

func TestKernelBadUse(t *testing.T) {
	dir := t.TempDir()
	f := readOnlyFile(t, dir, "f", []byte("x"))
	if err := Enable(f, 0); err == nil || errors.Is(err, ErrNotSupported) {
		t.Errorf("Enable with Algorithm(0): %v, want an invalid algorithm error", err)
	}
	f.Close()
	if err := Enable(f, SHA256); err == nil || errors.Is(err, ErrNotSupported) {
		t.Errorf("Enable on closed file: %v, want a closed file error", err)
	}
	if _, _, err := Measure(f); err == nil || errors.Is(err, ErrNotSupported) || errors.Is(err, ErrNoVerity) {
		t.Errorf("Measure on closed file: %v, want a closed file error", err)
	}
	if _, err := Supported(filepath.Join(dir, "missing")); err == nil {
		t.Error("Supported on a missing directory did not fail")
	}
}
