package scan

import (
	"os"
	"testing"

	"github.com/gocfs/gocfs/erofs/tree"
)

// BenchmarkDir scans a large real directory with digests, as mkcomposefs
// does: /usr, or the directory named by GOCFS_SCAN_BENCH_DIR.
func BenchmarkDir(b *testing.B) {
	dir := os.Getenv("GOCFS_SCAN_BENCH_DIR")
	if dir == "" {
		dir = "/usr"
	}
	if _, err := os.Stat(dir); err != nil {
		b.Skipf("no directory to scan: %v", err)
	}
	var entries int
	var bytes int64
	for b.Loop() {
		root, err := Dir(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		entries, bytes = 0, 0
		tree.Walk(root, func(_ string, d *tree.Dirent) error {
			entries++
			if d.Inode.IsReg() {
				bytes += int64(d.Inode.Size)
			}
			return nil
		})
	}
	b.ReportMetric(float64(entries), "entries")
	b.SetBytes(bytes)
}
