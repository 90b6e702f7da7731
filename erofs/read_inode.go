package erofs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/gocfs/gocfs/erofs/tree"
)

// An Inode is a decoded on-disk inode. Read its directory entries, xattrs,
// symlink target and data through the Image it came from.
type Inode struct {
	Nid uint64
	// Mode is st_mode: file type bits and permissions.
	Mode  uint32
	Nlink uint32
	UID   uint32
	GID   uint32
	// Size is i_size: the file length, symlink target length or size of
	// the directory's entry blocks.
	Size uint64
	// Mtime is the inode's own time for extended inodes; compact inodes
	// have none and take the superblock build time, as libcomposefs does.
	Mtime tree.Timespec
	// Rdev is the device number of a character or block device as stored:
	// the kernel's 32-bit encoding, equal to st_rdev for majors below 4096
	// and minors below 2^20.
	Rdev uint32
	// Ino is i_ino, the writer's inode number (breadth-first index).
	Ino uint32
	// Layout is LayoutFlatPlain, LayoutFlatInline or LayoutChunkBased.
	Layout   int
	Extended bool
	// ChunkBits is log2 of the chunk size of a chunk-based file.
	ChunkBits int

	off       int64  // image offset of the inode
	xattrSize int    // size of the inline xattr area
	blkaddr   uint32 // first data block of a flat inode
}

// Type returns the file type bits of the mode.
func (ino *Inode) Type() uint32 { return ino.Mode & tree.TypeMask }

// IsDir reports whether the inode is a directory.
func (ino *Inode) IsDir() bool { return ino.Type() == tree.TypeDir }

// IsReg reports whether the inode is a regular file.
func (ino *Inode) IsReg() bool { return ino.Type() == tree.TypeReg }

// IsSymlink reports whether the inode is a symbolic link.
func (ino *Inode) IsSymlink() bool { return ino.Type() == tree.TypeLnk }

// ChunkCount returns the number of chunks of a chunk-based file.
func (ino *Inode) ChunkCount() uint64 {
	if ino.Layout != LayoutChunkBased || ino.Size == 0 {
		return 0
	}
	return (ino.Size-1)>>ino.ChunkBits + 1
}

func (ino *Inode) coreSize() int {
	if ino.Extended {
		return InodeExtendedSize
	}
	return InodeCompactSize
}

// inlineOffset is where inline data (tail or chunk table) starts: right
// after the inode and its xattrs. Inode offsets are slot aligned and both
// sizes are multiples of 4, so chunk tables need no further alignment.
func (ino *Inode) inlineOffset() int64 {
	return ino.off + int64(ino.coreSize()) + int64(ino.xattrSize)
}

// flatGeometry returns how a flat inode stores its Size bytes: full blocks
// from blkaddr on, then (FLAT_INLINE only) a tail right after the xattrs.
// As in the kernel, an inline layout keeps the whole last block inline, even
// when it is full.
func (ino *Inode) flatGeometry() (blocks uint64, tail int) {
	n := ino.Size/BlockSize + min(ino.Size%BlockSize, 1)
	if ino.Layout == LayoutFlatInline && n > 0 {
		return n - 1, int(ino.Size - (n-1)*BlockSize)
	}
	return n, 0
}

// chunkTableInline reports whether a chunk table fits in the rest of the
// inode's block. libcomposefs puts tables that do not fit (files of more
// than about 4 TiB) in a data block that nothing points at: the kernel then
// reads whatever follows the inode, and only the overlay redirect matters.
func (ino *Inode) chunkTableInline() bool {
	return uint64(ino.inlineOffset()%BlockSize)+ino.ChunkCount()*ChunkEntrySize <= BlockSize
}

// Inode reads and checks inode nid: it must lie in the image, have a known
// file type and an uncompressed layout fit for it (chunk-based only for
// regular files), and its xattr area, data blocks and inline tail must lie in
// the image, the tail within one block.
func (img *Image) Inode(nid uint64) (*Inode, error) {
	ino := new(Inode)
	if err := img.readInode(nid, ino); err != nil {
		return nil, err
	}
	return ino, nil
}

func (img *Image) readInode(nid uint64, ino *Inode) error {
	off, ok := img.nidOffset(nid)
	if !ok {
		return corrupt(nid, "inode slot beyond the end of the image")
	}
	b, err := img.bytes(off, InodeCompactSize)
	if err != nil {
		return fmt.Errorf("erofs: nid %d: inode at %d: %w", nid, off, err)
	}
	if extendedFormat(b) {
		if b, err = img.bytes(off, InodeExtendedSize); err != nil {
			return fmt.Errorf("erofs: nid %d: extended inode at %d: %w", nid, off, err)
		}
	}
	var raw inode
	raw.unmarshal(b)
	if raw.Format&^(InodeVersionExtended|InodeLayoutMask<<InodeLayoutShift) != 0 {
		return unsupported(nid, "inode format %#x has unknown bits", raw.Format)
	}
	*ino = Inode{
		Nid:       nid,
		Mode:      uint32(raw.Mode),
		Nlink:     raw.Nlink,
		UID:       raw.UID,
		GID:       raw.GID,
		Size:      raw.Size,
		Mtime:     img.buildTime(),
		Ino:       raw.Ino,
		Layout:    raw.layout(),
		Extended:  raw.extended(),
		off:       off,
		xattrSize: xattrAreaSize(raw.XattrCount),
	}
	if ino.Extended {
		ino.Mtime = tree.Timespec{Sec: int64(raw.Mtime), Nsec: raw.MtimeNsec}
	}
	switch ino.Layout {
	case LayoutFlatPlain, LayoutFlatInline, LayoutChunkBased:
	case LayoutCompressedFull, LayoutCompressedCompact:
		return unsupported(nid, "compressed data layout %d", ino.Layout)
	default:
		return unsupported(nid, "unknown data layout %d", ino.Layout)
	}
	if ino.Size > math.MaxInt64 {
		return corrupt(nid, "size %d overflows", ino.Size)
	}
	if !img.inImage(off, uint64(ino.coreSize()+ino.xattrSize)) {
		return corrupt(nid, "%d-byte xattr area at %d beyond the end of the image", ino.xattrSize, off+int64(ino.coreSize()))
	}
	switch ino.Type() {
	case tree.TypeReg:
		if ino.Layout == LayoutChunkBased {
			return img.checkChunkFormat(ino, raw.U)
		}
		return img.checkFlat(ino, raw.U)
	case tree.TypeDir, tree.TypeLnk:
		if ino.Layout == LayoutChunkBased {
			return corrupt(nid, "chunk-based layout for mode %#o", ino.Mode)
		}
		return img.checkFlat(ino, raw.U)
	case tree.TypeChr, tree.TypeBlk:
		ino.Rdev = raw.U
		fallthrough
	case tree.TypeFifo, tree.TypeSock:
		// Special files have no data; like the kernel, ignore their size.
		if ino.Layout == LayoutChunkBased {
			return corrupt(nid, "chunk-based layout for mode %#o", ino.Mode)
		}
		return nil
	}
	return corrupt(nid, "mode %#o has no valid file type", ino.Mode)
}

func (img *Image) checkFlat(ino *Inode, blkaddr uint32) error {
	ino.blkaddr = blkaddr
	blocks, tail := ino.flatGeometry()
	if blocks > 0 && (blocks > uint64(img.size)/BlockSize || !img.inImage(int64(blkaddr)*BlockSize, blocks*BlockSize)) {
		return corrupt(ino.Nid, "%d data blocks from block %d beyond the end of the image", blocks, blkaddr)
	}
	if tail > 0 {
		t := ino.inlineOffset()
		if int(t%BlockSize)+tail > BlockSize {
			return corrupt(ino.Nid, "%d bytes of inline data at %d cross a block boundary", tail, t)
		}
		if !img.inImage(t, uint64(tail)) {
			return corrupt(ino.Nid, "%d bytes of inline data at %d beyond the end of the image", tail, t)
		}
	}
	return nil
}

func (img *Image) checkChunkFormat(ino *Inode, u uint32) error {
	// The format is a 16-bit field; libcomposefs may leave part of a block
	// address in the reserved half above it, which the kernel ignores too.
	format := u & 0xffff
	if format&^(ChunkFormatBlkbitsMask|ChunkFormatIndexes) != 0 {
		return unsupported(ino.Nid, "chunk format %#x has unknown bits", format)
	}
	if format&ChunkFormatIndexes != 0 {
		return unsupported(ino.Nid, "chunk indexes (multi-device chunk format)")
	}
	ino.ChunkBits = BlockBits + int(format&ChunkFormatBlkbitsMask)
	return nil
}

// ChunkTable returns the block map of a chunk-based file as the kernel reads
// it: ChunkCount 4-byte block addresses right after the inode's xattrs.
// composefs writes only NullAddr entries, the data coming from the overlay
// redirect. For files whose table does not fit in the rest of the inode's
// block, libcomposefs stores it elsewhere and the entries read here are not
// meaningful.
func (img *Image) ChunkTable(ino *Inode) ([]uint32, error) {
	if ino.Layout != LayoutChunkBased {
		return nil, fmt.Errorf("erofs: nid %d: not a chunk-based file", ino.Nid)
	}
	n := ino.ChunkCount()
	off := ino.inlineOffset()
	if n > uint64(img.size)/ChunkEntrySize || !img.inImage(off, n*ChunkEntrySize) {
		return nil, corrupt(ino.Nid, "chunk table of %d entries at %d beyond the end of the image", n, off)
	}
	b, err := img.bytes(off, int(n)*ChunkEntrySize)
	if err != nil {
		return nil, fmt.Errorf("erofs: nid %d: chunk table: %w", ino.Nid, err)
	}
	t := make([]uint32, n)
	for i := range t {
		t[i] = binary.LittleEndian.Uint32(b[i*ChunkEntrySize:])
	}
	return t, nil
}

// ReadAt reads the data of a flat regular file, directory or symlink at
// offset off, with the semantics of io.ReaderAt. Chunk-based files give
// ErrNoData.
func (img *Image) ReadAt(ino *Inode, p []byte, off int64) (int, error) {
	if err := dataCheck(ino); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("erofs: nid %d: negative offset %d", ino.Nid, off)
	}
	if uint64(off) >= ino.Size {
		return 0, io.EOF
	}
	var eof error
	if rest := ino.Size - uint64(off); uint64(len(p)) >= rest {
		p, eof = p[:rest], io.EOF
	}
	blocks, _ := ino.flatGeometry()
	n := 0
	if end := int64(blocks) * BlockSize; off < end {
		k := int(min(int64(len(p)), end-off))
		if err := img.readInto(p[:k], int64(ino.blkaddr)*BlockSize+off); err != nil {
			return 0, fmt.Errorf("erofs: nid %d: data: %w", ino.Nid, err)
		}
		n, off = k, end
	}
	if n < len(p) {
		tailOff := off - int64(blocks)*BlockSize
		if err := img.readInto(p[n:], ino.inlineOffset()+tailOff); err != nil {
			return n, fmt.Errorf("erofs: nid %d: inline data: %w", ino.Nid, err)
		}
	}
	return len(p), eof
}

// OpenFile returns a reader of the data of a flat regular file, directory or
// symlink.
func (img *Image) OpenFile(ino *Inode) (*io.SectionReader, error) {
	if err := dataCheck(ino); err != nil {
		return nil, err
	}
	return io.NewSectionReader(fileReaderAt{img, ino}, 0, int64(ino.Size)), nil
}

type fileReaderAt struct {
	img *Image
	ino *Inode
}

func (f fileReaderAt) ReadAt(p []byte, off int64) (int, error) { return f.img.ReadAt(f.ino, p, off) }

func dataCheck(ino *Inode) error {
	switch ino.Type() {
	case tree.TypeReg, tree.TypeDir, tree.TypeLnk:
	default:
		return fmt.Errorf("erofs: nid %d: mode %#o has no data", ino.Nid, ino.Mode)
	}
	if ino.Layout == LayoutChunkBased {
		return fmt.Errorf("erofs: nid %d: %w", ino.Nid, ErrNoData)
	}
	return nil
}

// readInto fills p from the image at off.
func (img *Image) readInto(p []byte, off int64) error {
	if !img.inImage(off, uint64(len(p))) {
		return errRange
	}
	if img.data != nil {
		copy(p, img.data[off:])
		return nil
	}
	if m, err := img.r.ReadAt(p, off); m < len(p) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("reading %d bytes at %d: %w", len(p), off, err)
	}
	return nil
}

// flatData returns the whole data of a flat inode. It aliases the image when
// the data is contiguous in memory; callers copy what they keep.
func (img *Image) flatData(ino *Inode) ([]byte, error) {
	blocks, tail := ino.flatGeometry()
	switch {
	case ino.Size == 0:
		return nil, nil
	case blocks == 0:
		return img.bytes(ino.inlineOffset(), tail)
	case tail == 0:
		return img.bytes(int64(ino.blkaddr)*BlockSize, int(ino.Size))
	}
	b := make([]byte, ino.Size)
	if _, err := img.ReadAt(ino, b, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return b, nil
}

// ReadLink returns the target of a symlink. Targets must be 1 to
// MaxPayloadLen bytes long, as libcomposefs requires, and hold no NUL byte
// (libcomposefs and the kernel would silently cut the target there).
func (img *Image) ReadLink(ino *Inode) (string, error) {
	if !ino.IsSymlink() {
		return "", fmt.Errorf("erofs: nid %d: mode %#o is not a symlink", ino.Nid, ino.Mode)
	}
	if ino.Size == 0 || ino.Size > MaxPayloadLen {
		return "", corrupt(ino.Nid, "symlink target of %d bytes", ino.Size)
	}
	b, err := img.flatData(ino)
	if err != nil {
		return "", fmt.Errorf("erofs: nid %d: symlink target: %w", ino.Nid, err)
	}
	if bytes.IndexByte(b, 0) >= 0 {
		return "", corrupt(ino.Nid, "symlink target %q holds a NUL byte", b)
	}
	return string(b), nil
}
