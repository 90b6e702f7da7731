package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/tests/treecheck"
)

// TestKernelMountMatchesSource builds images from directories, mounts them
// with the host kernel (EROFS plus overlayfs with the object store as data
// layer) and compares every path, type, mode, owner, size, mtime, xattr and
// byte of content with the source.
func TestKernelMountMatchesSource(t *testing.T) {
	treecheck.RequireRoot(t)
	treecheck.RequireFilesystems(t, "erofs", "overlay")

	sources := map[string]func(t *testing.T, dir string){
		"handmade": func(t *testing.T, dir string) { treecheck.MakeHandmadeTree(t, dir) },
		"mktree10": func(t *testing.T, dir string) { treecheck.MakeMktree(t, dir, 10) },
	}
	for name, mk := range sources {
		for _, epoch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/epoch=%v", name, epoch), func(t *testing.T) {
				work := t.TempDir()
				src := filepath.Join(work, "src")
				mk(t, src)
				store := filepath.Join(work, "objects")
				img := filepath.Join(work, "image.cfs")
				treecheck.BuildImage(t, src, store, img, epoch)
				mnt := mountComposefs(t, img, store)
				t.Logf("compared %d entries", treecheck.CompareTrees(t, src, mnt, treecheck.Compare{Epoch: epoch}))
			})
		}
	}
}

// mountComposefs mounts img read-only on a new directory and returns it; the
// mounts are removed when the test ends.
func mountComposefs(t *testing.T, img, store string) string {
	t.Helper()
	work := t.TempDir()
	lower := filepath.Join(work, "lower")
	mnt := filepath.Join(work, "mnt")
	for _, d := range []string{lower, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount(img, lower, "erofs", unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("mount erofs %s: %v", img, err)
	}
	t.Cleanup(func() { unix.Unmount(lower, unix.MNT_DETACH) })
	opts := fmt.Sprintf("ro,metacopy=on,redirect_dir=on,lowerdir=%s::%s", lower, store)
	if err := unix.Mount("composefs", mnt, "overlay", unix.MS_RDONLY, opts); err != nil {
		t.Fatalf("mount overlay %s: %v", opts, err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	return mnt
}
