package ocibuild

import (
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/verity"
)

// InlineMax is the largest regular file a composefs repository keeps inline
// (in layer splitstreams and in images); larger files are objects.
const InlineMax = 64

// AllowedXattrs are the only extended attributes composefs-rs keeps in the
// image of an OCI container: the others (SELinux labels of the build host,
// user.* attributes and the like) are stripped.
var AllowedXattrs = []string{"security.capability"}

// TreeOptions selects the image ExpectedTree describes.
type TreeOptions struct {
	// Algorithm names external files; zero means SHA256.
	Algorithm verity.Algorithm
	// Bootable asks for the boot image: /boot and /sysroot emptied.
	Bootable bool
}

// ExpectedTree returns the tree of the composefs image of b, computed from
// the layer specifications alone:
//
//   - layers apply in order: a directory over a directory updates its
//     metadata and keeps its content, anything else replaces what was at its
//     name; ".wh.NAME" deletes NAME, ".wh..wh..opq" empties its directory; a
//     hardlink shares the inode its target names at that point; an entry's
//     parent must exist as a directory;
//   - the root takes /usr's mode, owner, mtime and xattrs, /run is emptied
//     and takes /usr's mtime, and only AllowedXattrs are kept;
//   - for the boot image, /boot and /sysroot are emptied and take /usr's
//     mtime;
//   - regular files of more than InlineMax bytes are external, named by
//     their fs-verity digest; smaller ones are inline.
func (b *Built) ExpectedTree(opts TreeOptions) (*tree.Inode, error) {
	alg := opts.Algorithm
	if alg == 0 {
		alg = verity.SHA256
	}
	if !alg.Valid() {
		return nil, fmt.Errorf("expected tree: unknown algorithm %d", alg)
	}
	a := applier{root: &tree.Inode{Mode: tree.TypeDir}, data: map[*tree.Inode]*Entry{}}
	for i, l := range b.Image.Layers {
		for j := range l.Entries {
			if err := a.apply(&l.Entries[j]); err != nil {
				return nil, fmt.Errorf("expected tree: layer %d: %s: %w", i+1, l.Entries[j].Path, err)
			}
		}
	}
	if err := a.transform(opts.Bootable); err != nil {
		return nil, fmt.Errorf("expected tree: %w", err)
	}
	a.finish(alg)
	return a.root, nil
}

// LayerObjects returns the fs-verity digests (hex) of the content of every
// regular file of more than InlineMax bytes in the layers, deleted or not:
// the objects the layer splitstreams of b refer to.
func (b *Built) LayerObjects(alg verity.Algorithm) map[string]bool {
	objs := map[string]bool{}
	for _, l := range b.Image.Layers {
		for i := range l.Entries {
			e := &l.Entries[i]
			if e.Type == File && e.DataSize() > InlineMax {
				objs[hex.EncodeToString(verity.DigestBytes(e.Data(), alg))] = true
			}
		}
	}
	return objs
}

type applier struct {
	root *tree.Inode
	// data holds the entry that made each regular file, whose content
	// is turned into inline data or an object name at the end.
	data map[*tree.Inode]*Entry
}

var (
	errNoParent = errors.New("parent directory does not exist")
	errNotDir   = errors.New("not a directory")
)

// dir returns the directory at p, which must exist.
func (a *applier) dir(p string) (*tree.Inode, error) {
	cur := a.root
	for _, c := range strings.Split(p, "/") {
		if c == "" {
			continue
		}
		d := cur.Lookup(c)
		if d == nil {
			return nil, fmt.Errorf("%s: %w", p, errNoParent)
		}
		if !d.Inode.IsDir() {
			return nil, fmt.Errorf("%s: %w", p, errNotDir)
		}
		cur = d.Inode
	}
	return cur, nil
}

func (a *applier) apply(e *Entry) error {
	if err := e.validate(); err != nil {
		return err
	}
	if e.Type == Opaque {
		d, err := a.dir(e.Path)
		if err != nil {
			return err
		}
		d.Entries = nil
		return nil
	}
	if e.Path == "/" {
		setStat(a.root, e)
		return nil
	}
	parent, err := a.dir(path.Dir(e.Path))
	if err != nil {
		return err
	}
	name := path.Base(e.Path)
	switch e.Type {
	case Whiteout:
		parent.Remove(name)
		return nil
	case Hardlink:
		tdir, err := a.dir(path.Dir(e.Target))
		if err != nil {
			return fmt.Errorf("hardlink target: %w", err)
		}
		t := tdir.Lookup(path.Base(e.Target))
		if t == nil {
			return fmt.Errorf("hardlink target %s does not exist", e.Target)
		}
		if t.Inode.IsDir() {
			return fmt.Errorf("hardlink target %s is a directory", e.Target)
		}
		replace(parent, name, t.Inode)
		return nil
	case Dir:
		if old := parent.Lookup(name); old != nil && old.Inode.IsDir() {
			setStat(old.Inode, e)
			return nil
		}
	}
	n := &tree.Inode{}
	setStat(n, e)
	switch e.Type {
	case File:
		a.data[n] = e
	case Symlink:
		n.Payload = e.Target
		n.Size = uint64(len(e.Target))
	case Char, Block:
		n.Rdev = unix.Mkdev(e.Major, e.Minor)
	}
	replace(parent, name, n)
	return nil
}

func replace(dir *tree.Inode, name string, n *tree.Inode) {
	dir.Remove(name)
	dir.Insert(&tree.Dirent{Name: name, Inode: n})
}

var typeBits = [...]uint32{
	Dir: tree.TypeDir, File: tree.TypeReg, Symlink: tree.TypeLnk,
	Char: tree.TypeChr, Block: tree.TypeBlk, Fifo: tree.TypeFifo,
}

// setStat gives n the metadata of e; a directory's entries stay.
func setStat(n *tree.Inode, e *Entry) {
	n.Mode = typeBits[e.Type] | e.Mode
	n.UID, n.GID = uint32(e.UID), uint32(e.GID)
	n.Mtime = tree.Timespec{Sec: e.Mtime}
	n.Xattrs = nil
	for k, v := range e.Xattrs {
		n.Xattrs = append(n.Xattrs, tree.Xattr{Name: k, Value: v})
	}
	n.SortXattrs()
}

func (a *applier) transform(bootable bool) error {
	usr, err := a.dir("/usr")
	if err != nil {
		return fmt.Errorf("root metadata: %w", err)
	}
	a.root.Mode, a.root.UID, a.root.GID, a.root.Mtime = usr.Mode, usr.UID, usr.GID, usr.Mtime
	a.root.Xattrs = append([]tree.Xattr(nil), usr.Xattrs...)
	empty := func(p string) error {
		d, err := a.dir(p)
		if err != nil {
			return err
		}
		d.Entries = nil
		d.Mtime = usr.Mtime
		return nil
	}
	if a.root.Lookup("run") != nil {
		if err := empty("/run"); err != nil {
			return err
		}
	}
	a.filterXattrs()
	if bootable {
		for _, p := range []string{"/boot", "/sysroot"} {
			if err := empty(p); err != nil {
				return fmt.Errorf("boot image: %w", err)
			}
		}
	}
	return nil
}

func allowedXattr(name string) bool {
	for _, a := range AllowedXattrs {
		if a == name {
			return true
		}
	}
	return false
}

func (a *applier) filterXattrs() {
	filter := func(n *tree.Inode) {
		kept := n.Xattrs[:0]
		for _, x := range n.Xattrs {
			if allowedXattr(x.Name) {
				kept = append(kept, x)
			}
		}
		n.Xattrs = kept
	}
	filter(a.root)
	tree.Walk(a.root, func(_ string, d *tree.Dirent) error {
		filter(d.Inode)
		return nil
	})
}

// finish turns file data into inline content or object names and counts
// links.
func (a *applier) finish(alg verity.Algorithm) {
	links := map[*tree.Inode]uint32{}
	subdirs := map[*tree.Inode]uint32{}
	tree.MarkHardlinks(a.root)
	tree.Walk(a.root, func(_ string, d *tree.Dirent) error {
		links[d.Inode]++
		if d.Inode.IsDir() {
			for _, c := range d.Inode.Entries {
				if c.Inode.IsDir() {
					subdirs[d.Inode]++
				}
			}
		}
		return nil
	})
	for _, c := range a.root.Entries {
		if c.Inode.IsDir() {
			subdirs[a.root]++
		}
	}
	a.root.Nlink = 2 + subdirs[a.root]
	for n, l := range links {
		if n.IsDir() {
			n.Nlink = 2 + subdirs[n]
			continue
		}
		n.Nlink = l
		e := a.data[n]
		if e == nil {
			continue
		}
		data := e.Data()
		n.Size = uint64(len(data))
		if len(data) > InlineMax {
			n.Digest = verity.DigestBytes(data, alg)
			n.Payload = ObjectPath(n.Digest)
		} else if len(data) > 0 {
			n.Content = data
		}
	}
}

// ObjectPath returns the name of an object in a repository's objects
// directory, and the redirect an image records for it: "XX/REST" in hex.
func ObjectPath(digest []byte) string {
	h := hex.EncodeToString(digest)
	return h[:2] + "/" + h[2:]
}

// SortedObjects returns the keys of a set of hex digests in order, for
// messages.
func SortedObjects(set map[string]bool) []string {
	s := make([]string, 0, len(set))
	for k := range set {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}
