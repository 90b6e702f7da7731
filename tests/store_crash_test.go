package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/store/oci"
	"github.com/gocfs/gocfs/tests/crashtest"
	"github.com/gocfs/gocfs/tests/ocibuild"
	"github.com/gocfs/gocfs/tests/registry"
)

// pullerEnv hands a pull to a re-executed test binary (TestStorePuller).
const pullerEnv = "GOCFS_TEST_PULLER"

type pullerJob struct {
	Repo      string
	Ref       string
	Tag       string
	Bootable  bool
	ClientDir string // the registry's client configuration
}

// TestStorePuller is not a test: TestStoreKilledPulls runs the test binary
// with this test alone to pull in a process it can kill.
func TestStorePuller(t *testing.T) {
	spec := os.Getenv(pullerEnv)
	if spec == "" {
		t.Skip("SKIP: helper of TestStoreKilledPulls, runs only when re-executed by it")
	}
	var job pullerJob
	if err := json.Unmarshal([]byte(spec), &job); err != nil {
		t.Fatal(err)
	}
	repo, err := store.Init(job.Repo, repoOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	ctx, cancel := context.WithTimeout(context.Background(), pullTimeout)
	defer cancel()
	_, err = oci.Pull(ctx, repo, job.Ref, oci.PullOptions{
		Tag: job.Tag, Bootable: job.Bootable, SystemContext: registry.ClientContext(job.ClientDir),
	})
	if err != nil {
		t.Fatal(err)
	}
}

// startPuller runs job in a new process.
func startPuller(t *testing.T, job pullerJob) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	spec, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStorePuller$", "-test.count=1", "-test.timeout=3m")
	cmd.Env = append(os.Environ(), pullerEnv+"="+string(spec))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

// TestStoreKilledPulls kills pulls of the bootable image with SIGKILL at
// random moments. Pulls go in turn to three repositories, each keeping what
// killed pulls left until a pull completes in it, when a fresh one takes
// its place: so most pulls start from the remains of killed ones. After
// every run the repository must check clean; at the end a pull into every
// repository must succeed and give the complete image.
func TestStoreKilledPulls(t *testing.T) {
	reg := registry.Start(t)
	b := pushFixtures(t, reg, map[string]*ocibuild.Image{"boot": ocibuild.BootableImage(1)})["boot"]
	dir := t.TempDir()
	job := pullerJob{Ref: fixtureRef(reg, "boot"), Tag: "boot", Bootable: true, ClientDir: reg.ClientDir()}

	// A whole pull, from process start, sets the range of kill times.
	job.Repo = filepath.Join(dir, "measure")
	start := time.Now()
	cmd, out := startPuller(t, job)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("puller: %v\n%s", err, out)
	}
	whole := time.Since(start)
	t.Logf("a whole pull takes %v", whole)
	rng := crashtest.Rand(t)

	const wantKills, slots, maxRuns = 24, 3, 100
	var repos []string
	slot := make([]string, slots)
	for i := range slot {
		slot[i] = filepath.Join(dir, fmt.Sprint("repo", i))
		repos = append(repos, slot[i])
	}
	kills := 0
	for run := 0; kills < wantKills; run++ {
		if run == maxRuns {
			t.Fatalf("only %d of %d pulls were killed before they finished", kills, run)
		}
		i := run % slots
		job.Repo = slot[i]
		delay := time.Duration(rng.Int64N(int64(whole)))
		cmd, out := startPuller(t, job)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		case <-time.After(delay):
			cmd.Process.Kill()
			err = <-done
		}
		var ee *exec.ExitError
		switch {
		case err == nil:
			slot[i] = filepath.Join(dir, fmt.Sprint("repo", len(repos)))
			repos = append(repos, slot[i])
		case errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL:
			kills++
		default:
			t.Fatalf("run %d: puller failed on its own: %v\n%s", run, err, out)
		}
		// Whatever a kill leaves, the repository opens (Init opens an
		// existing one) and checks clean.
		repo, err := store.Init(job.Repo, repoOptions)
		if err != nil {
			t.Fatalf("run %d (killed after %v): %v", run, delay, err)
		}
		rep, err := repo.Fsck(store.FsckOptions{})
		repo.Close()
		if err != nil {
			t.Fatalf("run %d (killed after %v): fsck: %v", run, delay, err)
		}
		if !rep.OK() {
			j, _ := json.MarshalIndent(rep, "", "  ")
			t.Fatalf("run %d (killed after %v): fsck findings:\n%s", run, delay, j)
		}
	}
	t.Logf("%d pulls killed, %d completed", kills, len(repos)-slots)

	for _, p := range repos {
		repo, err := store.Init(p, repoOptions)
		if err != nil {
			t.Fatal(err)
		}
		res := pull(t, repo, reg, job.Ref, job.Tag, true)
		checkImage(t, repo, res.Image, b, false)
		checkImage(t, repo, res.BootImage, b, true)
		checkLayers(t, repo, b)
		fsckClean(t, repo)
		if _, err := repo.GC(store.GCOptions{}); err != nil {
			t.Fatal(err)
		}
		fsckClean(t, repo)
		checkImage(t, repo, res.BootImage, b, true)
		repo.Close()
	}
}

// TestStorePullsDuringGC pulls images, with a repository each, while GC
// runs over and over: one image pulled and untagged before, sharing most
// layers with another being pulled, is pulled again. Nothing a pull made
// may be lost.
func TestStorePullsDuringGC(t *testing.T) {
	reg := registry.Start(t)
	built := pushFixtures(t, reg, map[string]*ocibuild.Image{
		"base": ocibuild.BaseImage(), "boot1": ocibuild.BootableImage(1), "boot2": ocibuild.BootableImage(2),
	})
	path := filepath.Join(t.TempDir(), "repo")
	repo, err := store.Init(path, repoOptions)
	if err != nil {
		t.Fatal(err)
	}
	pull(t, repo, reg, fixtureRef(reg, "boot1"), "v1", true)
	if err := oci.Untag(repo, "v1"); err != nil {
		t.Fatal(err)
	}
	if err := repo.Close(); err != nil {
		t.Fatal(err)
	}

	type job struct {
		name, tag string
		bootable  bool
	}
	jobs := []job{{"boot2", "v2", true}, {"boot1", "v1", true}, {"base", "base", false}}
	results := make([]*oci.PullResult, len(jobs))
	errs := make(chan error, 100)
	var pulls, gcs sync.WaitGroup
	var stop atomic.Bool
	var pulling, gcRuns atomic.Int64
	pulling.Store(int64(len(jobs)))
	gcs.Add(1)
	go func() {
		defer gcs.Done()
		for !stop.Load() {
			r, err := store.Open(path)
			if err != nil {
				errs <- err
				return
			}
			_, err = r.GC(store.GCOptions{})
			r.Close()
			if err != nil {
				errs <- fmt.Errorf("gc: %w", err)
				return
			}
			if pulling.Load() > 0 {
				gcRuns.Add(1)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for i, j := range jobs {
		pulls.Add(1)
		go func() {
			defer pulls.Done()
			defer pulling.Add(-1)
			// Three times each, with pauses in which GC, which waits
			// for every Repository to close, can run.
			for range 3 {
				time.Sleep(20 * time.Millisecond)
				r, err := store.Open(path)
				if err != nil {
					errs <- err
					return
				}
				res, err := tryPull(r, reg, fixtureRef(reg, j.name), j.tag, j.bootable)
				r.Close()
				if err != nil {
					errs <- fmt.Errorf("pull %s: %w", j.name, err)
					return
				}
				results[i] = res
			}
		}()
	}
	pulls.Wait()
	stop.Store(true)
	gcs.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d collections ran while pulls were going on", gcRuns.Load())
	if gcRuns.Load() == 0 {
		t.Fatal("no collection ran while pulls were going on")
	}

	repo, err = store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	if _, err := repo.GC(store.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, j := range jobs {
		checkImage(t, repo, results[i].Image, built[j.name], false)
		if j.bootable {
			checkImage(t, repo, results[i].BootImage, built[j.name], true)
		}
		checkLayers(t, repo, built[j.name])
	}
	fsckClean(t, repo)
}

// TestStoreCorruptBlobs serves blobs whose content does not match their
// digest, by changing files in the registry's storage: every one must make
// the pull fail, without leaving anything named for the corrupt content,
// and the repository must check clean. Corruptions keep the size and, where
// the format allows, the validity of the blob, so that only a digest check
// can catch them.
func TestStoreCorruptBlobs(t *testing.T) {
	reg := registry.Start(t)
	b := pushFixtures(t, reg, map[string]*ocibuild.Image{"base": ocibuild.BaseImage()})["base"]
	// Layer 3 is an uncompressed archive: a changed byte in a file body
	// keeps it a valid archive.
	busybox := ocibuild.Generate(9, 310000)
	if b.Layers[2].MediaType != "application/vnd.oci.image.layer.v1.tar" {
		t.Fatalf("layer 3 of the base image is %s", b.Layers[2].MediaType)
	}
	replace := func(old, new string) func([]byte) []byte {
		return func(blob []byte) []byte {
			i := bytes.Index(blob, []byte(old))
			if i < 0 || len(old) != len(new) {
				t.Fatalf("cannot corrupt the blob: %q not found", old)
			}
			return append(append(append([]byte(nil), blob[:i]...), new...), blob[i+len(old):]...)
		}
	}
	flip := func(at func(blob []byte) int) func([]byte) []byte {
		return func(blob []byte) []byte {
			c := append([]byte(nil), blob...)
			c[at(c)] ^= 0x20
			return c
		}
	}
	middle := func(blob []byte) int { return len(blob) / 2 }
	for _, tc := range []struct {
		name    string
		blob    digest.Digest
		ref     string
		corrupt func([]byte) []byte
	}{
		{"uncompressed layer", b.Layers[2].Digest, fixtureRef(reg, "base"), flip(func(blob []byte) int {
			i := bytes.Index(blob, busybox[:512])
			if i < 0 {
				t.Fatal("file body not found in the layer")
			}
			return i + 1000
		})},
		{"gzip layer", b.Layers[0].Digest, fixtureRef(reg, "base"), flip(middle)},
		{"zstd layer", b.Layers[1].Digest, fixtureRef(reg, "base"), flip(middle)},
		{"config", b.ConfigDigest, fixtureRef(reg, "base"), replace("base fixture", "base fixturf")},
		{"manifest named by digest", b.ManifestDigest, reg.DigestRef("gocfs/base", b.ManifestDigest), replace("base fixture", "base fixturf")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blobPath := reg.BlobPath(tc.blob)
			orig, err := os.ReadFile(blobPath)
			if err != nil {
				t.Fatal(err)
			}
			bad := tc.corrupt(orig)
			if len(bad) != len(orig) || bytes.Equal(bad, orig) {
				t.Fatal("corruption changed the size or nothing")
			}
			if err := os.WriteFile(blobPath, bad, 0o644); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := os.WriteFile(blobPath, orig, 0o644); err != nil {
					t.Fatal(err)
				}
			}()
			// A fresh repository each time: one that holds the
			// other layers already would not fetch them.
			repo := initRepo(t, t.TempDir())
			_, err = tryPull(repo, reg, tc.ref, "corrupt", false)
			if err == nil {
				t.Fatal("pull of a corrupt blob succeeded")
			}
			t.Logf("pull refused: %v", err)
			refs, err := repo.Refs(store.Streams)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := refs["oci/corrupt"]; ok {
				t.Error("the failed pull created the tag")
			}
			// Streams named by a digest must hold that content.
			for i, l := range b.Layers {
				id := oci.LayerStreamID(l.DiffID)
				if _, ok, err := repo.HasStream(id); err != nil {
					t.Fatal(err)
				} else if ok && digest.FromBytes(streamContent(t, repo, id)) != l.DiffID {
					t.Errorf("the stream of layer %d holds corrupt content", i+1)
				}
			}
			if _, ok, err := repo.HasStream(oci.ConfigStreamID(b.ConfigDigest)); err != nil {
				t.Fatal(err)
			} else if ok && !bytes.Equal(streamContent(t, repo, oci.ConfigStreamID(b.ConfigDigest)), b.Config) {
				t.Error("a config stream holds corrupt content")
			}
			fsckClean(t, repo)
		})
	}

	// With the registry repaired, the pull goes through.
	repo := initRepo(t, t.TempDir())
	res := pull(t, repo, reg, fixtureRef(reg, "base"), "base", false)
	checkImage(t, repo, res.Image, b, false)
}
