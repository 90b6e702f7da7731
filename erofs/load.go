package erofs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"

	"github.com/gocfs/gocfs/erofs/tree"
)

// maxDepth bounds directory nesting. Paths are at most PATH_MAX (4096)
// bytes, so no real tree comes near it; it keeps the recursion bounded.
const maxDepth = 4096

// ReadTree reads a whole composefs image of size bytes into a tree, the
// tree libcomposefs builds when composefs-info or composefs-dump load an
// image (lcfs_load_node_from_image); see (*Image).Tree. The image is read
// into memory first.
func ReadTree(r io.ReaderAt, size int64) (*tree.Inode, *ImageInfo, error) {
	data, err := readImage(r, size)
	if err != nil {
		return nil, nil, err
	}
	img, err := OpenBytes(data)
	if err != nil {
		return nil, nil, err
	}
	root, err := img.Tree()
	if err != nil {
		return nil, nil, err
	}
	info := img.Info()
	return root, &info, nil
}

// readImage reads size bytes from r, in steps so that a size larger than
// what r holds fails before it is all allocated.
func readImage(r io.ReaderAt, size int64) ([]byte, error) {
	if size < 0 {
		return nil, fmt.Errorf("erofs: negative image size %d", size)
	}
	const step = 16 << 20
	buf := make([]byte, 0, min(size, step))
	for int64(len(buf)) < size {
		n := int(min(size-int64(len(buf)), step))
		buf = slices.Grow(buf, n)
		m, err := r.ReadAt(buf[len(buf):len(buf)+n], int64(len(buf)))
		if m < n {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("erofs: reading image at %d: %w", len(buf)+m, err)
		}
		buf = buf[:len(buf)+n]
	}
	return buf, nil
}

// Tree reads the whole image into a tree, undoing what the writer adds:
//
//   - "." and ".." entries are dropped, and so is every character device
//     0:0 (the root's 00 to ff whiteouts); one with more than one link is an
//     error.
//   - On regular files, trusted.overlay.redirect becomes Payload (without
//     its leading "/"), a 36-byte trusted.overlay.metacopy gives Digest, and
//     trusted.overlay.overlay.whiteout turns the file back into a
//     character device 0:0 (dropping any content, payload and digest).
//   - trusted.overlay.overlay.whiteouts, user.overlay.whiteout(s) and every
//     other unescaped trusted.overlay.* xattr are dropped, and
//     trusted.overlay.overlay.X becomes trusted.overlay.X.
//   - Xattrs keep libcomposefs' order: as stored, inline entries first, a
//     repeated name replacing the earlier one by moving the last xattr into
//     its place.
//   - Flat regular files carry their bytes in Content, symlinks their target
//     in Payload; Size is i_size (the directory data size for directories);
//     compact inodes take the superblock build time as Mtime.
//   - An inode reached through several names is one *tree.Inode: the first
//     name in depth-first, name-ordered traversal is its primary entry, the
//     others are Hardlink entries. Nlink is kept as stored.
//
// Beyond what ReadDir, Xattrs and the other methods check, Tree requires
// what libcomposefs requires (inline files of at most MaxInlineContent
// bytes, symlink targets of 1 to MaxPayloadLen bytes, unique names) and,
// stricter than libcomposefs' reader and the kernel, what every image
// libcomposefs writes satisfies, so that the tree can be written again:
//
//   - the root is a directory; every directory holds one "." naming itself
//     and one ".." naming its parent (the root's names the root) and has
//     2 + subdirectories links; no directory is reached twice; nesting stays
//     below maxDepth;
//   - dirent file types match the inodes; special files have size 0;
//   - redirects are at most MaxPayloadLen bytes without NUL; an inode's
//     xattrs take at most MaxXattrsSize bytes as libcomposefs accounts them
//     (its reader allows twice that, its writer never writes more);
//   - chunk-based files have at most MaxChunks chunks, and a chunk table
//     inside the inode's block holds only null addresses;
//   - the superblock's inode count is the number of inodes reached, and the
//     header's HasACL flag is set exactly when some inode has a POSIX ACL.
//
// Errors about an inode are *fs.PathError values naming its path, and their
// message names its nid.
func (img *Image) Tree() (*tree.Inode, error) {
	l := &loader{
		img:   img,
		nodes: make(map[uint64]*tree.Inode, min(img.sb.Inos, uint64(img.size)/InodeSlotSize)),
		names: make(map[string]string),
		vals:  make(map[string]string),
	}
	l.xattrFn = l.xattr
	nid := img.Root()
	var ino Inode
	if err := img.readInode(nid, &ino); err != nil {
		return nil, &fs.PathError{Op: "read", Path: "/", Err: err}
	}
	root := l.newNode(&ino)
	l.nodes[nid] = root
	if err := l.loadDir(root, &ino, nid, 0); err != nil {
		return nil, l.pathError("", err)
	}
	if err := l.fill(root, &ino); err != nil {
		return nil, &fs.PathError{Op: "read", Path: "/", Err: err}
	}
	if uint64(len(l.nodes)) != img.sb.Inos {
		return nil, fmt.Errorf("erofs: %d inodes reachable, superblock declares %d: %w", len(l.nodes), img.sb.Inos, ErrCorrupt)
	}
	if flag := img.hdr.Flags&FlagHasACL != 0; flag != l.hasACL {
		has := map[bool]string{false: "has no", true: "has"}[l.hasACL]
		return nil, fmt.Errorf("erofs: header ACL flag is %v but the image %s POSIX ACL xattrs: %w", flag, has, ErrCorrupt)
	}
	return root, nil
}

// loader builds a tree from an image.
type loader struct {
	img *Image
	// nodes maps the nid of every inode reached to its node; nil for the
	// dropped whiteouts.
	nodes map[uint64]*tree.Inode
	// pending holds the entries of the directories being read, innermost
	// last.
	pending []pendingEntry
	// path holds the names of the directories being read, for errors.
	path []string

	// names and vals intern xattr names and short values: images repeat
	// them across inodes.
	names   map[string]string
	vals    map[string]string
	nameBuf []byte

	// The node whose xattrs are being read, the accounted size of its
	// xattrs, and an index of them by name once they are many.
	cur      *tree.Inode
	curNid   uint64
	xsize    int
	xidx     map[string]int
	xattrFn  func(rawXattr) error
	hasACL   bool
	inodes   []tree.Inode
	dirents  []tree.Dirent
	dirSlots []*tree.Dirent
}

type pendingEntry struct {
	name  string
	nid   uint64
	ftype uint8
}

// pathError attaches the path of name (in the directory being read) to err,
// unless err already carries the path of something deeper.
func (l *loader) pathError(name string, err error) error {
	if _, ok := errors.AsType[*fs.PathError](err); ok {
		return err
	}
	p := "/" + strings.Join(l.path, "/")
	if name != "" {
		if len(l.path) > 0 {
			p += "/"
		}
		p += name
	}
	return &fs.PathError{Op: "read", Path: p, Err: err}
}

// newNode returns a node for ino with its inode fields set; nodes are
// allocated in batches.
func (l *loader) newNode(ino *Inode) *tree.Inode {
	if len(l.inodes) == 0 {
		l.inodes = make([]tree.Inode, 256)
	}
	n := &l.inodes[0]
	l.inodes = l.inodes[1:]
	*n = tree.Inode{
		Mode:  ino.Mode,
		Nlink: ino.Nlink,
		UID:   ino.UID,
		GID:   ino.GID,
		Rdev:  uint64(ino.Rdev),
		Mtime: ino.Mtime,
		Size:  ino.Size,
	}
	return n
}

func (l *loader) newDirent(name string, n *tree.Inode, hardlink bool) *tree.Dirent {
	if len(l.dirents) == 0 {
		l.dirents = make([]tree.Dirent, 256)
	}
	d := &l.dirents[0]
	l.dirents = l.dirents[1:]
	*d = tree.Dirent{Name: name, Inode: n, Hardlink: hardlink}
	return d
}

// entrySlots returns a slice of n entry pointers, carved from a batch.
func (l *loader) entrySlots(n int) []*tree.Dirent {
	if n > len(l.dirSlots) {
		l.dirSlots = make([]*tree.Dirent, max(n, 1024))
	}
	s := l.dirSlots[:0:n]
	l.dirSlots = l.dirSlots[n:]
	return s
}

// loadDir reads the entries of directory ino into dir. Errors about the
// directory itself are returned bare, for the caller to add its path.
func (l *loader) loadDir(dir *tree.Inode, ino *Inode, parent uint64, depth int) error {
	if depth >= maxDepth {
		return corrupt(ino.Nid, "directories nested %d deep", depth)
	}
	nb, err := dirBlockCount(ino)
	if err != nil {
		return err
	}
	start := len(l.pending)
	defer func() { l.pending = l.pending[:start] }()
	dots, dotdots := 0, 0
	var prev []byte
	for bi := range nb {
		blk, err := l.img.dirBlock(ino, bi)
		if err != nil {
			return err
		}
		// One string holds all names of the block: one allocation per
		// block, not per entry.
		namesOff := blk.n * DirentSize
		names := string(blk.b[namesOff:])
		for i := range blk.n {
			e, err := blk.entry(i)
			if err != nil {
				return err
			}
			if err := blk.checkOrder(prev, e.name); err != nil {
				return err
			}
			prev = e.name
			switch string(e.name) {
			case ".":
				if e.nid != ino.Nid || e.ftype != FileTypeDir {
					return corrupt(ino.Nid, `"." names nid %d of type %d`, e.nid, e.ftype)
				}
				dots++
				continue
			case "..":
				if e.nid != parent || e.ftype != FileTypeDir {
					return corrupt(ino.Nid, `".." names nid %d of type %d, not the parent directory %d`, e.nid, e.ftype, parent)
				}
				dotdots++
				continue
			}
			name := names[e.off-namesOff : e.off-namesOff+len(e.name)]
			l.pending = append(l.pending, pendingEntry{name: name, nid: e.nid, ftype: e.ftype})
		}
	}
	if dots != 1 || dotdots != 1 {
		return corrupt(ino.Nid, `directory lacks "." or ".."`)
	}
	end := len(l.pending)
	dir.Entries = l.entrySlots(end - start)
	subdirs := uint64(0)
	for i := start; i < end; i++ {
		pe := l.pending[i]
		child, hardlink, err := l.child(pe, ino.Nid, depth)
		if err != nil {
			return l.pathError(pe.name, err)
		}
		if child == nil {
			continue
		}
		if child.IsDir() {
			subdirs++
		}
		dir.Entries = append(dir.Entries, l.newDirent(pe.name, child, hardlink))
	}
	if uint64(ino.Nlink) != 2+subdirs {
		return corrupt(ino.Nid, "directory has %d links but %d subdirectories", ino.Nlink, subdirs)
	}
	return nil
}

// child returns the node of a directory entry and whether the entry is a
// hardlink to a node met before; nil for a dropped whiteout.
func (l *loader) child(pe pendingEntry, dirNid uint64, depth int) (*tree.Inode, bool, error) {
	if n, seen := l.nodes[pe.nid]; seen {
		if n == nil {
			if pe.ftype != FileTypeChr {
				return nil, false, corrupt(pe.nid, "whiteout named by an entry of type %d", pe.ftype)
			}
			return nil, false, nil
		}
		if n.IsDir() {
			return nil, false, corrupt(pe.nid, "directory reached a second time")
		}
		ft := direntType(n.Mode)
		if n.IsWhiteout() {
			ft = FileTypeReg // an escaped whiteout: a regular file on disk
		}
		if ft != pe.ftype {
			return nil, false, corrupt(pe.nid, "entry of type %d names an inode of type %d", pe.ftype, ft)
		}
		return n, true, nil
	}
	var ino Inode
	if err := l.img.readInode(pe.nid, &ino); err != nil {
		return nil, false, err
	}
	if ft := direntType(ino.Mode); ft != pe.ftype {
		return nil, false, corrupt(pe.nid, "entry of type %d names an inode of mode %#o", pe.ftype, ino.Mode)
	}
	if ino.Type() == tree.TypeChr && ino.Rdev == 0 {
		// A whiteout stands for the absence of a file: it cannot be
		// linked from several places.
		if ino.Nlink > 1 {
			return nil, false, corrupt(pe.nid, "whiteout with %d links", ino.Nlink)
		}
		l.nodes[pe.nid] = nil
		return nil, false, nil
	}
	n := l.newNode(&ino)
	l.nodes[pe.nid] = n
	if ino.IsDir() {
		l.path = append(l.path, pe.name)
		err := l.loadDir(n, &ino, dirNid, depth+1)
		l.path = l.path[:len(l.path)-1]
		if err != nil {
			return nil, false, err
		}
	}
	if err := l.fill(n, &ino); err != nil {
		return nil, false, err
	}
	return n, false, nil
}

// fill sets the data and xattrs of node n from ino.
func (l *loader) fill(n *tree.Inode, ino *Inode) error {
	switch {
	case ino.IsSymlink():
		target, err := l.img.ReadLink(ino)
		if err != nil {
			return err
		}
		n.Payload = target
	case ino.IsReg() && ino.Layout == LayoutChunkBased:
		if err := l.checkChunks(ino); err != nil {
			return err
		}
	case ino.IsReg() && ino.Size > 0:
		if ino.Size > MaxInlineContent {
			return corrupt(ino.Nid, "%d bytes of file data, more than the %d a composefs image holds", ino.Size, MaxInlineContent)
		}
		b, err := l.img.flatData(ino)
		if err != nil {
			return err
		}
		n.Content = bytes.Clone(b)
	case !ino.IsDir() && !ino.IsReg() && ino.Size != 0:
		return corrupt(ino.Nid, "special file of mode %#o has size %d", ino.Mode, ino.Size)
	}
	l.cur, l.curNid, l.xsize, l.xidx = n, ino.Nid, 0, nil
	return l.img.forEachXattr(ino, l.xattrFn)
}

// checkChunks checks the chunk table of an external file: composefs maps
// no chunk to a block.
func (l *loader) checkChunks(ino *Inode) error {
	n := ino.ChunkCount()
	if n > MaxChunks {
		return corrupt(ino.Nid, "%d chunks, more than the %d composefs writes", n, MaxChunks)
	}
	if !ino.chunkTableInline() {
		return nil
	}
	b, err := l.img.bytes(ino.inlineOffset(), int(n)*ChunkEntrySize)
	if err != nil {
		return fmt.Errorf("erofs: nid %d: chunk table: %w", ino.Nid, err)
	}
	for i := range int(n) {
		if a := b[i*ChunkEntrySize:]; a[0]&a[1]&a[2]&a[3] != 0xff {
			return corrupt(ino.Nid, "chunk %d maps a block, but composefs stores no file data", i)
		}
	}
	return nil
}

func (l *loader) intern(m map[string]string, b []byte) string {
	if s, ok := m[string(b)]; ok {
		return s
	}
	s := string(b)
	m[s] = s
	return s
}

// xattr applies one stored xattr to the current node, as libcomposefs'
// lcfs_build_node_erofs_xattr does.
func (l *loader) xattr(x rawXattr) error {
	n := l.cur
	l.nameBuf = x.appendName(l.nameBuf[:0])
	name := l.intern(l.names, l.nameBuf)
	if name == XattrPosixACLAccess || name == XattrPosixACLDefault {
		l.hasACL = true
	}
	isReg := n.Type() == tree.TypeReg
	switch {
	case name == XattrRedirect:
		if isReg {
			v := x.value
			if len(v) > 1 && v[0] == '/' {
				v = v[1:]
			}
			if len(v) > MaxPayloadLen || bytes.IndexByte(v, 0) >= 0 {
				return corrupt(l.curNid, "redirect of %d bytes is too long or holds a NUL byte", len(x.value))
			}
			n.Payload = string(v)
		}
		return nil
	case name == XattrMetacopy:
		if d := x.value[min(metacopyHeaderSize, len(x.value)):]; isReg && tree.ValidDigestSize(len(d)) &&
			string(x.value[:metacopyHeaderSize]) == metacopyHeader(len(d)) {
			n.Digest = bytes.Clone(d)
		}
		return nil
	case name == XattrEscapedWhiteout && isReg:
		n.Mode = n.Mode&^tree.TypeMask | tree.TypeChr
		n.Rdev, n.Size = 0, 0
		n.Content, n.Payload, n.Digest = nil, "", nil
		return nil
	case name == XattrEscapedWhiteouts, name == XattrUserWhiteout, name == XattrUserWhiteouts:
		return nil
	case strings.HasPrefix(name, OverlayEscapedPrefix):
		l.nameBuf = append(append(l.nameBuf[:0], OverlayPrefix...), name[len(OverlayEscapedPrefix):]...)
		name = l.intern(l.names, l.nameBuf)
	case strings.HasPrefix(name, OverlayPrefix):
		return nil
	}
	var value string
	if len(x.value) <= 128 {
		value = l.intern(l.vals, x.value)
	} else {
		value = string(x.value)
	}
	return l.setXattr(name, value)
}

// setXattr sets an xattr of the current node the libcomposefs way: an
// existing one is removed by moving the last into its place, the new one is
// appended, and the node's accounted size may not pass MaxXattrsSize.
func (l *loader) setXattr(name, value string) error {
	n := l.cur
	if i, ok := l.lookupXattr(name); ok {
		old := n.Xattrs[i]
		last := len(n.Xattrs) - 1
		n.Xattrs[i] = n.Xattrs[last]
		n.Xattrs = n.Xattrs[:last]
		if l.xidx != nil {
			delete(l.xidx, name)
			if i < last {
				l.xidx[n.Xattrs[i].Name] = i
			}
		}
		if last > 0 {
			l.xsize -= tree.XattrSize(len(name), len(old.Value))
		} else {
			l.xsize = 0
		}
	}
	size := tree.XattrSize(len(name), len(value))
	if len(n.Xattrs) == 0 {
		size += tree.XattrsHeaderSize
	}
	if l.xsize+size > MaxXattrsSize {
		return corrupt(l.curNid, "xattrs take more than %d bytes", MaxXattrsSize)
	}
	l.xsize += size
	n.Xattrs = append(n.Xattrs, tree.Xattr{Name: name, Value: value})
	if l.xidx != nil {
		l.xidx[name] = len(n.Xattrs) - 1
	}
	return nil
}

// lookupXattr finds an xattr of the current node by name, switching from a
// scan to an index once the node has many, so that hostile images with
// thousands of xattrs per inode stay linear.
func (l *loader) lookupXattr(name string) (int, bool) {
	xs := l.cur.Xattrs
	if l.xidx == nil && len(xs) >= 16 {
		l.xidx = make(map[string]int, 2*len(xs))
		for i, x := range xs {
			l.xidx[x.Name] = i
		}
	}
	if l.xidx != nil {
		i, ok := l.xidx[name]
		return i, ok
	}
	for i := range xs {
		if xs[i].Name == name {
			return i, true
		}
	}
	return 0, false
}
