package scan

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/store/objects"
	"github.com/gocfs/gocfs/verity"
)

// readBufSize makes reading a file cost few system calls while the buffer
// stays in cache until it is hashed.
const readBufSize = 256 << 10

// worker reads regular files handed over by the walk. Its buffers are reused
// from file to file.
type worker struct {
	s   *scanner
	buf []byte
	h   *verity.Hash
	xr  xattrReader
}

func (s *scanner) work() {
	debug.SetPanicOnFault(true)
	w := worker{s: s}
	for j := range s.jobs {
		if s.failed.Load() {
			j.dir.release()
			continue
		}
		if err := w.file(j); err != nil {
			s.fail(err)
		}
	}
}

// file records the xattrs and the content or digest of one regular file, and
// stores it when there is a store. The file is read once, through one
// descriptor, for all of that.
func (w *worker) file(j fileJob) error {
	s, n := w.s, j.node
	// O_NONBLOCK and O_NOCTTY: if the file was replaced by a fifo or a
	// device since the walk saw it, opening it must neither hang nor have
	// side effects; the type check below then refuses it.
	fd, err := openRetry(j.dir.fd, j.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC)
	j.dir.release()
	if err != nil {
		return s.errorf(j.dir, j.name, "open", err)
	}
	owned := true
	defer func() {
		if owned {
			unix.Close(fd)
		}
	}()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return s.errorf(j.dir, j.name, "stat", err)
	}
	// mkcomposefs would record the size it saw and the digest of whatever
	// it read later; an image mixing two versions of a file is refused.
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != int64(n.Size) {
		return s.errorf(j.dir, j.name, "read", errChanged)
	}
	if err := s.xattrs(&w.xr, n, fd, ""); err != nil {
		return s.errorf(j.dir, j.name, "xattrs", err)
	}
	if w.buf == nil {
		w.buf = make([]byte, readBufSize)
		alg := verity.SHA256
		if s.opts.Store != nil {
			alg = s.opts.Store.Algorithm()
		}
		w.h = verity.New(alg)
	}

	if n.Size <= InlineMax {
		if err := readExactly(fd, w.buf[:n.Size]); err != nil {
			return s.errorf(j.dir, j.name, "read", err)
		}
		n.Content = append([]byte(nil), w.buf[:n.Size]...)
		return nil
	}

	w.h.Reset()
	if n.Size > readBufSize {
		err = w.hashMapped(fd, n.Size)
	} else {
		err = w.hashRead(fd, n.Size)
	}
	if err != nil {
		return s.errorf(j.dir, j.name, "read", err)
	}
	n.Digest = w.h.Sum(nil)
	n.Payload = objects.Path(n.Digest)

	if s.opts.Store == nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), s.relPath(j.dir, j.name))
	owned = false
	err = s.opts.Store.Ingest(f, n.Digest)
	f.Close()
	if err != nil {
		return fmt.Errorf("scan %q: %w", s.relPath(j.dir, j.name), err)
	}
	return nil
}

var errChanged = errors.New("file changed during the scan")

// hashRead hashes a file that fits the read buffer.
func (w *worker) hashRead(fd int, size uint64) error {
	b := w.buf[:size]
	if err := readExactly(fd, b); err != nil {
		return err
	}
	w.h.Write(b)
	return nil
}

// mapWindow bounds how much of a file is mapped at once: mapped pages count
// in the process's resident set until unmapped, and a system tree has files
// of hundreds of megabytes.
const mapWindow = 8 << 20

// hashMapped hashes a larger file through read-only mappings, which saves
// copying its pages: most of the bytes of a system tree are in such files.
func (w *worker) hashMapped(fd int, size uint64) error {
	if size > math.MaxInt64 {
		return fmt.Errorf("file of %d bytes too large to map", size)
	}
	for off := int64(0); off < int64(size); off += mapWindow {
		if err := w.hashWindow(fd, off, int(min(mapWindow, int64(size)-off))); err != nil {
			return err
		}
	}
	return nil
}

func (w *worker) hashWindow(fd int, off int64, n int) (err error) {
	data, err := unix.Mmap(fd, off, n, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap: %w", err)
	}
	defer unix.Munmap(data)
	// A file truncated meanwhile faults past its new end; the worker
	// goroutines turn such faults into panics (debug.SetPanicOnFault).
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(interface{ Addr() uintptr }); !ok {
				panic(r)
			}
			err = errChanged
		}
	}()
	_ = unix.Madvise(data, unix.MADV_SEQUENTIAL)
	w.h.Write(data)
	return nil
}

// readExactly fills buf from the start of the file. Reading exactly the
// size fstat gave usually takes a single read: a file that shrank since is
// caught, one that grew is recorded with the size it had, as with a mapping.
func readExactly(fd int, buf []byte) error {
	for off := 0; off < len(buf); {
		n, err := unix.Read(fd, buf[off:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errChanged
		}
		off += n
	}
	return nil
}
