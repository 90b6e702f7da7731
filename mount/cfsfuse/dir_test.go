package cfsfuse

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/scan"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/store/objects"
	"github.com/gocfs/gocfs/tests/treecheck"
)

// TestDirectorySources builds images from generated directories (every
// file type, boundary sizes, hardlinks, whiteouts, xattrs and ACLs, odd
// names and owners) with their objects stored as a directory scan stores
// them, and compares what cfsmount shows with the source directory and
// the kernel's mount. GOCFS_MKTREE_SEEDS adds trees of other seeds.
func TestDirectorySources(t *testing.T) {
	requireRoot(t) // the trees hold devices, foreign owners and trusted xattrs
	treecheck.RequireFUSE(t)
	type source struct {
		name string
		make func(t testing.TB, dir string)
	}
	sources := []source{
		{"handmade", treecheck.MakeHandmadeTree},
		{"mktree10", func(t testing.TB, dir string) { treecheck.MakeMktree(t, dir, 10) }},
	}
	for _, seed := range treecheck.SweepSeeds(t, "") { // make test-sweep
		sources = append(sources, source{fmt.Sprintf("mktree%d", seed), func(t testing.TB, dir string) { treecheck.MakeMktree(t, dir, seed) }})
	}
	for _, src := range sources {
		for _, epoch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/epoch=%v", src.name, epoch), func(t *testing.T) {
				t.Parallel()
				work := t.TempDir()
				dir := filepath.Join(work, "src")
				src.make(t, dir)
				store := fastTempDir(t)
				st, err := objects.OpenDir(store, true)
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				root, err := scan.Dir(dir, scan.Options{UseEpoch: epoch, Threads: 2, Store: st})
				if err != nil {
					t.Fatal(err)
				}
				imgPath := writeImage(t, work, root, erofs.WriteOptions{})
				info := loadImage(t, imgPath).Info()

				// The builds with epoch mtimes are also served without
				// passthrough, as for unprivileged mounts.
				opts := Options{ObjectDirs: []string{store}, Verify: true, NoPassthrough: epoch}
				got := takeSnapshot(mountFUSE(t, imgPath, opts))
				ondisk := func(p string, _ *tree.Inode) string { return contentSum(filepath.Join(dir, p), make([]byte, 64<<10)) }
				compareExpected(t, "cfsmount vs source", got, expectTree(root, info, ondisk))
				compareExact(t, "cfsmount vs kernel", got, takeSnapshot(mountKernel(t, imgPath, store)))
			})
		}
	}
}
