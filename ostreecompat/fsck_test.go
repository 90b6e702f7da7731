package ostreecompat

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/tests/treecheck"
)

// TestFsck breaks the agreement between a store and an ostree repository
// in the ways Fsck looks for, and repairs what can be repaired.
func TestFsck(t *testing.T) {
	treecheck.RequireRoot(t)
	root := t.TempDir()
	st, repo := sysrootStores(t, root)
	src := filepath.Join(t.TempDir(), "src")
	makeOSTreeSource(t, src, 1)
	img := buildStoreImage(t, st, src, "test")
	ctx := context.Background()
	opts := FsckOptions{Policy: PolicyEnabledWithCopy}

	// A tagged image without its commit; repair synthesizes it.
	rep, err := Fsck(ctx, st, repo, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || len(rep.Images) != 1 || rep.Images[0].CommitPresent || !strings.Contains(rep.Images[0].Problem, "no commit") {
		t.Errorf("without a commit: %+v", rep.Images)
	}
	opts.Repair = true
	if rep, err = Fsck(ctx, st, repo, opts); err != nil || !rep.OK || !rep.Images[0].Repaired {
		t.Fatalf("repair: %+v, %v", rep, err)
	}
	opts.Repair = false
	rep, err = Fsck(ctx, st, repo, FsckOptions{Deep: true})
	if err != nil || !rep.OK || !rep.Images[0].CommitSynthesized || len(rep.Refs) != 1 || rep.Refs[0].Ref != ImageRef(img) {
		t.Fatalf("after the repair: %+v, %v", rep, err)
	}
	commit := rep.Images[0].Commit

	// An image ref naming another image's commit.
	if err := repo.SetRef(ImageRef(strings.Repeat("0", 64)), commit); err != nil {
		t.Fatal(err)
	}
	if rep, _ := Fsck(ctx, st, repo, opts); rep.OK {
		t.Errorf("a misplaced image ref passed: %+v", rep.Refs)
	}
	if err := repo.DeleteRef(ImageRef(strings.Repeat("0", 64))); err != nil {
		t.Fatal(err)
	}

	// The image leaves the store while a branch still has its commit:
	// repair drops the image ref, the branch stays a problem.
	if err := repo.SetRef("branch", commit); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteRef(store.Images, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GC(store.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	opts.Repair = true
	rep, err = Fsck(ctx, st, repo, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || len(rep.Images) != 0 || len(rep.Refs) != 2 {
		t.Fatalf("image gone: %+v", rep)
	}
	for _, r := range rep.Refs {
		if r.InStore || r.Problem == "" || r.Repaired != (r.Ref == ImageRef(img)) {
			t.Errorf("image gone, ref %+v", r)
		}
	}
	if _, err := repo.ResolveRef(ImageRef(img)); err == nil {
		t.Error("repair kept the image ref")
	}

	// A marker without the binding.
	if err := repo.DeleteRef("branch"); err != nil {
		t.Fatal(err)
	}
	if err := writeMarker(st.Path(), &Marker{Version: 1, Unified: PolicyEnabled, Scope: ScopeFull, OSTreeRepo: "../ostree/repo"}); err != nil {
		t.Fatal(err)
	}
	rep, err = Fsck(ctx, st, repo, FsckOptions{})
	if err != nil || rep.OK || len(rep.Problems) != 1 || rep.Binding != StateNone {
		t.Errorf("marker without binding: %+v, %v", rep, err)
	}
	if err := os.Remove(filepath.Join(st.Path(), MarkerName)); err != nil {
		t.Fatal(err)
	}
	if rep, err = Fsck(ctx, st, repo, FsckOptions{}); err != nil || !rep.OK {
		t.Errorf("clean again: %+v, %v", rep, err)
	}
}
