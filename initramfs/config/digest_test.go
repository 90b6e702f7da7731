package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/initramfs/cmdline"
	"github.com/gocfs/gocfs/verity"
)

var digest = cmdline.Digest{Algorithm: verity.SHA256, Hex: strings.Repeat("5a", 32)}

func TestLoadDigest(t *testing.T) {
	root := t.TempDir()
	if d, err := LoadDigest(root); d != nil || err != nil {
		t.Fatalf("empty root: %v, %v", d, err)
	}
	p := filepath.Join(root, DigestPath)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(digest.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := LoadDigest(root)
	if err != nil || d == nil || *d != digest {
		t.Fatalf("LoadDigest = %v, %v; want %v", d, err, digest)
	}
	if err := os.WriteFile(p, []byte("composefs=xyz\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDigest(root); !errors.Is(err, cmdline.ErrBadDigest) || !strings.Contains(err.Error(), p) {
		t.Fatalf("bad digest file: error = %v", err)
	}
}
