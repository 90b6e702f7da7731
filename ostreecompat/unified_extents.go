package ostreecompat

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/verity"
)

// FIEMAP, from linux/fiemap.h and linux/fs.h (x/sys/unix has no wrapper).
const (
	fsIocFiemap        = 0xC020660B // _IOWR('f', 11, struct fiemap)
	fiemapFlagSync     = 0x1
	fiemapExtentLast   = 0x1
	fiemapExtentShared = 0x2000
	fiemapBatch        = 64
)

type fiemapExtent struct {
	Logical, Physical, Length uint64
	_                         [2]uint64
	Flags                     uint32
	_                         [3]uint32
}

type fiemapRequest struct {
	Start, Length                uint64
	Flags, Mapped, Count, unused uint32
	Extents                      [fiemapBatch]fiemapExtent
}

// ExtentSharing returns how many bytes of f's extents the filesystem marks
// shared (FIEMAP_EXTENT_SHARED: another file, or a snapshot, has the same
// blocks) and how many bytes its extents cover in all. Delayed allocations
// are flushed first, so that a file just written reports its real extents.
func ExtentSharing(f *os.File) (shared, total uint64, err error) {
	req := &fiemapRequest{}
	var start uint64
	for {
		*req = fiemapRequest{Start: start, Length: ^uint64(0) - start, Flags: fiemapFlagSync, Count: fiemapBatch}
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(req)))
		if errno != 0 {
			return 0, 0, fmt.Errorf("%s: FIEMAP: %w", f.Name(), errno)
		}
		if req.Mapped == 0 || req.Mapped > fiemapBatch {
			return shared, total, nil
		}
		for _, e := range req.Extents[:req.Mapped] {
			total += e.Length
			if e.Flags&fiemapExtentShared != 0 {
				shared += e.Length
			}
			if e.Flags&fiemapExtentLast != 0 {
				return shared, total, nil
			}
		}
		last := req.Extents[req.Mapped-1]
		start = last.Logical + last.Length
	}
}

// DedupeResult counts what dedupeRepo did.
type DedupeResult struct {
	// Files is the number of regular file objects of the ostree
	// repository examined.
	Files uint64 `json:"files"`
	// AlreadyShared were sharing all their blocks already (commits
	// synthesized with reflinks).
	AlreadyShared uint64 `json:"alreadyShared"`
	// Deduped now share the blocks of the store object with their bytes,
	// and Bytes is their size.
	Deduped uint64 `json:"deduped"`
	Bytes   uint64 `json:"bytes"`
	// NotInStore have no store object with their bytes.
	NotInStore uint64 `json:"notInStore"`
}

// dedupeChunk bounds one FIDEDUPERANGE call; btrfs refuses more than 16 MiB
// at once.
const dedupeChunk = 16 << 20

// dedupeRepo makes every regular file object of the ostree repository at
// repoDir whose bytes equal a store object's share that object's blocks.
// FIDEDUPERANGE compares the bytes under lock and shares them only if they
// are equal, and changes neither content nor metadata (not even mtime), so
// the objects' checksums stay valid and a concurrent reader sees the same
// bytes throughout.
func dedupeRepo(ctx context.Context, st *store.Repository, repoDir string) (*DedupeResult, error) {
	res := &DedupeResult{}
	objs := filepath.Join(repoDir, "objects")
	err := filepath.WalkDir(objs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(d.Name(), ".file") {
			return nil
		}
		res.Files++
		return dedupeObject(st, p, res)
	})
	if err != nil {
		return res, fmt.Errorf("share the blocks of %s: %w", objs, err)
	}
	return res, nil
}

func dedupeObject(st *store.Repository, p string, res *DedupeResult) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		return nil
	}
	shared, total, err := ExtentSharing(f)
	if err != nil {
		return err
	}
	if total > 0 && shared == total {
		res.AlreadyShared++
		return nil
	}
	digest, err := verity.Digest(f, st.Algorithm())
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	src, err := st.OpenObject(digest)
	if errors.Is(err, os.ErrNotExist) {
		res.NotInStore++
		return nil
	}
	if err != nil {
		return err
	}
	defer src.Close()
	size := uint64(fi.Size())
	for off := uint64(0); off < size; {
		n := min(size-off, dedupeChunk)
		r := unix.FileDedupeRange{Src_offset: off, Src_length: n, Info: []unix.FileDedupeRangeInfo{{Dest_fd: int64(f.Fd()), Dest_offset: off}}}
		if err := unix.IoctlFileDedupeRange(int(src.Fd()), &r); err != nil {
			return fmt.Errorf("%s: FIDEDUPERANGE: %w", p, err)
		}
		info := r.Info[0]
		switch {
		case info.Status == unix.FILE_DEDUPE_RANGE_DIFFERS:
			return fmt.Errorf("%s: differs from store object %x though their digests match", p, digest)
		case info.Status < 0:
			return fmt.Errorf("%s: FIDEDUPERANGE: %w", p, unix.Errno(-info.Status))
		case info.Bytes_deduped == 0:
			return fmt.Errorf("%s: FIDEDUPERANGE made no progress at %d", p, off)
		}
		off += info.Bytes_deduped
	}
	res.Deduped++
	res.Bytes += size
	return nil
}
