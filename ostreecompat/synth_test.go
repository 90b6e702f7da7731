package ostreecompat

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/ostreecompat/ostree"
	"github.com/gocfs/gocfs/ostreecompat/ostree/ostreetest"
	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/store/objects"
	"github.com/gocfs/gocfs/store/oci"
	"github.com/gocfs/gocfs/tests/ocibuild"
	"github.com/gocfs/gocfs/tests/treecheck"
	"github.com/gocfs/gocfs/verity"
)

// synthStore makes an insecure store in dir (a new temporary directory when
// empty).
func synthStore(t testing.TB, dir string, alg verity.Algorithm) *store.Repository {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	st, err := store.Init(filepath.Join(dir, "store"), store.InitOptions{Insecure: true, Algorithm: alg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// synthImage stores the files of root larger than inline bytes as objects
// of the store (their content leaves the tree) and root as an image named
// ref, and returns the image's digest.
func synthImage(t testing.TB, st *store.Repository, root *tree.Inode, inline int, ref string) string {
	t.Helper()
	img, err := storeImage(st, root, inline, ref)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func storeImage(st *store.Repository, root *tree.Inode, inline int, ref string) (string, error) {
	seen := map[*tree.Inode]bool{}
	err := tree.Walk(root, func(p string, d *tree.Dirent) error {
		n := d.Inode
		if !n.IsReg() || seen[n] || len(n.Content) <= inline {
			return nil
		}
		seen[n] = true
		dg, err := st.EnsureObject(bytes.NewReader(n.Content))
		if err != nil {
			return err
		}
		n.Content, n.Payload, n.Digest = nil, objects.Path(dg), dg
		return nil
	})
	if err != nil {
		return "", err
	}
	var img bytes.Buffer
	if _, err := erofs.Write(&img, root, erofs.WriteOptions{}); err != nil {
		return "", err
	}
	id, err := st.WriteImage(&img, ref)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(id), nil
}

func synthRepo(t testing.TB, dir string, mode ostree.Mode) *ostree.Repo {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	r, err := ostree.Create(filepath.Join(dir, "repo"), mode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func synthModes(t *testing.T) []ostree.Mode {
	if os.Geteuid() != 0 {
		t.Log("not root: bare mode left out")
		return []ostree.Mode{ostree.ModeBareUser}
	}
	return []ostree.Mode{ostree.ModeBare, ostree.ModeBareUser}
}

// goldenLayout is the golden tree v2 as a synthesized commit holds it.
func goldenLayout(t *testing.T) *tree.Inode {
	root := ostreetest.TarTree(t, filepath.Join(ostreetest.GoldenDir(t), "input", "tree-v2.tar"))
	if err := ostreeLayout(root); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestSynthesizeGolden synthesizes the commit of the golden tree v2 (every
// non-empty file an object of the store) and checks it against the tree
// written directly, with ostree fsck, an ostree checkout and
// VerifySynthesized.
func TestSynthesizeGolden(t *testing.T) {
	for _, mode := range synthModes(t) {
		for _, alg := range []verity.Algorithm{verity.SHA256, verity.SHA512} {
			t.Run(fmt.Sprint(mode, "-", alg), func(t *testing.T) {
				st := synthStore(t, "", alg)
				src := ostreetest.TarTree(t, filepath.Join(ostreetest.GoldenDir(t), "input", "tree-v2.tar"))
				img := synthImage(t, st, src, 0, "golden")
				r := synthRepo(t, "", mode)
				var stats SynthStats
				commit, err := Synthesize(context.Background(), st, "golden", r, SynthOptions{Branch: "synth/golden", Copy: true, Stats: &stats, Subject: "s"})
				if err != nil {
					t.Fatal(err)
				}
				if stats.Reflinked+stats.Copied != 8 || stats.Inline != 1 {
					t.Errorf("stats %+v, want 8 files cloned or copied and 1 inline (the empty one)", stats)
				}
				want, err := ostree.ChecksumTree(goldenLayout(t), nil)
				if err != nil {
					t.Fatal(err)
				}
				c, err := r.ReadCommit(commit)
				if err != nil {
					t.Fatal(err)
				}
				if c.RootTree != want.Tree || c.RootMeta != want.Meta || c.Subject != "s" {
					t.Errorf("commit root %s %s, want %s %s", c.RootTree, c.RootMeta, want.Tree, want.Meta)
				}
				if got, _ := r.ResolveRef("synth/golden"); got != commit {
					t.Errorf("ref names %s, want %s", got, commit)
				}
				if v, ok := c.Lookup(KeySynthesizedFrom); !ok || v.Value != img {
					t.Errorf("%s = %v, want %s", KeySynthesizedFrom, v.Value, img)
				}
				if _, ok := c.Lookup(KeyManifestDigest); ok {
					t.Errorf("OCI metadata on a commit of a plain image")
				}
				cfs, ok := c.Lookup(KeyComposefsDigest)
				d, err := WriteComposefsImage(r, commit, io.Discard)
				if err != nil || !ok || !bytes.Equal(cfs.Value.([]byte), d) {
					t.Errorf("%s = %x, image digest %x (%v)", KeyComposefsDigest, cfs.Value, d, err)
				}
				if err := r.VerifyCommit(commit); err != nil {
					t.Error(err)
				}
				if err := VerifySynthesized(context.Background(), st, img, r, commit); err != nil {
					t.Error(err)
				}
				// The same image again: every object exists, same commit.
				stats = SynthStats{}
				again, err := Synthesize(context.Background(), st, img, r, SynthOptions{Subject: "s", Timestamp: timeOf(c), Stats: &stats})
				if err != nil || again != commit || stats.Existing != 8 {
					t.Errorf("second synthesis: %s %v %+v, want %s and 8 existing", again, err, stats, commit)
				}
				t.Run("fsck", func(t *testing.T) { ostreetest.Fsck(t, r.Path()) })
				t.Run("checkout", func(t *testing.T) {
					treecheck.RequireRoot(t)
					co := filepath.Join(t.TempDir(), "co")
					ostreetest.Run(t, "checkout", "--repo="+r.Path(), commit, co)
					ostreetest.CompareDir(t, co, goldenLayout(t), func(n *tree.Inode) []byte { return n.Content }, func(string) bool { return false })
				})
			})
		}
	}
}

// TestVerifySynthesizedMismatch: another image's commit, a commit that is
// not synthesized, a missing object.
func TestVerifySynthesizedMismatch(t *testing.T) {
	st := synthStore(t, "", verity.SHA256)
	a := synthImage(t, st, synthTree(t, 20, 1), 64, "a")
	b := synthImage(t, st, synthTree(t, 20, 2), 64, "b")
	r := synthRepo(t, "", ostree.ModeBareUser)
	ctx := context.Background()
	ca, err := Synthesize(ctx, st, a, r, SynthOptions{Copy: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySynthesized(ctx, st, b, r, ca); err == nil || !strings.Contains(err.Error(), "synthesized from image") {
		t.Errorf("commit of a checked against b: %v", err)
	}
	plain, err := r.WriteCommit(&ostree.Commit{RootTree: mustCommit(t, r, ca).RootTree, RootMeta: mustCommit(t, r, ca).RootMeta, Timestamp: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySynthesized(ctx, st, a, r, plain); err == nil || !strings.Contains(err.Error(), "not synthesized") {
		t.Errorf("plain commit: %v", err)
	}
	// Remove one content object.
	m, _ := filepath.Glob(filepath.Join(r.Path(), "objects", "*", "*.file"))
	if len(m) == 0 {
		t.Fatal("no file objects")
	}
	if err := os.Remove(m[0]); err != nil {
		t.Fatal(err)
	}
	if err := VerifySynthesized(ctx, st, a, r, ca); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing object: %v", err)
	}
}

func mustCommit(t *testing.T, r *ostree.Repo, c string) *ostree.Commit {
	t.Helper()
	cm, err := r.ReadCommit(c)
	if err != nil {
		t.Fatal(err)
	}
	return cm
}

// TestSynthesizeRefuses: names and targets that are not UTF-8, devices,
// and a filesystem that cannot clone without Copy.
func TestSynthesizeRefuses(t *testing.T) {
	dir := func(entries ...*tree.Dirent) *tree.Inode {
		n := &tree.Inode{Mode: tree.TypeDir | 0o755}
		for _, e := range entries {
			if err := n.Insert(e); err != nil {
				t.Fatal(err)
			}
		}
		return n
	}
	file := func(name string, n *tree.Inode) *tree.Dirent { return &tree.Dirent{Name: name, Inode: n} }
	reg := &tree.Inode{Mode: tree.TypeReg | 0o644, Content: []byte("x"), Size: 1}
	for _, tc := range []struct {
		name string
		root *tree.Inode
		want string
	}{
		{"name", dir(file("sub", dir(file("bad\xff", reg)))), `/sub/bad\xff`},
		{"target", dir(file("link", &tree.Inode{Mode: tree.TypeLnk | 0o777, Payload: "to\xfe", Size: 3})), `"/link"`},
		{"device", dir(file("dev0", &tree.Inode{Mode: tree.TypeChr | 0o600, Rdev: 0x103})), `"/dev0": file type`},
		{"fifo", dir(file("var", dir(file("p", &tree.Inode{Mode: tree.TypeFifo | 0o600})))), `"/var/p": file type`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := synthStore(t, "", verity.SHA256)
			img := synthImage(t, st, tc.root, 64, "x")
			r := synthRepo(t, "", ostree.ModeBareUser)
			_, err := Synthesize(context.Background(), st, img, r, SynthOptions{Copy: true})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error naming %s", err, tc.want)
			}
			if refs, _ := r.Refs(); len(refs) != 0 {
				t.Errorf("refs %v after a failure", refs)
			}
		})
	}
	// /dev keeps no entries, so a device there is no problem.
	st := synthStore(t, "", verity.SHA256)
	img := synthImage(t, st, dir(file("dev", dir(file("null", &tree.Inode{Mode: tree.TypeChr | 0o666, Rdev: 0x103})))), 64, "dev")
	r := synthRepo(t, "", ostree.ModeBareUser)
	if _, err := Synthesize(context.Background(), st, img, r, SynthOptions{Copy: true}); err != nil {
		t.Errorf("device under /dev: %v", err)
	}
}

// TestSynthesizeNoReflink: without Copy, a filesystem without reflinks
// fails the synthesis with ErrNoReflink and leaves no ref.
func TestSynthesizeNoReflink(t *testing.T) {
	dir := t.TempDir()
	if ok, _ := ProbeReflink(dir, dir); ok {
		t.Skip("SKIP: the temporary directory's filesystem has reflinks")
	}
	st := synthStore(t, dir, verity.SHA256)
	img := synthImage(t, st, synthTree(t, 10, 3), 64, "x")
	r := synthRepo(t, dir, ostree.ModeBareUser)
	_, err := Synthesize(context.Background(), st, img, r, SynthOptions{Branch: "b"})
	if !errors.Is(err, ErrNoReflink) {
		t.Fatalf("got %v, want ErrNoReflink", err)
	}
	if _, err := r.ResolveRef("b"); err == nil {
		t.Error("ref written after a failure")
	}
}

// TestSynthesizeReflink clones on XFS: every external file is reflinked.
func TestSynthesizeReflink(t *testing.T) {
	mnt := synthXFS(t)
	st := synthStore(t, mnt, verity.SHA512)
	root := synthTree(t, 200, 4)
	img := synthImage(t, st, root, 64, "x")
	r := synthRepo(t, mnt, ostree.ModeBare)
	var stats SynthStats
	commit, err := Synthesize(context.Background(), st, img, r, SynthOptions{Stats: &stats})
	if err != nil {
		t.Fatal(err)
	}
	ext := 0
	tree.Walk(root, func(_ string, d *tree.Dirent) error {
		if d.Inode.IsReg() && d.Inode.Payload != "" && !d.Hardlink {
			ext++
		}
		return nil
	})
	if stats.Reflinked != int64(ext) || stats.Copied != 0 {
		t.Errorf("stats %+v, want %d reflinked", stats, ext)
	}
	if err := r.VerifyCommit(commit); err != nil {
		t.Error(err)
	}
	ostreetest.Fsck(t, r.Path())
}

// synthXFS mounts a new XFS filesystem with reflinks through a loop device
// for the test, or skips it.
func synthXFS(t *testing.T) string {
	t.Helper()
	treecheck.RequireRoot(t)
	treecheck.RequireFilesystems(t, "xfs")
	for _, tool := range []string{"mkfs.xfs", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s not installed (Debian packages xfsprogs, mount)", tool)
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "xfs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 320<<20); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"mkfs.xfs", "-q", "-m", "reflink=1", img}, {"mount", "-t", "xfs", "-o", "loop", img, mnt}} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// TestSynthesizeOCI synthesizes the commit of a pulled bootable OCI image,
// named by tag and by its boot image's digest: bootc's metadata, the
// kernel, the ostree layout, the image's creation time.
func TestSynthesizeOCI(t *testing.T) {
	ctx := context.Background()
	b := ocibuild.MustBuild(ocibuild.BootableImage(1))
	layout := t.TempDir()
	if err := b.WriteLayout(layout, "latest"); err != nil {
		t.Fatal(err)
	}
	st := synthStore(t, "", verity.SHA512)
	res, err := oci.Pull(ctx, st, "oci:"+layout+":latest", oci.PullOptions{Tag: "os", Bootable: true})
	if err != nil {
		t.Fatal(err)
	}
	r := synthRepo(t, "", ostree.ModeBareUser)
	byTag, err := Synthesize(ctx, st, "os", r, SynthOptions{Copy: true, Branch: "os"})
	if err != nil {
		t.Fatal(err)
	}
	byBoot, err := Synthesize(ctx, st, res.BootImage.String(), r, SynthOptions{Copy: true})
	if err != nil {
		t.Fatal(err)
	}
	if byTag == byBoot {
		t.Errorf("the plain and the boot image gave the same commit %s", byTag)
	}
	for _, tc := range []struct {
		commit, image string
	}{{byTag, res.Image.String()}, {byBoot, res.BootImage.String()}} {
		c := mustCommit(t, r, tc.commit)
		var keys []string
		for _, m := range c.Metadata {
			keys = append(keys, m.Key)
		}
		want := []string{KeyManifestDigest, KeyManifest, KeyImageConfig, KeyConfigDigest, KeyBootcSynth,
			KeyBootable, KeyLinux, KeySynthesizedFrom, KeyComposefsDigest}
		if strings.Join(keys, " ") != strings.Join(want, " ") {
			t.Errorf("metadata keys %q, want %q", keys, want)
		}
		for k, v := range map[string]any{
			KeyManifestDigest:  b.ManifestDigest.String(),
			KeyManifest:        string(b.Manifest),
			KeyImageConfig:     string(b.Config),
			KeyConfigDigest:    b.ConfigDigest.String(),
			KeyBootcSynth:      true,
			KeyBootable:        true,
			KeyLinux:           "6.1.0-1",
			KeySynthesizedFrom: tc.image,
		} {
			if got, _ := c.Lookup(k); got.Value != v {
				t.Errorf("%s = %v, want %v", k, got.Value, v)
			}
		}
		if c.Timestamp != uint64(b.Image.Created) {
			t.Errorf("timestamp %d, want the image's creation time %d", c.Timestamp, b.Image.Created)
		}
		got, err := r.ReadTree(ostree.Root{Tree: c.RootTree, Meta: c.RootMeta})
		if err != nil {
			t.Fatal(err)
		}
		for p, want := range map[string]bool{"usr/etc/fstab": true, "usr/etc/motd": true, "etc": false,
			"usr/sbin/init": true, "tmp": true, "run": true, "proc": true} {
			if _, err := tree.Resolve(got, p); (err == nil) != want {
				t.Errorf("/%s: %v, want present %v", p, err, want)
			}
		}
		for _, d := range []string{"tmp", "run", "proc", "sys", "dev"} {
			if n, err := tree.Resolve(got, d); err == nil && len(n.Entries) != 0 {
				t.Errorf("/%s not empty", d)
			}
		}
		if err := VerifySynthesized(ctx, st, tc.image, r, tc.commit); err != nil {
			t.Error(err)
		}
	}
	ostreetest.Fsck(t, r.Path())
}
