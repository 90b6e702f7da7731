package mount

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs"
)

// loopAttempts bounds the retries when another process takes the free loop
// device between LOOP_CTL_GET_FREE and LOOP_CONFIGURE.
const loopAttempts = 16

// attachLoop binds img to a free loop device, read-only, with direct I/O
// and the image's block size, and autoclear: the device is released when
// the last descriptor or mount of it goes, so the caller must keep the
// returned descriptor open until the device is mounted.
func attachLoop(img *os.File) (*os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("loop device: %w", err)
	}
	defer ctl.Close()
	cfg := unix.LoopConfig{Fd: uint32(img.Fd()), Size: erofs.BlockSize}
	cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR | unix.LO_FLAGS_DIRECT_IO
	copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], img.Name())
	for range loopAttempts {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("loop device: LOOP_CTL_GET_FREE: %w", err)
		}
		name := fmt.Sprintf("/dev/loop%d", n)
		dev, err := os.OpenFile(name, os.O_RDONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("loop device: %w", err)
		}
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if err == nil {
			return dev, nil
		}
		dev.Close()
		if !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("loop device %s: LOOP_CONFIGURE: %w", name, err)
		}
	}
	return nil, fmt.Errorf("loop device: every free device was taken before it could be configured (%d tries): %w", loopAttempts, unix.EBUSY)
}
