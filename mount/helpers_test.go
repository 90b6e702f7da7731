package mount

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/tests/treecheck"
)

// fixture is a source tree, the object directory and the image built from
// it, shared by the tests of one run.
type fixture struct {
	src, store, img string
}

var (
	fixtureMu   sync.Mutex
	fixtureRoot string
	fixtures    = map[string]*fixture{}
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtureRoot != "" {
		os.RemoveAll(fixtureRoot)
	}
	os.Exit(code)
}

// requireMount skips unless the test can mount composefs images here.
func requireMount(t testing.TB) {
	t.Helper()
	treecheck.RequireRoot(t)
	treecheck.RequireFilesystems(t, "erofs", "overlay")
	if c := Probe(); !c.MountAPI {
		t.Skipf("SKIP: no new mount API: %v", c.Err)
	}
}

// getFixture builds (once per run) the image of the handmade tree or of the
// golden generator's tree for seed 10.
func getFixture(t testing.TB, name string) *fixture {
	t.Helper()
	requireMount(t)
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if f := fixtures[name]; f != nil {
		return f
	}
	if fixtureRoot == "" {
		d, err := os.MkdirTemp("", "gocfs-mount-test-")
		if err != nil {
			t.Fatal(err)
		}
		fixtureRoot = d
	}
	dir := filepath.Join(fixtureRoot, name)
	f := &fixture{
		src:   filepath.Join(dir, "src"),
		store: filepath.Join(dir, "objects"),
		img:   filepath.Join(dir, "image.cfs"),
	}
	os.RemoveAll(dir) // a build that failed earlier in this run
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	switch name {
	case "handmade":
		treecheck.MakeHandmadeTree(t, f.src)
	case "mktree10":
		treecheck.MakeMktree(t, f.src, 10)
	default:
		t.Fatalf("no fixture %q", name)
	}
	treecheck.BuildImage(t, f.src, f.store, f.img, false)
	fixtures[name] = f
	return f
}

func (f *fixture) options() Options {
	return Options{ImagePath: f.img, ObjectDirs: []string{f.store}}
}

// mountAt mounts on a new directory, which is unmounted when the test ends
// if it still is mounted.
func mountAt(t testing.TB, opts Options) (string, Info) {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	info, err := Mount(mnt, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	return mnt, info
}

// mountInfo returns the mount table line of the mount at mnt, or "".
func mountInfo(t testing.TB, mnt string) string {
	t.Helper()
	var line string
	scanMountinfo(t, func(l string, fields []string) {
		if len(fields) > 4 && fields[4] == mnt {
			line = l
		}
	})
	return line
}

// mountsUnder counts the mounts whose mount point lies under dir.
func mountsUnder(t testing.TB, dir string) int {
	t.Helper()
	n := 0
	scanMountinfo(t, func(_ string, fields []string) {
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir) {
			n++
		}
	})
	return n
}

func scanMountinfo(t testing.TB, fn func(line string, fields []string)) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fn(sc.Text(), strings.Fields(sc.Text()))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

// loopsOver counts the loop devices bound to files under dir.
func loopsOver(t testing.TB, dir string) int {
	t.Helper()
	files, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue // cleared meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(strings.TrimSpace(string(b)), dir) {
			n++
		}
	}
	return n
}

// waitLoops waits for autoclear to release loop devices over dir, which
// the kernel may finish after the unmount returns.
func waitLoops(t testing.TB, dir string, want int) int {
	t.Helper()
	n := loopsOver(t, dir)
	for deadline := time.Now().Add(5 * time.Second); n != want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		n = loopsOver(t, dir)
	}
	return n
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func unmount(t testing.TB, mnt string) {
	t.Helper()
	if err := Unmount(mnt); err != nil {
		t.Fatal(err)
	}
}

// tierCase is a way to force a tier, with what the kernel needs for it.
type tierCase struct {
	name     string
	tier     Tier
	noAppend bool
	usable   func(Capabilities) bool
}

var tierCases = []tierCase{
	{name: "auto", tier: TierAuto, usable: func(Capabilities) bool { return true }},
	{name: "fd", tier: TierFD, usable: func(c Capabilities) bool { return c.LayerFDs }},
	{name: "string", tier: TierString, usable: func(c Capabilities) bool { return c.LayerAppend }},
	{name: "string-combined", tier: TierString, noAppend: true, usable: func(c Capabilities) bool { return c.OverlayParams }},
	{name: "loop", tier: TierLoop, usable: func(c Capabilities) bool { return c.Loop }},
	{name: "legacy", tier: TierLegacy, usable: func(Capabilities) bool { return true }},
}

func (tc tierCase) apply(t testing.TB, o Options) Options {
	t.Helper()
	if !tc.usable(Probe()) {
		t.Skipf("SKIP: the kernel cannot do tier %s: %+v", tc.name, Probe())
	}
	o.Tier = tc.tier
	o.noAppend = tc.noAppend
	return o
}
