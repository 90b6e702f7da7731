// Package scan builds a composefs tree from a directory, as `mkcomposefs
// SOURCE IMAGE` does with a directory source.
//
// Every entry is described by its lstat data and its xattrs. Regular files of
// at most InlineMax bytes carry their content inline; larger ones carry the
// fs-verity sha256 digest of their content and, as payload, the object path
// that digest names in an object store; empty files carry neither. Hardlinks
// are not detected, as in mkcomposefs: every name becomes an inode of its own
// with nlink 1, so files that share an inode share an object but not an
// inode number in the image.
//
// Reading and digesting the files is spread over several goroutines, while
// one goroutine walks the directories in name order; the tree is the same
// whatever the number of goroutines.
//
// Dir departs from mkcomposefs in corner cases only: a regular file that is
// replaced or resized between the walk and its reading, or that shrinks
// while read, is an error (mkcomposefs would pair the size it saw first with
// the digest of what it read later), while an xattr
// removed between being listed and being read is left out and a filesystem
// without xattr support simply yields none (both make mkcomposefs fail).
package scan

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/store/objects"
)

// InlineMax is the size up to which a regular file's content is stored in
// the image instead of being referenced by digest: 64 bytes, the length of
// the hex digest a redirect would otherwise need.
const InlineMax = 64

// Options control what Dir records. The zero value is mkcomposefs' default.
type Options struct {
	// UseEpoch sets every mtime to 0 (--use-epoch).
	UseEpoch bool
	// SkipDevices leaves out character and block devices, overlay
	// whiteouts (0:0 character devices) included (--skip-devices). The
	// type is the one lstat reports; mkcomposefs goes by the directory
	// entry's d_type, so on filesystems that do not fill it in its
	// devices slip through.
	SkipDevices bool
	// SkipXattrs records no xattrs at all (--skip-xattrs).
	SkipXattrs bool
	// UserXattrs records only xattrs in the user. namespace
	// (--user-xattrs). It conflicts with SkipXattrs.
	UserXattrs bool
	// Threads is the number of goroutines reading and digesting files,
	// besides the one walking the directories; 0 means runtime.NumCPU(),
	// which like mkcomposefs' default counts the CPUs the process may run
	// on.
	Threads int
	// Store, if set, receives a copy of every file that is referenced by
	// digest (--digest-store). Its algorithm names the files; without a
	// store they are named by sha256, as mkcomposefs names them.
	Store *objects.Dir
}

// Dir scans the directory at path and returns the root of its tree. The root
// carries the directory's own metadata and xattrs, as in mkcomposefs. Errors
// name the entry they concern.
func Dir(path string, opts Options) (*tree.Inode, error) {
	if opts.SkipXattrs && opts.UserXattrs {
		return nil, errors.New("scan: SkipXattrs and UserXattrs conflict")
	}
	threads := opts.Threads
	if threads == 0 {
		threads = runtime.NumCPU()
	}
	if threads < 0 {
		return nil, fmt.Errorf("scan: invalid thread count %d", threads)
	}
	s := &scanner{opts: opts, root: path}
	if err := unix.Access("/proc/self/fd", unix.F_OK); err == nil {
		s.procFD = true
	}

	// O_NOFOLLOW: like mkcomposefs, a symlink to a directory is not a
	// directory source.
	fd, err := openRetry(unix.AT_FDCWD, path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("scan %q: open directory: %w", path, err)
	}
	top := &dirRef{fd: fd}
	top.refs.Store(1)
	root := &tree.Inode{}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		top.release()
		return nil, fmt.Errorf("scan %q: stat: %w", path, err)
	}
	s.fill(root, &st)
	if err := s.xattrs(&s.xr, root, fd, ""); err != nil {
		top.release()
		return nil, fmt.Errorf("scan %q: %w", path, err)
	}

	s.jobs = make(chan fileJob, 1024)
	var wg sync.WaitGroup
	for range threads {
		wg.Go(s.work)
	}
	err = s.walk(top, root)
	top.release()
	if err != nil {
		s.fail(err)
	}
	close(s.jobs)
	wg.Wait()
	if s.err != nil {
		return nil, s.err
	}
	return root, nil
}

// scanner is the state of one Dir call. The fields after jobs belong to the
// walking goroutine.
type scanner struct {
	opts   Options
	root   string
	procFD bool // /proc/self/fd is there to name entries by directory fd

	failed atomic.Bool
	errMu  sync.Mutex
	err    error // the first error

	jobs chan fileJob

	dirents []byte
	link    []byte
	xr      xattrReader
}

// dirRef is an open directory shared by the walker and the jobs of its files,
// which open them relative to it; the last user closes it.
type dirRef struct {
	fd   int
	path string // relative to the root, "" for the root itself
	refs atomic.Int32
}

func (d *dirRef) release() {
	if d.refs.Add(-1) == 0 {
		unix.Close(d.fd)
	}
}

// fileJob is a non-empty regular file to read: its content or digest, and
// its xattrs (read through the open file rather than by name).
type fileJob struct {
	dir  *dirRef
	name string
	node *tree.Inode
}

// errStopped ends the walk once some other goroutine has failed; the error
// reported is that goroutine's.
var errStopped = errors.New("scan stopped")

func (s *scanner) fail(err error) {
	s.errMu.Lock()
	if s.err == nil && err != errStopped {
		s.err = err
	}
	s.errMu.Unlock()
	s.failed.Store(true)
}

// relPath returns the path of name in d, for error messages.
func (s *scanner) relPath(d *dirRef, name string) string {
	return filepath.Join(s.root, d.path, name)
}

func (s *scanner) errorf(d *dirRef, name, op string, err error) error {
	return fmt.Errorf("scan %q: %s: %w", s.relPath(d, name), op, err)
}

// entryPath names an entry for the l*xattr calls, which have no *at form:
// through the directory's descriptor when /proc allows, which also keeps deep
// paths short.
func (s *scanner) entryPath(d *dirRef, name string) string {
	if s.procFD {
		return "/proc/self/fd/" + strconv.Itoa(d.fd) + "/" + name
	}
	return s.relPath(d, name)
}

// fill sets n from the lstat data st the way mkcomposefs does: nlink is not
// taken from st, hardlinks being ignored.
func (s *scanner) fill(n *tree.Inode, st *unix.Stat_t) {
	n.Mode = st.Mode
	n.Nlink = 1
	n.UID = st.Uid
	n.GID = st.Gid
	n.Rdev = st.Rdev
	n.Size = uint64(st.Size)
	if !s.opts.UseEpoch {
		n.Mtime = tree.Timespec{Sec: st.Mtim.Sec, Nsec: uint32(st.Mtim.Nsec)}
	}
}

// xattrs sets the xattrs of n from the file open as fd, or if fd < 0 from
// the file at path (not following a symlink).
func (s *scanner) xattrs(xr *xattrReader, n *tree.Inode, fd int, path string) error {
	if s.opts.SkipXattrs {
		return nil
	}
	xs, err := xr.read(fd, path, s.opts.UserXattrs)
	n.Xattrs = xs
	return err
}

// entry lets one allocation per directory hold all its dirents and inodes.
type entry struct {
	d tree.Dirent
	n tree.Inode
}

// walk fills dir with the entries of the open directory d and recurses into
// subdirectories. Non-empty regular files are handed to the workers.
func (s *scanner) walk(d *dirRef, dir *tree.Inode) error {
	names, err := s.readNames(d.fd)
	if err != nil {
		return s.errorf(d, "", "read directory", err)
	}
	slices.Sort(names)
	block := make([]entry, len(names))
	entries := make([]*tree.Dirent, 0, len(names))
	subdirs := 0
	for i, name := range names {
		if s.failed.Load() {
			return errStopped
		}
		var st unix.Stat_t
		if err := fstatat(d.fd, name, &st); err != nil {
			return s.errorf(d, name, "lstat", err)
		}
		typ := st.Mode & unix.S_IFMT
		if s.opts.SkipDevices && (typ == unix.S_IFCHR || typ == unix.S_IFBLK) {
			continue
		}
		e := &block[i]
		n := &e.n
		s.fill(n, &st)
		e.d.Name = name
		e.d.Inode = n
		entries = append(entries, &e.d)
		switch typ {
		case unix.S_IFDIR:
			subdirs++
			continue
		case unix.S_IFREG:
			if st.Size > 0 {
				d.refs.Add(1)
				s.jobs <- fileJob{dir: d, name: name, node: n}
				continue
			}
		case unix.S_IFLNK:
			if err := s.readlink(d, name, n); err != nil {
				return err
			}
		}
		if err := s.xattrs(&s.xr, n, -1, s.entryPath(d, name)); err != nil {
			return s.errorf(d, name, "xattrs", err)
		}
	}
	dir.Entries = entries
	// What the image will record; mkcomposefs recomputes it the same way.
	dir.Nlink = uint32(2 + subdirs)

	for _, e := range entries {
		if e.Inode.IsDir() {
			if err := s.subdir(d, e); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *scanner) subdir(parent *dirRef, e *tree.Dirent) error {
	fd, err := openRetry(parent.fd, e.Name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	if err != nil {
		return s.errorf(parent, e.Name, "open directory", err)
	}
	d := &dirRef{fd: fd, path: filepath.Join(parent.path, e.Name)}
	d.refs.Store(1)
	defer d.release()
	if err := s.xattrs(&s.xr, e.Inode, fd, ""); err != nil {
		return s.errorf(parent, e.Name, "xattrs", err)
	}
	return s.walk(d, e.Inode)
}

// readNames returns the names in the open directory fd, without "." and
// "..", in directory order.
func (s *scanner) readNames(fd int) ([]string, error) {
	if s.dirents == nil {
		s.dirents = make([]byte, 64<<10)
	}
	var names []string
	for {
		n, err := unix.Getdents(fd, s.dirents)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(s.dirents[:n], -1, names)
	}
}

// maxSymlink is PATH_MAX: targets must be shorter, as in mkcomposefs.
const maxSymlink = 4096

func (s *scanner) readlink(d *dirRef, name string, n *tree.Inode) error {
	if s.link == nil {
		s.link = make([]byte, maxSymlink)
	}
	l, err := unix.Readlinkat(d.fd, name, s.link)
	if err != nil {
		return s.errorf(d, name, "readlink", err)
	}
	switch {
	case l == 0:
		return s.errorf(d, name, "readlink", errors.New("empty symlink target"))
	case l >= maxSymlink:
		return s.errorf(d, name, "readlink", errors.New("symlink target too long"))
	}
	n.Payload = string(s.link[:l])
	n.Size = uint64(l)
	return nil
}

func fstatat(dirfd int, name string, st *unix.Stat_t) error {
	for {
		err := unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return err
		}
	}
}

func openRetry(dirfd int, path string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, path, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}
