package mount

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// Capabilities are the mount features of the running kernel.
type Capabilities struct {
	// MountAPI: fsopen and the rest of the new mount API (Linux 5.2).
	MountAPI bool
	// OverlayParams: overlayfs parses fs context parameters itself (6.5),
	// and so has data-only layers ("::").
	OverlayParams bool
	// LayerAppend: the "lowerdir+" and "datadir+" keys (6.7).
	LayerAppend bool
	// LayerFDs: detached mounts and O_PATH descriptors as layers through
	// FSCONFIG_SET_FD (6.15).
	LayerFDs bool
	// OverlayVerity: the overlay "verity" option (6.6).
	OverlayVerity bool
	// Loop: /dev/loop-control exists.
	Loop bool
	// Err says why probing stopped early (no privilege, no overlayfs).
	Err error
}

// Tier returns the tier TierAuto picks, not counting the loop fallback.
func (c Capabilities) Tier() Tier {
	switch {
	case c.LayerFDs:
		return TierFD
	case c.OverlayParams:
		return TierString
	}
	return TierLegacy
}

var (
	probeOnce sync.Once
	probed    Capabilities
)

// Probe returns the kernel's capabilities, found out on the first call. It
// needs the privilege to mount; without it the result has Err set.
func Probe() Capabilities {
	probeOnce.Do(func() { probed = probe() })
	return probed
}

func probe() Capabilities {
	var c Capabilities
	c.Loop = unix.Access("/dev/loop-control", unix.F_OK) == nil
	ov, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		c.Err = fmt.Errorf("fsopen overlay: %w", err)
		return c
	}
	defer unix.Close(ov)
	c.MountAPI = true
	// Before 6.5 overlayfs went through the kernel's generic wrapper,
	// which takes any key and only fails at create time.
	if unix.FsconfigSetString(ov, "gocfs-probe", "1") == nil {
		return c
	}
	c.OverlayParams = true
	c.OverlayVerity = unix.FsconfigSetString(ov, "verity", "off") == nil
	c.LayerAppend = unix.FsconfigSetString(ov, "lowerdir+", "/") == nil
	c.LayerFDs = c.LayerAppend && probeLayerFDs()
	return c
}

// probeLayerFDs builds an overlay from two detached tmpfs mounts passed as
// descriptors, the way TierFD passes the EROFS and the object directories.
// The superblock goes away with the context; nothing is ever attached.
func probeLayerFDs() bool {
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for range 2 {
		fd, err := detachedTmpfs()
		if err != nil {
			return false
		}
		fds = append(fds, fd)
	}
	ov, err := openContext("overlay")
	if err != nil {
		return false
	}
	defer ov.close()
	return ov.setString("metacopy", "on") == nil &&
		ov.setString("redirect_dir", "on") == nil &&
		ov.setFD("lowerdir+", fds[0]) == nil &&
		ov.setFD("datadir+", fds[1]) == nil &&
		ov.create() == nil
}

func detachedTmpfs() (int, error) {
	c, err := openContext("tmpfs")
	if err != nil {
		return -1, err
	}
	defer c.close()
	if err := c.create(); err != nil {
		return -1, err
	}
	return c.mount(0)
}
