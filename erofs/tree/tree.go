// Package tree holds the in-memory filesystem tree that every composefs
// source (directory scan, dumpfile, OCI layers, EROFS image) produces and every
// sink (EROFS writer, dumpfile writer, store, FUSE) consumes.
//
// The model follows composefs rather than POSIX: a regular file either carries
// its bytes inline (Content) or names an object in a content-addressed store
// (Payload, Digest); hardlinks are several directory entries sharing one
// *Inode, exactly one of which is the primary that decides where the inode is
// placed in an image.
package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

// File type bits of Inode.Mode, as in st_mode.
const (
	TypeMask = 0o170000
	TypeSock = 0o140000
	TypeLnk  = 0o120000
	TypeReg  = 0o100000
	TypeBlk  = 0o060000
	TypeDir  = 0o040000
	TypeChr  = 0o020000
	TypeFifo = 0o010000
)

// Sizes of the fs-verity digests a composefs metacopy xattr can carry:
// sha256, the only one the C tools use, and sha512, which repositories using
// fsverity-sha512 name their objects by.
const (
	DigestSize       = 32
	DigestSizeSHA512 = 64
)

// ValidDigestSize reports whether n is the size of a digest an inode can
// carry.
func ValidDigestSize(n int) bool { return n == DigestSize || n == DigestSizeSHA512 }

// Limits libcomposefs puts on a tree. Every source enforces them, so that
// whatever it builds can be written as an image.
const (
	MaxNameLen       = 255  // one directory entry name
	MaxPayloadLen    = 4095 // a symlink target or object path: PATH_MAX - 1
	MaxInlineContent = 5000 // bytes of a regular file held inline
	MaxXattrNameLen  = 255
	MaxXattrValueLen = 65535

	// MaxXattrsSize bounds an inode's xattrs as XattrSize accounts them:
	// half of what an EROFS inode holds, leaving room for the overlay
	// xattrs an image adds.
	MaxXattrsSize = 65535 / 2
	// XattrsHeaderSize is accounted once for an inode with any xattrs.
	XattrsHeaderSize = 12
)

// XattrSize is the space one xattr is accounted for: its name and value, an
// EROFS entry header and worst-case alignment padding.
func XattrSize(nameLen, valueLen int) int { return 2*4 - 1 + nameLen + valueLen }

// Timespec is a modification time.
type Timespec struct {
	Sec  int64
	Nsec uint32
}

// Xattr is one extended attribute. Names and values are arbitrary bytes held
// in strings so that they can be compared and used as map keys.
type Xattr struct {
	Name  string
	Value string
}

// Inode is one file of the tree. Fields that do not apply to its type are zero.
type Inode struct {
	// Mode is st_mode including the file type bits. Bits above 16 are kept
	// as given; the EROFS writer drops them as the C tool does.
	Mode  uint32
	Nlink uint32
	UID   uint32
	GID   uint32
	Rdev  uint64
	Mtime Timespec
	// Size is the file size for regular files and the target length for
	// symlinks. For directories it is informational (the EROFS reader sets
	// the on-disk directory size, writers compute their own).
	Size uint64

	// Payload is the symlink target for symlinks and the object path
	// (for example "ab/cdef...") for external regular files; empty for none.
	Payload string
	// Content holds the bytes of an inline regular file; nil for none.
	Content []byte
	// Digest is the fs-verity digest of the file's content (DigestSize or
	// DigestSizeSHA512 bytes), or nil.
	Digest []byte

	// Xattrs in no particular order; writers sort them as their format needs.
	Xattrs []Xattr

	// Entries of a directory, sorted by name in byte order, without "." and "..".
	Entries []*Dirent
}

// Dirent is a name in a directory.
type Dirent struct {
	Name  string
	Inode *Inode
	// Hardlink marks a secondary name of an inode whose primary name is
	// elsewhere in the tree: an image places the inode where its primary
	// entry is reached, and hardlink entries only point at it.
	Hardlink bool
}

// Type returns the file type bits of the mode.
func (n *Inode) Type() uint32 { return n.Mode & TypeMask }

// IsDir reports whether the inode is a directory.
func (n *Inode) IsDir() bool { return n.Type() == TypeDir }

// IsReg reports whether the inode is a regular file.
func (n *Inode) IsReg() bool { return n.Type() == TypeReg }

// IsSymlink reports whether the inode is a symbolic link.
func (n *Inode) IsSymlink() bool { return n.Type() == TypeLnk }

// IsWhiteout reports whether the inode is an overlayfs whiteout: a character
// device with device number 0.
func (n *Inode) IsWhiteout() bool { return n.Type() == TypeChr && n.Rdev == 0 }

// Xattr returns the value of the named xattr and whether it is present.
func (n *Inode) Xattr(name string) (string, bool) {
	for _, x := range n.Xattrs {
		if x.Name == name {
			return x.Value, true
		}
	}
	return "", false
}

// SetXattr sets an xattr, replacing any previous value.
func (n *Inode) SetXattr(name, value string) {
	for i := range n.Xattrs {
		if n.Xattrs[i].Name == name {
			n.Xattrs[i].Value = value
			return
		}
	}
	n.Xattrs = append(n.Xattrs, Xattr{Name: name, Value: value})
}

// RemoveXattr removes the named xattr if present.
func (n *Inode) RemoveXattr(name string) {
	for i := range n.Xattrs {
		if n.Xattrs[i].Name == name {
			n.Xattrs = append(n.Xattrs[:i], n.Xattrs[i+1:]...)
			return
		}
	}
}

// SortXattrs sorts the xattrs by name in byte order.
func (n *Inode) SortXattrs() {
	sort.Slice(n.Xattrs, func(i, j int) bool { return n.Xattrs[i].Name < n.Xattrs[j].Name })
}

// ErrExist is returned by Insert when the name is already present.
var ErrExist = errors.New("file exists")

// Lookup returns the entry with the given name, or nil.
func (n *Inode) Lookup(name string) *Dirent {
	i, ok := n.search(name)
	if !ok {
		return nil
	}
	return n.Entries[i]
}

func (n *Inode) search(name string) (int, bool) {
	es := n.Entries
	// Sources mostly produce names in order: check the end first.
	if len(es) == 0 || es[len(es)-1].Name < name {
		return len(es), false
	}
	i := sort.Search(len(es), func(i int) bool { return es[i].Name >= name })
	return i, i < len(es) && es[i].Name == name
}

// Insert adds an entry to a directory, keeping Entries sorted. It fails with
// ErrExist if the name is taken.
func (n *Inode) Insert(d *Dirent) error {
	i, ok := n.search(d.Name)
	if ok {
		return ErrExist
	}
	n.Entries = append(n.Entries, nil)
	copy(n.Entries[i+1:], n.Entries[i:])
	n.Entries[i] = d
	return nil
}

// Remove deletes the named entry and returns it, or nil if absent.
func (n *Inode) Remove(name string) *Dirent {
	i, ok := n.search(name)
	if !ok {
		return nil
	}
	d := n.Entries[i]
	n.Entries = append(n.Entries[:i], n.Entries[i+1:]...)
	return d
}

// Resolve walks an absolute or relative slash-separated path from root and
// returns the inode it names. Symlinks are not followed.
func Resolve(root *Inode, p string) (*Inode, error) {
	cur := root
	for _, c := range strings.Split(p, "/") {
		if c == "" {
			continue
		}
		if !cur.IsDir() {
			return nil, fmt.Errorf("%s: %w", p, errNotDir)
		}
		d := cur.Lookup(c)
		if d == nil {
			return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
		}
		cur = d.Inode
	}
	return cur, nil
}

var errNotDir = errors.New("not a directory")

// Walk calls fn for every entry below dir in depth-first order, children in
// name order, passing the slash-separated path of the entry relative to dir
// (without a leading slash). The walk does not descend into the directories
// of hardlink entries (directories cannot be hardlinked in a valid tree). An
// error returned by fn stops the walk and is returned.
func Walk(dir *Inode, fn func(path string, d *Dirent) error) error {
	return walk(dir, "", fn)
}

func walk(dir *Inode, prefix string, fn func(string, *Dirent) error) error {
	for _, d := range dir.Entries {
		p := prefix + d.Name
		if err := fn(p, d); err != nil {
			return err
		}
		if d.Inode.IsDir() && !d.Hardlink {
			if err := walk(d.Inode, p+"/", fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// MarkHardlinks makes, for every inode reached through several entries, the
// first entry in depth-first name order its primary and the others hardlink
// entries. A dumpfile written from the tree then names each inode's content
// once, at its first path, as `composefs-info dump` does.
func MarkHardlinks(root *Inode) {
	seen := make(map[*Inode]bool)
	var visit func(dir *Inode)
	visit = func(dir *Inode) {
		for _, d := range dir.Entries {
			d.Hardlink = seen[d.Inode]
			seen[d.Inode] = true
			if d.Inode.IsDir() && !d.Hardlink {
				visit(d.Inode)
			}
		}
	}
	visit(root)
}
