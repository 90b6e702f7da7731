package prepare

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/initramfs/cmdline"
)

// The functions below are init mode: what an initramfs without an init
// system needs around Run. They act on the running system's root and are
// exercised by booting, not by unit tests.

// MountAPIFilesystems mounts /proc, /sys, /dev and /run, leaving those
// already mounted alone.
func MountAPIFilesystems() error {
	for _, m := range []struct{ dir, fstype, data string }{
		{"/proc", "proc", ""},
		{"/sys", "sysfs", ""},
		{"/dev", "devtmpfs", "mode=0755"},
		{"/run", "tmpfs", "mode=0755"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		err := unix.Mount(m.fstype, m.dir, m.fstype, unix.MS_NOSUID, m.data)
		if err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	return nil
}

// Uptime returns the time since the kernel started (CLOCK_BOOTTIME), the
// clock boot timings are read on.
func Uptime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// rootFSTypes are tried in order when there is no rootfstype=.
var rootFSTypes = []string{"ext4", "xfs", "btrfs", "f2fs"}

// MountPhysicalRoot mounts the root= device on sysroot, waiting up to wait
// for it to appear. Only device paths are understood: resolving
// LABEL= or UUID= needs udev, which this mode does not have.
func MountPhysicalRoot(a *cmdline.Args, sysroot string, wait time.Duration) error {
	if a.Root == "" {
		return errors.New("no root= kernel argument: the physical root is unknown")
	}
	if !strings.HasPrefix(a.Root, "/dev/") {
		return fmt.Errorf("root=%s: init mode understands only /dev/ paths", a.Root)
	}
	deadline := time.Now().Add(wait)
	for {
		_, err := os.Stat(a.Root)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			return fmt.Errorf("root=%s: %w", a.Root, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := os.MkdirAll(sysroot, 0o755); err != nil {
		return err
	}
	var flags uintptr
	if a.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	types := rootFSTypes
	if a.RootFSType != "" {
		types = strings.Split(a.RootFSType, ",")
	}
	var errs []error
	for _, t := range types {
		err := unix.Mount(a.Root, sysroot, t, flags, a.RootFlags)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("as %s: %w", t, err))
	}
	return fmt.Errorf("mount root=%s on %s: %w", a.Root, sysroot, errors.Join(errs...))
}

// defaultInits are tried in order when there is no init=.
var defaultInits = []string{"/sbin/init", "/usr/lib/systemd/systemd", "/init"}

// SwitchRoot makes newroot the root filesystem, moving /dev, /proc, /sys
// and /run into it, and executes init there (init= or the first of the
// usual programs the new root has). It returns only on failure.
func SwitchRoot(newroot, init string) error {
	inits := defaultInits
	if init != "" {
		inits = []string{init}
	}
	prog := ""
	for _, p := range inits {
		if fi, err := os.Stat(filepath.Join(newroot, p)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			prog = p
			break
		}
	}
	if prog == "" {
		return fmt.Errorf("no init in the new root (tried %s)", strings.Join(inits, ", "))
	}
	for _, d := range []string{"/dev", "/proc", "/sys", "/run"} {
		dst := filepath.Join(newroot, d)
		if fi, err := os.Stat(dst); err != nil || !fi.IsDir() {
			continue
		}
		if err := unix.Mount(d, dst, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s into the new root: %w", d, err)
		}
	}
	if err := unix.Chdir(newroot); err != nil {
		return fmt.Errorf("chdir %s: %w", newroot, err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s to /: %w", newroot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	if err := unix.Exec(prog, []string{prog}, os.Environ()); err != nil {
		return fmt.Errorf("execute %s: %w", prog, err)
	}
	return nil
}
