package erofs

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gocfs/gocfs/erofs/tree"
)

// imageWriter holds the flattened, rewritten tree while an image is laid out
// and written. Nodes are in breadth-first order, which is both the inode
// order and the data block order of the image; per-node xattrs and
// directory entries live in shared arenas to keep allocations per image
// rather than per inode.
type imageWriter struct {
	nodes   []wnode
	dirents []wdirent
	xattrs  []wxattr
	links   []wlink
	// dirs records, for every directory, the directory holding it and its
	// name there; it catches directories reached twice, which would make
	// the walk loop.
	dirs map[*tree.Inode]dirPlace
	// strs holds the strings the writer makes up (escaped names, overlay
	// xattr values); substrings of its contents stay valid as it grows.
	strs strings.Builder
	// strsSize is what strs will need; inputXattrs plus addedXattrs
	// bounds the xattr arena.
	strsSize    int
	inputXattrs int
	addedXattrs int

	hasWhiteout bool
	version     int
	flags       uint32
	minMtime    tree.Timespec

	sharedTable []int32 // representative xattr index of each shared entry, in table order
	sharedSize  uint64
	inodesEnd   uint64
	dataStart   uint64
	dataBlocks  uint64
	rootNid     uint64
}

// wnode is one inode of the image.
type wnode struct {
	in     *tree.Inode // nil for the root whiteouts the writer adds
	parent int32       // directory of the primary entry
	flags  uint8

	// Attributes after the rewrite for EROFS.
	mode  uint32
	nlink uint32
	uid   uint32
	gid   uint32
	rdev  uint64
	mtime tree.Timespec
	// size is st_size as the C writer has it: the content length for
	// regular files, the target length for symlinks, 0 for whiteouts and
	// the given Size for other non-directories.
	size uint64

	xattrs  arenaSpan
	dirents arenaSpan

	// Layout.
	compact   bool
	nShared   uint8
	xattrArea uint32 // bytes of the inline xattr area
	tail      uint32 // bytes of inline data after the xattrs
	blocks    uint32 // full data blocks
	chunks    uint32 // chunk table entries of an external file
	pad       uint32 // zero bytes written before the inode
	nid       uint64
	u         uint32 // i_u: block address, rdev or chunk format
}

const (
	wnExternal    = 1 << iota // regular file whose data comes from the overlay redirect
	wnWhiteout                // 0:0 character device rewritten to a regular file
	wnHasWhiteout             // directory holding a whiteout as a primary entry
)

type arenaSpan struct{ off, n int32 }

func (s arenaSpan) end() int32 { return s.off + s.n }

// wdirent is a directory entry; target is a node index.
type wdirent struct {
	name   string
	target int32
}

// wlink is a hardlink entry waiting for its target's node.
type wlink struct {
	dirent int32
	dir    int32
	inode  *tree.Inode
}

type dirPlace struct {
	parent *tree.Inode
	name   string
}

// wxattr is one xattr of a node, after escaping.
type wxattr struct {
	name  string
	value string
	ref   int32 // distinct (name, value) pair
	// sharedOff is the offset of the xattr's entry in the shared table, or
	// -1 when the xattr is stored inline.
	sharedOff int64
}

// rootWhiteoutNames are "00" to "ff", in byte order.
var rootWhiteoutNames = func() (names [RootWhiteouts]string) {
	const hex = "0123456789abcdef"
	for i := range names {
		names[i] = string([]byte{hex[i>>4], hex[i&15]})
	}
	return names
}()

// collect flattens the tree into breadth-first order, validating it and
// computing what the rewrite needs. The order follows the C writer: from
// the root, each directory's entries in name order (with "." and ".."
// and, in the root, the whiteouts "00" to "ff" merged in), inodes placed
// at their primary entry, hardlink entries skipped.
func (iw *imageWriter) collect(root *tree.Inode) error {
	if !root.IsDir() {
		return fmt.Errorf("erofs: root is not a directory (mode %o)", root.Mode)
	}
	nodes, dirents, err := iw.count(root)
	if err != nil {
		return err
	}
	iw.nodes = make([]wnode, 1, nodes)
	iw.nodes[0] = wnode{in: root}
	iw.dirents = make([]wdirent, 0, dirents)
	iw.minMtime = root.Mtime
	for i := 0; i < len(iw.nodes); i++ {
		if err := iw.visit(int32(i)); err != nil {
			return err
		}
	}
	return iw.resolveLinks()
}

// count walks the directories depth first to size the node and entry
// arenas, so that they are allocated once, and rejects directories with
// several names before the breadth-first walk could loop on them.
func (iw *imageWriter) count(root *tree.Inode) (nodes, dirents int, err error) {
	iw.dirs = map[*tree.Inode]dirPlace{root: {}}
	nodes, dirents = 1+RootWhiteouts, RootWhiteouts
	stack := []*tree.Inode{root}
	for len(stack) > 0 {
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		dirents += 2 + len(dir.Entries)
		for _, d := range dir.Entries {
			if d == nil || d.Inode == nil || d.Hardlink {
				continue
			}
			nodes++
			if !d.Inode.IsDir() {
				continue
			}
			if _, ok := iw.dirs[d.Inode]; ok {
				return 0, 0, fmt.Errorf("erofs: %s: directory already in the tree as %s",
					iw.dirPath(dir, d.Name), iw.dirPath(d.Inode, ""))
			}
			iw.dirs[d.Inode] = dirPlace{dir, d.Name}
			stack = append(stack, d.Inode)
		}
	}
	return nodes, dirents, nil
}

// dirPath returns the path of name in dir, or of dir itself for an empty
// name, from the places count recorded.
func (iw *imageWriter) dirPath(dir *tree.Inode, name string) string {
	var parts []string
	if name != "" {
		parts = append(parts, name)
	}
	for p := iw.dirs[dir]; p.parent != nil; p = iw.dirs[p.parent] {
		parts = append(parts, p.name)
	}
	return joinPath(parts)
}

// joinPath makes an absolute path of names listed from the leaf up.
func joinPath(parts []string) string {
	if len(parts) == 0 {
		return "/"
	}
	var b strings.Builder
	for k := len(parts) - 1; k >= 0; k-- {
		b.WriteByte('/')
		b.WriteString(parts[k])
	}
	return b.String()
}

// resolveLinks points hardlink entries at the nodes of their targets.
func (iw *imageWriter) resolveLinks() error {
	if len(iw.links) == 0 {
		return nil
	}
	targets := make(map[*tree.Inode]int32, len(iw.links))
	for _, l := range iw.links {
		targets[l.inode] = -1
	}
	for i := range iw.nodes {
		in := iw.nodes[i].in
		if in == nil {
			continue
		}
		if t, ok := targets[in]; ok {
			if t >= 0 {
				return fmt.Errorf("erofs: %s: inode already placed at %s; further names must be hardlink entries",
					iw.path(int32(i)), iw.path(t))
			}
			targets[in] = int32(i)
		}
	}
	for _, l := range iw.links {
		name := iw.dirents[l.dirent].name
		t := targets[l.inode]
		switch {
		case l.inode.IsDir():
			return fmt.Errorf("erofs: %s: hardlink to a directory", iw.entryPath(l.dir, name))
		case t < 0:
			return fmt.Errorf("erofs: %s: hardlink to an inode that has no primary entry in the tree",
				iw.entryPath(l.dir, name))
		}
		iw.dirents[l.dirent].target = t
	}
	return nil
}

// visit validates node i, sets its attributes and, for a directory, appends
// its entries and children.
func (iw *imageWriter) visit(i int32) error {
	n := &iw.nodes[i]
	in := n.in
	if in == nil {
		root := &iw.nodes[0]
		n.mode = tree.TypeChr | 0o644
		n.nlink = 1
		n.uid, n.gid, n.mtime = root.uid, root.gid, root.mtime
		iw.addedXattrs++ // the root's SELinux label
		return nil
	}
	n.mode, n.nlink, n.uid, n.gid, n.mtime = in.Mode, in.Nlink, in.UID, in.GID, in.Mtime
	if in.Mtime.Sec < iw.minMtime.Sec || in.Mtime.Sec == iw.minMtime.Sec && in.Mtime.Nsec < iw.minMtime.Nsec {
		iw.minMtime = in.Mtime
	}
	if err := iw.checkXattrs(i); err != nil {
		return err
	}
	if in.Type() != tree.TypeDir && len(in.Entries) != 0 {
		return fmt.Errorf("erofs: %s: only directories can have entries (mode %o)", iw.path(i), in.Mode)
	}
	switch in.Type() {
	case tree.TypeDir:
		return iw.visitDir(i)
	case tree.TypeReg:
		return iw.visitReg(i)
	case tree.TypeLnk:
		if err := checkPayloadString(in.Payload); err != nil || in.Payload == "" {
			if err == nil {
				err = fmt.Errorf("empty target")
			}
			return fmt.Errorf("erofs: %s: invalid symlink: %w", iw.path(i), err)
		}
		n.size = uint64(len(in.Payload))
	case tree.TypeChr:
		n.rdev, n.size = in.Rdev, in.Size
		if in.Rdev == 0 {
			// A whiteout becomes an empty regular file carrying
			// escaped whiteout xattrs, so that the image can itself
			// be an overlayfs lower layer.
			n.mode = tree.TypeReg | in.Mode&^tree.TypeMask
			n.size = 0
			n.flags |= wnWhiteout
			iw.addedXattrs += 2
			if p := &iw.nodes[n.parent]; p.flags&wnHasWhiteout == 0 {
				p.flags |= wnHasWhiteout
				iw.addedXattrs += 4
			}
			iw.hasWhiteout = true
		}
	case tree.TypeBlk:
		n.rdev, n.size = in.Rdev, in.Size
	case tree.TypeFifo, tree.TypeSock:
		n.size = in.Size
	default:
		return fmt.Errorf("erofs: %s: invalid file type in mode %o", iw.path(i), in.Mode)
	}
	return nil
}

func (iw *imageWriter) visitReg(i int32) error {
	n := &iw.nodes[i]
	in := n.in
	if in.Content != nil {
		if len(in.Content) > MaxInlineContent {
			return fmt.Errorf("erofs: %s: inline content of %d bytes exceeds the maximum of %d",
				iw.path(i), len(in.Content), MaxInlineContent)
		}
		if in.Size != uint64(len(in.Content)) {
			return fmt.Errorf("erofs: %s: size %d does not match the %d bytes of inline content",
				iw.path(i), in.Size, len(in.Content))
		}
		n.size = uint64(len(in.Content))
		return nil
	}
	n.size = in.Size
	if n.size == 0 {
		return nil
	}
	if _, count := externalChunks(n.size); count > MaxChunks {
		return fmt.Errorf("erofs: %s: file size %d needs %d chunks, more than the %d supported",
			iw.path(i), n.size, count, MaxChunks)
	}
	if err := checkPayloadString(in.Payload); err != nil {
		return fmt.Errorf("erofs: %s: invalid payload: %w", iw.path(i), err)
	}
	if len(in.Digest) != 0 && !tree.ValidDigestSize(len(in.Digest)) {
		return fmt.Errorf("erofs: %s: digest is %d bytes, want %d or %d", iw.path(i), len(in.Digest), tree.DigestSize, tree.DigestSizeSHA512)
	}
	n.flags |= wnExternal
	iw.addedXattrs++
	if len(in.Digest) != 0 {
		iw.strsSize += metacopyHeaderSize + len(in.Digest)
	}
	if in.Payload != "" {
		iw.addedXattrs++
		iw.strsSize += 1 + len(in.Payload)
	}
	return nil
}

func checkPayloadString(p string) error {
	if len(p) > MaxPayloadLen {
		return fmt.Errorf("%d bytes long, more than %d", len(p), MaxPayloadLen)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("contains a NUL byte")
	}
	return nil
}

// checkXattrs applies the C library's limits for xattrs set on a node.
func (iw *imageWriter) checkXattrs(i int32) error {
	xs := iw.nodes[i].in.Xattrs
	if len(xs) == 0 {
		return nil
	}
	total := tree.XattrsHeaderSize
	for _, x := range xs {
		if x.Name == "" || len(x.Name) > MaxXattrNameLen || strings.IndexByte(x.Name, 0) >= 0 {
			return fmt.Errorf("erofs: %s: invalid xattr name %q", iw.path(i), x.Name)
		}
		if len(x.Value) > MaxXattrValueLen {
			return fmt.Errorf("erofs: %s: xattr %q: value of %d bytes exceeds the maximum of %d",
				iw.path(i), x.Name, len(x.Value), MaxXattrValueLen)
		}
		total += tree.XattrSize(len(x.Name), len(x.Value))
		if strings.HasPrefix(x.Name, OverlayPrefix) {
			iw.strsSize += len(x.Name) + len(OverlayEscapedPrefix) - len(OverlayPrefix)
		}
	}
	iw.inputXattrs += len(xs)
	if total > MaxXattrsSize {
		return fmt.Errorf("erofs: %s: xattrs need %d bytes, more than the %d allowed per inode",
			iw.path(i), total, MaxXattrsSize)
	}
	return nil
}

// visitDir appends the entries of directory i, merging the input entries
// with ".", ".." and, for the root, the root whiteouts not shadowed by an
// entry of the same name, and queues the inodes of primary entries.
func (iw *imageWriter) visitDir(i int32) error {
	in := iw.nodes[i].in
	extra := []string{".", ".."}
	if i == 0 {
		extra = make([]string, 0, 2+RootWhiteouts)
		extra = append(extra, ".", "..")
		extra = append(extra, rootWhiteoutNames[:]...)
	}
	start := int32(len(iw.dirents))
	subdirs := uint32(0)
	es := in.Entries
	prev := ""
	for k, j := 0, 0; k < len(es) || j < len(extra); {
		if k < len(es) && (es[k] == nil || es[k].Inode == nil) {
			return fmt.Errorf("erofs: %s: entry %d has no inode", iw.path(i), k)
		}
		if k < len(es) && (j == len(extra) || es[k].Name <= extra[j]) {
			d := es[k]
			if err := iw.checkEntry(i, d.Name, prev, k); err != nil {
				return err
			}
			if j < len(extra) && d.Name == extra[j] {
				j++ // an entry named like a root whiteout replaces it
			}
			prev = d.Name
			k++
			if d.Hardlink {
				iw.links = append(iw.links, wlink{dirent: int32(len(iw.dirents)), dir: i, inode: d.Inode})
				iw.dirents = append(iw.dirents, wdirent{name: d.Name, target: -1})
				continue
			}
			t := int32(len(iw.nodes))
			iw.nodes = append(iw.nodes, wnode{in: d.Inode, parent: i})
			iw.dirents = append(iw.dirents, wdirent{name: d.Name, target: t})
			if d.Inode.IsDir() {
				subdirs++
			}
			continue
		}
		name := extra[j]
		j++
		var t int32
		switch name {
		case ".":
			t = i
		case "..":
			t = iw.nodes[i].parent
		default:
			t = int32(len(iw.nodes))
			iw.nodes = append(iw.nodes, wnode{parent: i})
		}
		iw.dirents = append(iw.dirents, wdirent{name: name, target: t})
	}
	n := &iw.nodes[i]
	n.dirents = arenaSpan{start, int32(len(iw.dirents)) - start}
	n.nlink = 2 + subdirs
	return nil
}

func (iw *imageWriter) checkEntry(dir int32, name, prev string, k int) error {
	switch {
	case name == "" || name == "." || name == ".." || len(name) > MaxNameLen ||
		strings.IndexByte(name, '/') >= 0 || strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("erofs: %s: invalid entry name %q", iw.path(dir), name)
	case k > 0 && name <= prev:
		return fmt.Errorf("erofs: %s: entries not sorted or not unique at %q", iw.path(dir), name)
	}
	return nil
}

// path returns the slash-separated path of node i, for error messages.
func (iw *imageWriter) path(i int32) string {
	var parts []string
	for ; i != 0; i = iw.nodes[i].parent {
		parts = append(parts, iw.nodeName(i))
	}
	return joinPath(parts)
}

// nodeName returns the name of node i's primary entry. Directories record
// their entries once their walk is done, which is before any of their
// children are visited.
func (iw *imageWriter) nodeName(i int32) string {
	p := &iw.nodes[iw.nodes[i].parent]
	for k := p.dirents.off; k < p.dirents.end(); k++ {
		if iw.dirents[k].target == i && !slices.ContainsFunc(iw.links, func(l wlink) bool { return l.dirent == k }) {
			return iw.dirents[k].name
		}
	}
	return "?"
}

func (iw *imageWriter) entryPath(dir int32, name string) string {
	if dir == 0 {
		return "/" + name
	}
	return iw.path(dir) + "/" + name
}

// concat returns a+b as a string kept in iw.strs.
func (iw *imageWriter) concat(a, b string) string {
	off := iw.strs.Len()
	iw.strs.WriteString(a)
	iw.strs.WriteString(b)
	return iw.strs.String()[off:]
}

// concatBytes is concat for a byte slice suffix.
func (iw *imageWriter) concatBytes(a string, b []byte) string {
	off := iw.strs.Len()
	iw.strs.WriteString(a)
	iw.strs.Write(b)
	return iw.strs.String()[off:]
}
