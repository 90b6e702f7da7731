package cfsfuse

import (
	"bytes"
	"testing"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/dumpfile"
	"github.com/gocfs/gocfs/tests/golden"
	"github.com/gocfs/gocfs/tests/treecheck"
)

// TestGoldenVectors mounts the image of every golden vector that builds
// one, with objects synthesised for its external files, and compares every
// path, type, mode, owner, size, time, link, device, xattr, directory entry
// and byte of content with the source tree and with the kernel's
// mount of the same image (stat fields, entry inode numbers and xattr
// order included).
func TestGoldenVectors(t *testing.T) {
	// The images hold files only root may read.
	requireRoot(t)
	treecheck.RequireFUSE(t)
	for _, v := range golden.Vectors(t) {
		if v.Fail {
			continue
		}
		t.Run(v.Name(), func(t *testing.T) {
			t.Parallel()
			in, err := v.Input()
			if err != nil {
				t.Fatal(err)
			}
			root, err := dumpfile.Parse(bytes.NewReader(in), dumpfile.ParseOptions{Strict: v.Strict})
			if err != nil {
				t.Fatal(err)
			}
			work := t.TempDir()
			objs := newSynthObjects(t)
			objs.fill(t, root)
			var opts erofs.WriteOptions
			if v.MinVersion >= 0 {
				opts.Versions = &erofs.VersionRange{Min: v.MinVersion, Max: v.MaxVersion}
			}
			imgPath := writeImage(t, work, root, opts)
			info := loadImage(t, imgPath).Info()

			got := takeSnapshot(mountFUSE(t, imgPath, Options{ObjectDirs: []string{objs.dir}, Verify: true}))
			compareExpected(t, "cfsmount vs source", got, expectTree(root, info, objs.data))
			compareExact(t, "cfsmount vs kernel", got, takeSnapshot(mountKernel(t, imgPath, objs.dir)))
		})
	}
}
