package ostreecompat

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/ostreecompat/ostree"
	"github.com/gocfs/gocfs/ostreecompat/ostree/ostreetest"
	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/tests/crashtest"
	"github.com/gocfs/gocfs/verity"
)

func timeOf(c *ostree.Commit) time.Time { return time.Unix(int64(c.Timestamp), 0) }

// synthTree generates a tree of about n entries: directories, symlinks,
// hardlinks and regular files from empty to 256 KiB (some with the same
// content), various owners and modes, user xattrs and SELinux labels stored
// without their NUL, as composefs-rs stores them.
func synthTree(t testing.TB, n int, seed uint64) *tree.Inode {
	t.Helper()
	root, err := genTree(n, seed)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func genTree(n int, seed uint64) (*tree.Inode, error) {
	r := rand.New(rand.NewPCG(seed, 7))
	mtime := tree.Timespec{Sec: 1700000000}
	var err error
	insert := func(parent *tree.Inode, d *tree.Dirent) {
		if e := parent.Insert(d); e != nil && err == nil {
			err = e
		}
	}
	mkdir := func(parent *tree.Inode, name string) *tree.Inode {
		d := &tree.Inode{Mode: tree.TypeDir | 0o755, Nlink: 2, Mtime: mtime}
		insert(parent, &tree.Dirent{Name: name, Inode: d})
		return d
	}
	root := &tree.Inode{Mode: tree.TypeDir | 0o755, Nlink: 2, Mtime: mtime}
	usr := mkdir(root, "usr")
	dirs := []*tree.Inode{root, usr, mkdir(usr, "lib"), mkdir(root, "etc"), mkdir(root, "var")}
	var files []*tree.Inode
	for i := range n {
		parent := dirs[r.IntN(len(dirs))]
		name := fmt.Sprintf("e%d", i)
		var e *tree.Inode
		switch k := r.IntN(40); {
		case k < 2:
			dirs = append(dirs, mkdir(parent, name))
			continue
		case k < 4:
			target := fmt.Sprintf("../target-%d", r.IntN(50))
			e = &tree.Inode{Mode: tree.TypeLnk | 0o777, Payload: target, Size: uint64(len(target)), Mtime: mtime}
		case k < 5 && len(files) > 0:
			f := files[r.IntN(len(files))]
			insert(parent, &tree.Dirent{Name: name, Inode: f, Hardlink: true})
			f.Nlink++
			continue
		default:
			size := 0
			switch s := r.IntN(20); {
			case s < 2:
			case s < 10:
				size = 1 + r.IntN(64)
			case s < 19:
				size = 65 + r.IntN(16<<10)
			default:
				size = 16<<10 + r.IntN(240<<10)
			}
			content := make([]byte, size)
			fill := rand.New(rand.NewPCG(uint64(r.IntN(n/4+1)), uint64(size)))
			for j := range content {
				content[j] = byte(fill.Uint32())
			}
			mode := []uint32{0o644, 0o644, 0o755, 0o600, 0o4755, 0o640}[r.IntN(6)]
			e = &tree.Inode{Mode: tree.TypeReg | mode, Content: content, Size: uint64(size), Nlink: 1, Mtime: mtime}
			if r.IntN(5) == 0 {
				e.UID, e.GID = 1000, 1001
			}
			files = append(files, e)
		}
		switch r.IntN(10) {
		case 0:
			e.Xattrs = []tree.Xattr{{Name: "user.test", Value: fmt.Sprint("v", r.IntN(3))}}
		case 1:
			e.Xattrs = []tree.Xattr{{Name: "security.selinux", Value: "system_u:object_r:usr_t:s0"}}
		}
		if e.IsSymlink() && len(e.Xattrs) > 0 && strings.HasPrefix(e.Xattrs[0].Name, "user.") {
			e.Xattrs = nil // Linux refuses user xattrs on symlinks.
		}
		insert(parent, &tree.Dirent{Name: name, Inode: e})
	}
	tree.MarkHardlinks(root)
	return root, err
}

// The kill test re-executes the test binary as a synthesizing process,
// which this variable selects, and kills it at random moments.
const synthKillEnv = "GOCFS_OSTREECOMPAT_SYNTH_KILL"

func init() {
	if dir := os.Getenv(synthKillEnv); dir != "" {
		err := synthKillChild(dir)
		fmt.Fprintln(os.Stderr, "synthesizing process:", err)
		os.Exit(2)
	}
}

// synthKillChild synthesizes the images listed in dir/images, in turn, into
// dir/repo until it is killed or fails.
func synthKillChild(dir string) error {
	st, err := store.Open(filepath.Join(dir, "store"))
	if err != nil {
		return err
	}
	r, err := ostree.Open(filepath.Join(dir, "repo"))
	if err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(dir, "images"))
	if err != nil {
		return err
	}
	images := strings.Fields(string(b))
	for i := 0; ; i++ {
		// Every other round a new image, whose files are new objects;
		// a new subject each time, so a new commit each time.
		img := images[i%len(images)]
		if i%2 == 1 {
			root, err := genTree(300, uint64(os.Getpid())<<16|uint64(i))
			if err != nil {
				return err
			}
			if img, err = storeImage(st, root, 64, ""); err != nil {
				return err
			}
		}
		_, err := Synthesize(context.Background(), st, img, r, SynthOptions{
			Branch:  fmt.Sprintf("kill/%d", i%3),
			Copy:    true,
			Subject: fmt.Sprintf("round %d of %d", i, os.Getpid()),
		})
		if err != nil {
			return err
		}
	}
}

// TestSynthesizeKilled kills synthesizing processes with SIGKILL at random
// moments: afterwards every object under its final name is whole, every
// commit object has its whole tree, every ref names such a commit, and
// ostree fsck agrees.
func TestSynthesizeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP: kills 12 synthesizing processes; not in -short mode")
	}
	dir := t.TempDir()
	mode := ostree.ModeBareUser
	if os.Geteuid() == 0 {
		mode = ostree.ModeBare
	}
	st := synthStore(t, dir, verity.SHA256)
	var images []string
	for i := range 4 {
		images = append(images, synthImage(t, st, synthTree(t, 600, uint64(10+i)), 64, fmt.Sprint("img", i)))
	}
	if err := os.WriteFile(filepath.Join(dir, "images"), []byte(strings.Join(images, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	st.Close()
	r := synthRepo(t, dir, mode)
	r.Close()

	rng := crashtest.Rand(t)
	refs := 0
	checked := map[string]bool{}
	for iter := range 12 {
		crashtest.KillAfter(t, time.Duration(100+rng.IntN(1500))*time.Millisecond, synthKillEnv+"="+dir)
		n := synthCheckRepo(t, filepath.Join(dir, "repo"), checked)
		refs = max(refs, n)
		t.Logf("iteration %d: %d refs", iter, n)
	}
	if refs == 0 {
		t.Errorf("no synthesis got as far as a ref in 12 runs")
	}
	synthCheckFsck(t, filepath.Join(dir, "repo"))
}

// synthCheckRepo checks every object of the repository not checked before
// (objects never change) and every ref, and returns the number of refs.
func synthCheckRepo(t *testing.T, path string, checked map[string]bool) int {
	t.Helper()
	r, err := ostree.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	objs, err := filepath.Glob(filepath.Join(path, "objects", "*", "*.*"))
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]ostree.ObjectType{".file": ostree.ObjFile, ".dirtree": ostree.ObjDirTree, ".dirmeta": ostree.ObjDirMeta, ".commit": ostree.ObjCommit}
	for _, o := range objs {
		if checked[o] {
			continue
		}
		checked[o] = true
		ext := filepath.Ext(o)
		sum := filepath.Base(filepath.Dir(o)) + strings.TrimSuffix(filepath.Base(o), ext)
		typ, ok := types[ext]
		if !ok {
			t.Errorf("%s: unexpected object", o)
			continue
		}
		switch typ {
		case ostree.ObjFile:
			err = r.VerifyFile(sum)
		case ostree.ObjCommit:
			// Its files are checked one by one: here its tree must be
			// complete.
			var c *ostree.Commit
			if c, err = r.ReadCommit(sum); err == nil {
				err = checkPresent(r, ostree.Root{Tree: c.RootTree, Meta: c.RootMeta})
			}
		default:
			_, err = r.ReadObject(typ, sum)
		}
		if err != nil {
			t.Errorf("%s: %v", o, err)
		}
	}
	refs, err := r.Refs()
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range refs {
		if !checked[filepath.Join(path, "objects", ostree.LoosePath(c, ostree.ObjCommit))] {
			t.Errorf("ref %s names commit %s, which is missing", name, c)
		}
	}
	return len(refs)
}

func synthCheckFsck(t *testing.T, path string) {
	t.Helper()
	if _, err := exec.LookPath("ostree"); err != nil {
		t.Log("ostree CLI not installed: fsck left out")
		return
	}
	ostreetest.Fsck(t, path)
}

// BenchmarkSynthesize synthesizes the commit of a generated image of
// about 10,000 files (100 MB) from a store into a new repository on the
// same filesystem: the temporary directory, or GOCFS_SYNTH_BENCH_DIR
// (reflinks where it is XFS or btrfs, copies elsewhere).
func BenchmarkSynthesize(b *testing.B) {
	dir := os.Getenv("GOCFS_SYNTH_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	} else {
		var err error
		if dir, err = os.MkdirTemp(dir, "synth-bench-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
	}
	mode := ostree.ModeBareUser
	if os.Geteuid() == 0 {
		mode = ostree.ModeBare
	}
	st := synthStore(b, dir, verity.SHA512)
	root := synthTree(b, 10000, 1)
	var files, bytes int64
	tree.Walk(root, func(_ string, d *tree.Dirent) error {
		if d.Inode.IsReg() && !d.Hardlink {
			files++
			bytes += int64(d.Inode.Size)
		}
		return nil
	})
	img := synthImage(b, st, root, 64, "bench")
	b.SetBytes(bytes)
	var stats SynthStats
	i := 0
	for b.Loop() {
		b.StopTimer()
		repo := filepath.Join(dir, "repo-"+strconv.Itoa(i))
		r, err := ostree.Create(repo, mode)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := Synthesize(context.Background(), st, img, r, SynthOptions{Copy: true, Stats: &stats}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		r.Close()
		os.RemoveAll(repo)
		b.StartTimer()
		i++
	}
	b.ReportMetric(float64(files)*float64(b.N)/b.Elapsed().Seconds(), "files/s")
	b.Logf("%d files, %d bytes; last run: %+v", files, bytes, stats)
}
