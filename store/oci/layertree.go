package oci

import (
	"archive/tar"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/tree"
)

// xattrAllowlist holds the only extended attributes an image keeps of those
// its layers carry. This is composefs-rs's rule: layers built on a host
// often carry the host's security.selinux labels and user.* attributes,
// which would make the same image's digest depend on where it was built
// (composefs-rs#132, bootc#2194); capabilities are part of what a file is.
// Keeping the rule is also what makes a pulled image byte-identical to the
// one composefs-rs makes of the same layers, so that both tools compute the
// same digest for a boot configuration to pin. SELinux labels would come
// back with a relabelling of the boot image, which gocfs does not do yet
// (see BootTransform).
var xattrAllowlist = []string{"security.capability"}

// xattrRecords are the PAX records carrying the allowed xattrs, the only
// form tar-core reads xattrs in.
var xattrRecords = func() []string {
	rs := make([]string, len(xattrAllowlist))
	for i, x := range xattrAllowlist {
		rs[i] = "SCHILY.xattr." + x
	}
	return rs
}()

// layerApplier builds the filesystem of an image by applying its layer
// archives in order, with the rules TreeFromLayers lists.
type layerApplier struct {
	root *tree.Inode
	// shared is set once a hardlink entry has been applied: only then
	// can an inode have several names.
	shared bool
}

func newLayerApplier() *layerApplier {
	// composefs-rs starts from an uninitialised root (mode 0), which
	// finish replaces by /usr's metadata.
	return &layerApplier{root: &tree.Inode{Mode: tree.TypeDir}}
}

// apply applies the layer archive held in a layer splitstream.
func (a *layerApplier) apply(src chunkSource) error {
	cs := &chunkStream{src: src}
	tr := tar.NewReader(cs)
	for n := 1; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tar entry %d: %w", n, noEOF(err))
		}
		if err := a.entry(tr, cs, hdr); err != nil {
			return fmt.Errorf("tar entry %d (%q): %w", n, hdr.Name, err)
		}
	}
}

// entry applies one archive entry.
func (a *layerApplier) entry(tr *tar.Reader, cs *chunkStream, hdr *tar.Header) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // composefs-rs ignores global PAX records
	}
	if err := checkHeader(hdr); err != nil {
		return err
	}
	dirNames, name, err := splitPath(hdr.Name)
	if err != nil {
		return err
	}
	if name == "" {
		if hdr.Typeflag != tar.TypeDir {
			return errors.New("the root of the tree must be a directory")
		}
		return setStat(a.root, hdr, tree.TypeDir)
	}
	parent, err := a.lookupDir(dirNames)
	if err != nil {
		return err
	}
	if w, ok := strings.CutPrefix(name, ".wh."); ok {
		if w == ".wh..opq" {
			parent.Entries = nil
		} else {
			parent.Remove(w)
		}
		return nil
	}
	var n *tree.Inode
	switch hdr.Typeflag {
	case tar.TypeDir:
		if old := parent.Lookup(name); old != nil && old.Inode.IsDir() {
			return setStat(old.Inode, hdr, tree.TypeDir)
		}
		n = &tree.Inode{}
		if err := setStat(n, hdr, tree.TypeDir); err != nil {
			return err
		}
	case tar.TypeReg, tar.TypeCont:
		if n, err = a.file(tr, cs, hdr); err != nil {
			return err
		}
	case tar.TypeSymlink:
		switch {
		case hdr.Linkname == "":
			return errors.New("symlink with an empty target")
		case len(hdr.Linkname) > erofs.MaxPayloadLen:
			return fmt.Errorf("symlink target of %d bytes, more than %d", len(hdr.Linkname), erofs.MaxPayloadLen)
		case strings.IndexByte(hdr.Linkname, 0) >= 0:
			return errors.New("symlink target contains a NUL byte")
		}
		n = &tree.Inode{Payload: hdr.Linkname, Size: uint64(len(hdr.Linkname))}
		if err := setStat(n, hdr, tree.TypeLnk); err != nil {
			return err
		}
	case tar.TypeLink:
		if n, err = a.hardlinkTarget(hdr.Linkname); err != nil {
			return err
		}
		a.shared = true
	case tar.TypeChar, tar.TypeBlock:
		if hdr.Devmajor < 0 || hdr.Devmajor > math.MaxUint32 || hdr.Devminor < 0 || hdr.Devminor > math.MaxUint32 {
			return fmt.Errorf("device number %d:%d out of range", hdr.Devmajor, hdr.Devminor)
		}
		typ := uint32(tree.TypeChr)
		if hdr.Typeflag == tar.TypeBlock {
			typ = tree.TypeBlk
		}
		n = &tree.Inode{Rdev: unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))}
		if err := setStat(n, hdr, typ); err != nil {
			return err
		}
	case tar.TypeFifo:
		n = &tree.Inode{}
		if err := setStat(n, hdr, tree.TypeFifo); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unsupported entry type %q", hdr.Typeflag)
	}
	if old := parent.Lookup(name); old != nil {
		old.Inode = n
		return nil
	}
	return parent.Insert(&tree.Dirent{Name: name, Inode: n})
}

// file makes the inode of a regular file: inline content, or the object
// the stream names for a larger body.
func (a *layerApplier) file(tr *tar.Reader, cs *chunkStream, hdr *tar.Header) (*tree.Inode, error) {
	n := &tree.Inode{Size: uint64(hdr.Size)}
	if err := setStat(n, hdr, tree.TypeReg); err != nil {
		return nil, err
	}
	switch {
	case hdr.Size == 0:
	case hdr.Size <= InlineMax:
		n.Content = make([]byte, hdr.Size)
		if _, err := io.ReadFull(tr, n.Content); err != nil {
			if err == errExternal {
				return nil, fmt.Errorf("file of %d bytes stored as an object, composefs keeps files up to %d inline", hdr.Size, InlineMax)
			}
			return nil, noEOF(err)
		}
	default:
		d, err := cs.external(hdr.Size)
		if err != nil {
			return nil, err
		}
		n.Digest = d
		n.Payload = objectPath(d)
	}
	return n, nil
}

// objectPath returns an object's name in the objects directory, "XX/REST"
// in hex, which is also the redirect an image records.
func objectPath(d []byte) string {
	h := hex.EncodeToString(d)
	return h[:2] + "/" + h[2:]
}

// hardlinkTarget returns the inode a hardlink entry names.
func (a *layerApplier) hardlinkTarget(target string) (*tree.Inode, error) {
	dirNames, name, err := splitPath(target)
	if err != nil {
		return nil, fmt.Errorf("hardlink target: %w", err)
	}
	if name == "" {
		return nil, fmt.Errorf("hardlink target %q is the root directory", target)
	}
	dir, err := a.lookupDir(dirNames)
	if err != nil {
		return nil, fmt.Errorf("hardlink target %q: %w", target, err)
	}
	d := dir.Lookup(name)
	switch {
	case d == nil:
		return nil, fmt.Errorf("hardlink target %q does not exist", target)
	case d.Inode.IsDir():
		return nil, fmt.Errorf("hardlink target %q is a directory", target)
	}
	return d.Inode, nil
}

// lookupDir returns the directory named by the components of a path, which
// must all exist and be directories.
func (a *layerApplier) lookupDir(names []string) (*tree.Inode, error) {
	dir := a.root
	for i, c := range names {
		d := dir.Lookup(c)
		switch {
		case d == nil:
			return nil, fmt.Errorf("parent directory /%s does not exist", strings.Join(names[:i+1], "/"))
		case d.Inode.IsSymlink():
			return nil, fmt.Errorf("parent /%s is a symlink, which is never followed", strings.Join(names[:i+1], "/"))
		case !d.Inode.IsDir():
			return nil, fmt.Errorf("parent /%s is not a directory", strings.Join(names[:i+1], "/"))
		}
		dir = d.Inode
	}
	return dir, nil
}

// splitPath splits an archive path into its directory components and its
// last name, which is empty for the root. A leading "/" or "./", repeated
// and trailing slashes and "." components mean nothing; ".." is refused, as
// are names no filesystem can hold.
func splitPath(p string) ([]string, string, error) {
	var names []string
	for rest := p; rest != ""; {
		var c string
		c, rest, _ = strings.Cut(rest, "/")
		switch {
		case c == "" || c == ".":
			continue
		case c == "..":
			return nil, "", fmt.Errorf("path %q has a \"..\" component", p)
		case len(c) > erofs.MaxNameLen:
			return nil, "", fmt.Errorf("path %q has a name of %d bytes, more than %d", p, len(c), erofs.MaxNameLen)
		case strings.IndexByte(c, 0) >= 0:
			return nil, "", fmt.Errorf("path %q contains a NUL byte", p)
		}
		names = append(names, c)
	}
	if len(names) == 0 {
		return nil, "", nil
	}
	return names[:len(names)-1], names[len(names)-1], nil
}

// setStat gives n the metadata of hdr and the file type typ. A directory's
// entries stay.
func setStat(n *tree.Inode, hdr *tar.Header, typ uint32) error {
	if hdr.Uid < 0 || int64(hdr.Uid) > math.MaxUint32 || hdr.Gid < 0 || int64(hdr.Gid) > math.MaxUint32 {
		return fmt.Errorf("owner %d:%d out of range", hdr.Uid, hdr.Gid)
	}
	n.Mode = typ | uint32(hdr.Mode)&0o7777
	n.UID, n.GID = uint32(hdr.Uid), uint32(hdr.Gid)
	n.Mtime = tree.Timespec{Sec: hdr.ModTime.Unix()}
	n.Xattrs = nil
	for i, rec := range xattrRecords {
		if v, ok := hdr.PAXRecords[rec]; ok {
			n.Xattrs = append(n.Xattrs, tree.Xattr{Name: xattrAllowlist[i], Value: v})
		}
	}
	return nil
}

// finish applies composefs-rs's OCI transformation (transform_for_oci) and
// readies the tree for the EROFS writer: the root takes /usr's mode,
// owner, mtime and xattrs, because layers rarely describe the root and
// runtimes ignore it when they do; /run, a tmpfs at run time, is emptied
// and takes /usr's mtime; then link counts are set and hardlinks marked.
func (a *layerApplier) finish() (*tree.Inode, error) {
	usr, err := topDir(a.root, "usr")
	if err != nil {
		return nil, fmt.Errorf("image root: %w (its metadata is taken from /usr)", err)
	}
	if usr == nil {
		return nil, errors.New("image root: the image has no /usr, whose metadata the root takes")
	}
	a.root.Mode, a.root.UID, a.root.GID, a.root.Mtime = usr.Mode, usr.UID, usr.GID, usr.Mtime
	a.root.Xattrs = append([]tree.Xattr(nil), usr.Xattrs...)
	run, err := topDir(a.root, "run")
	if err != nil {
		return nil, err
	}
	if run != nil {
		run.Entries = nil
		run.Mtime = usr.Mtime
	}
	finishTree(a.root, a.shared)
	return a.root, nil
}

// topDir returns the directory /name, nil if there is none, or an error if
// the name is something else.
func topDir(root *tree.Inode, name string) (*tree.Inode, error) {
	d := root.Lookup(name)
	if d == nil {
		return nil, nil
	}
	if !d.Inode.IsDir() {
		return nil, fmt.Errorf("/%s is not a directory", name)
	}
	return d.Inode, nil
}

// finishTree sets every inode's link count (directories: 2 and one per
// subdirectory; other files: one per name) and, if inodes may be shared,
// marks all names but the first of each inode as hardlinks.
func finishTree(root *tree.Inode, shared bool) {
	var counts map[*tree.Inode]uint32
	if shared {
		counts = make(map[*tree.Inode]uint32)
	}
	var visit func(dir *tree.Inode)
	visit = func(dir *tree.Inode) {
		dir.Nlink = 2
		for _, d := range dir.Entries {
			d.Hardlink = false
			switch {
			case d.Inode.IsDir():
				dir.Nlink++
				visit(d.Inode)
			case shared:
				counts[d.Inode]++
			default:
				d.Inode.Nlink = 1
			}
		}
	}
	visit(root)
	if shared {
		for n, c := range counts {
			n.Nlink = c
		}
		tree.MarkHardlinks(root)
	}
}
