package cfsfuse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/verity"
)

// objectDirs are the directories that hold the data of external files, in
// the order they are searched, like the data-only layers (basedirs) of a
// kernel composefs mount.
type objectDirs struct {
	paths []string
	fds   []int // O_PATH descriptors of paths

	verify   bool
	verdicts sync.Map // verdictKey -> *verdict
	logf     func(format string, args ...any)
}

func openObjectDirs(paths []string, verify bool, logf func(string, ...any)) (*objectDirs, error) {
	d := &objectDirs{paths: paths, verify: verify, logf: logf}
	for _, p := range paths {
		fd, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			d.close()
			return nil, fmt.Errorf("object directory %s: %w", p, err)
		}
		d.fds = append(d.fds, fd)
	}
	return d, nil
}

func (d *objectDirs) close() {
	for _, fd := range d.fds {
		unix.Close(fd)
	}
	d.fds = nil
}

// open opens the object of an external file from the first directory that
// has it as a regular file, resolving the path as overlayfs does within a
// layer: no symlinks followed, nothing outside the directory reached. It
// fails with ENOENT when no directory has it, as the kernel mount does, and
// with EIO when verification is on and the object is not what the image
// names.
func (d *objectDirs) open(n *node) (*os.File, syscall.Errno) {
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for i, dirfd := range d.fds {
		fd, err := openat2(dirfd, n.object, &how)
		switch err {
		case nil:
		case unix.ENOENT, unix.ENOTDIR, unix.ELOOP, unix.EXDEV:
			continue
		default:
			d.logf("object %s in %s: %v", n.object, d.paths[i], err)
			return nil, errnoOf(err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return nil, errnoOf(err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			unix.Close(fd)
			continue
		}
		f := os.NewFile(uintptr(fd), d.paths[i]+"/"+n.object)
		if d.verify {
			if err := d.check(f, &st, n); err != nil {
				f.Close()
				return nil, syscall.EIO
			}
		}
		return f, 0
	}
	return nil, syscall.ENOENT
}

func openat2(dirfd int, path string, how *unix.OpenHow) (int, error) {
	for {
		fd, err := unix.Openat2(dirfd, path, how)
		// EAGAIN: a concurrent rename raced with the RESOLVE_ checks.
		if err != unix.EINTR && err != unix.EAGAIN {
			return fd, err
		}
	}
}

// A verdictKey names one version of one object file and the digest it is
// checked against: a file replaced or changed gets a new ctime, so a
// verdict is never applied to content it was not reached on.
type verdictKey struct {
	dev, ino uint64
	ctime    unix.Timespec
	digest   string
	alg      verity.Algorithm
}

// verdict is the outcome of checking one object, computed once however
// many opens wait for it.
type verdict struct {
	once sync.Once
	err  error
}

// errDigestMismatch is wrapped by verification failures about content.
var errDigestMismatch = errors.New("fs-verity digest mismatch")

// check verifies that f holds the content the image names, as overlayfs
// does with verity=require: the metacopy xattr must carry a digest, and the
// object must have it. The kernel's measurement is used when the object
// has fs-verity (which also keeps it from changing later); otherwise the
// content is hashed once, and the verdict is kept for the file as it is.
// Failures are logged when found, not each time a verdict is reused.
func (d *objectDirs) check(f *os.File, st *unix.Stat_t, n *node) error {
	if n.digest == nil || n.alg.Size() != len(n.digest) {
		err := fmt.Errorf("%s: the image names no fs-verity digest for the object", f.Name())
		if n.digest != nil {
			err = fmt.Errorf("%s: the image names a %d-byte digest of unknown algorithm %d", f.Name(), len(n.digest), n.alg)
		}
		d.logf("nid %d: %v", n.ino.Nid, err)
		return err
	}
	key := verdictKey{dev: st.Dev, ino: st.Ino, ctime: st.Ctim, digest: string(n.digest), alg: n.alg}
	v, _ := d.verdicts.LoadOrStore(key, new(verdict))
	vd := v.(*verdict)
	vd.once.Do(func() {
		if vd.err = measure(f, st.Size, n.digest, n.alg); vd.err != nil {
			d.logf("nid %d: %v", n.ino.Nid, vd.err)
		}
	})
	return vd.err
}

func measure(f *os.File, size int64, want []byte, alg verity.Algorithm) error {
	kalg, got, err := verity.Measure(f)
	switch {
	case err == nil:
		if kalg != alg || !bytes.Equal(got, want) {
			return fmt.Errorf("%s: kernel measures %s:%x, the image names %s:%x: %w", f.Name(), kalg, got, alg, want, errDigestMismatch)
		}
		return nil
	case !errors.Is(err, verity.ErrNoVerity) && !errors.Is(err, verity.ErrNotSupported):
		return fmt.Errorf("%s: %w", f.Name(), err)
	}
	got, err = verity.Digest(io.NewSectionReader(f, 0, size), alg)
	if err != nil {
		return fmt.Errorf("%s: %w", f.Name(), err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%s: content has fs-verity digest %s:%x, the image names %x: %w", f.Name(), alg, got, want, errDigestMismatch)
	}
	return nil
}

// errnoOf returns the errno an error wraps, EIO for other errors.
func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.EIO
}
