package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gocfs/gocfs/store/splitstream"
	"github.com/gocfs/gocfs/tests/crashtest"
)

// The crash test re-executes the test binary as a writer process (these
// variables select the mode) and kills it at random moments.
const (
	crashRepoEnv = "GOCFS_STORE_CRASH_REPO"
	crashSeedEnv = "GOCFS_STORE_CRASH_SEED"
	crashGCEnv   = "GOCFS_STORE_CRASH_GC"
)

func TestMain(m *testing.M) {
	if repo := os.Getenv(crashGCEnv); repo != "" {
		err := crashCollector(repo)
		fmt.Fprintln(os.Stderr, "crash collector:", err)
		os.Exit(2)
	}
	if repo := os.Getenv(crashRepoEnv); repo != "" {
		seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
		err := crashWriter(repo, seed)
		fmt.Fprintln(os.Stderr, "crash writer:", err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// crashWriter stores objects, streams, images and refs in a loop until it
// is killed or fails.
func crashWriter(path string, seed uint64) error {
	r, err := Open(path)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(seed, uint64(os.Getpid())))
	content := func() []byte {
		// Sizes up to 1 MiB, so that kills land inside writes; some
		// contents repeat, so that some writes deduplicate.
		b := make([]byte, rng.IntN(1<<20))
		fill := rand.New(rand.NewPCG(uint64(rng.IntN(20)), 1))
		for i := range b {
			b[i] = byte(fill.Uint32())
		}
		return b
	}
	var prev []byte
	for i := 0; ; i++ {
		w := splitstream.NewWriter(r.Algorithm(), splitstream.ContentTypeOCILayer)
		files := map[string][]byte{}
		for j := range 1 + rng.IntN(4) {
			b := content()
			d, err := r.EnsureObject(bytes.NewReader(b))
			if err != nil {
				return err
			}
			w.WriteInline([]byte(fmt.Sprintf("header %d", j)))
			w.WriteExternal(d, int64(len(b)))
			files[fmt.Sprint("f", j)] = b
		}
		if prev != nil {
			w.AddNamedRef("previous", prev)
		}
		id := fmt.Sprintf("w-%d-%d", os.Getpid(), i)
		d, err := r.WriteStream(id, w, fmt.Sprintf("keep/%d", i%4))
		if err != nil {
			return err
		}
		if err := r.SetRef(Streams, "latest", id); err != nil {
			return err
		}
		if i%3 == 0 {
			img, err := buildImage(r, files)
			if err != nil {
				return err
			}
			if _, err := r.WriteImage(bytes.NewReader(img), "latest"); err != nil {
				return err
			}
		}
		if i%5 == 4 {
			if err := r.DeleteRef(Streams, fmt.Sprintf("keep/%d", rng.IntN(4))); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		prev = d
	}
}

// TestCrashSafety kills a writer with SIGKILL at random moments, then
// checks that the repository is sound (no half-written object under a
// final name, no dangling entry or ref) and that work and GC go on.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP: kills 25 writer processes; not in -short mode")
	}
	dir := filepath.Join(t.TempDir(), "repo")
	r, err := Init(dir, InitOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	rng := crashtest.Rand(t)
	const iterations = 25
	for iter := range iterations {
		crashtest.KillAfter(t, time.Duration(50+rng.IntN(700))*time.Millisecond,
			crashRepoEnv+"="+dir, crashSeedEnv+"="+strconv.FormatUint(rng.Uint64(), 10))

		r, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := r.Fsck(FsckOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() {
			t.Fatalf("iteration %d: fsck after the kill: %q", iter, kinds(rep, true))
		}
		// Work goes on: store more, collect garbage now and then.
		mustStream(t, r, fmt.Sprint("after-", iter), "", streamSpec{objects: [][]byte{data(1000+iter, byte(iter))}})
		if iter%5 == 4 || iter == iterations-1 {
			if _, err := r.GC(GCOptions{}); err != nil {
				t.Fatalf("iteration %d: GC: %v", iter, err)
			}
			rep, err := r.Fsck(FsckOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() || len(rep.TempFiles) != 0 {
				t.Fatalf("iteration %d: fsck after GC: %q, temp files %q", iter, kinds(rep, true), rep.TempFiles)
			}
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	r, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	refs, err := r.Refs(Streams)
	if err != nil {
		t.Fatal(err)
	}
	if refs["latest"] == "" {
		t.Errorf("no writer got as far as a ref in %d runs: %v", iterations, refs)
	}
	t.Logf("refs at the end: %v", refs)
}

// crashCollector runs GC until it is killed.
func crashCollector(path string) error {
	r, err := Open(path)
	if err != nil {
		return err
	}
	for {
		if _, err := r.GC(GCOptions{}); err != nil {
			return err
		}
	}
}

// TestGCCrashSafety kills GC with SIGKILL at random moments while it
// removes garbage: what the refs reach must survive whole, and fsck must
// find nothing but leftover garbage.
func TestGCCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP: kills 20 GC processes; not in -short mode")
	}
	dir := filepath.Join(t.TempDir(), "repo")
	r, err := Init(dir, InitOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	rng := crashtest.Rand(t)
	for iter := range 20 {
		// Garbage to collect: streams and images whose refs go away, and
		// one that stays.
		r, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		for j := range 30 {
			b := data(20000+rng.IntN(200000), byte(iter*31+j))
			mustStream(t, r, fmt.Sprintf("gone-%d-%d", iter, j), "", streamSpec{objects: [][]byte{b}})
			img, err := buildImage(r, map[string][]byte{"f": b})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.WriteImage(bytes.NewReader(img), ""); err != nil {
				t.Fatal(err)
			}
		}
		kept := data(5000+iter, byte(iter))
		mustStream(t, r, fmt.Sprint("kept-", iter), fmt.Sprint("kept/", iter), streamSpec{objects: [][]byte{kept}})
		r.Close()

		crashtest.KillAfter(t, time.Duration(rng.IntN(300))*time.Millisecond, crashGCEnv+"="+dir)

		r, err = Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := r.Fsck(FsckOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() {
			t.Fatalf("iteration %d: fsck after killing GC: %q", iter, kinds(rep, true))
		}
		for i := 0; i <= iter; i++ {
			if _, _, err := r.OpenStream(fmt.Sprint("kept-", i)); err != nil {
				t.Fatalf("iteration %d: kept stream %d lost: %v", iter, i, err)
			}
		}
		r.Close()
	}
}
