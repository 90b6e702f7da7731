package ostreecompat

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs/tree"
)

// mergeEtc carries the local configuration of the previous deployment
// (oldDir) into the new one's etc (newEtc, a copy of the new usr/etc), as
// ostree's three-way merge does: whatever the old etc has that differs from
// the old usr/etc (files changed or added by the administrator) is copied
// over the new default, and whatever the old etc lost is removed. Changes
// are taken per file, whole: the administrator's version wins.
func mergeEtc(oldDir, newEtc string) error {
	oldDefault := filepath.Join(oldDir, "usr", "etc")
	oldEtc := filepath.Join(oldDir, "etc")
	if _, err := os.Lstat(oldEtc); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	err := filepath.WalkDir(oldEtc, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(oldEtc, p)
		if rel == "." {
			return nil
		}
		same, err := sameEntry(p, filepath.Join(oldDefault, rel))
		if err != nil || same {
			return err
		}
		dst := filepath.Join(newEtc, rel)
		if d.IsDir() {
			if fi, err := os.Lstat(dst); err == nil && fi.IsDir() {
				return copyMeta(p, dst)
			}
		}
		if err := os.RemoveAll(dst); err != nil {
			return err
		}
		if err := copyEntry(p, dst); err != nil || !d.IsDir() {
			return err
		}
		return filepath.SkipDir
	})
	if err != nil {
		return fmt.Errorf("merge %s: %w", oldEtc, err)
	}
	if _, err := os.Lstat(oldDefault); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	err = filepath.WalkDir(oldDefault, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(oldDefault, p)
		if rel == "." {
			return nil
		}
		if _, err := os.Lstat(filepath.Join(oldEtc, rel)); !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.RemoveAll(filepath.Join(newEtc, rel)); err != nil {
			return err
		}
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("merge %s: %w", oldEtc, err)
	}
	return nil
}

// sameEntry reports whether b exists and is a with the same type, mode,
// owner, xattrs, and content or target; directories compare without their
// entries.
func sameEntry(a, b string) (bool, error) {
	var sa, sb unix.Stat_t
	if err := unix.Lstat(a, &sa); err != nil {
		return false, err
	}
	if err := unix.Lstat(b, &sb); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return false, nil
		}
		return false, err
	}
	isDir := sa.Mode&unix.S_IFMT == unix.S_IFDIR
	if sa.Mode != sb.Mode || sa.Uid != sb.Uid || sa.Gid != sb.Gid || !isDir && sa.Size != sb.Size {
		return false, nil
	}
	xa, err := xattrList(a)
	if err != nil {
		return false, err
	}
	xb, err := xattrList(b)
	if err != nil {
		return false, err
	}
	if !slices.Equal(xa, xb) {
		return false, nil
	}
	switch sa.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		ta, err1 := os.Readlink(a)
		tb, err2 := os.Readlink(b)
		return ta == tb, errors.Join(err1, err2)
	case unix.S_IFREG:
		return sameContent(a, b)
	}
	return true, nil
}

func sameContent(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, errA := io.ReadFull(fa, ba)
		nb, errB := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if errA == io.EOF || errA == io.ErrUnexpectedEOF {
			return errB == io.EOF || errB == io.ErrUnexpectedEOF, nil
		}
		if err := errors.Join(errA, errB); err != nil {
			return false, err
		}
	}
}

// xattrList returns a file's xattrs, sorted by name.
func xattrList(p string) ([]tree.Xattr, error) {
	names, err := xattrCall(func(b []byte) (int, error) { return unix.Llistxattr(p, b) })
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		return nil, fmt.Errorf("%s: list xattrs: %w", p, err)
	}
	var out []tree.Xattr
	for _, name := range strings.Split(strings.TrimSuffix(string(names), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		v, err := xattrCall(func(b []byte) (int, error) { return unix.Lgetxattr(p, name, b) })
		if err != nil {
			return nil, fmt.Errorf("%s: xattr %s: %w", p, name, err)
		}
		out = append(out, tree.Xattr{Name: name, Value: string(v)})
	}
	slices.SortFunc(out, func(a, b tree.Xattr) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// xattrCall calls a size-then-fill syscall (listxattr, getxattr) until the
// buffer is large enough for a value that may grow between the calls.
func xattrCall(call func([]byte) (int, error)) ([]byte, error) {
	for {
		n, err := call(nil)
		if err != nil {
			return nil, err
		}
		b := make([]byte, n)
		m, err := call(b)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return b[:m], nil
	}
}

// copyEntry copies a directory tree, file or symlink from disk, with
// owners, modes, xattrs and mtimes.
func copyEntry(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	switch {
	case fi.IsDir():
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
		ents, err := os.ReadDir(src)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := copyEntry(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
				return err
			}
		}
	case fi.Mode()&fs.ModeSymlink != 0:
		t, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(t, dst); err != nil {
			return err
		}
	case fi.Mode().IsRegular():
		if err := copyFileData(src, dst); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%s: cannot carry a %v into a deployment", src, fi.Mode().Type())
	}
	return copyMeta(src, dst)
}

func copyFileData(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("%s: %w", dst, err)
	}
	return out.Close()
}

// copyMeta gives dst src's owner, mode, xattrs and mtime, in that order:
// chown clears file capabilities and set-id bits.
func copyMeta(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return err
	}
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("%s: chown: %w", dst, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
			return fmt.Errorf("%s: chmod: %w", dst, err)
		}
	}
	xs, err := xattrList(src)
	if err != nil {
		return err
	}
	for _, x := range xs {
		if err := unix.Lsetxattr(dst, x.Name, []byte(x.Value), 0); err != nil {
			return fmt.Errorf("%s: xattr %s: %w", dst, x.Name, err)
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("%s: mtime: %w", dst, err)
	}
	return nil
}
