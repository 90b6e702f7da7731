package prepare

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/mount"
	"github.com/gocfs/gocfs/store"
)

// Linux is the System of the running kernel.
type Linux struct{}

var _ System = Linux{}

// MountImage implements System.
func (Linux) MountImage(target string, opts mount.Options) (mount.Info, error) {
	return mount.Mount(target, opts)
}

// Bind implements System.
func (Linux) Bind(src, target string) error {
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, target, err)
	}
	return nil
}

// MakePrivate implements System.
func (Linux) MakePrivate(target string) error {
	if err := unix.Mount("", target, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s private: %w", target, err)
	}
	return nil
}

// Overlay implements System. The layers are named by /proc/self/fd paths,
// so that no path needs escaping for the option string.
func (Linux) Overlay(target, lower, upper, work string) error {
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	var names [3]string
	for i, p := range []string{lower, upper, work} {
		fd, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("overlay on %s: open %s: %w", target, p, err)
		}
		fds = append(fds, fd)
		names[i] = "/proc/self/fd/" + strconv.Itoa(fd)
	}
	data := "lowerdir=" + names[0] + ",upperdir=" + names[1] + ",workdir=" + names[2]
	if err := unix.Mount("overlay", target, "overlay", 0, data); err != nil {
		return fmt.Errorf("overlay on %s (lower %s, upper %s, work %s): %w", target, lower, upper, work, err)
	}
	return nil
}

// Tmpfs implements System.
func (Linux) Tmpfs(target string) error {
	if err := unix.Mount("tmpfs", target, "tmpfs", unix.MS_NODEV|unix.MS_NOSUID, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", target, err)
	}
	return nil
}

// Move implements System.
func (Linux) Move(src, target string) error {
	if err := unix.Mount(src, target, "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move mount %s to %s: %w", src, target, err)
	}
	return nil
}

// Detach implements System.
func (Linux) Detach(target string) error {
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// IsMountPoint implements System.
func (Linux) IsMountPoint(path string) (bool, error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &st); err != nil {
		return false, fmt.Errorf("statx %s: %w", path, err)
	}
	if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return false, fmt.Errorf("statx %s: the kernel does not report mount roots", path)
	}
	return st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
}

// MkdirAll implements System.
func (Linux) MkdirAll(path string, perm os.FileMode) error {
	return os.MkdirAll(path, perm)
}

// OpenRepository implements System.
func (Linux) OpenRepository(path string) (Repository, error) {
	r, err := store.Open(path)
	if err != nil {
		return nil, err
	}
	return storeRepo{r}, nil
}

type storeRepo struct{ *store.Repository }

func (r storeRepo) ObjectDir() string { return r.Objects().Path() }
