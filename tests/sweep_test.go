package tests

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/erofs/dumpfile"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/tests/treecheck"
)

// TestMktreeSweep checks, for trees of the golden generator beyond the two
// the C reference's images cover, what holds without the C tool: the
// image of a directory and the image of its dump are the same bytes, the
// dump of that image is the dump again, --use-epoch and --digest-store
// change only what they should, and the host kernel's mount of each image
// shows the source tree.
func TestMktreeSweep(t *testing.T) {
	treecheck.RequireRoot(t)
	for _, seed := range treecheck.SweepSeeds(t, "1-3") {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			sweepSeed(t, seed)
		})
	}
}

func sweepSeed(t *testing.T, seed int) {
	work := t.TempDir()
	src := filepath.Join(work, "src")
	treecheck.MakeMktree(t, src, seed)
	p := func(name string) string { return filepath.Join(work, name) }
	mk := func(args ...string) {
		t.Helper()
		if r := runTool(t, nil, nil, "mkcomposefs", args...); r.code != 0 {
			t.Fatalf("mkcomposefs %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	dump := func(img string) []byte {
		t.Helper()
		r := runTool(t, nil, nil, "composefs-info", "dump", img)
		if r.code != 0 {
			t.Fatalf("composefs-info dump %s: exit %d: %s", img, r.code, r.stderr)
		}
		return r.stdout
	}
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(p(name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	mk(src, p("plain.cfs"))
	mk("--use-epoch", src, p("epoch.cfs"))
	mk("--digest-store="+p("objects"), src, p("store.cfs"))

	// Directory -> image -> dump -> image: the same bytes, the same dump.
	plainDump := dump(p("plain.cfs"))
	if err := os.WriteFile(p("plain.dump"), plainDump, 0o644); err != nil {
		t.Fatal(err)
	}
	mk("--from-file", p("plain.dump"), p("redone.cfs"))
	if got, want := read("redone.cfs"), read("plain.cfs"); !bytes.Equal(got, want) {
		t.Errorf("image of the dump differs from the image of the directory: %s", firstDiff(got, want))
	}
	if got := dump(p("redone.cfs")); !bytes.Equal(got, plainDump) {
		t.Errorf("dump of the rebuilt image differs: %s", firstDiff(got, plainDump))
	}

	// A digest store changes no byte of the image, and holds every object
	// the image names.
	if !bytes.Equal(read("store.cfs"), read("plain.cfs")) {
		t.Errorf("--digest-store changed the image: %s", firstDiff(read("store.cfs"), read("plain.cfs")))
	}
	root, err := dumpfile.Parse(bytes.NewReader(plainDump), dumpfile.ParseOptions{Strict: true})
	if err != nil {
		t.Fatalf("dump of the image: %v", err)
	}
	objects := 0
	err = tree.Walk(root, func(name string, d *tree.Dirent) error {
		if d.Inode.IsReg() && d.Inode.Payload != "" {
			objects++
			if _, err := os.Stat(filepath.Join(p("objects"), d.Inode.Payload)); err != nil {
				t.Errorf("object of /%s: %v", name, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if objects == 0 {
		t.Error("the image names no object: the tree has no external file")
	}

	// --use-epoch: the dump differs only in mtimes.
	epochDump := dump(p("epoch.cfs"))
	if got, want := zeroMtimes(t, plainDump), epochDump; !bytes.Equal(got, want) {
		t.Errorf("--use-epoch dump is not the plain dump with mtimes 0: %s", firstDiff(got, want))
	}

	if err := treecheck.HasFilesystems("erofs", "overlay"); err != nil {
		t.Logf("SKIP kernel mount comparison: %v", err)
		return
	}
	for _, c := range []struct {
		img   string
		epoch bool
	}{{"store.cfs", false}, {"epoch.cfs", true}} {
		mnt := mountComposefs(t, p(c.img), p("objects"))
		t.Logf("%s: compared %d entries", c.img, treecheck.CompareTrees(t, src, mnt, treecheck.Compare{Epoch: c.epoch}))
	}
}

// zeroMtimes rewrites the mtime field (the eighth) of every dump line to 0.0.
func zeroMtimes(t *testing.T, dump []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	for _, line := range bytes.SplitAfter(dump, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		fields := bytes.SplitN(line, []byte(" "), 9)
		if len(fields) < 9 {
			t.Fatalf("short dump line %q", line)
		}
		fields[7] = []byte("0.0")
		out.Write(bytes.Join(fields, []byte(" ")))
	}
	return out.Bytes()
}
