package erofs

import (
	"encoding/binary"
	"sort"

	"github.com/gocfs/gocfs/erofs/tree"
)

// A hand-built image for reader tests, laid out the way the composefs
// writer does it (slot-aligned inodes, inline tails that never cross a
// block, a shared xattr table after the inodes, data blocks at the end) but
// with every field under the test's control. Helper names start with hb so
// they stay apart from other tests of the package.

type hbXattr struct {
	index uint8
	name  string // suffix after the index's prefix
	value string
}

type hbEnt struct {
	name string
	node int // index in hbImage.nodes
}

type hbNode struct {
	mode  uint16
	nlink uint32 // 0: 1, or 2 + subdirectories for directories
	uid   uint32
	gid   uint32
	rdev  uint32
	ext   bool   // extended inode
	mtime uint64 // extended inodes only
	size  uint64 // chunk-based and block files; derived for the others

	xattrs []hbXattr // inline, in this order
	shared []int     // indexes in hbImage.shared

	data      []byte  // inline tail of a regular file or symlink
	block     []byte  // data of a FLAT_PLAIN regular file, in data blocks
	chunkBits int     // > 0: chunk-based file with a null block map
	ents      []hbEnt // directory entries; "." and ".." are added

	// Set by build.
	nid    uint64
	off    int
	parent int
	tail   []byte
	blkadr uint32
}

type hbImage struct {
	nodes     []*hbNode // nodes[0] is the root
	shared    []hbXattr
	buildTime uint64
	flags     uint32
	version   uint32

	// Set by build.
	xattrStart int // offset of the shared xattr table
	sharedOff  []int
}

func hbFileType(mode uint16) uint8 { return direntType(uint32(mode)) }

func hbAlign(x, a int) int { return (x + a - 1) / a * a }

func (n *hbNode) coreSize() int {
	if n.ext {
		return InodeExtendedSize
	}
	return InodeCompactSize
}

func (n *hbNode) xattrSize() int {
	if len(n.xattrs) == 0 && len(n.shared) == 0 {
		return 0
	}
	s := XattrIbodyHeaderSize + 4*len(n.shared)
	for _, x := range n.xattrs {
		s += hbAlign(XattrEntrySize+len(x.name)+len(x.value), 4)
	}
	return s
}

func hbXattrEntry(x hbXattr) []byte {
	b := make([]byte, hbAlign(XattrEntrySize+len(x.name)+len(x.value), 4))
	b[0] = uint8(len(x.name))
	b[1] = x.index
	binary.LittleEndian.PutUint16(b[2:], uint16(len(x.value)))
	copy(b[4:], x.name)
	copy(b[4+len(x.name):], x.value)
	return b
}

// dirEntries returns the sorted entries of directory node i, "." and ".."
// included, as (name, node) pairs.
func (b *hbImage) dirEntries(i int) []hbEnt {
	n := b.nodes[i]
	ents := append([]hbEnt{{".", i}, {"..", n.parent}}, n.ents...)
	sort.SliceStable(ents, func(x, y int) bool { return ents[x].name < ents[y].name })
	return ents
}

func (b *hbImage) direntBlock(i int) []byte {
	ents := b.dirEntries(i)
	out := make([]byte, DirentSize*len(ents))
	nameoff := len(out)
	for k, e := range ents {
		d := dirent{Nid: b.nodes[e.node].nid, NameOff: uint16(nameoff), FileType: hbFileType(b.nodes[e.node].mode)}
		d.marshal(out[k*DirentSize:])
		nameoff += len(e.name)
	}
	for _, e := range ents {
		out = append(out, e.name...)
	}
	return out
}

func (b *hbImage) build() []byte {
	for i, n := range b.nodes {
		n.parent = -1
		if i == 0 {
			n.parent = 0
		}
	}
	for i, n := range b.nodes {
		for _, e := range n.ents {
			if c := b.nodes[e.node]; c.parent < 0 && c.mode&tree.TypeMask == tree.TypeDir {
				c.parent = i
			}
		}
	}
	// Tail sizes do not depend on nids: lay out with placeholder tails.
	pos := InodesStart
	for _, n := range b.nodes {
		tailLen := len(n.data)
		switch {
		case n.mode&tree.TypeMask == tree.TypeDir:
			tailLen = DirentSize*(len(n.ents)+2) + 3
			for _, e := range n.ents {
				tailLen += len(e.name)
			}
		case n.chunkBits > 0:
			tailLen = int(ChunkEntrySize * ((n.size-1)>>n.chunkBits + 1))
		}
		pos = hbAlign(pos, InodeSlotSize)
		if tailLen > 0 && pos%BlockSize+n.coreSize()+n.xattrSize()+tailLen > BlockSize {
			pos = hbAlign(pos, BlockSize)
		}
		n.off = pos
		n.nid = uint64(pos / InodeSlotSize)
		pos += n.coreSize() + n.xattrSize() + tailLen
	}
	b.xattrStart = hbAlign(pos, InodeSlotSize)
	pos = b.xattrStart
	b.sharedOff = nil
	for _, x := range b.shared {
		b.sharedOff = append(b.sharedOff, pos)
		pos += len(hbXattrEntry(x))
	}
	pos = hbAlign(pos, BlockSize)
	for _, n := range b.nodes {
		if n.block != nil {
			n.blkadr = uint32(pos / BlockSize)
			pos += hbAlign(len(n.block), BlockSize)
		}
	}
	img := make([]byte, hbAlign(pos, BlockSize))

	(&header{Magic: ComposefsMagic, Version: ComposefsHeaderVersion, Flags: b.flags, ComposefsVersion: b.version}).marshal(img)
	(&superblock{
		Magic:         ErofsMagic,
		FeatureCompat: FeatureCompat,
		BlkSzBits:     BlockBits,
		RootNid:       uint16(b.nodes[0].nid),
		Inos:          uint64(len(b.nodes)),
		BuildTime:     b.buildTime,
		Blocks:        uint32(len(img) / BlockSize),
		XattrBlkAddr:  uint32(b.xattrStart / BlockSize),
	}).marshal(img[SuperblockOffset:])

	for i, n := range b.nodes {
		var tail []byte
		raw := inode{Mode: n.mode, Nlink: n.nlink, UID: n.uid, GID: n.gid, Ino: uint32(i)}
		layout := LayoutFlatPlain
		switch n.mode & tree.TypeMask {
		case tree.TypeDir:
			tail = b.direntBlock(i)
			raw.Size = uint64(len(tail))
			if raw.Nlink == 0 {
				raw.Nlink = 2
				for _, e := range n.ents {
					if c := b.nodes[e.node]; c.mode&tree.TypeMask == tree.TypeDir && c.parent == i {
						raw.Nlink++
					}
				}
			}
		case tree.TypeChr, tree.TypeBlk:
			raw.U = n.rdev
		case tree.TypeReg, tree.TypeLnk:
			switch {
			case n.chunkBits > 0:
				layout = LayoutChunkBased
				raw.Size = n.size
				raw.U = uint32(n.chunkBits - BlockBits)
				tail = make([]byte, ChunkEntrySize*((n.size-1)>>n.chunkBits+1))
				for k := range tail {
					tail[k] = 0xff
				}
			case n.block != nil:
				raw.Size = uint64(len(n.block))
				raw.U = n.blkadr
				copy(img[int(n.blkadr)*BlockSize:], n.block)
			default:
				tail = n.data
				raw.Size = uint64(len(n.data))
			}
		}
		if len(tail) > 0 && layout == LayoutFlatPlain {
			layout = LayoutFlatInline
		}
		if raw.Nlink == 0 {
			raw.Nlink = 1
		}
		if n.ext {
			raw.Format = InodeVersionExtended
			raw.Mtime = n.mtime
		}
		raw.Format |= uint16(layout) << InodeLayoutShift
		xs := n.xattrSize()
		if xs > 0 {
			raw.XattrCount = uint16((xs-XattrIbodyHeaderSize)/4 + 1)
		}
		raw.marshal(img[n.off:])
		p := n.off + n.coreSize()
		if xs > 0 {
			img[p+4] = uint8(len(n.shared))
			q := p + XattrIbodyHeaderSize
			for _, s := range n.shared {
				binary.LittleEndian.PutUint32(img[q:], uint32((b.sharedOff[s]-b.xattrStart/BlockSize*BlockSize)/4))
				q += 4
			}
			for _, x := range n.xattrs {
				q += copy(img[q:], hbXattrEntry(x))
			}
		}
		n.tail = tail
		copy(img[p+xs:], tail)
	}
	for k, x := range b.shared {
		copy(img[b.sharedOff[k]:], hbXattrEntry(x))
	}
	return img
}

// hbSample is a small image with one of everything the reader handles.
// Node indexes are named by the constants below.
const (
	hbRoot = iota
	hbDir
	hbFile
	hbBlockdev
	hbChunked
	hbEscaped
	hbFifo
	hbHard
	hbLink
	hbExt
	hbBlockFile
	hbWhiteout0
	hbWhiteout1
	hbNodes
)

const hbDigest = "0123456789abcdef0123456789abcdef"

func hbSample() *hbImage {
	b := &hbImage{buildTime: 1000, flags: 0}
	b.shared = []hbXattr{
		{XattrIndexSecurity, "selinux", "system_u:object_r:usr_t:s0"},
		{XattrIndexUser, "shared", "v"},
	}
	n := make([]*hbNode, hbNodes)
	n[hbRoot] = &hbNode{mode: 0o40755,
		xattrs: []hbXattr{
			{XattrIndexTrusted, "overlay.opaque", "y"},
			{XattrIndexTrusted, "overlay.overlay.opaque", "x"},
			{XattrIndexTrusted, "overlay.overlay.whiteouts", ""},
			{XattrIndexUser, "overlay.opaque", "x"},
			{XattrIndexUser, "overlay.whiteouts", ""},
		},
		shared: []int{0},
		ents: []hbEnt{
			{"00", hbWhiteout0}, {"01", hbWhiteout1},
			{"a-dir", hbDir}, {"blockdev", hbBlockdev}, {"chunked", hbChunked},
			{"escaped", hbEscaped}, {"ext", hbExt}, {"fifo", hbFifo},
			{"hard1", hbHard}, {"hard2", hbHard}, {"link", hbLink}, {"zblock", hbBlockFile},
		}}
	n[hbDir] = &hbNode{mode: 0o40700, uid: 7, gid: 8, ents: []hbEnt{{"file", hbFile}, {"hard3", hbHard}}}
	n[hbFile] = &hbNode{mode: 0o100644, data: []byte("hello\n"), shared: []int{1, 0},
		xattrs: []hbXattr{{XattrIndexUser, "a", "1"}}}
	n[hbBlockdev] = &hbNode{mode: 0o60600, rdev: 0x0801}
	n[hbChunked] = &hbNode{mode: 0o100755, size: 1 << 20, chunkBits: 20,
		xattrs: []hbXattr{
			{XattrIndexTrusted, "overlay.metacopy", metacopyHeader(len(hbDigest)) + hbDigest},
			{XattrIndexTrusted, "overlay.redirect", "/ab/cdef"},
		}}
	n[hbEscaped] = &hbNode{mode: 0o100640,
		xattrs: []hbXattr{
			{XattrIndexTrusted, "overlay.overlay.whiteout", ""},
			{XattrIndexUser, "overlay.whiteout", ""},
		}}
	n[hbFifo] = &hbNode{mode: 0o10644}
	n[hbHard] = &hbNode{mode: 0o100600, nlink: 3, data: []byte("shared data"),
		xattrs: []hbXattr{{XattrIndexNone, "other.x", "1"}, {XattrIndexPosixACLAccess, "", "acl"}}}
	n[hbLink] = &hbNode{mode: 0o120777, data: []byte("a-dir/file")}
	n[hbExt] = &hbNode{mode: 0o100444, ext: true, mtime: 5000, uid: 100000, data: []byte{}}
	n[hbBlockFile] = &hbNode{mode: 0o100644, block: make([]byte, 4100)}
	n[hbWhiteout0] = &hbNode{mode: 0o20644}
	n[hbWhiteout1] = &hbNode{mode: 0o20644}
	for i := range n[hbBlockFile].block {
		n[hbBlockFile].block[i] = byte(i * 7)
	}
	b.nodes = n
	b.flags = FlagHasACL
	return b
}

// tailOff returns the image offset of node i's inline tail.
func (b *hbImage) tailOff(i int) int {
	n := b.nodes[i]
	return n.off + n.coreSize() + n.xattrSize()
}

// direntOff returns the image offset of the dirent called name in
// directory node dir, and the offset of its name bytes.
func (b *hbImage) direntOff(dir int, name string) (rec, nameAt int) {
	t := b.tailOff(dir)
	ents := b.dirEntries(dir)
	at := t + DirentSize*len(ents)
	for k, e := range ents {
		if e.name == name {
			return t + DirentSize*k, at
		}
		at += len(e.name)
	}
	panic("no entry " + name)
}
