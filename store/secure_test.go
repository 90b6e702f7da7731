package store

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/store/internal/fakeverity"
	"github.com/gocfs/gocfs/verity"
)

// filledElsewhere makes an insecure repository with objects, as a build
// machine without fs-verity leaves it, and returns its path and digests.
func filledElsewhere(t *testing.T, n int) (string, [][]byte) {
	t.Helper()
	useKernel(t, &fakeverity.Kernel{Unsupported: true})
	dir := filepath.Join(t.TempDir(), "repo")
	r, err := Init(dir, InitOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var ds [][]byte
	for i := range n {
		ds = append(ds, mustObject(t, r, data(1000+i*5000, byte(i))))
	}
	return dir, ds
}

func TestEnableVerity(t *testing.T) {
	dir, ds := filledElsewhere(t, 5)
	k := &fakeverity.Kernel{}
	useKernel(t, k)
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Secure() {
		t.Fatal("repository secure before EnableVerity")
	}
	n, err := r.EnableVerity()
	if err != nil {
		t.Fatal(err)
	}
	if n != len(ds) {
		t.Errorf("sealed %d objects, want %d", n, len(ds))
	}
	if !r.Secure() || !k.Has(filepath.Join(dir, metaName)) {
		t.Error("repository not secure after EnableVerity")
	}
	for _, d := range ds {
		if !k.Has(filepath.Join(dir, objectPath(d))) {
			t.Errorf("object %x has no fs-verity", d)
		}
	}
	// New objects now need fs-verity too.
	nd := mustObject(t, r, data(777, 9))
	if !k.Has(filepath.Join(dir, objectPath(nd))) {
		t.Error("object stored after EnableVerity has no fs-verity")
	}
	if n, err := r.EnableVerity(); err != nil || n != 0 {
		t.Errorf("second EnableVerity: sealed %d, %v", n, err)
	}
	again, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if !again.Secure() {
		t.Error("reopened repository is not secure")
	}
}

func TestEnableVerityRefuses(t *testing.T) {
	t.Run("corrupt object", func(t *testing.T) {
		dir, ds := filledElsewhere(t, 3)
		bad := filepath.Join(dir, objectPath(ds[1]))
		if err := os.WriteFile(bad, []byte("not what the name says"), 0o644); err != nil {
			t.Fatal(err)
		}
		k := &fakeverity.Kernel{}
		useKernel(t, k)
		r, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		_, err = r.EnableVerity()
		if err == nil || !strings.Contains(err.Error(), objectPath(ds[1])) {
			t.Fatalf("EnableVerity with a corrupt object: %v", err)
		}
		if r.Secure() || k.Has(filepath.Join(dir, metaName)) {
			t.Error("repository marked secure despite a corrupt object")
		}
	})
	t.Run("no fs-verity", func(t *testing.T) {
		dir, _ := filledElsewhere(t, 3)
		r, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		_, err = r.EnableVerity()
		if err == nil || !strings.Contains(err.Error(), "no fs-verity") || !bytes.Contains([]byte(err.Error()), []byte(dir)) {
			t.Fatalf("EnableVerity without fs-verity: %v", err)
		}
		t.Log(err)
		if strings.Count(err.Error(), "not supported") > 2 {
			t.Errorf("error repeats itself: %v", err)
		}
		if r.Secure() {
			t.Error("repository secure without fs-verity")
		}
	})
	t.Run("sha512", func(t *testing.T) {
		useKernel(t, &fakeverity.Kernel{Unsupported: true})
		dir := filepath.Join(t.TempDir(), "repo")
		r, err := Init(dir, InitOptions{Insecure: true, Algorithm: verity.SHA512})
		if err != nil {
			t.Fatal(err)
		}
		mustObject(t, r, data(9000, 3))
		r.Close()
		useKernel(t, &fakeverity.Kernel{})
		r, err = Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if n, err := r.EnableVerity(); err != nil || n != 1 || !r.Secure() {
			t.Errorf("sha512 EnableVerity: sealed %d, secure %v, %v", n, r.Secure(), err)
		}
	})
}
