package cfsfuse

import (
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/verity"
)

// A node is an inode of the image as the kernel's composefs mount (EROFS
// under overlayfs) shows it. Nodes do not change once built, but for the
// listing of a directory, read once when first needed, so requests share
// them freely.
type node struct {
	ino  erofs.Inode
	attr fuse.Attr

	// xattrs are what the kernel mount lists, in its order (inline entries,
	// then shared ones, as EROFS lists them), under the names it shows:
	// overlayfs hides its own trusted.overlay.* xattrs and unescapes
	// trusted.overlay.overlay.X to trusted.overlay.X; EROFS lists no names
	// outside the user, trusted and security namespaces, and POSIX ACLs
	// only when the image has them (mount.composefs mounts it noacl
	// otherwise).
	xattrs []tree.Xattr

	// listing is the directory's listing, read when first needed.
	listing *dirListing

	// whiteout marks an overlay whiteout (a 0:0 character device), which
	// overlayfs hides: composefs stores the whiteouts of the tree escaped,
	// as regular files, so these are the root's "00" to "ff".
	whiteout bool
	// lookupErr is the error overlayfs gives when looking the file up: a
	// metacopy file whose metacopy xattr is malformed, or whose redirect is
	// missing, relative or malformed.
	lookupErr syscall.Errno

	// object is the path of an external file's data relative to an object
	// directory, "" when the data is in the image.
	object string
	// digest is the fs-verity digest the metacopy xattr names for the
	// object, nil if none; alg is the algorithm byte stored with it, not
	// necessarily a valid one.
	digest []byte
	alg    verity.Algorithm
}

func (n *node) isDir() bool { return n.ino.IsDir() }

// Values of the composefs metacopy xattr: version 0, its own length, flags,
// the fs-verity algorithm and up to the largest digest.
const (
	metacopyHeader = 4
	metacopyMax    = metacopyHeader + verity.MaxDigestSize
)

// newNode decodes inode nid into its mounted view.
func newNode(img *erofs.Image, nid uint64, acl bool) (*node, error) {
	ino, err := img.Inode(nid)
	if err != nil {
		return nil, err
	}
	n := &node{ino: *ino}
	if ino.Type() == tree.TypeChr && ino.Rdev == 0 {
		n.whiteout = true
		return n, nil
	}
	xs, err := img.Xattrs(ino)
	if err != nil {
		return nil, err
	}
	var metacopy, redirect string
	var hasMetacopy, hasRedirect bool
	for _, x := range xs {
		switch {
		case strings.HasPrefix(x.Name, erofs.OverlayEscapedPrefix):
			n.xattrs = append(n.xattrs, tree.Xattr{
				Name:  erofs.OverlayPrefix + x.Name[len(erofs.OverlayEscapedPrefix):],
				Value: x.Value,
			})
		case strings.HasPrefix(x.Name, erofs.OverlayPrefix):
			// Like overlayfs, the first of repeated names wins.
			switch {
			case x.Name == erofs.XattrMetacopy && !hasMetacopy:
				metacopy, hasMetacopy = x.Value, true
			case x.Name == erofs.XattrRedirect && !hasRedirect:
				redirect, hasRedirect = x.Value, true
			}
		case x.Name == erofs.XattrPosixACLAccess, x.Name == erofs.XattrPosixACLDefault:
			if acl {
				n.xattrs = append(n.xattrs, x)
			}
		case strings.HasPrefix(x.Name, "user."), strings.HasPrefix(x.Name, "trusted."),
			strings.HasPrefix(x.Name, "security."):
			n.xattrs = append(n.xattrs, x)
		}
	}
	if ino.IsReg() && hasMetacopy {
		n.external(metacopy, redirect, hasRedirect)
	}
	n.attr = attrOf(ino)
	if ino.IsDir() {
		n.listing = new(dirListing)
	}
	return n, nil
}

// external records where the data of a metacopy file lives, following the
// checks overlayfs makes when it looks the file up.
func (n *node) external(metacopy, redirect string, hasRedirect bool) {
	switch m := metacopy; {
	case m == "":
	case len(m) < metacopyHeader || len(m) > metacopyMax || m[0] != 0 || int(m[1]) != len(m):
		n.lookupErr = syscall.EIO
		return
	case len(m) > metacopyHeader:
		n.digest = []byte(m[metacopyHeader:])
		n.alg = verity.Algorithm(m[3])
	}
	switch {
	case !hasRedirect, redirect != "" && redirect[0] != '/' && !strings.Contains(redirect, "/"):
		// No redirect, or a relative one naming a file in the same
		// directory of a lower layer: the data-only layers are searched
		// only for absolute redirects, so overlayfs finds no data.
		n.lookupErr = syscall.EIO
	case !validRedirect(redirect):
		n.lookupErr = syscall.EINVAL
	default:
		n.object = redirect[1:]
	}
}

// validRedirect reports whether overlayfs accepts an absolute redirect:
// "/" followed by non-empty names separated by single slashes.
func validRedirect(r string) bool {
	if len(r) < 2 || r[0] != '/' || strings.IndexByte(r, 0) >= 0 {
		return false
	}
	for c := range strings.SplitSeq(r[1:], "/") {
		if c == "" {
			return false
		}
	}
	return true
}

// attrOf returns the attributes the kernel mount reports. EROFS gives
// every file its mtime as atime and ctime, and overlayfs reports the
// blocks of a metacopy file as its size rounded up to whole blocks until
// its data is opened; this reports that for every file, which is what
// EROFS reports for the others.
func attrOf(ino *erofs.Inode) fuse.Attr {
	t := ino.Mtime
	return fuse.Attr{
		Ino:       ino.Nid,
		Size:      ino.Size,
		Blocks:    (ino.Size + erofs.BlockSize - 1) / erofs.BlockSize * (erofs.BlockSize / 512),
		Atime:     uint64(t.Sec),
		Mtime:     uint64(t.Sec),
		Ctime:     uint64(t.Sec),
		Atimensec: t.Nsec,
		Mtimensec: t.Nsec,
		Ctimensec: t.Nsec,
		Mode:      ino.Mode,
		Nlink:     ino.Nlink,
		Owner:     fuse.Owner{Uid: ino.UID, Gid: ino.GID},
		Rdev:      ino.Rdev,
		Blksize:   erofs.BlockSize,
	}
}

// xattr returns the value of the named xattr as the mount shows it.
func (n *node) xattr(name string) (string, bool) {
	for _, x := range n.xattrs {
		if x.Name == name {
			return x.Value, true
		}
	}
	return "", false
}

// privileged reports whether an xattr name is in the trusted namespace,
// which the kernel shows only to callers with CAP_SYS_ADMIN.
func privileged(name string) bool { return strings.HasPrefix(name, "trusted.") }

// nodeCache keeps recently decoded nodes: a direct-mapped table indexed by
// nid, lock-free and of fixed size, so that it needs no eviction policy and
// no locking on the request path. The kernel caches attributes and entries
// itself; this saves decoding an inode again for the requests it does not
// cache (xattrs, opens, reads, directory listings).
type nodeCache struct {
	slots [nodeCacheSlots]atomic.Pointer[node]
}

// nodeCacheSlots bounds the cache at a few tens of MiB of nodes; nids of
// neighbouring inodes differ, so they spread over the slots.
const nodeCacheSlots = 1 << 16

func (c *nodeCache) get(nid uint64) *node {
	if n := c.slots[nid%nodeCacheSlots].Load(); n != nil && n.ino.Nid == nid {
		return n
	}
	return nil
}

func (c *nodeCache) put(n *node) { c.slots[n.ino.Nid%nodeCacheSlots].Store(n) }
