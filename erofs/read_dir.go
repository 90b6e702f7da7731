package erofs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
)

// A DirEntry is a directory entry as stored.
type DirEntry struct {
	Name string
	Nid  uint64
	// Type is the stored file type, FileTypeReg to FileTypeLnk.
	Type uint8
}

// ReadDir returns the entries of a directory in their on-disk order, which
// is ascending byte order of the names, "." and ".." included (composefs
// stores both in every directory). Each block must hold at least one entry,
// names must be 1 to MaxNameLen bytes without "/" or NUL, and names must be
// strictly ascending across the whole directory, as the kernel's binary
// search in Lookup assumes.
func (img *Image) ReadDir(dir *Inode) ([]DirEntry, error) {
	nb, err := dirBlockCount(dir)
	if err != nil {
		return nil, err
	}
	var ents []DirEntry
	var prev []byte
	for bi := range nb {
		blk, err := img.dirBlock(dir, bi)
		if err != nil {
			return nil, err
		}
		if ents == nil {
			// Entries hold at least one name byte each: a bound, not a guess.
			ents = make([]DirEntry, 0, min(dir.Size/(DirentSize+1)+1, 1024))
		}
		for i := range blk.n {
			e, err := blk.entry(i)
			if err != nil {
				return nil, err
			}
			if err := blk.checkOrder(prev, e.name); err != nil {
				return nil, err
			}
			prev = e.name
			ents = append(ents, DirEntry{Name: string(e.name), Nid: e.nid, Type: e.ftype})
		}
	}
	return ents, nil
}

// Lookup finds name in a directory by binary search over its blocks and
// then over the entries of one block, as the kernel does; it reports
// fs.ErrNotExist when the name is absent.
func (img *Image) Lookup(dir *Inode, name string) (DirEntry, error) {
	nb, err := dirBlockCount(dir)
	if err != nil {
		return DirEntry{}, err
	}
	key := []byte(name)
	// Find the last block whose first name is not after the key.
	var cand dirBlock
	found := false
	for lo, hi := uint64(0), nb; lo < hi; {
		mid := lo + (hi-lo)/2
		blk, err := img.dirBlock(dir, mid)
		if err != nil {
			return DirEntry{}, err
		}
		first, err := blk.entry(0)
		if err != nil {
			return DirEntry{}, err
		}
		if bytes.Compare(key, first.name) < 0 {
			hi = mid
		} else {
			cand, found, lo = blk, true, mid+1
		}
	}
	if found {
		for lo, hi := 0, cand.n; lo < hi; {
			mid := lo + (hi-lo)/2
			e, err := cand.entry(mid)
			if err != nil {
				return DirEntry{}, err
			}
			switch c := bytes.Compare(key, e.name); {
			case c == 0:
				return DirEntry{Name: name, Nid: e.nid, Type: e.ftype}, nil
			case c < 0:
				hi = mid
			default:
				lo = mid + 1
			}
		}
	}
	return DirEntry{}, fmt.Errorf("erofs: nid %d: %q: %w", dir.Nid, name, fs.ErrNotExist)
}

var errNotDir = errors.New("not a directory")

// dirBlockCount returns the number of entry blocks of a directory, the last
// one possibly partial or inline.
func dirBlockCount(dir *Inode) (uint64, error) {
	if !dir.IsDir() {
		return 0, fmt.Errorf("erofs: nid %d: mode %#o: %w", dir.Nid, dir.Mode, errNotDir)
	}
	return dir.Size/BlockSize + min(dir.Size%BlockSize, 1), nil
}

// dirBlock is one block of directory entries: n dirents, then their names.
// The first dirent's name offset gives n; each name ends where the next one
// starts, the last one at the first NUL or the end of the block.
type dirBlock struct {
	b     []byte
	n     int
	nid   uint64 // directory, for errors
	index uint64 // block index, for errors
}

type rawDirent struct {
	name  []byte
	off   int // offset of the name in the block
	nid   uint64
	ftype uint8
}

func (img *Image) dirBlock(dir *Inode, i uint64) (dirBlock, error) {
	blocks, tail := dir.flatGeometry()
	var b []byte
	var err error
	if i < blocks {
		n := min(BlockSize, dir.Size-i*BlockSize)
		b, err = img.bytes((int64(dir.blkaddr)+int64(i))*BlockSize, int(n))
	} else {
		b, err = img.bytes(dir.inlineOffset(), tail)
	}
	if err != nil {
		return dirBlock{}, fmt.Errorf("erofs: nid %d: directory block %d: %w", dir.Nid, i, err)
	}
	d := dirBlock{b: b, nid: dir.Nid, index: i}
	if len(b) < DirentSize {
		return dirBlock{}, d.corrupt("%d bytes hold no entry", len(b))
	}
	off := int(binary.LittleEndian.Uint16(b[8:]))
	if off < DirentSize || off%DirentSize != 0 || off >= len(b) {
		return dirBlock{}, d.corrupt("first name offset %d in a %d-byte block", off, len(b))
	}
	d.n = off / DirentSize
	return d, nil
}

func (d *dirBlock) corrupt(format string, args ...any) error {
	return corrupt(d.nid, "directory block %d: %s", d.index, fmt.Sprintf(format, args...))
}

// entry decodes and checks dirent i.
func (d *dirBlock) entry(i int) (rawDirent, error) {
	var de, next dirent
	de.unmarshal(d.b[i*DirentSize:])
	start, end := int(de.NameOff), len(d.b)
	if i+1 < d.n {
		next.unmarshal(d.b[(i+1)*DirentSize:])
		end = int(next.NameOff)
	} else if start < end {
		if k := bytes.IndexByte(d.b[start:], 0); k >= 0 {
			end = start + k
		}
	}
	if start < d.n*DirentSize || start >= end || end > len(d.b) {
		return rawDirent{}, d.corrupt("entry %d: name at %d..%d outside the names area %d..%d",
			i, start, end, d.n*DirentSize, len(d.b))
	}
	r := rawDirent{name: d.b[start:end:end], off: start, nid: de.Nid, ftype: de.FileType}
	switch {
	case len(r.name) > MaxNameLen:
		return rawDirent{}, d.corrupt("entry %d: %d-byte name", i, len(r.name))
	case bytes.IndexByte(r.name, 0) >= 0 || bytes.IndexByte(r.name, '/') >= 0:
		return rawDirent{}, d.corrupt("entry %d: name %q holds NUL or /", i, r.name)
	case r.ftype > FileTypeLnk:
		return rawDirent{}, d.corrupt("entry %q: file type %d", r.name, r.ftype)
	}
	return r, nil
}

func (d *dirBlock) checkOrder(prev, name []byte) error {
	if prev != nil && bytes.Compare(prev, name) >= 0 {
		return d.corrupt("entry %q follows %q: names not in ascending order", name, prev)
	}
	return nil
}
