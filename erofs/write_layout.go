package erofs

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/gocfs/gocfs/erofs/tree"
)

func roundUpTo(x, a uint64) uint64 { return (x + a - 1) &^ (a - 1) }

// externalChunks returns the chunk size (as a power of two) and chunk count of an
// external file of the given non-zero size: the smallest chunk of at least
// a block that holds the whole file, capped at the largest the format can
// express.
func externalChunks(size uint64) (chunkBits uint32, count uint64) {
	chunkBits = max(uint32(bits.Len64(size-1)), BlockBits)
	chunkBits = min(chunkBits, BlockBits+ChunkFormatBlkbitsMask)
	return chunkBits, (size-1)>>chunkBits + 1
}

// dirLayout returns how a directory's entries are stored: entries are
// packed greedily into blocks, and the last partial block is kept inline
// only when it fills at most half a block.
func (iw *imageWriter) dirLayout(n *wnode) (blocks, tail uint32) {
	for _, d := range iw.dirents[n.dirents.off:n.dirents.end()] {
		l := uint32(DirentSize + len(d.name))
		if tail+l > BlockSize {
			blocks++
			tail = 0
		}
		tail += l
	}
	if tail > MaxInlineDirTail {
		blocks++
		tail = 0
	}
	return blocks, tail
}

// layout sizes every inode and assigns nids and data blocks. Inodes follow
// each other from InodesStart, each on a slot boundary, moved further when
// their inline data would cross a block boundary.
func (iw *imageWriter) layout() error {
	pos := uint64(InodesStart)
	for i := range iw.nodes {
		n := &iw.nodes[i]
		compactSize := n.size
		switch n.mode & tree.TypeMask {
		case tree.TypeDir:
			n.blocks, n.tail = iw.dirLayout(n)
			compactSize = uint64(n.blocks)*BlockSize + uint64(n.tail)
		case tree.TypeLnk:
			n.tail = uint32(n.size)
		case tree.TypeReg:
			switch {
			case n.flags&wnExternal != 0:
				_, count := externalChunks(n.size)
				n.chunks = uint32(count)
				n.tail = n.chunks * ChunkEntrySize
			case n.size > 0:
				n.blocks = uint32(n.size / BlockSize)
				n.tail = uint32(n.size % BlockSize)
				if n.tail > MaxInlineFileTail {
					n.blocks++
					n.tail = 0
				}
			}
		}
		// A compact inode has no mtime of its own: it shows the
		// superblock's build time, the minimum mtime of the tree.
		n.compact = n.mtime == iw.minMtime && n.nlink <= math.MaxUint16 &&
			n.uid <= math.MaxUint16 && n.gid <= math.MaxUint16 && compactSize <= math.MaxUint32
		inodeSize := uint64(InodeExtendedSize)
		if n.compact {
			inodeSize = InodeCompactSize
		}
		if n.xattrs.n > 0 {
			area := uint64(XattrIbodyHeaderSize) + uint64(n.nShared)*4
			for _, x := range iw.xattrs[n.xattrs.off:n.xattrs.end()] {
				if x.sharedOff < 0 {
					area += writtenXattrSize(x.name, x.value)
				}
			}
			if (area-XattrIbodyHeaderSize)/4+1 > math.MaxUint16 {
				return fmt.Errorf("erofs: %s: xattrs need %d bytes, more than an inode can hold", iw.path(int32(i)), area)
			}
			n.xattrArea = uint32(area)
		}
		start := roundUpTo(pos, InodeSlotSize)
		extra := iw.tailPadding(n, start, inodeSize+uint64(n.xattrArea))
		n.pad = uint32(start - pos + extra)
		pos = start + extra
		n.nid = pos >> InodeSlotBits
		pos += inodeSize + uint64(n.xattrArea) + uint64(n.tail)
		iw.dataBlocks += uint64(n.blocks)
	}
	iw.inodesEnd = roundUpTo(pos, InodeSlotSize)
	iw.dataStart = roundUpTo(iw.inodesEnd+iw.sharedSize, BlockSize)
	if len(iw.nodes) > math.MaxUint32 || iw.dataStart/BlockSize+iw.dataBlocks > math.MaxUint32 {
		return fmt.Errorf("erofs: image too large: %d inodes, %d blocks", len(iw.nodes), iw.dataStart/BlockSize+iw.dataBlocks)
	}
	iw.rootNid = iw.nodes[0].nid
	if iw.rootNid >= math.MaxUint16 {
		return fmt.Errorf("erofs: root inode at nid %d, beyond what the superblock can hold", iw.rootNid)
	}
	blk := uint32(iw.dataStart / BlockSize)
	for i := range iw.nodes {
		n := &iw.nodes[i]
		switch n.mode & tree.TypeMask {
		case tree.TypeChr, tree.TypeBlk:
			n.u = uint32(n.rdev)
		case tree.TypeDir, tree.TypeReg, tree.TypeLnk:
			if n.blocks > 0 {
				n.u = blk
				blk += n.blocks
			}
			if n.flags&wnExternal != 0 {
				// The chunk format shares i_u with the block
				// address and overwrites only its low 16 bits, as
				// the C writer does when the table moved out.
				chunkBits, _ := externalChunks(n.size)
				n.u = n.u&^0xffff | (chunkBits - BlockBits)
			}
		}
	}
	return nil
}

// tailPadding returns the padding to insert before an inode at pos so that
// its inline data does not cross a block boundary, moving the data to a
// full block when padding cannot help. nonTail is the size of the inode and
// its xattrs.
func (iw *imageWriter) tailPadding(n *wnode, pos, nonTail uint64) uint64 {
	tail := uint64(n.tail)
	if n.mode&tree.TypeMask == tree.TypeLnk {
		// A symlink keeps the inode and its target in one block; a
		// target that cannot share a block with its inode goes to a
		// data block, but the padding still follows the inline size.
		total := nonTail + tail
		if total >= BlockSize {
			n.blocks++
			n.tail = 0
		}
		if pos/BlockSize != (pos+total-1)/BlockSize {
			return roundUpTo(pos, BlockSize) - pos
		}
		return 0
	}
	room := BlockSize - (pos+nonTail)%BlockSize
	if room >= tail {
		return 0
	}
	// Pad by whole slots so that the tail starts in the next block; the
	// rounding can leave too little room for a tail of almost a block.
	extra := roundUpTo(room, InodeSlotSize)
	if tail <= BlockSize-(pos+nonTail+extra)%BlockSize {
		return extra
	}
	n.blocks++
	n.tail = 0
	return roundUpTo(pos, BlockSize) - pos
}
