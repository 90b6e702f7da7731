package mount

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// fsContext is a filesystem context from fsopen(2). The kernel explains most
// refusals only in messages it queues on the context, so every failure
// collects them into the error.
type fsContext struct {
	fd     int
	fstype string
}

func openContext(fstype string) (*fsContext, error) {
	fd, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			err = fmt.Errorf("%w (%w: the new mount API needs Linux 5.2)", err, ErrUnsupported)
		}
		return nil, fmt.Errorf("fsopen %s: %w", fstype, err)
	}
	return &fsContext{fd: fd, fstype: fstype}, nil
}

func (c *fsContext) close() {
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}

func (c *fsContext) setString(key, value string) error {
	if err := unix.FsconfigSetString(c.fd, key, value); err != nil {
		return c.fail(fmt.Sprintf("%s=%s", key, value), err)
	}
	return nil
}

func (c *fsContext) setFlag(key string) error {
	if err := unix.FsconfigSetFlag(c.fd, key); err != nil {
		return c.fail(key, err)
	}
	return nil
}

func (c *fsContext) setFD(key string, fd int) error {
	if err := unix.FsconfigSetFd(c.fd, key, fd); err != nil {
		return c.fail(fmt.Sprintf("%s=fd %d", key, fd), err)
	}
	return nil
}

func (c *fsContext) create() error {
	if err := unix.FsconfigCreate(c.fd); err != nil {
		return c.fail("create", err)
	}
	return nil
}

// mount returns a detached mount of the created superblock.
func (c *fsContext) mount(attrs int) (int, error) {
	fd, err := unix.Fsmount(c.fd, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return -1, c.fail("fsmount", err)
	}
	return fd, nil
}

// fail wraps err, keeping the errno for errors.Is, with the kernel's
// messages.
func (c *fsContext) fail(op string, err error) error {
	if msgs := c.messages(); msgs != "" {
		return fmt.Errorf("%s %s: %w (kernel: %s)", c.fstype, op, err, msgs)
	}
	// Some refusals (overlayfs layer checks among them) go to the kernel
	// log instead.
	return fmt.Errorf("%s %s: %w (the kernel log may say why)", c.fstype, op, err)
}

// messages drains the context's message queue. Each read returns one
// message, "e " for errors, "w " for warnings, "i " for information.
func (c *fsContext) messages() string {
	var b strings.Builder
	var buf [1024]byte
	for range 64 { // the kernel keeps at most 8; bound the loop anyway
		n, err := unix.Read(c.fd, buf[:])
		if err != nil || n <= 0 {
			break
		}
		msg := strings.TrimSpace(string(buf[:n]))
		if len(msg) > 2 && msg[1] == ' ' {
			switch msg[0] {
			case 'w':
				msg = "warning: " + msg[2:]
			case 'i':
				msg = "info: " + msg[2:]
			default:
				msg = msg[2:]
			}
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(msg)
	}
	return b.String()
}

// fdPath names an open file through /proc, for kernel interfaces that take
// paths; the name resolves to exactly the file we opened and checked.
func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }
