package mount

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCycles mounts and unmounts 1000 times over every tier the kernel can
// do, with failures after the EROFS is attached and detached mounts closed
// unattached among them, and checks that no mount, loop device, descriptor
// or directory is left behind.
func TestCycles(t *testing.T) {
	f := getFixture(t, "handmade")
	var tiers []tierCase
	for _, tc := range tierCases {
		if tc.tier != TierAuto && tc.usable(Probe()) {
			tiers = append(tiers, tc)
		}
	}
	dir := t.TempDir()
	tmp, mnt, same := filepath.Join(dir, "tmp"), filepath.Join(dir, "mnt"), filepath.Join(dir, "same")
	for _, d := range []string{tmp, mnt, same} {
		must(t, os.Mkdir(d, 0o755))
	}
	cycle := func(i int) {
		tc := tiers[i%len(tiers)]
		opts := tc.apply(t, f.options())
		opts.TempDir = tmp
		switch i % 10 {
		case 3: // refused by overlayfs, after the EROFS is mounted
			opts.UpperDir, opts.WorkDir = same, same
			if _, err := Mount(mnt, opts); err == nil {
				t.Fatalf("cycle %d (%s): upper and work dir the same: mounted", i, tc.name)
			}
		case 7: // built, never attached
			fd, _, err := MountDetached(opts)
			if err != nil {
				t.Fatalf("cycle %d (%s): %v", i, tc.name, err)
			}
			fd.Close()
		default:
			if _, err := Mount(mnt, opts); err != nil {
				t.Fatalf("cycle %d (%s): %v", i, tc.name, err)
			}
			if i%50 == 0 {
				if b, err := os.ReadFile(filepath.Join(mnt, "f4097")); err != nil || len(b) != 4097 {
					t.Fatalf("cycle %d (%s): read %d bytes, %v", i, tc.name, len(b), err)
				}
			}
			unmount(t, mnt)
		}
	}
	// The runtime opens some descriptors on first use.
	for i := range 2 * len(tiers) {
		cycle(i)
	}
	loops := waitLoops(t, fixtureRoot, 0)
	fds := openFDs(t)
	n := 1000
	if testing.Short() {
		n = 100
	}
	start := time.Now()
	for i := range n {
		cycle(i)
	}
	t.Logf("%d cycles over %d tiers in %v", n, len(tiers), time.Since(start))
	if got := mountsUnder(t, dir); got != 0 {
		t.Errorf("%d mounts left under %s", got, dir)
	}
	if got := waitLoops(t, fixtureRoot, loops); got != loops {
		t.Errorf("%d loop devices left", got-loops)
	}
	if got := openFDs(t); got != fds {
		t.Errorf("%d descriptors open, %d before", got, fds)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("%d temporary directories left", len(ents))
	}
}
