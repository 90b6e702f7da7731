// Package objects manages a composefs object directory: file contents stored
// under their fs-verity sha256 digest in lower-case hex, fanned out by the
// first byte ("ab/cdef..."), as `mkcomposefs --digest-store` fills it and as
// the overlay data layer of a composefs mount reads it.
//
// An object only ever appears under its final name complete, synced and
// readable by all (mode 0644), so a crash or a concurrent reader never sees a
// partial object, and any number of writers may add the same object at once.
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

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/verity"
)

// DigestSize is the size of the fs-verity sha256 digests that name objects.
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
	var stack [2*DigestSize + 1]byte
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

// Dir is an open object directory. Its methods may be called concurrently.
type Dir struct {
	path string
	fd   int

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

// OpenDir opens the object directory at path. With create, the directory
// and any missing parents are made first (mode 0755 before umask).
func OpenDir(path string, create bool) (*Dir, error) {
	if create {
		if err := os.MkdirAll(path, 0o755); err != nil {
			return nil, fmt.Errorf("object directory: %w", err)
		}
	}
	fd, err := openRetry(unix.AT_FDCWD, path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("object directory %s: %w", path, err)
	}
	d := &Dir{path: path, fd: fd}
	// Unnamed files are reopened and linked through /proc: without it,
	// use named ones from the start, before any data is consumed.
	if unix.Access("/proc/self/fd", unix.F_OK) != nil {
		d.noTmpfile.Store(true)
	}
	return d, nil
}

// Path returns the path the directory was opened with.
func (d *Dir) Path() string { return d.path }

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

func checkDigest(digest []byte) error {
	if len(digest) != DigestSize {
		return fmt.Errorf("object digest has %d bytes, want %d", len(digest), DigestSize)
	}
	return nil
}

// Has reports whether the object named by digest is present.
func (d *Dir) Has(digest []byte) (bool, error) {
	if err := checkDigest(digest); err != nil {
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
	if err := checkDigest(digest); err != nil {
		return nil, err
	}
	name := Path(digest)
	fd, err := openRetry(d.fd, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("object %s in %s: %w", name, d.path, err)
	}
	return os.NewFile(uintptr(fd), d.path+"/"+name), nil
}

// Ingest stores the whole content of src, from offset 0 whatever src's file
// position, as the object named by digest, unless that object is already
// present. The caller vouches that digest is the fs-verity sha256 digest of
// the content (it has just computed it from the same descriptor); use
// IngestReader for data of unknown provenance.
//
// The data is shared with src when the filesystem can (FICLONE), else copied
// in the kernel (copy_file_range), else through a buffer. Like mkcomposefs,
// Ingest then tries to enable fs-verity on the object and ignores failure:
// a store on a filesystem without fs-verity is usable, only not verifiable.
func (d *Dir) Ingest(src *os.File, digest []byte) error {
	return d.ingest(digest, func(dst int) error { return d.copyFile(src, dst) })
}

// IngestReader stores everything r returns until io.EOF as the object named
// by digest, unless that object is already present. The data is hashed while
// it is written and nothing is stored if its fs-verity digest is not digest.
func (d *Dir) IngestReader(r io.Reader, digest []byte) error {
	return d.ingest(digest, func(dst int) error {
		h := verity.New(verity.SHA256)
		if err := copyReader(dst, io.TeeReader(r, h)); err != nil {
			return err
		}
		if got := h.Sum(nil); !bytes.Equal(got, digest) {
			return fmt.Errorf("content has fs-verity digest %x", got)
		}
		return nil
	})
}

func (d *Dir) ingest(digest []byte, fill func(dst int) error) error {
	if err := checkDigest(digest); err != nil {
		return err
	}
	name := Path(digest)
	if err := d.ingestName(name, fill); err != nil {
		return fmt.Errorf("store object %s in %s: %w", name, d.path, err)
	}
	return nil
}

func (d *Dir) ingestName(name string, fill func(dst int) error) error {
	var st unix.Stat_t
	switch err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err {
	case nil:
		return nil
	case unix.ENOENT:
	default:
		return err
	}
	fanout := name[:2]
	if err := unix.Mkdirat(d.fd, fanout, 0o755); err != nil && err != unix.EEXIST {
		return fmt.Errorf("create %s: %w", fanout, err)
	}
	if !d.noTmpfile.Load() {
		err := d.ingestTmpfile(name, fill)
		if err != errNoTmpfile {
			return err
		}
		d.noTmpfile.Store(true)
	}
	return d.ingestNamed(name, fill)
}

// errNoTmpfile says that unnamed temporary files cannot be used here.
var errNoTmpfile = errors.New("O_TMPFILE unusable")

// ingestTmpfile writes the object as an unnamed file in its fan-out
// directory and links it in when it is complete. Unlike the named temporary
// file mkcomposefs uses, nothing is left behind if the process dies midway.
func (d *Dir) ingestTmpfile(name string, fill func(dst int) error) error {
	w, err := openRetry(d.fd, name[:2], unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
	switch err {
	case nil:
	case unix.EOPNOTSUPP, unix.EISDIR, unix.EINVAL:
		// Filesystems and kernels without O_TMPFILE answer with one of these.
		return errNoTmpfile
	default:
		return fmt.Errorf("create temporary file: %w", err)
	}
	wClosed := false
	defer func() {
		if !wClosed {
			unix.Close(w)
		}
	}()
	if err := d.finish(w, fill); err != nil {
		return err
	}
	// fs-verity can only be enabled through a read-only descriptor while no
	// writable one is open, so reopen the file read-only before closing w:
	// an unnamed file vanishes with its last descriptor.
	r, err := openRetry(unix.AT_FDCWD, procFD(w), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("reopen temporary file: %w", err)
	}
	rf := os.NewFile(uintptr(r), name)
	defer rf.Close()
	wClosed = true
	if err := unix.Close(w); err != nil {
		return fmt.Errorf("close temporary file: %w", err)
	}
	tryEnableVerity(rf)
	// Linking through /proc works without the CAP_DAC_READ_SEARCH that
	// AT_EMPTY_PATH needs.
	err = unix.Linkat(unix.AT_FDCWD, procFD(r), d.fd, name, unix.AT_SYMLINK_FOLLOW)
	if err != nil && err != unix.EEXIST { // EEXIST: a concurrent writer won
		return fmt.Errorf("link object: %w", err)
	}
	return nil
}

// ingestNamed writes the object under a temporary name in the top directory
// (where mkcomposefs puts its ".tmpXXXXXX" files) and renames it into place.
func (d *Dir) ingestNamed(name string, fill func(dst int) error) error {
	tmp, w, err := d.createTemp()
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			unix.Unlinkat(d.fd, tmp, 0)
		}
	}()
	err = d.finish(w, fill)
	if cerr := unix.Close(w); err == nil && cerr != nil {
		err = fmt.Errorf("close temporary file: %w", cerr)
	}
	if err != nil {
		return err
	}
	r, err := openRetry(d.fd, tmp, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("reopen temporary file: %w", err)
	}
	rf := os.NewFile(uintptr(r), tmp)
	tryEnableVerity(rf)
	rf.Close()
	// Unlike mkcomposefs, never replace an object that appeared meanwhile:
	// readers may hold it open.
	err = unix.Renameat2(d.fd, tmp, d.fd, name, unix.RENAME_NOREPLACE)
	switch err {
	case nil:
	case unix.EEXIST:
		return nil // deferred unlink removes our copy
	case unix.EINVAL, unix.ENOSYS:
		// No RENAME_NOREPLACE here; a plain rename replaces an identical
		// object at worst.
		if err := unix.Renameat(d.fd, tmp, d.fd, name); err != nil {
			return fmt.Errorf("rename into place: %w", err)
		}
	default:
		return fmt.Errorf("rename into place: %w", err)
	}
	done = true
	return nil
}

// createTemp creates a new ".tmpXXXXXX" file in the top directory.
func (d *Dir) createTemp() (string, int, error) {
	for range 100 {
		tmp := ".tmp" + randomSuffix()
		fd, err := openRetry(d.fd, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
		if err == unix.EEXIST {
			continue
		}
		if err != nil {
			return "", -1, fmt.Errorf("create temporary file: %w", err)
		}
		return tmp, fd, nil
	}
	return "", -1, errors.New("create temporary file: too many name collisions")
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

// finish fills the new object and makes it durable and world-readable.
func (d *Dir) finish(w int, fill func(dst int) error) error {
	if err := fill(w); err != nil {
		return err
	}
	if err := unix.Fchmod(w, 0o644); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if err := fsync(w); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	return nil
}

// tryEnableVerity asks for fs-verity on a new object. Failure is ignored as
// mkcomposefs does: most filesystems lack it, and an image's digests do not
// depend on it.
func tryEnableVerity(f *os.File) {
	_ = verity.Enable(f, verity.SHA256)
}

func procFD(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// copyFile copies all of src to dst, both at offset 0.
func (d *Dir) copyFile(src *os.File, dst int) error {
	rc, err := src.SyscallConn()
	if err != nil {
		return fmt.Errorf("copy from %s: %w", src.Name(), err)
	}
	var cerr error
	if err := rc.Control(func(sfd uintptr) { cerr = d.copyFD(int(sfd), dst) }); err != nil {
		return fmt.Errorf("copy from %s: %w", src.Name(), err)
	}
	if cerr != nil {
		return fmt.Errorf("copy from %s: %w", src.Name(), cerr)
	}
	return nil
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

func copyReader(dst int, r io.Reader) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var off int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if werr := pwriteFull(dst, buf[:n], off); werr != nil {
				return werr
			}
			off += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
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
