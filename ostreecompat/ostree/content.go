package ostree

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs/tree"
)

// WriteFile stores a content object and returns its checksum: a regular
// file with the content content returns until io.EOF, or, when m is a
// symlink, the symlink (content is then not read and may be nil). An
// object already present is kept.
func (r *Repo) WriteFile(m *FileMeta, content io.Reader) (string, error) {
	h, err := NewContentHash(m)
	if err != nil {
		return "", fmt.Errorf("ostree: file object: %w", err)
	}
	if m.IsSymlink() {
		c := hex.EncodeToString(h.Sum(nil))
		if ok, err := r.HasObject(ObjFile, c); err != nil || ok {
			return c, err
		}
		if r.mode == ModeBare {
			return c, r.writeBareSymlink(c, m)
		}
		return c, r.WriteFileObject(c, m, func(f *os.File) error {
			_, err := f.WriteString(m.Target + "\x00")
			return err
		})
	}
	tf, err := r.createTemp()
	if err != nil {
		return "", err
	}
	if content != nil {
		if _, err := io.Copy(io.MultiWriter(tf.f, h), content); err != nil {
			tf.discard()
			return "", fmt.Errorf("ostree: writing file object: %w", err)
		}
	}
	c := hex.EncodeToString(h.Sum(nil))
	if ok, err := r.HasObject(ObjFile, c); err != nil || ok {
		tf.discard()
		return c, err
	}
	return c, r.finishFile(tf, c, m)
}

// WriteFileObject stores the content object checksum with metadata m
// unless it exists. fill writes the content into an empty file open for
// reading and writing; it may also clone the data into it (FICLONE). For a
// bare-user symlink, fill writes the target and a NUL; bare symlinks cannot
// be written this way (use WriteFile).
//
// The checksum is trusted, not computed: it must be the ContentChecksum of
// m and the content. This is for callers that already hashed the content,
// reading it once, and only clone it here.
func (r *Repo) WriteFileObject(checksum string, m *FileMeta, fill func(*os.File) error) error {
	if !ValidChecksum(checksum) {
		return fmt.Errorf("ostree: file object %q: %w", checksum, ErrInvalid)
	}
	if err := m.check(); err != nil {
		return fmt.Errorf("ostree: file object %s: %w", checksum, err)
	}
	if m.IsSymlink() && r.mode == ModeBare {
		return fmt.Errorf("ostree: file object %s: a bare symlink is no file to fill: %w", checksum, ErrInvalid)
	}
	tf, err := r.createTemp()
	if err != nil {
		return err
	}
	if err := fill(tf.f); err != nil {
		tf.discard()
		return fmt.Errorf("ostree: file object %s: %w", checksum, err)
	}
	return r.finishFile(tf, checksum, m)
}

// finishFile gives a filled temporary file the metadata the mode wants and
// links it into place.
func (r *Repo) finishFile(tf *tempFile, checksum string, m *FileMeta) error {
	if err := r.applyMeta(tf.f, m); err != nil {
		tf.discard()
		return fmt.Errorf("ostree: file object %s: %w", checksum, err)
	}
	if err := r.ensureObjDir(checksum); err != nil {
		tf.discard()
		return err
	}
	return tf.publish(objectPath(checksum, ObjFile))
}

func (r *Repo) applyMeta(f *os.File, m *FileMeta) error {
	fd := int(f.Fd())
	if r.mode == ModeBare {
		// chown before chmod, which it would strip of setuid/setgid.
		if err := unix.Fchown(fd, int(m.UID), int(m.GID)); err != nil {
			return fmt.Errorf("fchown %d:%d: %w", m.UID, m.GID, err)
		}
		if err := unix.Fchmod(fd, m.Mode&permsMask); err != nil {
			return fmt.Errorf("fchmod: %w", err)
		}
		for _, x := range m.Xattrs {
			if x.Value == "" {
				continue
			}
			if err := unix.Fsetxattr(fd, x.Name, []byte(x.Value), 0); err != nil {
				return fmt.Errorf("setting xattr %s: %w", x.Name, err)
			}
		}
	} else {
		meta, err := m.bareUserMeta()
		if err != nil {
			return err
		}
		if err := unix.Fsetxattr(fd, userMeta, meta, 0); err != nil {
			return fmt.Errorf("setting %s: %w", userMeta, err)
		}
		perm := m.Mode&0o775 | 0o400
		if m.IsSymlink() {
			perm = 0o644
		}
		if err := unix.Fchmod(fd, perm); err != nil {
			return fmt.Errorf("fchmod: %w", err)
		}
	}
	return zeroMtime(fd)
}

// zeroMtime sets the file's mtime to 0 and leaves its atime, as libostree
// does for every object (futimens with a NULL path).
func zeroMtime(fd int) error {
	ts := [2]unix.Timespec{{Nsec: unix.UTIME_OMIT}, {}}
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e != 0 {
		return fmt.Errorf("futimens: %w", e)
	}
	return nil
}

func (r *Repo) writeBareSymlink(checksum string, m *FileMeta) error {
	name := randomName("tmp/symlink-")
	if err := unix.Symlinkat(m.Target, r.dirfd(), name); err != nil {
		return fmt.Errorf("ostree: %s: %w", filepath.Join(r.path, name), err)
	}
	err := unix.Fchownat(r.dirfd(), name, int(m.UID), int(m.GID), unix.AT_SYMLINK_NOFOLLOW)
	for _, x := range m.Xattrs {
		if err == nil && x.Value != "" {
			if err = unix.Lsetxattr(filepath.Join(r.path, name), x.Name, []byte(x.Value), 0); err != nil {
				err = fmt.Errorf("setting xattr %s: %w", x.Name, err)
			}
		}
	}
	if err == nil {
		err = r.ensureObjDir(checksum)
	}
	if err == nil {
		err = renameNoReplace(r.dirfd(), name, objectPath(checksum, ObjFile))
		if errors.Is(err, unix.EEXIST) {
			err = nil
		}
	}
	unix.Unlinkat(r.dirfd(), name, 0)
	if err != nil {
		return fmt.Errorf("ostree: symlink object %s: %w", checksum, err)
	}
	return nil
}

// OpenFile opens a content object and returns its metadata and, for a
// regular file, its content open for reading (nil for a symlink). The
// metadata comes from where the mode keeps it: the inode in bare mode, the
// user.ostreemeta xattr in bare-user mode.
func (r *Repo) OpenFile(checksum string) (*FileMeta, *os.File, error) {
	if !ValidChecksum(checksum) {
		return nil, nil, fmt.Errorf("ostree: file object %q: %w", checksum, ErrInvalid)
	}
	p := objectPath(checksum, ObjFile)
	full := filepath.Join(r.path, p)
	m, f, err := r.openFile(p, full)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil, fmt.Errorf("ostree: file object %s: %w", checksum, ErrNotFound)
		}
		return nil, nil, fmt.Errorf("ostree: %s: %w", full, err)
	}
	return m, f, nil
}

func (r *Repo) openFile(p, full string) (*FileMeta, *os.File, error) {
	if r.mode == ModeBare {
		var st unix.Stat_t
		if err := unix.Fstatat(r.dirfd(), p, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return nil, nil, err
		}
		m := &FileMeta{UID: st.Uid, GID: st.Gid, Mode: st.Mode}
		if st.Mode&typeMask == tree.TypeLnk {
			t, err := readlinkat(r.dirfd(), p)
			if err != nil {
				return nil, nil, err
			}
			m.Target = t
			if m.Xattrs, err = listXattrs(-1, full); err != nil {
				return nil, nil, err
			}
			return m, nil, m.check()
		}
	}
	fd, err := unix.Openat(r.dirfd(), p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	f := os.NewFile(uintptr(fd), full)
	m, err := r.fileMeta(f)
	if err == nil {
		err = m.check()
	}
	if err != nil || m.IsSymlink() {
		f.Close()
		return m, nil, err
	}
	return m, f, nil
}

// fileMeta reads the metadata of an open regular object file, and the
// target of a bare-user symlink.
func (r *Repo) fileMeta(f *os.File) (*FileMeta, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, err
	}
	if st.Mode&typeMask != tree.TypeReg {
		return nil, fmt.Errorf("object of mode %#o: %w", st.Mode, ErrInvalid)
	}
	if r.mode == ModeBare {
		xs, err := listXattrs(int(f.Fd()), "")
		return &FileMeta{UID: st.Uid, GID: st.Gid, Mode: st.Mode, Xattrs: xs}, err
	}
	b, err := getXattr(int(f.Fd()), "", userMeta)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", userMeta, err)
	}
	m, err := parseBareUserMeta(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", userMeta, err)
	}
	if m.IsSymlink() {
		if st.Size > 4096 {
			return nil, fmt.Errorf("symlink object of %d bytes: %w", st.Size, ErrInvalid)
		}
		b, err := io.ReadAll(f)
		if err != nil {
			return nil, err
		}
		if len(b) < 2 || bytes.IndexByte(b, 0) != len(b)-1 {
			return nil, fmt.Errorf("symlink object content %q is not a NUL-terminated target: %w", b, ErrInvalid)
		}
		m.Target = string(b[:len(b)-1])
	}
	return m, nil
}

func readlinkat(dirfd int, p string) (string, error) {
	for n := 256; ; n *= 2 {
		buf := make([]byte, n)
		k, err := unix.Readlinkat(dirfd, p, buf)
		if err != nil {
			return "", err
		}
		if k < n {
			return string(buf[:k]), nil
		}
	}
}

// listXattrs returns every xattr of the open file fd, or, when fd is -1, of
// path itself (not following a symlink).
func listXattrs(fd int, path string) ([]tree.Xattr, error) {
	list := func(b []byte) (int, error) {
		if fd >= 0 {
			return unix.Flistxattr(fd, b)
		}
		return unix.Llistxattr(path, b)
	}
	names, err := sized(list)
	if err != nil {
		return nil, fmt.Errorf("listing xattrs: %w", err)
	}
	var xs []tree.Xattr
	for _, n := range bytes.Split(names, []byte{0}) {
		if len(n) == 0 {
			continue
		}
		v, err := getXattr(fd, path, string(n))
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("xattr %s: %w", n, err)
		}
		xs = append(xs, tree.Xattr{Name: string(n), Value: string(v)})
	}
	return xs, nil
}

func getXattr(fd int, path, name string) ([]byte, error) {
	return sized(func(b []byte) (int, error) {
		if fd >= 0 {
			return unix.Fgetxattr(fd, name, b)
		}
		return unix.Lgetxattr(path, name, b)
	})
}

// sized calls an xattr call that fills a buffer, growing the buffer until
// the answer fits (it may grow between the size query and the read).
func sized(call func([]byte) (int, error)) ([]byte, error) {
	for {
		n, err := call(nil)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, nil
		}
		b := make([]byte, n)
		n, err = call(b)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return b[:n], nil
	}
}
