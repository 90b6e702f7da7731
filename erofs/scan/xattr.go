package scan

import (
	"bytes"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs/tree"
)

// Buffer sizes: the initial ones fit nearly every file, and values never
// exceed the kernel's XATTR_SIZE_MAX.
const (
	xattrListStart  = 1024
	xattrValueStart = 1024
	xattrValueMax   = 64 << 10
)

// xattrSpace is the space the xattrs of one file take, counted as
// mkcomposefs does (tree.XattrSize), within the tree's limits.
type xattrSpace int

// add accounts for one more xattr and fails if it breaks a limit.
func (s *xattrSpace) add(name string, valueLen int) error {
	if len(name) == 0 || len(name) > tree.MaxXattrNameLen {
		return fmt.Errorf("xattr name %q: length not within 1 to %d bytes", name, tree.MaxXattrNameLen)
	}
	if valueLen > tree.MaxXattrValueLen {
		return fmt.Errorf("xattr %q: value of %d bytes, more than %d", name, valueLen, tree.MaxXattrValueLen)
	}
	if *s == 0 {
		*s = tree.XattrsHeaderSize
	}
	*s += xattrSpace(tree.XattrSize(len(name), valueLen))
	if *s > tree.MaxXattrsSize {
		return fmt.Errorf("xattrs take more than %d bytes", tree.MaxXattrsSize)
	}
	return nil
}

// xattrReader reads xattrs into buffers it keeps from file to file, so that
// a file without xattrs costs one system call and no allocation.
type xattrReader struct {
	list  []byte
	value []byte
}

// read returns the xattrs of the file open as fd or, if fd < 0, of the file
// at path (not following a symlink), in the order the filesystem lists them.
// With userOnly, only user.* xattrs are kept.
func (x *xattrReader) read(fd int, path string, userOnly bool) ([]tree.Xattr, error) {
	list, err := x.listAll(fd, path)
	if err != nil {
		return nil, fmt.Errorf("list xattrs: %w", err)
	}
	var xs []tree.Xattr
	var space xattrSpace
	for len(list) > 0 {
		var name []byte
		if i := bytes.IndexByte(list, 0); i >= 0 {
			name, list = list[:i], list[i+1:]
		} else {
			name, list = list, nil
		}
		if len(name) == 0 || userOnly && !bytes.HasPrefix(name, []byte("user.")) {
			continue
		}
		key := string(name)
		value, err := x.get(fd, path, key)
		if err == unix.ENODATA {
			continue // removed since it was listed
		}
		if err != nil {
			return nil, fmt.Errorf("read xattr %q: %w", key, err)
		}
		if err := space.add(key, len(value)); err != nil {
			return nil, err
		}
		xs = append(xs, tree.Xattr{Name: key, Value: string(value)})
	}
	return xs, nil
}

// listAll returns the NUL-separated xattr names, growing the buffer until
// the list fits (it may grow between the size query and the read).
func (x *xattrReader) listAll(fd int, path string) ([]byte, error) {
	if x.list == nil {
		x.list = make([]byte, xattrListStart)
	}
	for {
		n, err := list(fd, path, x.list)
		switch err {
		case nil:
			return x.list[:n], nil
		case unix.ENOTSUP:
			return nil, nil // a filesystem without xattrs
		case unix.ERANGE:
			size, err := list(fd, path, nil)
			if err != nil {
				return nil, err
			}
			x.list = make([]byte, max(size, 2*len(x.list)))
		default:
			return nil, err
		}
	}
}

func (x *xattrReader) get(fd int, path, name string) ([]byte, error) {
	if x.value == nil {
		x.value = make([]byte, xattrValueStart)
	}
	for {
		n, err := get(fd, path, name, x.value)
		switch err {
		case nil:
			return x.value[:n], nil
		case unix.ERANGE:
			if len(x.value) >= xattrValueMax {
				return nil, err
			}
			size, err := get(fd, path, name, nil)
			if err != nil {
				return nil, err
			}
			x.value = make([]byte, min(max(size, 2*len(x.value)), xattrValueMax))
		default:
			return nil, err
		}
	}
}

func list(fd int, path string, buf []byte) (int, error) {
	for {
		var n int
		var err error
		if fd >= 0 {
			n, err = unix.Flistxattr(fd, buf)
		} else {
			n, err = unix.Llistxattr(path, buf)
		}
		if err != unix.EINTR {
			return n, err
		}
	}
}

func get(fd int, path, name string, buf []byte) (int, error) {
	for {
		var n int
		var err error
		if fd >= 0 {
			n, err = unix.Fgetxattr(fd, name, buf)
		} else {
			n, err = unix.Lgetxattr(path, name, buf)
		}
		if err != unix.EINTR {
			return n, err
		}
	}
}
