package erofs

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/gocfs/gocfs/erofs/tree"
)

// Xattrs returns the inode's extended attributes as stored, with full names,
// in the order the kernel lists them: inline entries in on-disk order, then
// the shared ones in the order of the inode's shared id list. The overlay
// xattrs composefs adds are included as they are on disk.
//
// The inline area must be exactly filled by the shared id list and whole
// entries, and shared ids must point at entries inside the image. Names
// must use a known prefix index (no long prefixes), be 1 to
// MaxXattrNameLen bytes in full and hold no NUL byte.
func (img *Image) Xattrs(ino *Inode) ([]tree.Xattr, error) {
	var xs []tree.Xattr
	err := img.forEachXattr(ino, func(x rawXattr) error {
		xs = append(xs, tree.Xattr{Name: x.name(), Value: string(x.value)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return xs, nil
}

// rawXattr is an xattr entry as stored: a prefix index and the name suffix.
type rawXattr struct {
	index  uint8
	suffix []byte
	value  []byte
}

func (x rawXattr) name() string { return xattrIndexPrefixes[x.index] + string(x.suffix) }

// appendName appends the full name to b.
func (x rawXattr) appendName(b []byte) []byte {
	return append(append(b, xattrIndexPrefixes[x.index]...), x.suffix...)
}

// xattrArea returns the inline xattr area of ino and its shared id count.
func (img *Image) xattrArea(ino *Inode) ([]byte, int, error) {
	if ino.xattrSize == 0 {
		return nil, 0, nil
	}
	area, err := img.bytes(ino.off+int64(ino.coreSize()), ino.xattrSize)
	if err != nil {
		return nil, 0, fmt.Errorf("erofs: nid %d: xattr area: %w", ino.Nid, err)
	}
	shared := int(area[4])
	if XattrIbodyHeaderSize+shared*4 > len(area) {
		return nil, 0, corrupt(ino.Nid, "%d shared xattr ids overrun the %d-byte xattr area", shared, len(area))
	}
	return area, shared, nil
}

// forEachXattr calls fn for each xattr of ino, inline entries first.
func (img *Image) forEachXattr(ino *Inode, fn func(rawXattr) error) error {
	area, shared, err := img.xattrArea(ino)
	if err != nil || area == nil {
		return err
	}
	start := XattrIbodyHeaderSize + shared*4
	for p := start; p < len(area); {
		x, n, msg := parseXattr(area[p:])
		if msg != "" {
			return corrupt(ino.Nid, "inline xattr at offset %d of the xattr area: %s", p, msg)
		}
		if err := fn(x); err != nil {
			return err
		}
		p += n
	}
	for i := range shared {
		id := binary.LittleEndian.Uint32(area[XattrIbodyHeaderSize+i*4:])
		x, err := img.sharedXattr(ino.Nid, id)
		if err != nil {
			return err
		}
		if err := fn(x); err != nil {
			return err
		}
	}
	return nil
}

// sharedXattr reads the shared xattr with the given id for inode nid.
func (img *Image) sharedXattr(nid uint64, id uint32) (rawXattr, error) {
	off := img.xattrBase + int64(id)*4
	hdr, err := img.bytes(off, XattrEntrySize)
	if err != nil {
		return rawXattr{}, fmt.Errorf("erofs: nid %d: shared xattr id %d at %d: %w", nid, id, off, err)
	}
	n := XattrEntrySize + int(hdr[0]) + int(binary.LittleEndian.Uint16(hdr[2:]))
	b, err := img.bytes(off, n)
	if err != nil {
		return rawXattr{}, fmt.Errorf("erofs: nid %d: shared xattr id %d at %d: %w", nid, id, off, err)
	}
	x, _, msg := parseXattr(b)
	if msg != "" {
		return rawXattr{}, corrupt(nid, "shared xattr id %d: %s", id, msg)
	}
	return x, nil
}

// parseXattr decodes the entry at the start of b and returns it with its
// padded size, or a description of what is wrong with it.
func parseXattr(b []byte) (rawXattr, int, string) {
	if len(b) < XattrEntrySize {
		return rawXattr{}, 0, fmt.Sprintf("entry header overruns the area by %d bytes", XattrEntrySize-len(b))
	}
	nameLen, index := int(b[0]), b[1]
	valueLen := int(binary.LittleEndian.Uint16(b[2:]))
	n := XattrEntrySize + nameLen + valueLen
	size := (n + XattrAlign - 1) &^ (XattrAlign - 1)
	switch {
	case n > len(b):
		return rawXattr{}, 0, fmt.Sprintf("%d-byte name and %d-byte value overrun the area", nameLen, valueLen)
	case index&XattrLongPrefix != 0:
		return rawXattr{}, 0, fmt.Sprintf("long name prefix %d without a prefix table", index&^XattrLongPrefix)
	case int(index) >= len(xattrIndexPrefixes):
		return rawXattr{}, 0, fmt.Sprintf("unknown name index %d", index)
	}
	x := rawXattr{index: index, suffix: b[XattrEntrySize : XattrEntrySize+nameLen], value: b[XattrEntrySize+nameLen : n]}
	full := len(xattrIndexPrefixes[index]) + nameLen
	switch {
	case full == 0:
		return rawXattr{}, 0, "empty name"
	case full > MaxXattrNameLen:
		return rawXattr{}, 0, fmt.Sprintf("%d-byte name", full)
	case bytes.IndexByte(x.suffix, 0) >= 0:
		return rawXattr{}, 0, fmt.Sprintf("name %q holds a NUL byte", x.name())
	}
	// Shared entries are read without their padding.
	return x, min(size, len(b)), ""
}
