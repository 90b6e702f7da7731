package erofs

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/gocfs/gocfs/erofs/tree"
)

var (
	zeroPad [BlockSize]byte
	// nullChunkBlock is a block-map chunk table of null addresses.
	nullChunkBlock = bytes.Repeat([]byte{0xff}, BlockSize)
)

// imageEmitter writes the image sequentially, counting bytes so that the
// layout's promises can be checked as it goes.
type imageEmitter struct {
	w   *bufio.Writer
	n   int64
	err error
	// buf holds one encoded structure at a time; being part of the
	// emitter, it saves an allocation per structure.
	buf [InodeExtendedSize]byte
}

func (e *imageEmitter) write(b []byte) {
	if e.err != nil {
		return
	}
	var n int
	n, e.err = e.w.Write(b)
	e.n += int64(n)
}

func (e *imageEmitter) writeString(s string) {
	if e.err != nil {
		return
	}
	var n int
	n, e.err = e.w.WriteString(s)
	e.n += int64(n)
}

func (e *imageEmitter) zeros(n uint64) {
	for n > 0 && e.err == nil {
		k := min(n, BlockSize)
		e.write(zeroPad[:k])
		n -= k
	}
}

func (e *imageEmitter) alignTo(a uint64) { e.zeros(roundUpTo(uint64(e.n), a) - uint64(e.n)) }

func (e *imageEmitter) u32(v uint32) {
	binary.LittleEndian.PutUint32(e.buf[:4], v)
	e.write(e.buf[:4])
}

// expect reports a layout error if the output is not at offset off.
func (e *imageEmitter) expect(off uint64, what string) {
	if e.err == nil && uint64(e.n) != off {
		e.err = fmt.Errorf("internal error: %s at offset %d, laid out at %d", what, e.n, off)
	}
}

// emit writes the laid-out image and returns its size.
func (iw *imageWriter) emit(w *bufio.Writer) (int64, error) {
	e := &imageEmitter{w: w}
	var b [SuperblockSize]byte
	hdr := header{Magic: ComposefsMagic, Version: ComposefsHeaderVersion, Flags: iw.flags, ComposefsVersion: uint32(iw.version)}
	hdr.marshal(b[:ComposefsHeaderSize])
	e.write(b[:ComposefsHeaderSize])
	e.zeros(SuperblockOffset - ComposefsHeaderSize)
	sb := superblock{
		Magic:         ErofsMagic,
		FeatureCompat: FeatureCompat,
		BlkSzBits:     BlockBits,
		RootNid:       uint16(iw.rootNid),
		Inos:          uint64(len(iw.nodes)),
		BuildTime:     uint64(iw.minMtime.Sec),
		BuildTimeNsec: iw.minMtime.Nsec,
		Blocks:        uint32(iw.dataStart/BlockSize + iw.dataBlocks),
		XattrBlkAddr:  uint32(iw.inodesEnd / BlockSize),
	}
	sb.marshal(b[:])
	e.write(b[:])
	for i := range iw.nodes {
		iw.emitInode(e, int32(i))
	}
	e.alignTo(InodeSlotSize)
	e.expect(iw.inodesEnd, "shared xattrs")
	for _, k := range iw.sharedTable {
		x := &iw.xattrs[k]
		iw.emitXattr(e, x)
	}
	e.alignTo(BlockSize)
	e.expect(iw.dataStart, "data blocks")
	for i := range iw.nodes {
		iw.emitBlocks(e, &iw.nodes[i])
	}
	e.expect(iw.dataStart+iw.dataBlocks*BlockSize, "end of image")
	return e.n, e.err
}

func (iw *imageWriter) emitInode(e *imageEmitter, i int32) {
	n := &iw.nodes[i]
	e.zeros(uint64(n.pad))
	if e.err == nil && uint64(e.n) != n.nid<<InodeSlotBits {
		e.expect(n.nid<<InodeSlotBits, "inode "+iw.path(i))
	}
	typ := n.mode & tree.TypeMask
	layout := uint16(LayoutFlatPlain)
	if n.tail > 0 {
		layout = LayoutFlatInline
	}
	var size uint64
	switch typ {
	case tree.TypeDir:
		size = uint64(n.blocks)*BlockSize + uint64(n.tail)
	case tree.TypeReg, tree.TypeLnk:
		size = n.size
		if n.flags&wnExternal != 0 {
			layout = LayoutChunkBased
		}
	}
	ino := inode{
		Format:    layout << InodeLayoutShift,
		Mode:      uint16(n.mode),
		Nlink:     n.nlink,
		Size:      size,
		U:         n.u,
		Ino:       uint32(i),
		UID:       n.uid,
		GID:       n.gid,
		Mtime:     uint64(n.mtime.Sec),
		MtimeNsec: n.mtime.Nsec,
	}
	if !n.compact {
		ino.Format |= InodeVersionExtended
	}
	if n.xattrArea > 0 {
		ino.XattrCount = uint16((n.xattrArea-XattrIbodyHeaderSize)/4 + 1)
	}
	ino.marshal(e.buf[:])
	e.write(e.buf[:ino.size()])

	if n.xattrArea > 0 {
		xs := iw.xattrs[n.xattrs.off:n.xattrs.end()]
		h := e.buf[:XattrIbodyHeaderSize]
		clear(h)
		binary.LittleEndian.PutUint32(h[0:], xattrBloom(xs))
		h[4] = n.nShared
		e.write(h)
		// Shared ids count 4-byte units from the start of the block
		// the shared table begins in.
		base := iw.inodesEnd % BlockSize
		for k := range xs {
			if xs[k].sharedOff >= 0 {
				e.u32(uint32((base + uint64(xs[k].sharedOff)) / 4))
			}
		}
		for k := range xs {
			if xs[k].sharedOff < 0 {
				iw.emitXattr(e, &xs[k])
			}
		}
	}

	if n.tail == 0 {
		return
	}
	switch typ {
	case tree.TypeDir:
		iw.emitDirents(e, n, false)
	case tree.TypeLnk:
		e.writeString(n.in.Payload)
	case tree.TypeReg:
		if n.flags&wnExternal != 0 {
			e.write(nullChunkBlock[:n.tail])
		} else {
			e.write(n.in.Content[n.size-uint64(n.tail):])
		}
	}
}

func (iw *imageWriter) emitXattr(e *imageEmitter, x *wxattr) {
	index, suffix := splitXattrPrefix(x.name)
	h := e.buf[:XattrEntrySize]
	h[0] = uint8(len(suffix))
	h[1] = index
	binary.LittleEndian.PutUint16(h[2:], uint16(len(x.value)))
	e.write(h)
	e.writeString(suffix)
	e.writeString(x.value)
	e.alignTo(XattrAlign)
}

// emitBlocks writes the full data blocks of a node: directory blocks, or
// the block holding a file's content, a symlink target or a chunk table
// that could not stay inline.
func (iw *imageWriter) emitBlocks(e *imageEmitter, n *wnode) {
	if n.blocks == 0 {
		return
	}
	switch n.mode & tree.TypeMask {
	case tree.TypeDir:
		iw.emitDirents(e, n, true)
	case tree.TypeLnk:
		e.writeString(n.in.Payload)
		e.alignTo(BlockSize)
	case tree.TypeReg:
		if n.flags&wnExternal != 0 {
			e.write(nullChunkBlock)
			return
		}
		// Inline content is at most one full block plus a tail.
		e.write(n.in.Content[:min(n.size, BlockSize)])
		e.alignTo(BlockSize)
	}
}

// emitDirents writes a directory's full blocks or its inline tail, packing
// entries the same way dirLayout counted them.
func (iw *imageWriter) emitDirents(e *imageEmitter, n *wnode, blocks bool) {
	ds := iw.dirents[n.dirents.off:n.dirents.end()]
	used, first, written := 0, 0, uint32(0)
	for k, d := range ds {
		l := DirentSize + len(d.name)
		if used+l > BlockSize {
			if blocks {
				iw.emitDirentChunk(e, ds[first:k], true)
			}
			written++
			used, first = 0, k
		}
		used += l
	}
	if written < n.blocks {
		if blocks {
			iw.emitDirentChunk(e, ds[first:], true)
		}
		used, first = 0, len(ds)
	}
	if !blocks && used > 0 {
		iw.emitDirentChunk(e, ds[first:], false)
	}
}

func (iw *imageWriter) emitDirentChunk(e *imageEmitter, ds []wdirent, full bool) {
	nameOff := len(ds) * DirentSize
	for _, d := range ds {
		t := &iw.nodes[d.target]
		de := dirent{Nid: t.nid, NameOff: uint16(nameOff), FileType: direntType(t.mode)}
		de.marshal(e.buf[:DirentSize])
		e.write(e.buf[:DirentSize])
		nameOff += len(d.name)
	}
	for _, d := range ds {
		e.writeString(d.name)
	}
	if full {
		e.alignTo(BlockSize)
	}
}
