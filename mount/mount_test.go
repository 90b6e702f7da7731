package mount

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/tests/treecheck"
)

func TestProbe(t *testing.T) {
	requireMount(t)
	c := Probe()
	t.Logf("capabilities %+v, automatic tier %s", c, c.Tier())
	if c != Probe() {
		t.Error("Probe changed between calls")
	}
	switch {
	case c.LayerFDs && !c.LayerAppend, c.LayerAppend && !c.OverlayParams, c.OverlayVerity && !c.OverlayParams:
		t.Errorf("inconsistent capabilities %+v", c)
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	var major, minor int
	fmt.Sscanf(string(bytes.TrimRight(uts.Release[:], "\x00")), "%d.%d", &major, &minor)
	if major > 6 || major == 6 && minor >= 16 {
		if !c.LayerFDs || !c.OverlayVerity {
			t.Errorf("Linux %d.%d should take detached layers and verity=: %+v", major, minor, c)
		}
	}
}

// TestTiers mounts both fixtures in every tier the kernel can do and
// compares the mount with the source tree, entry by entry.
func TestTiers(t *testing.T) {
	for _, name := range []string{"handmade", "mktree10"} {
		for _, tc := range tierCases {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				f := getFixture(t, name)
				opts := tc.apply(t, f.options())
				opts.TempDir = t.TempDir()
				loops := loopsOver(t, fixtureRoot)
				mnt, info := mountAt(t, opts)
				line := mountInfo(t, mnt)
				t.Logf("%+v: %s", info, line)
				checkTier(t, tc, info, line)
				if got := loopsOver(t, fixtureRoot) - loops; info.Loop != (got == 1) {
					t.Errorf("Info.Loop %v, but %d new loop devices", info.Loop, got)
				}
				n := treecheck.CompareTrees(t, f.src, mnt, treecheck.Compare{Legacy: info.Tier == TierLegacy})
				t.Logf("compared %d entries", n)
				unmount(t, mnt)
				if n := waitLoops(t, fixtureRoot, loops); n != loops {
					t.Errorf("%d loop devices left over", n-loops)
				}
				if ents, _ := os.ReadDir(opts.TempDir); len(ents) != 0 {
					t.Errorf("temporary directory left: %v", ents)
				}
			})
		}
	}
}

func checkTier(t *testing.T, tc tierCase, info Info, line string) {
	t.Helper()
	c := Probe()
	want := tc.tier
	switch tc.tier {
	case TierAuto, TierLoop:
		want = c.Tier()
	}
	if info.Tier != want || info.Loop != (tc.tier == TierLoop) || info.Verity {
		t.Errorf("Info %+v, want tier %s, loop %v, no verity", info, want, tc.tier == TierLoop)
	}
	_, super, _ := strings.Cut(line, " - ")
	for _, opt := range []string{"overlay composefs ro,", ",metacopy=on", ",redirect_dir=on"} {
		if !strings.Contains(super, opt) {
			t.Errorf("mount options lack %q", opt)
		}
	}
	var layers string
	switch {
	case info.Tier == TierFD:
		layers = ",lowerdir+=/,datadir+=" + fixtureRoot
	case info.Tier == TierString && !tc.noAppend:
		layers = ",lowerdir+=/proc/self/fd/"
	case info.Tier == TierString:
		layers = "::/proc/self/fd/"
	case info.Tier == TierLegacy:
		layers = ":/proc/self/fd/"
		if strings.Contains(super, "::") {
			t.Errorf("legacy mount has data-only layers")
		}
	}
	if !strings.Contains(super, layers) {
		t.Errorf("mount options lack %q", layers)
	}
}

// TestObjectDirs spreads the objects over two directories.
func TestObjectDirs(t *testing.T) {
	for _, tc := range tierCases {
		t.Run(tc.name, func(t *testing.T) {
			f := getFixture(t, "handmade")
			dirs := []string{filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")}
			n := splitObjects(t, f.store, dirs)
			opts := tc.apply(t, f.options())
			opts.ObjectDirs = dirs
			mnt, info := mountAt(t, opts)
			t.Logf("%d objects in each directory; %+v", n, info)
			treecheck.CompareTrees(t, f.src, mnt, treecheck.Compare{Legacy: info.Tier == TierLegacy})
		})
	}
}

// splitObjects hardlinks the objects of store into two directories,
// alternately, and returns how many the first got.
func splitObjects(t *testing.T, store string, dirs []string) int {
	t.Helper()
	objs, err := filepath.Glob(filepath.Join(store, "[0-9a-f][0-9a-f]", "*"))
	if err != nil || len(objs) < 2 {
		t.Fatalf("objects in %s: %d, %v", store, len(objs), err)
	}
	for i, o := range objs {
		rel, _ := filepath.Rel(store, o)
		dst := filepath.Join(dirs[i%2], rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(o, dst); err != nil {
			t.Fatal(err)
		}
	}
	return (len(objs) + 1) / 2
}

// TestUpperDir writes through a writable mount, remounts it read-only and
// checks the changes are in the upper directory and visible again.
func TestUpperDir(t *testing.T) {
	for _, tc := range tierCases {
		t.Run(tc.name, func(t *testing.T) {
			f := getFixture(t, "handmade")
			dir := t.TempDir()
			upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
			for _, d := range []string{upper, work} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			opts := tc.apply(t, f.options())
			opts.UpperDir, opts.WorkDir = upper, work
			mnt, _ := mountAt(t, opts)
			if line := mountInfo(t, mnt); !strings.Contains(line, " rw,") {
				t.Errorf("not mounted read-write: %s", line)
			}
			must(t, os.WriteFile(filepath.Join(mnt, "new"), []byte("new file"), 0o644))
			orig, err := os.ReadFile(filepath.Join(f.src, "f4097"))
			must(t, err)
			fh, err := os.OpenFile(filepath.Join(mnt, "f4097"), os.O_WRONLY|os.O_APPEND, 0)
			must(t, err)
			_, err = fh.WriteString("appended")
			must(t, err)
			must(t, fh.Close())
			must(t, os.Remove(filepath.Join(mnt, "f1")))
			must(t, os.Mkdir(filepath.Join(mnt, "a", "newdir"), 0o700))
			unmount(t, mnt)

			want := append(orig, "appended"...)
			if b, err := os.ReadFile(filepath.Join(upper, "f4097")); err != nil || !bytes.Equal(b, want) {
				t.Errorf("upper f4097: %d bytes, %v; want the copied-up file", len(b), err)
			}
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(upper, "f1"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
				t.Errorf("upper f1 is not a whiteout: %v %o", err, st.Mode)
			}

			opts.ReadOnly = true
			if _, err := Mount(mnt, opts); err != nil {
				t.Fatal(err)
			}
			if line := mountInfo(t, mnt); !strings.Contains(line, " ro,") {
				t.Errorf("not mounted read-only: %s", line)
			}
			if b, err := os.ReadFile(filepath.Join(mnt, "f4097")); err != nil || !bytes.Equal(b, want) {
				t.Errorf("f4097 after remount: %d bytes, %v", len(b), err)
			}
			if b, err := os.ReadFile(filepath.Join(mnt, "new")); err != nil || string(b) != "new file" {
				t.Errorf("new after remount: %q, %v", b, err)
			}
			if _, err := os.Lstat(filepath.Join(mnt, "f1")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("removed f1 is back: %v", err)
			}
			if fi, err := os.Stat(filepath.Join(mnt, "a", "newdir")); err != nil || !fi.IsDir() {
				t.Errorf("a/newdir: %v", err)
			}
			if err := os.WriteFile(filepath.Join(mnt, "new2"), nil, 0o644); !errors.Is(err, unix.EROFS) {
				t.Errorf("write to a read-only mount: %v, want EROFS", err)
			}
			unmount(t, mnt)
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
