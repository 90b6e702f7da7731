package cfsfuse

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/dumpfile"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/store/objects"
	"github.com/gocfs/gocfs/tests/golden"
	"github.com/gocfs/gocfs/tests/treecheck"
	"github.com/gocfs/gocfs/verity"
)

// The benchmarks compare cfsmount with the kernel's mount of the same
// image, each warm (a first pass fills the caches): BenchmarkFUSERead and
// BenchmarkKernelRead read one large external file sequentially,
// BenchmarkFUSEWalk and BenchmarkKernelWalk stat every entry of a 64,000
// entry image (the cs9-x86_64-developer golden vector) and read all its
// xattrs. They need root for the kernel mounts.

const benchFileSize = 512 << 20

var benchImages struct {
	once     sync.Once
	err      error
	dir      string
	readImg  string
	readObjs string
	walkImg  string
}

// benchSetup builds both images once per process, in a directory removed
// by TestMain.
func benchSetup(b *testing.B) {
	b.Helper()
	requireRoot(b)
	treecheck.RequireFUSE(b)
	v := benchVector(b)
	benchImages.once.Do(func() { benchImages.err = buildBenchImages(v) })
	if benchImages.err != nil {
		b.Fatal(benchImages.err)
	}
}

func benchVector(b *testing.B) golden.Vector {
	for _, v := range golden.Vectors(b) {
		if v.Asset == "cs9-x86_64-developer.dump.gz" {
			return v
		}
	}
	b.Fatal("golden vector cs9-x86_64-developer.dump.gz missing")
	return golden.Vector{}
}

func buildBenchImages(v golden.Vector) error {
	dir, err := os.MkdirTemp("", "cfsfuse-bench")
	if err != nil {
		return err
	}
	benchImages.dir = dir
	// One file of random content, stored as an object.
	objs := filepath.Join(dir, "objects")
	data := make([]byte, benchFileSize)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(data)
	digest := verity.DigestBytes(data, verity.SHA256)
	name := objects.Path(digest)
	if err := os.MkdirAll(filepath.Join(objs, name[:2]), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(objs, name), data, 0o644); err != nil {
		return err
	}
	root := &tree.Inode{Mode: tree.TypeDir | 0o755, Nlink: 2}
	root.Insert(&tree.Dirent{Name: "large", Inode: &tree.Inode{
		Mode: tree.TypeReg | 0o644, Nlink: 1, Size: benchFileSize, Payload: name, Digest: digest,
	}})
	benchImages.readObjs = objs
	if benchImages.readImg, err = benchWrite(dir, "read.cfs", root); err != nil {
		return err
	}
	// The walk needs no objects: it opens no file.
	in, err := v.Input()
	if err != nil {
		return err
	}
	if root, err = dumpfile.Parse(bytes.NewReader(in), dumpfile.ParseOptions{Strict: v.Strict}); err != nil {
		return err
	}
	benchImages.walkImg, err = benchWrite(dir, "walk.cfs", root)
	return err
}

func benchWrite(dir, name string, root *tree.Inode) (string, error) {
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, err = erofs.Write(f, root, erofs.WriteOptions{})
	return p, err
}

func TestMain(m *testing.M) {
	if dir := os.Getenv(snapshotEnv); dir != "" {
		os.Exit(snapshotChild(dir))
	}
	code := m.Run()
	if benchImages.dir != "" {
		os.RemoveAll(benchImages.dir)
	}
	os.Exit(code)
}

func BenchmarkFUSERead(b *testing.B) {
	benchSetup(b)
	benchRead(b, mountFUSE(b, benchImages.readImg, Options{ObjectDirs: []string{benchImages.readObjs}}), false)
}

// BenchmarkFUSEReadNoPassthrough reads as unprivileged mounts do, through
// this process, with the page cache of the FUSE file dropped before each
// pass so that every byte goes through it.
func BenchmarkFUSEReadNoPassthrough(b *testing.B) {
	benchSetup(b)
	benchRead(b, mountFUSE(b, benchImages.readImg, Options{ObjectDirs: []string{benchImages.readObjs}, NoPassthrough: true}), true)
}

func BenchmarkKernelRead(b *testing.B) {
	benchSetup(b)
	benchRead(b, mountKernel(b, benchImages.readImg, benchImages.readObjs), false)
}

// benchRead reads the large file of mnt b.N times. With dropCache, the
// page cache of the file read is dropped before each pass: files of a FUSE
// mount without passthrough have their own, which would otherwise serve
// every pass but the first. (Dropping it elsewhere would drop the cache of
// the object itself: overlayfs passes the advice on.)
func benchRead(b *testing.B, mnt string, dropCache bool) {
	p := filepath.Join(mnt, "large")
	buf := make([]byte, 1<<20)
	read := func() {
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if dropCache {
			if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
				b.Fatal(err)
			}
		}
		n, err := io.CopyBuffer(io.Discard, onlyReader{f}, buf)
		if err != nil || n != benchFileSize {
			b.Fatalf("read %d bytes: %v", n, err)
		}
	}
	read()
	b.SetBytes(benchFileSize)
	b.ResetTimer()
	for range b.N {
		read()
	}
}

func BenchmarkFUSEWalk(b *testing.B) {
	benchSetup(b)
	benchWalk(b, mountFUSE(b, benchImages.walkImg, Options{}))
}

func BenchmarkKernelWalk(b *testing.B) {
	benchSetup(b)
	benchWalk(b, mountKernel(b, benchImages.walkImg, b.TempDir()))
}

func benchWalk(b *testing.B, mnt string) {
	w := &walker{buf: make([]byte, 64<<10)}
	w.walk(b, mnt)
	b.ResetTimer()
	for range b.N {
		w.walk(b, mnt)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*w.n), "ns/entry")
}

// walker stats every entry below a directory and reads all its xattrs.
type walker struct {
	buf  []byte
	vbuf [64 << 10]byte
	n    int
}

func (w *walker) walk(b *testing.B, dir string) {
	w.n = 0
	w.dir(b, dir)
}

func (w *walker) dir(b *testing.B, dir string) {
	var subdirs []string
	ents, err := readDirents(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range ents {
		if e.name == "." || e.name == ".." {
			continue
		}
		p := dir + "/" + e.name
		w.n++
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			b.Fatalf("lstat %s: %v", p, err)
		}
		n, err := unix.Llistxattr(p, w.buf)
		if err != nil {
			b.Fatalf("listxattr %s: %v", p, err)
		}
		for names := w.buf[:n]; len(names) > 0; {
			i := bytes.IndexByte(names, 0)
			// Errors are expected: user.* of symlinks cannot be read.
			unix.Lgetxattr(p, string(names[:i]), w.vbuf[:])
			names = names[i+1:]
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			subdirs = append(subdirs, p)
		}
	}
	for _, d := range subdirs {
		w.dir(b, d)
	}
}
