// Package store is a composefs repository: a content-addressed object store
// with splitstreams, EROFS images and named references, laid out as
// composefs-rs lays it out so that cfsctl and this package understand each
// other's repositories:
//
//	meta.json                    version, fs-verity algorithm, features
//	objects/XX/<rest>            file contents, named by fs-verity digest
//	streams/<id>                 -> ../objects/XX/<rest>  (splitstreams)
//	streams/refs/<name>          -> ../<id> (with one more ../ per level)
//	images/<hex digest>          -> ../objects/XX/<rest>  (EROFS images)
//	images/refs/<name>           -> ../<hex digest> (likewise)
//
// Everything under refs/ is a garbage-collection root; streams keep the
// objects and streams they refer to alive, images the objects they name.
//
// # Security
//
// A repository is secure when meta.json has fs-verity: then every object
// must have fs-verity, objects are named by the kernel's measurement, and
// OpenObject and OpenImage check it. An insecure repository (a filesystem
// without fs-verity, or Init with Insecure) still enables fs-verity where it
// can and checks digests where the kernel can measure them.
//
// # Crash safety
//
// Nothing appears under a final name half-written: objects are written to
// unnamed O_TMPFILE files (or temporary names, renamed without replacing)
// and linked in complete; symlinks are created whole or renamed over.
// Objects are not synced one by one; WriteStream and WriteImage sync the
// filesystem (syncfs) before they publish the stream or image symlink, and
// write the ref last, so whatever a ref reaches survives a power cut. An
// object stored but not yet covered by that barrier may be lost or
// truncated by a power cut; Fsck finds such objects and its repair removes
// them, and storing the same content again replaces a truncated object.
//
// # Locking
//
// Open takes a shared flock(2) on the repository directory until Close, so
// any number of processes read and write concurrently. GC and Fsck with
// Repair take it exclusively: they wait until every other Repository (in
// this process or another) is closed, and hold off new ones while they run.
// Within one Repository, methods may be called concurrently; GC and repairs
// wait for calls in progress and block new ones. Holding a Repository open
// is therefore also how a long operation made of several calls protects its
// new, not yet referenced objects from a concurrent GC (cfsctl transaction
// does the same).
package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/store/objects"
	"github.com/gocfs/gocfs/verity"
)

// Repository directories.
const (
	objectsDir = "objects"
	streamsDir = "streams"
	imagesDir  = "images"
	refsDir    = "refs"
)

// Errors for errors.Is.
var (
	// ErrReadOnly is returned by writes to a repository opened read-only.
	ErrReadOnly = errors.New("repository is read-only")
	// ErrNotRepository means the directory has no meta.json.
	ErrNotRepository = errors.New("not a composefs repository (no " + metaName + ")")
	// ErrNotFound is wrapped when a stream, image or ref does not exist.
	ErrNotFound = errors.New("not found")
)

// kernel is the fs-verity interface; tests replace it.
var kernel objects.Kernel

// InitOptions configure Init.
type InitOptions struct {
	// Algorithm is the fs-verity algorithm that names objects. Zero means
	// verity.SHA256, the default of the composefs-rs library and the one
	// composefs EROFS images carry (cfsctl init defaults to sha512).
	Algorithm verity.Algorithm
	// Insecure makes a repository that does not require fs-verity: Init
	// then works on filesystems without it. Without Insecure, Init fails
	// there.
	Insecure bool
	// ErofsV0 records that the repository's images are in EROFS format
	// version 0 (what C mkcomposefs writes by default) rather than 1
	// (mkcomposefs --min-version=1, cfsctl's default).
	ErofsV0 bool
}

// Repository is an open repository. Its methods may be called concurrently.
type Repository struct {
	path   string
	fd     int // the repository directory, flocked
	alg    verity.Algorithm
	meta   *metadata
	secure bool
	// readOnly is why writes are refused, or "".
	readOnly string
	objs     *objects.Dir
	kernel   objects.Kernel

	// mu is held shared by every call and exclusively by GC, repairs and
	// Close, which need the repository to themselves.
	mu     sync.RWMutex
	closed bool
}

// Init creates a repository at path (the directory, mode 0700, and missing
// parents) and opens it. If path already holds a repository with the same
// settings, Init just opens it; with other settings it fails.
func Init(path string, opts InitOptions) (*Repository, error) {
	alg := opts.Algorithm
	if alg == 0 {
		alg = verity.SHA256
	}
	if !alg.Valid() {
		return nil, fmt.Errorf("store: init %s: unknown fs-verity algorithm %d", path, uint8(alg))
	}
	erofsVersion := 1
	if opts.ErofsV0 {
		erofsVersion = 0
	}
	meta := newMetadata(alg, erofsVersion)
	if err := initDir(path, meta, alg, !opts.Insecure); err != nil {
		return nil, fmt.Errorf("store: init %s: %w", path, err)
	}
	return Open(path)
}

func initDir(dir string, meta *metadata, alg verity.Algorithm, secure bool) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	fd, err := openDir(unix.AT_FDCWD, dir)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	same := func() error {
		old, err := readMeta(fd)
		if err != nil {
			return err
		}
		if !old.equal(meta) {
			return fmt.Errorf("already a repository with other settings (%s, EROFS format %d)", old.Algorithm, old.erofsVersion())
		}
		return nil
	}
	// An existing repository is opened as it is, whatever this machine's
	// fs-verity support.
	if err := same(); !errors.Is(err, ErrNotRepository) {
		return err
	}
	k := kernelOrDefault()
	err = writeNewFile(fd, metaName, meta.marshal(), func(ro *os.File) error {
		if !secure {
			return nil
		}
		if err := k.Enable(ro, alg); err != nil {
			if errors.Is(err, verity.ErrNotSupported) {
				return fmt.Errorf("%w: this filesystem cannot hold a secure repository; make an insecure one", err)
			}
			return err
		}
		return nil
	})
	if err == unix.EEXIST {
		return same() // a concurrent Init won
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", metaName, err)
	}
	return fsync(fd)
}

func kernelOrDefault() objects.Kernel {
	if kernel != nil {
		return kernel
	}
	return objects.SystemKernel
}

func readMeta(fd int) (*metadata, error) {
	f, err := openFile(fd, metaName)
	if err == unix.ENOENT {
		var st unix.Stat_t
		if unix.Fstatat(fd, objectsDir, &st, 0) == nil {
			return nil, fmt.Errorf("%w; objects/ exists: a repository of composefs-rs before 0.7, which cfsctl upgrades", ErrNotRepository)
		}
		return nil, ErrNotRepository
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", metaName, err)
	}
	defer f.Close()
	b, err := readAll(f, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", metaName, err)
	}
	return parseMetadata(b)
}

// Open opens the repository at path, waiting while a GC or repair holds it.
// A repository that needs features this package does not know is refused,
// or opened read-only if they are read-only-compatible; so is one on a
// read-only filesystem or directory.
func Open(path string) (*Repository, error) {
	r, err := open(path)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return r, nil
}

func open(dir string) (*Repository, error) {
	fd, err := openDir(unix.AT_FDCWD, dir)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if err := flock(fd, unix.LOCK_SH); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	meta, err := readMeta(fd)
	if err != nil {
		return nil, err
	}
	alg, readOnly, err := meta.check()
	if err != nil {
		return nil, err
	}
	k := kernelOrDefault()
	secure, err := metaHasVerity(fd, k)
	if err != nil {
		return nil, err
	}
	if readOnly == "" {
		readOnly = writeCheck(fd)
	}
	objs, err := objects.OpenDirOptions(dir+"/"+objectsDir, readOnly == "", objects.Options{
		Algorithm:     alg,
		RequireVerity: secure,
		NoSync:        true,
		Kernel:        k,
	})
	if err != nil {
		return nil, err
	}
	ok = true
	return &Repository{path: dir, fd: fd, alg: alg, meta: meta, secure: secure, readOnly: readOnly, objs: objs, kernel: k}, nil
}

// metaHasVerity reports whether meta.json has fs-verity, which makes the
// repository secure.
func metaHasVerity(fd int, k objects.Kernel) (bool, error) {
	f, err := openFile(fd, metaName)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", metaName, err)
	}
	defer f.Close()
	_, _, err = k.Measure(f)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, verity.ErrNoVerity), errors.Is(err, verity.ErrNotSupported):
		return false, nil
	}
	return false, err
}

// writeCheck returns why the repository directory cannot be written, or "".
func writeCheck(fd int) string {
	var st unix.Statfs_t
	if unix.Fstatfs(fd, &st) == nil && st.Flags&unix.ST_RDONLY != 0 {
		return "read-only filesystem"
	}
	if err := unix.Faccessat(fd, ".", unix.W_OK, unix.AT_EACCESS); err != nil {
		return fmt.Sprintf("directory not writable: %v", err)
	}
	return ""
}

// Close releases the repository and its lock, after calls in progress.
func (r *Repository) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.objs.Close()
	if cerr := unix.Close(r.fd); err == nil && cerr != nil {
		err = fmt.Errorf("store: close %s: %w", r.path, cerr)
	}
	return err
}

// Path returns the path the repository was opened with.
func (r *Repository) Path() string { return r.path }

// Algorithm returns the fs-verity algorithm that names the objects.
func (r *Repository) Algorithm() verity.Algorithm { return r.alg }

// Secure reports whether the repository requires fs-verity.
func (r *Repository) Secure() bool { return r.secure }

// ReadOnly reports whether writes are refused, and why.
func (r *Repository) ReadOnly() (bool, string) { return r.readOnly != "", r.readOnly }

// ErofsVersion returns the EROFS format version, numbered as composefs-rs
// does, of the images the repository makes: 0 is C mkcomposefs's default
// output (erofs.WriteOptions{}), 1 is mkcomposefs --min-version=1
// --max-version=1, 2 is composefs-rs's legacy format.
func (r *Repository) ErofsVersion() int { return r.meta.erofsVersion() }

// ErofsExtraVersions returns the EROFS format versions the repository makes
// besides ErofsVersion (composefs-rs dual-format repositories).
func (r *Repository) ErofsExtraVersions() []int {
	if r.meta.ErofsFormats == nil {
		return nil
	}
	return r.meta.ErofsFormats.Extra
}

// begin starts a call: it holds the repository shared until the returned
// function is called.
func (r *Repository) begin() (func(), error) {
	r.mu.RLock()
	if r.closed {
		r.mu.RUnlock()
		return nil, fmt.Errorf("store: %s: repository closed", r.path)
	}
	return r.mu.RUnlock, nil
}

// beginWrite is begin for calls that write.
func (r *Repository) beginWrite() (func(), error) {
	end, err := r.begin()
	if err != nil {
		return nil, err
	}
	if err := r.writable(); err != nil {
		end()
		return nil, err
	}
	return end, nil
}

func (r *Repository) writable() error {
	why := r.readOnly
	if why == "" {
		why = writeCheck(r.fd)
	}
	if why != "" {
		return fmt.Errorf("store: %s: %w: %s", r.path, ErrReadOnly, why)
	}
	return nil
}

// beginExclusive takes the repository for GC or repair: all calls of this
// Repository finish first, then every other Repository must be closed
// (flock LOCK_EX). The returned function downgrades the lock again.
func (r *Repository) beginExclusive() (func(), error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, fmt.Errorf("store: %s: repository closed", r.path)
	}
	if err := flock(r.fd, unix.LOCK_EX); err != nil {
		r.mu.Unlock()
		return nil, fmt.Errorf("store: %s: lock exclusively: %w", r.path, err)
	}
	return func() {
		// Converting back cannot fail for a lock we hold; should it,
		// the repository stays exclusively locked until Close.
		_ = flock(r.fd, unix.LOCK_SH)
		r.mu.Unlock()
	}, nil
}

// sync makes everything written so far durable: the barrier before a
// stream or image becomes visible.
func (r *Repository) sync() error {
	if err := unix.Syncfs(r.fd); err != nil {
		return fmt.Errorf("store: %s: syncfs: %w", r.path, err)
	}
	return nil
}

// objectPath returns the repository-relative path of an object.
func objectPath(digest []byte) string { return objectsDir + "/" + objects.Path(digest) }

// parseObjectLink returns the digest named by the target of a first-level
// streams/ or images/ symlink, "../objects/XX/<rest>".
func (r *Repository) parseObjectLink(target string) ([]byte, bool) {
	rest, ok := strings.CutPrefix(target, "../"+objectsDir+"/")
	if !ok {
		return nil, false
	}
	return objects.ParsePath(rest, r.alg.Size())
}
