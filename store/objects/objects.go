// Package objects manages a composefs object directory: file contents stored
// under their fs-verity digest in lower-case hex, fanned out by the first
// byte ("ab/cdef..."), as `mkcomposefs --digest-store` fills it, as the
// overlay data layer of a composefs mount reads it and as a composefs-rs
// repository keeps it. Digests are sha256 unless the directory is opened
// with another algorithm.
//
// An object only ever appears under its final name complete and readable by
// all (mode 0644), so a crash or a concurrent reader never sees a partial
// object, and any number of writers may add the same object at once. By
// default each new object is also synced before it is named; a store that
// syncs the filesystem itself before publishing anything that refers to
// objects (Options.NoSync) skips that.
package objects

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/verity"
)

// DigestSize is the size of the fs-verity sha256 digests that name objects
// in a directory opened with OpenDir.
const DigestSize = sha256.Size

// Path returns the object path of digest relative to the object directory:
// the first byte in hex, a slash, the remaining bytes in hex. This is also the
// payload a composefs image records for the file (its overlay redirect is
// "/" + Path). Path returns "" for an empty digest.
func Path(digest []byte) string {
	if len(digest) == 0 {
		return ""
	}
	n := 2*len(digest) + 1
	var stack [2*verity.MaxDigestSize + 1]byte
	var b []byte
	if n <= len(stack) {
		b = stack[:n]
	} else {
		b = make([]byte, n)
	}
	hex.Encode(b, digest[:1])
	b[2] = '/'
	hex.Encode(b[3:], digest[1:])
	return string(b)
}

// ParsePath returns the digest named by an object path of the form Path
// returns, for a digest of size bytes, or false if p is not one: lower-case
// hex only.
func ParsePath(p string, size int) ([]byte, bool) {
	if len(p) != 2*size+1 || p[2] != '/' {
		return nil, false
	}
	d := make([]byte, size)
	if !decodeLowerHex(d[:1], p[:2]) || !decodeLowerHex(d[1:], p[3:]) {
		return nil, false
	}
	return d, true
}

// decodeLowerHex decodes lower-case hex only, the one spelling object
// names have.
func decodeLowerHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := hexVal(s[2*i])
		lo, ok2 := hexVal(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// Kernel is the fs-verity interface of the kernel, replaceable for tests.
type Kernel interface {
	Enable(f *os.File, alg verity.Algorithm) error
	Measure(f *os.File) (verity.Algorithm, []byte, error)
}

// SystemKernel is the real fs-verity: the verity package's Enable and
// Measure.
var SystemKernel Kernel = verityKernel{}

type verityKernel struct{}

func (verityKernel) Enable(f *os.File, alg verity.Algorithm) error { return verity.Enable(f, alg) }
func (verityKernel) Measure(f *os.File) (verity.Algorithm, []byte, error) {
	return verity.Measure(f)
}

// Options configure an object directory opened with OpenDirOptions.
type Options struct {
	// Algorithm is the fs-verity algorithm of object names; zero means
	// verity.SHA256.
	Algorithm verity.Algorithm
	// RequireVerity makes fs-verity mandatory: every new object must get
	// it, and the kernel's measurement names the object. Without it,
	// fs-verity is enabled where the filesystem allows, and a file system
	// without it is no error.
	RequireVerity bool
	// NoSync skips syncing each new object before naming it. The caller
	// must make the filesystem durable (syncfs) before it publishes
	// anything that refers to new objects.
	NoSync bool
	// Kernel replaces the fs-verity system calls; nil means the real ones.
	Kernel Kernel
}

// Errors for errors.Is.
var (
	// ErrDigestMismatch means content does not have the digest it is
	// stored or requested under.
	ErrDigestMismatch = errors.New("fs-verity digest mismatch")
)

// Dir is an open object directory. Its methods may be called concurrently.
type Dir struct {
	path          string
	fd            int
	alg           verity.Algorithm
	requireVerity bool
	noSync        bool
	kernel        Kernel

	// noTmpfile is set once the filesystem has refused an unnamed
	// O_TMPFILE file, or from the start if /proc, which linking one needs,
	// is missing: objects are then written under a temporary name and
	// renamed.
	noTmpfile atomic.Bool
	// noCopyRange is set once copy_file_range has failed in a way that
	// will not change for other files of this directory (no such system
	// call, or the source is on another filesystem on old kernels).
	noCopyRange atomic.Bool
}

// OpenDir opens the sha256 object directory at path. With create, the
// directory and any missing parents are made first (mode 0755 before umask).
// New objects are synced one by one and get fs-verity where the filesystem
// supports it.
func OpenDir(path string, create bool) (*Dir, error) {
	return OpenDirOptions(path, create, Options{})
}

// OpenDirOptions opens the object directory at path as OpenDir does, with
// options.
func OpenDirOptions(path string, create bool, opts Options) (*Dir, error) {
	alg := opts.Algorithm
	if alg == 0 {
		alg = verity.SHA256
	}
	if !alg.Valid() {
		return nil, fmt.Errorf("object directory %s: unknown fs-verity algorithm %d", path, uint8(alg))
	}
	if create {
		if err := os.MkdirAll(path, 0o755); err != nil {
			return nil, fmt.Errorf("object directory: %w", err)
		}
	}
	fd, err := openRetry(unix.AT_FDCWD, path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("object directory %s: %w", path, err)
	}
	d := &Dir{path: path, fd: fd, alg: alg, requireVerity: opts.RequireVerity, noSync: opts.NoSync, kernel: opts.Kernel}
	if d.kernel == nil {
		d.kernel = SystemKernel
	}
	// Unnamed files are reopened and linked through /proc: without it,
	// use named ones from the start, before any data is consumed.
	if unix.Access("/proc/self/fd", unix.F_OK) != nil {
		d.noTmpfile.Store(true)
	}
	return d, nil
}

// Path returns the path the directory was opened with.
func (d *Dir) Path() string { return d.path }

// Algorithm returns the fs-verity algorithm of object names.
func (d *Dir) Algorithm() verity.Algorithm { return d.alg }

// Close releases the directory. The Dir must not be used afterwards.
func (d *Dir) Close() error {
	if d.fd < 0 {
		return nil
	}
	err := unix.Close(d.fd)
	d.fd = -1
	if err != nil {
		return fmt.Errorf("object directory %s: close: %w", d.path, err)
	}
	return nil
}

func (d *Dir) checkDigest(digest []byte) error {
	if len(digest) != d.alg.Size() {
		return fmt.Errorf("object digest has %d bytes, want %d for %s", len(digest), d.alg.Size(), d.alg)
	}
	return nil
}

// Has reports whether the object named by digest is present.
func (d *Dir) Has(digest []byte) (bool, error) {
	if err := d.checkDigest(digest); err != nil {
		return false, err
	}
	name := Path(digest)
	var st unix.Stat_t
	err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case err == nil:
		return true, nil
	case err == unix.ENOENT:
		return false, nil
	}
	return false, fmt.Errorf("object %s in %s: %w", name, d.path, err)
}

// Open opens the object named by digest for reading.
func (d *Dir) Open(digest []byte) (*os.File, error) {
	if err := d.checkDigest(digest); err != nil {
		return nil, err
	}
	name := Path(digest)
	fd, err := openRetry(d.fd, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("object %s in %s: %w", name, d.path, err)
	}
	return os.NewFile(uintptr(fd), d.path+"/"+name), nil
}

// Verify checks that the open object f has the fs-verity digest digest: by
// the kernel's measurement when f has fs-verity, else, with hash, by reading
// it. A file without fs-verity fails with verity.ErrNoVerity when the
// directory requires fs-verity, and passes unread without hash. A wrong
// digest fails with ErrDigestMismatch.
func (d *Dir) Verify(f *os.File, digest []byte, hash bool) error {
	alg, got, err := d.kernel.Measure(f)
	switch {
	case err == nil:
		if alg != d.alg || !bytes.Equal(got, digest) {
			return fmt.Errorf("%s: kernel measures %s:%x, want %x: %w", f.Name(), alg, got, digest, ErrDigestMismatch)
		}
		return nil
	case d.requireVerity || !(errors.Is(err, verity.ErrNoVerity) || errors.Is(err, verity.ErrNotSupported)):
		return err
	case !hash:
		return nil
	}
	h := getHash(d.alg)
	defer putHash(h)
	if _, err := h.ReadFrom(io.NewSectionReader(f, 0, 1<<62)); err != nil {
		return fmt.Errorf("%s: %w", f.Name(), err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, digest) {
		return fmt.Errorf("%s: content has digest %x, want %x: %w", f.Name(), got, digest, ErrDigestMismatch)
	}
	return nil
}

// Ingest stores the whole content of src, from offset 0 whatever src's file
// position, as the object named by digest, unless that object is already
// present. The caller vouches that digest is the fs-verity digest of the
// content (it has just computed it from the same descriptor); use
// IngestReader for data of unknown provenance.
//
// The data is shared with src when the filesystem can (FICLONE), else copied
// in the kernel (copy_file_range), else through a buffer. Like mkcomposefs,
// Ingest then tries to enable fs-verity on the object and, unless the
// directory requires it, ignores failure: a store on a filesystem without
// fs-verity is usable, only not verifiable.
func (d *Dir) Ingest(src *os.File, digest []byte) error {
	if err := d.checkDigest(digest); err != nil {
		return err
	}
	_, err := d.store(digest, false, func(dst int, _ *verity.Hash) (int64, error) { return d.copyFile(src, dst) })
	return err
}

// IngestReader stores everything r returns until io.EOF as the object named
// by digest, unless that object is already present. The data is hashed while
// it is written and nothing is stored if its fs-verity digest is not digest.
func (d *Dir) IngestReader(r io.Reader, digest []byte) error {
	if err := d.checkDigest(digest); err != nil {
		return err
	}
	_, err := d.store(digest, true, func(dst int, h *verity.Hash) (int64, error) { return copyReader(dst, r, h) })
	return err
}

// Add stores everything r returns until io.EOF as an object, unless an
// object with the same content is present, and returns its digest.
func (d *Dir) Add(r io.Reader) ([]byte, error) {
	return d.store(nil, !d.requireVerity, func(dst int, h *verity.Hash) (int64, error) { return copyReader(dst, r, h) })
}

// AddFile stores the whole content of src, from offset 0 whatever its file
// position, as an object, unless an object with the same content is present,
// and returns its digest. The data is shared with src where the filesystem
// allows (FICLONE), else copied as Ingest copies; the digest is that of the
// copy, so a source changing meanwhile cannot store content under a wrong
// name.
func (d *Dir) AddFile(src *os.File) ([]byte, error) {
	return d.store(nil, !d.requireVerity, func(dst int, h *verity.Hash) (int64, error) {
		size, err := d.copyFile(src, dst)
		if err != nil || h == nil {
			return size, err
		}
		if err := hashFD(dst, h); err != nil {
			return 0, fmt.Errorf("hash copy: %w", err)
		}
		return size, nil
	})
}

// store writes a new object with fill and names it. want is the digest the
// caller expects (nil: not known, computed); hash makes fill feed the data
// to the userspace hash, which checks want or, without it, names the object
// unless the kernel does.
func (d *Dir) store(want []byte, hash bool, fill func(dst int, h *verity.Hash) (int64, error)) ([]byte, error) {
	if want != nil {
		// Objects are immutable once present: nothing to do.
		if ok, err := d.Has(want); err != nil || ok {
			return want, err
		}
	}
	var h *verity.Hash
	if hash {
		h = getHash(d.alg)
		defer putHash(h)
	}
	digest, err := d.storeNew(want, h, fill)
	if err != nil {
		if want != nil {
			return nil, fmt.Errorf("store object %s in %s: %w", Path(want), d.path, err)
		}
		return nil, fmt.Errorf("store object in %s: %w", d.path, err)
	}
	return digest, nil
}

func (d *Dir) storeNew(want []byte, h *verity.Hash, fill func(dst int, h *verity.Hash) (int64, error)) ([]byte, error) {
	t, err := d.createTemp()
	if err != nil {
		return nil, err
	}
	defer t.discard()
	size, err := fill(t.fd, h)
	if err != nil {
		return nil, err
	}
	if err := unix.Fchmod(t.fd, 0o644); err != nil {
		return nil, fmt.Errorf("chmod: %w", err)
	}
	if !d.noSync {
		if err := fsync(t.fd); err != nil {
			return nil, fmt.Errorf("fsync: %w", err)
		}
	}
	// fs-verity can only be enabled through a read-only descriptor while
	// no writable one is open, so reopen the file read-only before closing
	// the writable one (an unnamed file vanishes with its last descriptor).
	ro, err := t.reopen()
	if err != nil {
		return nil, err
	}
	defer ro.Close()
	digest := want
	if h != nil {
		got := h.Sum(nil)
		if want != nil && !bytes.Equal(got, want) {
			return nil, fmt.Errorf("content has fs-verity digest %x: %w", got, ErrDigestMismatch)
		}
		digest = got
	}
	measured, err := d.seal(ro)
	if err != nil {
		return nil, err
	}
	switch {
	case digest == nil:
		digest = measured
	case measured != nil && !bytes.Equal(measured, digest):
		return nil, fmt.Errorf("kernel measures fs-verity digest %x, want %x: %w", measured, digest, ErrDigestMismatch)
	}
	if digest == nil {
		return nil, errors.New("no digest: neither hashed nor measured")
	}
	name := Path(digest)
	if err := unix.Mkdirat(d.fd, name[:2], 0o755); err != nil && err != unix.EEXIST {
		return nil, fmt.Errorf("create %s: %w", name[:2], err)
	}
	err = t.link(ro, name)
	if err == unix.EEXIST {
		err = d.settle(t, ro, name, size)
	}
	if err != nil {
		return nil, err
	}
	return digest, nil
}

// settle handles an object that is already present under name: another
// writer stored the same content, which is fine. A present object of
// another size is what a crash before the filesystem flushed it leaves
// (written, not synced): it is replaced by the new one.
func (d *Dir) settle(t *tempFile, ro *os.File, name string, size int64) error {
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("stat existing object: %w", err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == size {
		return nil
	}
	return t.replace(ro, name)
}

// seal enables fs-verity on the new object (through its read-only
// descriptor) and returns the kernel's measurement, or nil when the
// filesystem has no fs-verity and the directory does not require it.
func (d *Dir) seal(ro *os.File) ([]byte, error) {
	err := d.enable(ro)
	if err != nil {
		if !d.requireVerity {
			return nil, nil
		}
		return nil, err
	}
	alg, got, err := d.kernel.Measure(ro)
	if err != nil {
		return nil, err
	}
	if alg != d.alg {
		return nil, fmt.Errorf("object has fs-verity %s, want %s", alg, d.alg)
	}
	return got, nil
}

// enable enables fs-verity, retrying while ETXTBSY says a writable
// descriptor is open: a child forked by another goroutine holds a copy of
// it until it execs.
func (d *Dir) enable(ro *os.File) error {
	var err error
	for try := range 5 {
		if err = d.kernel.Enable(ro, d.alg); !errors.Is(err, unix.ETXTBSY) {
			return err
		}
		time.Sleep(time.Duration(try+1) * 10 * time.Millisecond)
	}
	return err
}

// tempFile is a new object being written: an unnamed O_TMPFILE file, or a
// ".tmpXXXXXX" file in the top directory where the filesystem lacks them
// (mkcomposefs' naming).
type tempFile struct {
	d    *Dir
	fd   int    // writable descriptor, -1 once closed
	name string // "" for an unnamed file
	done bool   // the named file has been renamed away
}

// TempPrefix starts the names of the temporary files of a directory, in its
// top level. A name with it under a lock that excludes writers is a leftover
// of a crash.
const TempPrefix = ".tmp"

func (d *Dir) createTemp() (*tempFile, error) {
	if !d.noTmpfile.Load() {
		fd, err := openRetry(d.fd, ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
		switch err {
		case nil:
			return &tempFile{d: d, fd: fd}, nil
		case unix.EOPNOTSUPP, unix.EISDIR, unix.EINVAL:
			// Filesystems and kernels without O_TMPFILE answer
			// with one of these.
			d.noTmpfile.Store(true)
		default:
			return nil, fmt.Errorf("create temporary file: %w", err)
		}
	}
	for range 100 {
		name := TempPrefix + randomSuffix()
		fd, err := openRetry(d.fd, name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
		if err == unix.EEXIST {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("create temporary file: %w", err)
		}
		return &tempFile{d: d, fd: fd, name: name}, nil
	}
	return nil, errors.New("create temporary file: too many name collisions")
}

// reopen returns a read-only descriptor of the file and closes the writable
// one.
func (t *tempFile) reopen() (*os.File, error) {
	var fd int
	var err error
	if t.name == "" {
		fd, err = openRetry(unix.AT_FDCWD, procFD(t.fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	} else {
		fd, err = openRetry(t.d.fd, t.name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("reopen temporary file: %w", err)
	}
	ro := os.NewFile(uintptr(fd), "new object")
	err = unix.Close(t.fd)
	t.fd = -1
	if err != nil {
		ro.Close()
		return nil, fmt.Errorf("close temporary file: %w", err)
	}
	return ro, nil
}

// link gives the file its final name, failing with unix.EEXIST if the name
// is taken.
func (t *tempFile) link(ro *os.File, name string) error {
	if t.name == "" {
		// Linking through /proc works without the CAP_DAC_READ_SEARCH
		// that AT_EMPTY_PATH needs.
		err := unix.Linkat(unix.AT_FDCWD, procFD(int(ro.Fd())), t.d.fd, name, unix.AT_SYMLINK_FOLLOW)
		if err != nil && err != unix.EEXIST {
			return fmt.Errorf("link object: %w", err)
		}
		return err
	}
	// Never replace an object that appeared meanwhile: readers may hold it
	// open.
	err := unix.Renameat2(t.d.fd, t.name, t.d.fd, name, unix.RENAME_NOREPLACE)
	switch err {
	case nil:
		t.done = true
		return nil
	case unix.EEXIST:
		return err
	case unix.EINVAL, unix.ENOSYS:
		// No RENAME_NOREPLACE here: check, then rename; a race
		// replaces an identical object at worst.
		var st unix.Stat_t
		if unix.Fstatat(t.d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			return unix.EEXIST
		}
		if err := unix.Renameat(t.d.fd, t.name, t.d.fd, name); err != nil {
			return fmt.Errorf("rename into place: %w", err)
		}
		t.done = true
		return nil
	}
	return fmt.Errorf("rename into place: %w", err)
}

// replace atomically puts the file in place of the object at name.
func (t *tempFile) replace(ro *os.File, name string) error {
	if t.name == "" {
		// An unnamed file can only be linked to a free name: link it to
		// a temporary one first.
		for range 100 {
			tmp := TempPrefix + randomSuffix()
			err := unix.Linkat(unix.AT_FDCWD, procFD(int(ro.Fd())), t.d.fd, tmp, unix.AT_SYMLINK_FOLLOW)
			if err == unix.EEXIST {
				continue
			}
			if err != nil {
				return fmt.Errorf("link replacement object: %w", err)
			}
			t.name = tmp
			break
		}
		if t.name == "" {
			return errors.New("link replacement object: too many name collisions")
		}
	}
	if err := unix.Renameat(t.d.fd, t.name, t.d.fd, name); err != nil {
		return fmt.Errorf("replace object: %w", err)
	}
	t.done = true
	return nil
}

// discard closes what is still open and removes a named file that was not
// renamed into place.
func (t *tempFile) discard() {
	if t.fd >= 0 {
		unix.Close(t.fd)
		t.fd = -1
	}
	if t.name != "" && !t.done {
		unix.Unlinkat(t.d.fd, t.name, 0)
	}
}

// randomSuffix returns six random characters; O_EXCL settles collisions.
func randomSuffix() string {
	v := rand.Uint64()
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	var b [6]byte
	for i := range b {
		b[i] = chars[v%uint64(len(chars))]
		v /= uint64(len(chars))
	}
	return string(b[:])
}

// hashPools hold userspace hashes by algorithm: a Hash carries a few pages,
// too much to allocate for each of many small objects.
var hashPools [verity.SHA512 + 1]sync.Pool

func getHash(alg verity.Algorithm) *verity.Hash {
	if h, ok := hashPools[alg].Get().(*verity.Hash); ok {
		h.Reset()
		return h
	}
	return verity.New(alg)
}

func putHash(h *verity.Hash) { hashPools[h.Algorithm()].Put(h) }

func procFD(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// copyFile copies all of src to dst, both at offset 0, and returns the size
// of dst.
func (d *Dir) copyFile(src *os.File, dst int) (int64, error) {
	rc, err := src.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("copy from %s: %w", src.Name(), err)
	}
	var cerr error
	if err := rc.Control(func(sfd uintptr) { cerr = d.copyFD(int(sfd), dst) }); err != nil {
		return 0, fmt.Errorf("copy from %s: %w", src.Name(), err)
	}
	if cerr != nil {
		return 0, fmt.Errorf("copy from %s: %w", src.Name(), cerr)
	}
	var st unix.Stat_t
	if err := unix.Fstat(dst, &st); err != nil {
		return 0, fmt.Errorf("copy from %s: %w", src.Name(), err)
	}
	return st.Size, nil
}

func (d *Dir) copyFD(src, dst int) error {
	if unix.IoctlFileClone(dst, src) == nil {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		return err
	}
	var off int64
	if !d.noCopyRange.Load() {
		var classic bool
		var err error
		off, classic, err = d.copyRange(src, dst, st.Size)
		if !classic {
			return err
		}
	}
	return copyClassic(src, dst, off)
}

// copyRange copies size bytes with copy_file_range. It returns how far it
// got and whether the rest must be copied through a buffer instead.
func (d *Dir) copyRange(src, dst int, size int64) (int64, bool, error) {
	var roff, woff int64
	for roff < size {
		n, err := unix.CopyFileRange(src, &roff, dst, &woff, int(min(size-roff, 1<<30)), 0)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ENOSYS || err == unix.EXDEV:
			d.noCopyRange.Store(true)
			return roff, true, nil
		case err == unix.EOPNOTSUPP || err == unix.EPERM || err == unix.EINVAL || err == unix.EBADF:
			return roff, true, nil
		case err != nil:
			return roff, false, err
		case n == 0:
			// Some filesystems report 0 instead of an error; the
			// file may also have shrunk. A buffered copy settles it.
			return roff, true, nil
		}
	}
	return roff, false, nil
}

const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// copyClassic copies src from offset off to its end into dst at the same
// offset.
func copyClassic(src, dst int, off int64) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, err := unix.Pread(src, buf, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if err := pwriteFull(dst, buf[:n], off); err != nil {
			return err
		}
		off += int64(n)
	}
}

// copyReader writes everything r returns until io.EOF to dst from offset 0,
// feeding it to h if not nil, and returns the size.
func copyReader(dst int, r io.Reader, h *verity.Hash) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var off int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if h != nil {
				h.Write(buf[:n])
			}
			if werr := pwriteFull(dst, buf[:n], off); werr != nil {
				return off, werr
			}
			off += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return off, nil
		}
		if err != nil {
			return off, err
		}
	}
}

// hashFD feeds the whole content of fd to h.
func hashFD(fd int, h *verity.Hash) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var off int64
	for {
		n, err := unix.Pread(fd, buf, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		h.Write(buf[:n])
		off += int64(n)
	}
}

func pwriteFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b = b[n:]
		off += int64(n)
	}
	return nil
}

func fsync(fd int) error {
	for {
		err := unix.Fsync(fd)
		if err != unix.EINTR {
			return err
		}
	}
}

func openRetry(dirfd int, path string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, path, flags, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}
