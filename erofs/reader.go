package erofs

import (
	"errors"
	"fmt"
	"io"

	"github.com/gocfs/gocfs/erofs/tree"
)

// Errors reported by the reader. Every error about image contents wraps one
// of them and names the offending inode (nid) and what is wrong.
var (
	// ErrNotComposefs: the image does not start with a composefs header or
	// holds no EROFS superblock.
	ErrNotComposefs = errors.New("not a composefs image")
	// ErrUnsupported: the image is well formed but uses a header version,
	// format version or EROFS feature this reader does not implement.
	ErrUnsupported = errors.New("unsupported composefs image")
	// ErrCorrupt: the image breaks the format.
	ErrCorrupt = errors.New("corrupt composefs image")
	// ErrNoData: the file's bytes are not in the image. External files of
	// a composefs image are chunk-based holes whose content lives in the
	// object named by their trusted.overlay.redirect xattr.
	ErrNoData = errors.New("file data is not stored in the image")
)

// An Image gives random access to a composefs EROFS image without loading
// all of it: inodes, directories, xattrs and inline data are decoded on
// demand. Every offset and length read from the image is checked against the
// image size before use, so a hostile image yields errors, never panics or
// out-of-range reads. An Image is safe for concurrent use.
//
// The checks are those the Linux kernel makes when it mounts the image, plus
// composefs rules where the kernel is laxer (see the methods); whole-tree
// consistency (reachability, "." and "..", link counts) is checked by Tree.
type Image struct {
	data []byte      // the whole image, when held in memory
	r    io.ReaderAt // otherwise
	size int64

	hdr header
	sb  superblock

	metaBase  int64 // image offset of nid 0
	xattrBase int64 // image offset of shared xattr id 0
}

// ImageInfo describes an image as a whole.
type ImageInfo struct {
	// Version is the image format version of the composefs header: 1 when
	// directories holding whiteouts carry the opaque=x xattrs, else 0.
	Version uint32
	// Flags are the composefs header flags; HasACL reports FlagHasACL.
	Flags  uint32
	HasACL bool
	// Inodes is the number of inodes the superblock declares, including
	// the 256 whiteouts of the root.
	Inodes  uint64
	RootNid uint64
	// BuildTime is the superblock build time, the modification time of
	// every compact inode (composefs writes the oldest mtime of the tree).
	BuildTime tree.Timespec
	// Blocks is the image size in blocks of BlockSize bytes.
	Blocks          uint32
	FeatureCompat   uint32
	FeatureIncompat uint32
}

// Open reads and checks the composefs header and the EROFS superblock of the
// size-byte image read through r, and the root inode. Later reads go through
// r; use OpenBytes for an image already in memory.
func Open(r io.ReaderAt, size int64) (*Image, error) {
	if r == nil {
		return nil, errors.New("erofs: nil reader")
	}
	return open(&Image{r: r, size: size})
}

// OpenBytes is Open for an image held in memory, for example a mapped file.
// It reads data in place: data must not change while the Image is in use.
func OpenBytes(data []byte) (*Image, error) {
	return open(&Image{data: data, size: int64(len(data))})
}

func open(img *Image) (*Image, error) {
	// libcomposefs refuses anything shorter than a block; the superblock
	// lies within the first one.
	if img.size < BlockSize {
		return nil, fmt.Errorf("erofs: image of %d bytes is shorter than one block: %w", img.size, ErrNotComposefs)
	}
	b, err := img.bytes(0, SuperblockOffset+SuperblockSize)
	if err != nil {
		return nil, fmt.Errorf("erofs: reading header: %w", err)
	}
	img.hdr.unmarshal(b)
	if img.hdr.Magic != ComposefsMagic {
		return nil, fmt.Errorf("erofs: bad composefs magic %#x: %w", img.hdr.Magic, ErrNotComposefs)
	}
	if img.hdr.Version != ComposefsHeaderVersion {
		return nil, fmt.Errorf("erofs: composefs header version %d (want %d): %w",
			img.hdr.Version, ComposefsHeaderVersion, ErrUnsupported)
	}
	if img.hdr.ComposefsVersion > MaxFormatVersion {
		return nil, fmt.Errorf("erofs: image format version %d (newest known %d): %w",
			img.hdr.ComposefsVersion, MaxFormatVersion, ErrUnsupported)
	}
	sb := &img.sb
	sb.unmarshal(b[SuperblockOffset:])
	switch {
	case sb.Magic != ErofsMagic:
		return nil, fmt.Errorf("erofs: bad EROFS superblock magic %#x: %w", sb.Magic, ErrNotComposefs)
	case sb.BlkSzBits != BlockBits:
		return nil, fmt.Errorf("erofs: block size 2^%d (want 2^%d): %w", sb.BlkSzBits, BlockBits, ErrUnsupported)
	case sb.FeatureIncompat&^FeatureIncompatChunkedFile != 0:
		return nil, fmt.Errorf("erofs: incompatible features %#x: %w",
			sb.FeatureIncompat&^FeatureIncompatChunkedFile, ErrUnsupported)
	case sb.DirBlkBits != 0:
		return nil, fmt.Errorf("erofs: directory block bits %d: %w", sb.DirBlkBits, ErrUnsupported)
	case sb.XattrPrefixCount != 0:
		return nil, fmt.Errorf("erofs: %d long xattr prefixes: %w", sb.XattrPrefixCount, ErrUnsupported)
	case sb.ExtSlots > MaxSuperblockExtSlots:
		return nil, fmt.Errorf("erofs: %d superblock extension slots: %w", sb.ExtSlots, ErrCorrupt)
	}
	// Everything the image points at is checked against its size, so the
	// block count must describe the image exactly.
	if int64(sb.Blocks)*BlockSize != img.size {
		return nil, fmt.Errorf("erofs: superblock declares %d blocks, image has %d bytes: %w",
			sb.Blocks, img.size, ErrCorrupt)
	}
	img.metaBase = int64(sb.MetaBlkAddr) * BlockSize
	img.xattrBase = int64(sb.XattrBlkAddr) * BlockSize
	if img.metaBase >= img.size {
		return nil, fmt.Errorf("erofs: metadata block %d beyond the image: %w", sb.MetaBlkAddr, ErrCorrupt)
	}
	if img.xattrBase >= img.size {
		return nil, fmt.Errorf("erofs: shared xattr block %d beyond the image: %w", sb.XattrBlkAddr, ErrCorrupt)
	}
	root, err := img.Inode(uint64(sb.RootNid))
	if err != nil {
		return nil, fmt.Errorf("erofs: root: %w", err)
	}
	if !root.IsDir() {
		return nil, fmt.Errorf("erofs: root nid %d has mode %#o, not a directory: %w", sb.RootNid, root.Mode, ErrCorrupt)
	}
	return img, nil
}

// Info returns the header and superblock facts of the image.
func (img *Image) Info() ImageInfo {
	return ImageInfo{
		Version:         img.hdr.ComposefsVersion,
		Flags:           img.hdr.Flags,
		HasACL:          img.hdr.Flags&FlagHasACL != 0,
		Inodes:          img.sb.Inos,
		RootNid:         uint64(img.sb.RootNid),
		BuildTime:       img.buildTime(),
		Blocks:          img.sb.Blocks,
		FeatureCompat:   img.sb.FeatureCompat,
		FeatureIncompat: img.sb.FeatureIncompat,
	}
}

// Root returns the nid of the root directory.
func (img *Image) Root() uint64 { return uint64(img.sb.RootNid) }

// Size returns the image size in bytes.
func (img *Image) Size() int64 { return img.size }

func (img *Image) buildTime() tree.Timespec {
	return tree.Timespec{Sec: int64(img.sb.BuildTime), Nsec: img.sb.BuildTimeNsec}
}

// errRange is wrapped by the callers of bytes, which say what they were
// reading.
var errRange = fmt.Errorf("beyond the end of the image: %w", ErrCorrupt)

// inImage reports whether the n bytes at off lie within the image, without
// overflowing for any input.
func (img *Image) inImage(off int64, n uint64) bool {
	return off >= 0 && off <= img.size && n <= uint64(img.size-off)
}

// bytes returns the n bytes at off. In memory they alias the image and must
// not be modified; otherwise they are freshly read.
func (img *Image) bytes(off int64, n int) ([]byte, error) {
	if n < 0 || !img.inImage(off, uint64(n)) {
		return nil, errRange
	}
	if img.data != nil {
		return img.data[off : off+int64(n) : off+int64(n)], nil
	}
	b := make([]byte, n)
	if m, err := img.r.ReadAt(b, off); m < n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("reading %d bytes at %d: %w", n, off, err)
	}
	return b, nil
}

// corrupt returns an ErrCorrupt error about inode nid.
func corrupt(nid uint64, format string, args ...any) error {
	return fmt.Errorf("erofs: nid %d: %s: %w", nid, fmt.Sprintf(format, args...), ErrCorrupt)
}

// unsupported returns an ErrUnsupported error about inode nid.
func unsupported(nid uint64, format string, args ...any) error {
	return fmt.Errorf("erofs: nid %d: %s: %w", nid, fmt.Sprintf(format, args...), ErrUnsupported)
}

// nidOffset returns the image offset of inode nid, or false if the slot is
// not inside the image.
func (img *Image) nidOffset(nid uint64) (int64, bool) {
	if nid >= uint64(img.size-img.metaBase)>>InodeSlotBits {
		return 0, false
	}
	return img.metaBase + int64(nid)<<InodeSlotBits, true
}
