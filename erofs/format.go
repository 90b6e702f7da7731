// Package erofs writes and reads composefs EROFS images: a 32-byte composefs
// header, an EROFS superblock at 1024, inodes in breadth-first order with their
// xattrs and inline tails, a shared xattr table and 4096-byte data blocks.
//
// Every constant and on-disk structure of the format lives in this file; the
// writer and the reader share them.
package erofs

import (
	"encoding/binary"

	"github.com/gocfs/gocfs/erofs/tree"
)

// Composefs header, at offset 0 of the image.
const (
	ComposefsMagic         = 0xd078629a
	ComposefsHeaderVersion = 1 // LCFS_EROFS_VERSION: the header's own format
	ComposefsHeaderSize    = 32

	// FlagHasACL is set when some inode has a POSIX ACL xattr; a mount then
	// leaves out "noacl".
	FlagHasACL = 1 << 0

	// MinFormatVersion and MaxFormatVersion bound the image format version
	// (the header's composefs_version). Version 1 adds the opaque=x xattrs
	// on directories holding whiteouts.
	MinFormatVersion = 0
	MaxFormatVersion = 1
)

// EROFS superblock and geometry.
const (
	SuperblockOffset = 1024
	SuperblockSize   = 128
	ErofsMagic       = 0xE0F5E1E2

	BlockBits = 12
	BlockSize = 1 << BlockBits

	// InodeSlotBits: inodes start on 32-byte slots and a nid is the slot
	// index counted from offset 0 of the image (meta_blkaddr is 0).
	InodeSlotBits = 5
	InodeSlotSize = 1 << InodeSlotBits

	// InodesStart is the first inode offset: right after the superblock.
	InodesStart = SuperblockOffset + SuperblockSize

	FeatureCompatMtime       = 0x2
	FeatureCompatXattrFilter = 0x4

	// FeatureCompat is what composefs always writes.
	FeatureCompat = FeatureCompatMtime | FeatureCompatXattrFilter

	// FeatureIncompatChunkedFile marks images with chunk-based inodes.
	// composefs never sets it although it writes such inodes; it is the only
	// incompatible feature a composefs reader accepts.
	FeatureIncompatChunkedFile = 0x4

	// MaxSuperblockExtSlots bounds sb_extslots: the superblock and its
	// 16-byte extension slots must end within the first block.
	MaxSuperblockExtSlots = (BlockSize - SuperblockOffset - SuperblockSize) / 16
)

// Inode formats and data layouts.
const (
	InodeCompactSize  = 32
	InodeExtendedSize = 64

	// i_format: bit 0 is the version (1 = extended), bits 1-3 the layout.
	InodeVersionExtended = 1
	InodeLayoutShift     = 1
	InodeLayoutMask      = 0x7

	LayoutFlatPlain         = 0
	LayoutCompressedFull    = 1
	LayoutFlatInline        = 2
	LayoutCompressedCompact = 3
	LayoutChunkBased        = 4

	// Chunk-based files: i_u holds the chunk format; the low 5 bits are
	// chunkbits - BlockBits. composefs writes 4-byte block-map entries (no
	// ChunkFormatIndexes) and only null addresses: the data comes from the
	// overlay redirect.
	ChunkFormatBlkbitsMask = 0x1f
	ChunkFormatIndexes     = 0x20
	ChunkEntrySize         = 4
	NullAddr               = 0xffffffff
	MaxChunkBits           = BlockBits + 31
	// MaxChunks is how many block-map entries fit in one block; files that
	// need more are refused.
	MaxChunks = BlockSize / ChunkEntrySize
)

// Directory entries.
const (
	DirentSize = 12

	FileTypeUnknown = 0
	FileTypeReg     = 1
	FileTypeDir     = 2
	FileTypeChr     = 3
	FileTypeBlk     = 4
	FileTypeFifo    = 5
	FileTypeSock    = 6
	FileTypeLnk     = 7

	// MaxInlineDirTail: a directory's last partial block is inlined after
	// the inode only when it is at most this long.
	MaxInlineDirTail = BlockSize / 2
	// MaxInlineFileTail: the same rule for inline regular file content.
	MaxInlineFileTail = BlockSize / 2

	// The tree limits, which an image relies on.
	MaxNameLen       = tree.MaxNameLen
	MaxPayloadLen    = tree.MaxPayloadLen
	MaxInlineContent = tree.MaxInlineContent
)

// Xattrs.
const (
	XattrIbodyHeaderSize = 12
	XattrEntrySize       = 4 // e_name_len, e_name_index, e_value_size
	XattrAlign           = 4

	XattrIndexNone           = 0
	XattrIndexUser           = 1
	XattrIndexPosixACLAccess = 2
	XattrIndexPosixACLDflt   = 3
	XattrIndexTrusted        = 4
	XattrIndexLustre         = 5
	XattrIndexSecurity       = 6

	// XattrFilterSeed is added to the name index to seed xxh32 of the name
	// suffix for the per-inode bloom filter.
	XattrFilterSeed = 0x25BBE08F
	XattrFilterBits = 32

	// MaxSharedXattrsPerInode: further shared candidates stay inline.
	MaxSharedXattrsPerInode = 128
	MaxXattrNameLen         = tree.MaxXattrNameLen
	MaxXattrValueLen        = tree.MaxXattrValueLen

	// XattrLongPrefix in a name index refers to the long prefix table,
	// which composefs never writes.
	XattrLongPrefix = 0x80

	// MaxXattrsSize bounds an inode's xattrs as tree.XattrSize accounts
	// them.
	MaxXattrsSize = tree.MaxXattrsSize
)

// xattrIndexPrefixes maps every name index a reader accepts to its prefix.
// The ACL indexes stand for a whole name with an empty suffix. The writer
// tries them in index order and never uses lustre, as libcomposefs does;
// readers accept it.
var xattrIndexPrefixes = [...]string{
	XattrIndexNone:           "",
	XattrIndexUser:           "user.",
	XattrIndexPosixACLAccess: "system.posix_acl_access",
	XattrIndexPosixACLDflt:   "system.posix_acl_default",
	XattrIndexTrusted:        "trusted.",
	XattrIndexLustre:         "lustre.",
	XattrIndexSecurity:       "security.",
}

// Overlay xattrs that composefs writes and interprets.
const (
	OverlayPrefix         = "trusted.overlay."
	OverlayEscapedPrefix  = "trusted.overlay.overlay."
	UserOverlayPrefix     = "user.overlay."
	XattrMetacopy         = "trusted.overlay.metacopy"
	XattrRedirect         = "trusted.overlay.redirect"
	XattrOpaque           = "trusted.overlay.opaque"
	XattrEscapedWhiteout  = "trusted.overlay.overlay.whiteout"
	XattrEscapedWhiteouts = "trusted.overlay.overlay.whiteouts"
	XattrEscapedOpaque    = "trusted.overlay.overlay.opaque"
	XattrUserWhiteout     = "user.overlay.whiteout"
	XattrUserWhiteouts    = "user.overlay.whiteouts"
	XattrUserOpaque       = "user.overlay.opaque"
	XattrPosixACLAccess   = "system.posix_acl_access"
	XattrPosixACLDefault  = "system.posix_acl_default"
	XattrSecuritySelinux  = "security.selinux"
)

// The trusted.overlay.metacopy value with a digest: version 0, the length of
// the whole value, flags 0, the fs-verity algorithm (1 sha256, 2 sha512),
// then the digest.
const metacopyHeaderSize = 4

// metacopyHeader returns the header of a metacopy value for a digest of n
// bytes (a valid digest size).
func metacopyHeader(n int) string {
	alg := byte(1)
	if n == tree.DigestSizeSHA512 {
		alg = 2
	}
	return string([]byte{0, byte(metacopyHeaderSize + n), 0, alg})
}

// RootWhiteouts is the number of 0:0 character devices, named "00" to "ff",
// added to the root so that an object store used as a plain lower layer shows
// none of its fan-out directories.
const RootWhiteouts = 256

// header is the composefs header at offset 0.
type header struct {
	Magic            uint32
	Version          uint32
	Flags            uint32
	ComposefsVersion uint32
}

func (h *header) marshal(b []byte) {
	le := binary.LittleEndian
	le.PutUint32(b[0:], h.Magic)
	le.PutUint32(b[4:], h.Version)
	le.PutUint32(b[8:], h.Flags)
	le.PutUint32(b[12:], h.ComposefsVersion)
	clear(b[16:ComposefsHeaderSize])
}

func (h *header) unmarshal(b []byte) {
	le := binary.LittleEndian
	h.Magic = le.Uint32(b[0:])
	h.Version = le.Uint32(b[4:])
	h.Flags = le.Uint32(b[8:])
	h.ComposefsVersion = le.Uint32(b[12:])
}

// superblock holds the EROFS superblock fields composefs uses; every other
// field is written as zero.
type superblock struct {
	Magic         uint32
	Checksum      uint32
	FeatureCompat uint32
	BlkSzBits     uint8
	ExtSlots      uint8
	RootNid       uint16
	Inos          uint64
	BuildTime     uint64
	BuildTimeNsec uint32
	Blocks        uint32
	MetaBlkAddr   uint32
	XattrBlkAddr  uint32
	// FeatureIncompat is read to refuse images that need features a
	// composefs reader does not implement.
	FeatureIncompat uint32
	// DirBlkBits and XattrPrefixCount are zero in composefs images; a
	// reader refuses others.
	DirBlkBits       uint8
	XattrPrefixCount uint8
}

func (s *superblock) marshal(b []byte) {
	le := binary.LittleEndian
	clear(b[:SuperblockSize])
	le.PutUint32(b[0:], s.Magic)
	le.PutUint32(b[4:], s.Checksum)
	le.PutUint32(b[8:], s.FeatureCompat)
	b[12] = s.BlkSzBits
	b[13] = s.ExtSlots
	le.PutUint16(b[14:], s.RootNid)
	le.PutUint64(b[16:], s.Inos)
	le.PutUint64(b[24:], s.BuildTime)
	le.PutUint32(b[32:], s.BuildTimeNsec)
	le.PutUint32(b[36:], s.Blocks)
	le.PutUint32(b[40:], s.MetaBlkAddr)
	le.PutUint32(b[44:], s.XattrBlkAddr)
	le.PutUint32(b[80:], s.FeatureIncompat)
	b[90] = s.DirBlkBits
	b[91] = s.XattrPrefixCount
}

func (s *superblock) unmarshal(b []byte) {
	le := binary.LittleEndian
	s.Magic = le.Uint32(b[0:])
	s.Checksum = le.Uint32(b[4:])
	s.FeatureCompat = le.Uint32(b[8:])
	s.BlkSzBits = b[12]
	s.ExtSlots = b[13]
	s.RootNid = le.Uint16(b[14:])
	s.Inos = le.Uint64(b[16:])
	s.BuildTime = le.Uint64(b[24:])
	s.BuildTimeNsec = le.Uint32(b[32:])
	s.Blocks = le.Uint32(b[36:])
	s.MetaBlkAddr = le.Uint32(b[40:])
	s.XattrBlkAddr = le.Uint32(b[44:])
	s.FeatureIncompat = le.Uint32(b[80:])
	s.DirBlkBits = b[90]
	s.XattrPrefixCount = b[91]
}

// inode is the union of the compact and extended on-disk inodes. Compact
// inodes store 16-bit nlink/uid/gid, a 32-bit size and no mtime (they inherit
// the superblock's build time).
type inode struct {
	Format     uint16 // i_format: layout<<1 | extended
	XattrCount uint16 // i_xattr_icount
	Mode       uint16
	Nlink      uint32
	Size       uint64
	U          uint32 // raw_blkaddr, rdev or chunk format
	Ino        uint32
	UID        uint32
	GID        uint32
	Mtime      uint64
	MtimeNsec  uint32
}

func (i *inode) extended() bool { return i.Format&InodeVersionExtended != 0 }
func (i *inode) layout() int    { return int(i.Format>>InodeLayoutShift) & InodeLayoutMask }

// size returns the on-disk size of the inode core.
func (i *inode) size() int {
	if i.extended() {
		return InodeExtendedSize
	}
	return InodeCompactSize
}

func (i *inode) marshal(b []byte) {
	le := binary.LittleEndian
	clear(b[:i.size()])
	le.PutUint16(b[0:], i.Format)
	le.PutUint16(b[2:], i.XattrCount)
	le.PutUint16(b[4:], i.Mode)
	if i.extended() {
		le.PutUint64(b[8:], i.Size)
		le.PutUint32(b[16:], i.U)
		le.PutUint32(b[20:], i.Ino)
		le.PutUint32(b[24:], i.UID)
		le.PutUint32(b[28:], i.GID)
		le.PutUint64(b[32:], i.Mtime)
		le.PutUint32(b[40:], i.MtimeNsec)
		le.PutUint32(b[44:], i.Nlink)
		return
	}
	le.PutUint16(b[6:], uint16(i.Nlink))
	le.PutUint32(b[8:], uint32(i.Size))
	le.PutUint32(b[16:], i.U)
	le.PutUint32(b[20:], i.Ino)
	le.PutUint16(b[24:], uint16(i.UID))
	le.PutUint16(b[26:], uint16(i.GID))
}

// unmarshal decodes an inode; b must hold at least InodeCompactSize bytes,
// and InodeExtendedSize when the format says extended (check with
// extendedFormat first).
func (i *inode) unmarshal(b []byte) {
	le := binary.LittleEndian
	*i = inode{}
	i.Format = le.Uint16(b[0:])
	i.XattrCount = le.Uint16(b[2:])
	i.Mode = le.Uint16(b[4:])
	if i.extended() {
		i.Size = le.Uint64(b[8:])
		i.U = le.Uint32(b[16:])
		i.Ino = le.Uint32(b[20:])
		i.UID = le.Uint32(b[24:])
		i.GID = le.Uint32(b[28:])
		i.Mtime = le.Uint64(b[32:])
		i.MtimeNsec = le.Uint32(b[40:])
		i.Nlink = le.Uint32(b[44:])
		return
	}
	i.Nlink = uint32(le.Uint16(b[6:]))
	i.Size = uint64(le.Uint32(b[8:]))
	i.U = le.Uint32(b[16:])
	i.Ino = le.Uint32(b[20:])
	i.UID = uint32(le.Uint16(b[24:]))
	i.GID = uint32(le.Uint16(b[26:]))
}

// extendedFormat reports whether the i_format field at the start of b
// describes an extended inode.
func extendedFormat(b []byte) bool {
	return binary.LittleEndian.Uint16(b)&InodeVersionExtended != 0
}

// xattrAreaSize returns the size of an inode's inline xattr area from its
// i_xattr_icount (0 when the inode has none).
func xattrAreaSize(icount uint16) int {
	if icount == 0 {
		return 0
	}
	return XattrIbodyHeaderSize + (int(icount)-1)*4
}

// dirent is one EROFS directory entry; names follow the entry array.
type dirent struct {
	Nid      uint64
	NameOff  uint16
	FileType uint8
}

func (d *dirent) marshal(b []byte) {
	le := binary.LittleEndian
	le.PutUint64(b[0:], d.Nid)
	le.PutUint16(b[8:], d.NameOff)
	b[10] = d.FileType
	b[11] = 0
}

func (d *dirent) unmarshal(b []byte) {
	le := binary.LittleEndian
	d.Nid = le.Uint64(b[0:])
	d.NameOff = le.Uint16(b[8:])
	d.FileType = b[10]
}

// direntType returns the dirent file type for a mode.
func direntType(mode uint32) uint8 {
	switch mode & tree.TypeMask {
	case tree.TypeReg:
		return FileTypeReg
	case tree.TypeDir:
		return FileTypeDir
	case tree.TypeChr:
		return FileTypeChr
	case tree.TypeBlk:
		return FileTypeBlk
	case tree.TypeFifo:
		return FileTypeFifo
	case tree.TypeSock:
		return FileTypeSock
	case tree.TypeLnk:
		return FileTypeLnk
	}
	return FileTypeUnknown
}
