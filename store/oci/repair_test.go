package oci

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/tests/ocibuild"
)

// fsck runs a check, repairing with Repair when asked, and returns the
// problems not repaired.
func fsck(t *testing.T, repo *store.Repository, repair bool) []*store.FsckProblem {
	t.Helper()
	opts := store.FsckOptions{}
	if repair {
		opts.Repair, opts.Repairer = true, Repair
	}
	rep, err := repo.Fsck(opts)
	if err != nil {
		t.Fatal(err)
	}
	var left []*store.FsckProblem
	for _, p := range rep.Errors {
		if !p.Repaired {
			left = append(left, p)
		}
	}
	return left
}

func TestRepairLostImage(t *testing.T) {
	repo := newRepo(t, true)
	b := ocibuild.MustBuild(ocibuild.BootableImage(1))
	res, err := Pull(t.Context(), repo, layoutOf(t, b), PullOptions{Tag: "os", Bootable: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []Hex{res.Image, res.BootImage} {
		h := d.String()
		if err := os.Remove(filepath.Join(repo.Path(), "objects", h[:2], h[2:])); err != nil {
			t.Fatal(err)
		}
	}
	if left := fsck(t, repo, false); len(left) == 0 {
		t.Fatal("fsck found nothing wrong with images missing")
	}
	if left := fsck(t, repo, true); len(left) != 0 {
		t.Fatalf("not repaired: %v", left)
	}
	if left := fsck(t, repo, false); len(left) != 0 {
		t.Fatalf("after repair: %v", left)
	}
	checkImage(t, repo, res.Image, b, false)
	checkImage(t, repo, res.BootImage, b, true)
}

func TestRepairForeignImage(t *testing.T) {
	repo := newRepo(t, true)
	b := ocibuild.MustBuild(ocibuild.BaseImage())
	res, err := Pull(t.Context(), repo, layoutOf(t, b), PullOptions{Tag: "base"})
	if err != nil {
		t.Fatal(err)
	}
	// The configuration names an image this repository cannot make
	// again, as if another tool had made it and it was lost since.
	si, err := openStoredImage(repo, res.ManifestDigest)
	if err != nil {
		t.Fatal(err)
	}
	other := make([]byte, 32)
	rand.Read(other)
	si.config.images[ImageRef] = other
	if si.configStream, err = writeConfigStream(repo, si.manifest.Config.Digest, si.config); err != nil {
		t.Fatal(err)
	}
	if _, err := writeManifestStream(repo, si, ""); err != nil {
		t.Fatal(err)
	}
	if in, err := Inspect(repo, "base"); err != nil || !bytes.Equal(in.Image, other) {
		t.Fatalf("setup: %v", err)
	}
	if left := fsck(t, repo, true); len(left) != 0 {
		t.Fatalf("not repaired: %v", left)
	}
	in, err := Inspect(repo, "base")
	if err != nil || !bytes.Equal(in.Image, res.Image) {
		t.Fatalf("after repair the tag names image %s (%v), want %s", in.Image, err, res.Image)
	}
	if left := fsck(t, repo, false); len(left) != 0 {
		t.Fatalf("after repair: %v", left)
	}
}
