// Package fakeverity imitates the kernel's fs-verity for tests on machines
// whose kernel or filesystem lacks it: Enable computes the digest in
// userspace and remembers it for the inode, Measure returns it.
package fakeverity

import (
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/verity"
)

// inode identifies a file's content: a sealed file cannot change, so a new
// modification time or size means another file that reuses the inode
// number.
type inode struct {
	dev, ino uint64
	mtime    unix.Timespec
	size     int64
}

type measurement struct {
	alg    verity.Algorithm
	digest []byte
}

// Kernel is a fake fs-verity implementation. The zero value supports
// fs-verity on every file; Unsupported makes it answer as a filesystem
// without it. Its methods may be called concurrently.
type Kernel struct {
	// Unsupported makes Enable and Measure fail with
	// verity.ErrNotSupported.
	Unsupported bool

	mu     sync.Mutex
	inodes map[inode]measurement
}

func key(f *os.File) (inode, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return inode{}, err
	}
	return inode{uint64(st.Dev), st.Ino, st.Mtim, st.Size}, nil
}

// Enable records the digest of f's current content, as the kernel seals a
// file. Like the kernel, it needs a read-only descriptor.
func (k *Kernel) Enable(f *os.File, alg verity.Algorithm) error {
	if k.Unsupported {
		return fmt.Errorf("enable fs-verity on %s: %w", f.Name(), verity.ErrNotSupported)
	}
	flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if flags&unix.O_ACCMODE != unix.O_RDONLY {
		return fmt.Errorf("enable fs-verity on %s: %w", f.Name(), unix.ETXTBSY)
	}
	id, err := key(f)
	if err != nil {
		return err
	}
	k.mu.Lock()
	_, ok := k.inodes[id]
	k.mu.Unlock()
	if ok {
		return nil
	}
	d, err := verity.Digest(io.NewSectionReader(f, 0, 1<<62), alg)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.inodes == nil {
		k.inodes = make(map[inode]measurement)
	}
	k.inodes[id] = measurement{alg, d}
	return nil
}

// Measure returns what Enable recorded for f.
func (k *Kernel) Measure(f *os.File) (verity.Algorithm, []byte, error) {
	if k.Unsupported {
		return 0, nil, fmt.Errorf("measure fs-verity of %s: %w", f.Name(), verity.ErrNotSupported)
	}
	id, err := key(f)
	if err != nil {
		return 0, nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	m, ok := k.inodes[id]
	if !ok {
		return 0, nil, fmt.Errorf("measure fs-verity of %s: %w", f.Name(), verity.ErrNoVerity)
	}
	return m.alg, append([]byte(nil), m.digest...), nil
}

// Has reports whether the file at path has (fake) fs-verity.
func (k *Kernel) Has(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	_, _, err = k.Measure(f)
	return err == nil
}
