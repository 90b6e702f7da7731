package prepare

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gocfs/gocfs/initramfs/cmdline"
	"github.com/gocfs/gocfs/mount"
	"github.com/gocfs/gocfs/verity"
)

func TestRecord(t *testing.T) {
	d := &cmdline.Digest{Algorithm: verity.SHA256, Hex: hexA, Insecure: true}
	for _, c := range []struct {
		name string
		res  Result
		want string
	}{
		{"repository", Result{Digest: d, Image: "/sysroot/composefs/images/" + hexA, Info: mount.Info{Tier: mount.TierLegacy, Loop: true}},
			"digest=?v1-sha256-12:" + hexA + "\nimage=/sysroot/composefs/images/" + hexA + "\ntier=legacy\nloop=true\nverity=false\n"},
		{"ostree", Result{Image: "/sysroot/ostree/deploy/os/deploy/c.0/.ostree.cfs", Deployment: "/sysroot/ostree/deploy/os/deploy/c.0",
			Info: mount.Info{Tier: mount.TierFD, Verity: true}},
			"image=/sysroot/ostree/deploy/os/deploy/c.0/.ostree.cfs\ndeployment=/sysroot/ostree/deploy/os/deploy/c.0\ntier=fd\nloop=false\nverity=true\n"},
	} {
		if got := string(c.res.Record()); got != c.want {
			t.Errorf("%s: record\n%s\nwant\n%s", c.name, got, c.want)
		}
	}
	dir := filepath.Join(t.TempDir(), "run", "composefs")
	res := &Result{Digest: d, Image: "img", Info: mount.Info{Tier: mount.TierFD}}
	if err := WriteRecord(dir, res); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, RecordName))
	if err != nil || string(b) != string(res.Record()) {
		t.Errorf("record file %q, %v", b, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d files in %s, want the record alone", len(ents), dir)
	}
}
