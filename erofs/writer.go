package erofs

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/gocfs/gocfs/erofs/tree"
)

// How a tree.Inode becomes an image inode. The mapping matches what the C
// mkcomposefs builds from the same composefs-dump(5) line:
//
//	type       fields used            image
//	directory  Entries                entries plus "." and ".."; nlink is
//	                                  recomputed as 2 + subdirectories; Size,
//	                                  Content, Payload are ignored
//	regular    Content != nil         inline data, i_size = len(Content),
//	                                  which must equal Size; Payload and
//	                                  Digest are ignored
//	regular    Content == nil,        external: a sparse chunk-based file of
//	           Size > 0               that size with trusted.overlay.metacopy
//	                                  (empty, or carrying Digest) and, when
//	                                  Payload is set, trusted.overlay.redirect
//	                                  = "/" + Payload
//	regular    Content == nil,        empty file without overlay xattrs
//	           Size == 0
//	symlink    Payload                target, 1 to 4095 bytes; Size is ignored
//	                                  (i_size is the target length)
//	chr, blk   Rdev                   i_rdev = low 32 bits of Rdev
//	chr 0:0    -                      a whiteout: written as an empty regular
//	                                  file with escaped whiteout xattrs
//	fifo, sock -                      nothing
//
// For every type, Size (the target length for symlinks, 0 for whiteouts)
// also takes part in the choice between compact and extended inodes, as in
// C. Mode keeps only its low 16 bits on disk. A Content of length zero is
// the same as no content.

// VersionRange bounds the image format version (the composefs header's
// version field).
type VersionRange struct {
	// Min is the version written when the tree needs nothing newer.
	Min int
	// Max is the newest version the writer may move to. Version 1 marks
	// directories holding whiteouts (0:0 character devices) opaque=x for
	// overlayfs; a tree with whiteouts is written as version 1 when Max
	// allows it.
	Max int
}

// The range mkcomposefs uses when given no version options: version 0, or
// 1 for trees with whiteouts.
const (
	DefaultMinVersion = 0
	DefaultMaxVersion = 1
)

// WriteOptions controls Write. The zero value writes what mkcomposefs
// writes by default.
type WriteOptions struct {
	// Versions bounds the format version. Nil means DefaultMinVersion to
	// DefaultMaxVersion. A range is used as given: Max below Min is an
	// error, not raised to Min as the mkcomposefs options are.
	Versions *VersionRange
}

// WriteResult describes a written image.
type WriteResult struct {
	Version int    // format version in the composefs header
	Flags   uint32 // composefs header flags (FlagHasACL)
	Inodes  uint64 // inodes written, including the root whiteouts
	Size    int64  // bytes written, a multiple of BlockSize
}

// Write writes the composefs EROFS image of the tree rooted at root to w,
// byte for byte what the C mkcomposefs 1.0.8 writes for the same tree.
//
// The tree is only read. Besides what it describes, the image holds the
// overlay xattrs composefs needs (escaped trusted.overlay.* xattrs,
// metacopy and redirect xattrs, whiteout markers), trusted.overlay.opaque
// on the root and, in the root, a whiteout for each of the names "00" to
// "ff" the tree does not use, which hides an object store's fan-out
// directories.
//
// Write refuses trees the C tools refuse and trees they cannot express:
// entries must be sorted and uniquely named, every inode must have exactly
// one primary entry, and hardlink entries must name such an inode, not a
// directory. (An inode that is neither a directory nor a hardlink target
// and has two primary entries is written twice, as two inodes.)
//
// Output is produced sequentially, so w may be a pipe or a hash; on error
// some output may already have been written.
func Write(w io.Writer, root *tree.Inode, opts WriteOptions) (*WriteResult, error) {
	vr := VersionRange{Min: DefaultMinVersion, Max: DefaultMaxVersion}
	if opts.Versions != nil {
		vr = *opts.Versions
	}
	if vr.Min < MinFormatVersion || vr.Max > MaxFormatVersion || vr.Max < vr.Min {
		return nil, fmt.Errorf("erofs: unsupported format version range %d..%d (supported %d..%d)",
			vr.Min, vr.Max, MinFormatVersion, MaxFormatVersion)
	}
	if root == nil {
		return nil, errors.New("erofs: no root")
	}
	iw := &imageWriter{}
	if err := iw.prepare(root, vr); err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	n, err := iw.emit(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return nil, fmt.Errorf("erofs: writing image: %w", err)
	}
	return &WriteResult{
		Version: iw.version,
		Flags:   iw.flags,
		Inodes:  uint64(len(iw.nodes)),
		Size:    n,
	}, nil
}

// prepare runs every phase before the output: walk and validate the tree,
// choose the format version, rewrite the xattrs, share them, lay out.
func (iw *imageWriter) prepare(root *tree.Inode, vr VersionRange) error {
	if err := iw.collect(root); err != nil {
		return err
	}
	iw.version = vr.Min
	// Version 1 changed how whiteouts are marked, so only trees with
	// whiteouts move to it: other images keep their version 0 digest.
	if iw.version < 1 && vr.Max >= 1 && iw.hasWhiteout {
		iw.version = 1
	}
	if err := iw.rewriteXattrs(); err != nil {
		return err
	}
	iw.shareXattrs()
	return iw.layout()
}
