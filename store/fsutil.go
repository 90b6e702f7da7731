package store

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/store/objects"
)

// tempPrefix starts the names of temporary files and symlinks. Names of
// streams and refs may not start with a dot, so they never collide.
const tempPrefix = objects.TempPrefix

func retry[T any](f func() (T, error)) (T, error) {
	for {
		v, err := f()
		if err != unix.EINTR {
			return v, err
		}
	}
}

func openDir(dirfd int, name string) (int, error) {
	return retry(func() (int, error) {
		return unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
}

// openFile opens a file (following symlinks) for reading.
func openFile(dirfd int, name string) (*os.File, error) {
	fd, err := retry(func() (int, error) { return unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_CLOEXEC, 0) })
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

func flock(fd, how int) error {
	_, err := retry(func() (struct{}, error) { return struct{}{}, unix.Flock(fd, how) })
	return err
}

func fsync(fd int) error {
	_, err := retry(func() (struct{}, error) { return struct{}{}, unix.Fsync(fd) })
	return err
}

// readAll reads a whole file of at most limit bytes.
func readAll(f *os.File, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", f.Name(), limit)
	}
	return b, nil
}

func randomName() string {
	return tempPrefix + strconv.FormatUint(rand.Uint64(), 36)
}

// writeNewFile creates name in dirfd with content data, complete and synced
// or not at all, and fails with unix.EEXIST if name exists. seal, if not
// nil, is called with a read-only descriptor of the finished file before it
// gets its name (to enable fs-verity).
func writeNewFile(dirfd int, name string, data []byte, seal func(ro *os.File) error) error {
	fd, err := retry(func() (int, error) {
		return unix.Openat(dirfd, ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	})
	tmp := ""
	if err == unix.EOPNOTSUPP || err == unix.EISDIR || err == unix.EINVAL {
		tmp = randomName()
		fd, err = retry(func() (int, error) {
			return unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
		})
	}
	if err != nil {
		return err
	}
	w := os.NewFile(uintptr(fd), name)
	defer func() {
		w.Close()
		if tmp != "" {
			unix.Unlinkat(dirfd, tmp, 0)
		}
	}()
	if _, err := w.Write(data); err != nil {
		return err
	}
	if err := w.Sync(); err != nil {
		return err
	}
	var ro *os.File
	if tmp == "" {
		ro, err = os.Open("/proc/self/fd/" + strconv.Itoa(fd))
	} else {
		ro, err = openFile(dirfd, tmp)
	}
	if err != nil {
		return err
	}
	defer ro.Close()
	if err := w.Close(); err != nil {
		return err
	}
	if seal != nil {
		if err := seal(ro); err != nil {
			return err
		}
	}
	if tmp == "" {
		return unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(ro.Fd())), dirfd, name, unix.AT_SYMLINK_FOLLOW)
	}
	err = unix.Renameat2(dirfd, tmp, dirfd, name, unix.RENAME_NOREPLACE)
	if err == nil {
		tmp = ""
	}
	return err
}

// validName checks one path component of a stream id or ref name: it must be
// a valid file name that does not start with a dot, so that it is neither
// ".", "..", nor a temporary name.
func validName(s string) error {
	switch {
	case s == "":
		return errors.New("empty name")
	case len(s) > 255:
		return fmt.Errorf("name of %d bytes, longer than 255", len(s))
	case s[0] == '.':
		return fmt.Errorf("name %q starts with a dot", s)
	case strings.ContainsAny(s, "/\x00"):
		return fmt.Errorf("name %q holds a slash or a NUL byte", s)
	}
	return nil
}

// validStreamID checks a stream's content id, a name in streams/.
func validStreamID(id string) error {
	if id == refsDir {
		return fmt.Errorf("%q is reserved", id)
	}
	return validName(id)
}

// validRef checks a ref name: slash-separated valid names.
func validRef(name string) error {
	if len(name) > 4000 {
		return fmt.Errorf("ref name of %d bytes is too long", len(name))
	}
	for c := range strings.SplitSeq(name, "/") {
		if err := validName(c); err != nil {
			return fmt.Errorf("ref %q: %w", name, err)
		}
	}
	return nil
}

// relLink returns the target of a relative symlink at name (relative to the
// repository) that points to target (relative to the repository), the way
// composefs-rs computes it: the common leading directories are dropped and
// each remaining directory of name becomes "..".
func relLink(name, target string) string {
	dir := strings.Split(path.Dir(name), "/")
	tgt := strings.Split(target, "/")
	i := 0
	for i < len(dir) && i < len(tgt)-1 && dir[i] == tgt[i] {
		i++
	}
	parts := make([]string, 0, len(dir)-i+len(tgt)-i)
	for range dir[i:] {
		parts = append(parts, "..")
	}
	return strings.Join(append(parts, tgt[i:]...), "/")
}

// symlink makes name (relative to the repository) a symlink to target
// (relative to the repository), creating missing directories, replacing an
// existing link atomically.
func (r *Repository) symlink(name, target string) error {
	link := relLink(name, target)
	if err := r.mkdirs(path.Dir(name)); err != nil {
		return err
	}
	err := unix.Symlinkat(link, r.fd, name)
	if err != unix.EEXIST {
		return wrapPath(name, err)
	}
	if old, err := r.readlink(name); err == nil && old == link {
		return nil
	}
	// Replace through a temporary link renamed over the old one: readers
	// see the old link or the new one, never none.
	dir := path.Dir(name)
	for range 100 {
		tmp := dir + "/" + randomName()
		err := unix.Symlinkat(link, r.fd, tmp)
		if err == unix.EEXIST {
			continue
		}
		if err != nil {
			return wrapPath(name, err)
		}
		if err := unix.Renameat(r.fd, tmp, r.fd, name); err != nil {
			unix.Unlinkat(r.fd, tmp, 0)
			return wrapPath(name, err)
		}
		return nil
	}
	return fmt.Errorf("%s: too many temporary name collisions", name)
}

func wrapPath(name string, err error) error {
	if err == nil {
		return nil
	}
	return &os.PathError{Op: "symlink", Path: name, Err: err}
}

// mkdirs creates the directory dir (relative to the repository) and its
// missing parents.
func (r *Repository) mkdirs(dir string) error {
	err := unix.Mkdirat(r.fd, dir, 0o755)
	switch err {
	case nil, unix.EEXIST:
		return nil
	case unix.ENOENT:
		if parent := path.Dir(dir); parent != dir && parent != "." {
			if err := r.mkdirs(parent); err != nil {
				return err
			}
			if err := unix.Mkdirat(r.fd, dir, 0o755); err != nil && err != unix.EEXIST {
				return &os.PathError{Op: "mkdir", Path: dir, Err: err}
			}
			return nil
		}
	}
	return &os.PathError{Op: "mkdir", Path: dir, Err: err}
}

func (r *Repository) readlink(name string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlinkat(r.fd, name, buf)
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		if len(buf) >= 1<<16 {
			return "", unix.ENAMETOOLONG
		}
		buf = make([]byte, 2*len(buf))
	}
}

// lstat reports the file type bits of name, or an error.
func (r *Repository) lstat(name string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(r.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return 0, err
	}
	return st.Mode & unix.S_IFMT, nil
}

// exists reports whether name resolves (following symlinks).
func (r *Repository) exists(name string) (bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(r.fd, name, &st, 0)
	switch err {
	case nil:
		return true, nil
	case unix.ENOENT, unix.ENOTDIR:
		return false, nil
	}
	return false, err
}
