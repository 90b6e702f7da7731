package verity

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// measureArg is struct fsverity_digest followed by room for the largest
// digest; the kernel fails with EOVERFLOW if the room announced is too small.
type measureArg struct {
	hdr    unix.FsverityDigest
	digest [MaxDigestSize]byte
}

// Enable turns on fs-verity for f with algorithm alg, 4096-byte blocks and no
// salt. The kernel requires f to be open read-only and not open for writing
// anywhere else (ETXTBSY otherwise), and builds the Merkle tree before
// returning, which takes a while for large files. A file that already has
// fs-verity is not an error, whatever its algorithm; use Measure to check it.
func Enable(f *os.File, alg Algorithm) error {
	if alg.Size() == 0 {
		return fmt.Errorf("enable fs-verity on %s: unsupported hash algorithm %d", f.Name(), uint8(alg))
	}
	arg := unix.FsverityEnableArg{
		Version:        1,
		Hash_algorithm: uint32(alg),
		Block_size:     BlockSize,
	}
	err := ioctl(f, unix.FS_IOC_ENABLE_VERITY, unsafe.Pointer(&arg))
	if err == nil || err == unix.EEXIST {
		return nil
	}
	return fmt.Errorf("enable fs-verity on %s: %w", f.Name(), classify(err))
}

// Measure returns the algorithm and fs-verity digest the kernel holds for f.
// The error wraps ErrNoVerity if f does not have fs-verity enabled and
// ErrNotSupported if the kernel or filesystem cannot have it.
func Measure(f *os.File) (Algorithm, []byte, error) {
	var arg measureArg
	arg.hdr.Size = MaxDigestSize
	if err := ioctl(f, unix.FS_IOC_MEASURE_VERITY, unsafe.Pointer(&arg)); err != nil {
		if err == unix.ENODATA {
			err = fmt.Errorf("%w (%w)", ErrNoVerity, err)
		}
		return 0, nil, fmt.Errorf("measure fs-verity of %s: %w", f.Name(), classify(err))
	}
	alg := Algorithm(arg.hdr.Algorithm)
	if arg.hdr.Algorithm > 0xff || alg.Size() == 0 {
		return 0, nil, fmt.Errorf("measure fs-verity of %s: kernel reports unknown hash algorithm %d", f.Name(), arg.hdr.Algorithm)
	}
	if int(arg.hdr.Size) != alg.Size() {
		return 0, nil, fmt.Errorf("measure fs-verity of %s: kernel reports a %d-byte %s digest, want %d bytes",
			f.Name(), arg.hdr.Size, alg, alg.Size())
	}
	return alg, append([]byte(nil), arg.digest[:arg.hdr.Size]...), nil
}

// Supported reports whether files created in dir can have fs-verity enabled,
// by enabling it on an empty temporary file that is removed again. It returns
// false and no error when the kernel or filesystem lacks fs-verity, and an
// error when the probe itself fails (for example dir is not writable).
func Supported(dir string) (bool, error) {
	f, err := os.CreateTemp(dir, ".verity-probe-*")
	if err != nil {
		return false, fmt.Errorf("probe fs-verity support: %w", err)
	}
	name := f.Name()
	defer os.Remove(name)
	// Enabling needs a descriptor without write access, and no writer open.
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("probe fs-verity support: %w", err)
	}
	if f, err = os.Open(name); err != nil {
		return false, fmt.Errorf("probe fs-verity support: %w", err)
	}
	defer f.Close()
	err = Enable(f, SHA256)
	if errors.Is(err, ErrNotSupported) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("probe fs-verity support: %w", err)
	}
	return true, nil
}

// classify adds ErrNotSupported to the errors by which the kernel says it or
// the filesystem has no fs-verity: EOPNOTSUPP from a filesystem without the
// feature or a kernel built without it, ENOTTY from a filesystem that does not
// know the ioctl at all.
func classify(err error) error {
	if err == unix.EOPNOTSUPP || err == unix.ENOTTY {
		return fmt.Errorf("%w (%w)", ErrNotSupported, err)
	}
	return err
}

// ioctl issues an fs-verity ioctl on f, retrying if a signal interrupts it.
// A failure of the ioctl itself comes back as a bare unix.Errno, which
// callers compare directly.
func ioctl(f *os.File, req uintptr, arg unsafe.Pointer) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno unix.Errno
	cerr := rc.Control(func(fd uintptr) {
		for {
			_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(arg))
			if errno != unix.EINTR {
				return
			}
		}
	})
	if cerr != nil {
		return cerr
	}
	if errno != 0 {
		return errno
	}
	return nil
}
