package mount

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/verity"
)

// mounter holds what one mount opens, so that every path out of
// mountDetached releases it.
type mounter struct {
	opts Options
	caps Capabilities

	img    *os.File
	ownImg bool
	image  *erofs.Image

	objs        []int // O_PATH descriptors of the object directories
	upper, work int
	userns      int

	erofsMnt int    // detached, then briefly attached, EROFS mount
	tmpDir   string // where it is attached, for TierString and TierLegacy
	attached bool
}

func mountDetached(opts Options) (int, Info, error) {
	m := &mounter{opts: opts, upper: -1, work: -1, userns: -1, erofsMnt: -1}
	defer m.release()
	if err := m.check(); err != nil {
		return -1, Info{}, err
	}
	m.caps = Probe()
	if !m.caps.MountAPI {
		return -1, Info{}, fmt.Errorf("probing the kernel: %w", m.caps.Err)
	}
	tier, forceLoop, err := m.tier()
	if err != nil {
		return -1, Info{}, err
	}
	if err := m.open(); err != nil {
		return -1, Info{}, err
	}
	info := Info{Tier: tier}
	if info.Verity, err = m.verityWanted(); err != nil {
		return -1, Info{}, err
	}
	if info.Loop, err = m.mountErofs(forceLoop); err != nil {
		return -1, Info{}, err
	}
	fd, err := m.mountOverlay(tier, info.Verity)
	if err != nil {
		return -1, Info{}, err
	}
	return fd, info, nil
}

// check validates the options on their own.
func (m *mounter) check() error {
	o := &m.opts
	if o.Image == nil && o.ImagePath == "" {
		return errors.New("no image given")
	}
	if len(o.ObjectDirs) == 0 {
		return errors.New("no object directories given")
	}
	for _, d := range o.ObjectDirs {
		if d == "" {
			return errors.New("empty object directory path")
		}
	}
	if (o.UpperDir == "") != (o.WorkDir == "") {
		return errors.New("upper and work directories must be given together")
	}
	if o.Verity < VerityOff || o.Verity > VerityRequire {
		return fmt.Errorf("unknown verity mode %d", int(o.Verity))
	}
	if o.Tier < TierAuto || o.Tier > TierLegacy {
		return fmt.Errorf("unknown tier %d", int(o.Tier))
	}
	if o.Digest != nil && digestAlgorithm(o.Digest) == 0 {
		return fmt.Errorf("expected image digest has %d bytes, want %d (sha256) or %d (sha512)",
			len(o.Digest), verity.SHA256.Size(), verity.SHA512.Size())
	}
	return nil
}

// tier returns how the layers are passed and whether the image must go
// through a loop device.
func (m *mounter) tier() (Tier, bool, error) {
	c := m.caps
	switch m.opts.Tier {
	case TierAuto:
		return c.Tier(), false, nil
	case TierFD:
		if !c.LayerFDs {
			return 0, false, fmt.Errorf("tier fd: overlayfs takes no detached layers (Linux 6.15): %w", ErrUnsupported)
		}
	case TierString:
		if !c.OverlayParams {
			return 0, false, fmt.Errorf("tier string: overlayfs has no data-only layers (Linux 6.5): %w", ErrUnsupported)
		}
	case TierLoop:
		if !c.Loop {
			return 0, false, fmt.Errorf("tier loop: no /dev/loop-control: %w", ErrUnsupported)
		}
		return c.Tier(), true, nil
	}
	return m.opts.Tier, false, nil
}

// open opens and checks the image and the directories.
func (m *mounter) open() error {
	o := &m.opts
	// Layers and file-backed images are named through /proc.
	if err := unix.Access("/proc/self/fd", unix.F_OK); err != nil {
		return fmt.Errorf("/proc is not mounted (/proc/self/fd: %w)", err)
	}
	m.img = o.Image
	if m.img == nil {
		f, err := os.OpenFile(o.ImagePath, os.O_RDONLY|unix.O_NOCTTY, 0)
		if err != nil {
			return fmt.Errorf("open image: %w", err)
		}
		m.img, m.ownImg = f, true
	}
	st, err := m.img.Stat()
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if !st.Mode().IsRegular() {
		return errors.New("the image is not a regular file")
	}
	if o.Digest != nil {
		if err := checkDigest(m.img, st.Size(), o.Digest, o.Verity == VerityRequire); err != nil {
			return err
		}
	}
	if m.image, err = erofs.Open(m.img, st.Size()); err != nil {
		return fmt.Errorf("checking the image: %w", err)
	}
	for _, d := range o.ObjectDirs {
		fd, err := openDir(d)
		if err != nil {
			return fmt.Errorf("object directory: %w", err)
		}
		m.objs = append(m.objs, fd)
	}
	if o.UpperDir != "" {
		if m.upper, err = openDir(o.UpperDir); err != nil {
			return fmt.Errorf("upper directory: %w", err)
		}
		if m.work, err = openDir(o.WorkDir); err != nil {
			return fmt.Errorf("work directory: %w", err)
		}
		// overlayfs explains this refusal only in the kernel log.
		if a, b := mountID(m.upper), mountID(m.work); a != b {
			return fmt.Errorf("upper directory %s and work directory %s are on different mounts", o.UpperDir, o.WorkDir)
		}
	}
	if o.IDMap != "" {
		if m.userns, err = unix.Open(o.IDMap, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0); err != nil {
			return fmt.Errorf("idmap user namespace %s: %w", o.IDMap, err)
		}
		// The kernel's refusal of anything else is a bare EINVAL.
		if typ, err := unix.IoctlRetInt(m.userns, unix.NS_GET_NSTYPE); err != nil || typ != unix.CLONE_NEWUSER {
			return fmt.Errorf("idmap %s is not a user namespace", o.IDMap)
		}
	}
	return nil
}

func openDir(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

// mountID returns the mount ID of an open file, or 0 if the kernel does not
// say.
func mountID(fd int) uint64 {
	var st unix.Statx_t
	if unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &st) != nil || st.Mask&unix.STATX_MNT_ID == 0 {
		return 0
	}
	return st.Mnt_id
}

// mountErofs leaves a detached read-only mount of the image in m.erofsMnt,
// file-backed unless forced to a loop device or refused with ENOTBLK, and
// reports whether a loop device was used.
func (m *mounter) mountErofs(forceLoop bool) (bool, error) {
	if !forceLoop {
		fd, err := m.erofsContext(fdPath(int(m.img.Fd())))
		if err == nil {
			m.erofsMnt = fd
			return false, m.idmap()
		}
		if !errors.Is(err, unix.ENOTBLK) || !m.caps.Loop {
			return false, err
		}
	}
	loop, err := attachLoop(m.img)
	if err != nil {
		return true, err
	}
	// The loop device clears itself when its last user goes; the EROFS
	// superblock must hold it before our descriptor is closed.
	fd, err := m.erofsContext(fdPath(int(loop.Fd())))
	loop.Close()
	if err != nil {
		return true, err
	}
	m.erofsMnt = fd
	return true, m.idmap()
}

func (m *mounter) erofsContext(source string) (int, error) {
	c, err := openContext("erofs")
	if err != nil {
		return -1, err
	}
	defer c.close()
	if err := c.setString("source", source); err != nil {
		return -1, err
	}
	// A loop device configured read-only needs the read-only superblock
	// flag; a read-only mount attribute is not enough.
	if err := c.setFlag("ro"); err != nil {
		return -1, err
	}
	if !m.image.Info().HasACL {
		if err := c.setFlag("noacl"); err != nil {
			return -1, err
		}
	}
	if err := c.create(); err != nil {
		return -1, err
	}
	return c.mount(unix.MOUNT_ATTR_RDONLY)
}

// idmap makes the detached EROFS mount an idmapped one: only a mount not
// yet attached can become one.
func (m *mounter) idmap() error {
	if m.userns < 0 {
		return nil
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(m.userns)}
	if err := unix.MountSetattr(m.erofsMnt, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		// The namespace was checked: EINVAL means EROFS or the kernel
		// cannot idmap.
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) {
			err = fmt.Errorf("%w (%w)", err, ErrUnsupported)
		}
		return fmt.Errorf("idmapped EROFS mount with %s: %w", m.opts.IDMap, err)
	}
	return nil
}

// mountOverlay builds the overlay over the EROFS mount and the object
// directories and returns its detached mount.
func (m *mounter) mountOverlay(tier Tier, verityRequire bool) (int, error) {
	ov, err := openContext("overlay")
	if err != nil {
		return -1, err
	}
	defer ov.close()
	source := m.opts.Source
	if source == "" {
		source = "composefs"
	}
	if err := ov.setString("source", source); err != nil {
		return -1, err
	}
	if err := ov.setString("metacopy", "on"); err != nil {
		return -1, err
	}
	if err := ov.setString("redirect_dir", "on"); err != nil {
		return -1, err
	}
	if verityRequire {
		if err := ov.setString("verity", "require"); err != nil {
			return -1, err
		}
	}
	if tier == TierFD {
		err = m.layersByFD(ov)
	} else {
		err = m.layersByString(ov, tier)
	}
	if err != nil {
		return -1, err
	}
	if err := ov.create(); err != nil {
		return -1, err
	}
	attrs := 0
	if m.opts.ReadOnly || m.upper < 0 {
		attrs = unix.MOUNT_ATTR_RDONLY
	}
	return ov.mount(attrs)
}

func (m *mounter) layersByFD(ov *fsContext) error {
	if err := ov.setFD("lowerdir+", m.erofsMnt); err != nil {
		return err
	}
	for _, fd := range m.objs {
		if err := ov.setFD("datadir+", fd); err != nil {
			return err
		}
	}
	if m.upper >= 0 {
		if err := ov.setFD("upperdir", m.upper); err != nil {
			return err
		}
		if err := ov.setFD("workdir", m.work); err != nil {
			return err
		}
	}
	return nil
}

// layersByString attaches the EROFS and names every layer by its
// /proc/self/fd path.
func (m *mounter) layersByString(ov *fsContext, tier Tier) error {
	if err := m.attachErofs(); err != nil {
		return err
	}
	lower := fdPath(m.erofsMnt)
	if tier == TierString && m.caps.LayerAppend && !m.opts.noAppend {
		if err := ov.setString("lowerdir+", lower); err != nil {
			return err
		}
		for _, fd := range m.objs {
			if err := ov.setString("datadir+", fdPath(fd)); err != nil {
				return err
			}
		}
	} else {
		sep := "::" // data-only layers
		if tier == TierLegacy {
			sep = ":"
		}
		var b strings.Builder
		b.WriteString(lower)
		for _, fd := range m.objs {
			b.WriteString(sep)
			b.WriteString(fdPath(fd))
		}
		if err := ov.setString("lowerdir", b.String()); err != nil {
			return err
		}
	}
	if m.upper >= 0 {
		if err := ov.setString("upperdir", fdPath(m.upper)); err != nil {
			return err
		}
		if err := ov.setString("workdir", fdPath(m.work)); err != nil {
			return err
		}
	}
	return nil
}

// attachErofs attaches the EROFS mount to a new private directory, because
// kernels before 6.15 take no detached mounts as layers.
func (m *mounter) attachErofs() error {
	dir, err := os.MkdirTemp(m.opts.TempDir, ".composefs-")
	if err != nil {
		return fmt.Errorf("directory to attach the EROFS: %w", err)
	}
	m.tmpDir = dir
	if err := unix.MoveMount(m.erofsMnt, "", unix.AT_FDCWD, dir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach the EROFS on %s: move_mount: %w", dir, err)
	}
	m.attached = true
	return nil
}

// release undoes everything mountDetached set up: the overlay, once
// created, holds its own references to its layers.
func (m *mounter) release() {
	if m.attached {
		unix.Unmount(m.tmpDir, unix.MNT_DETACH)
	}
	if m.tmpDir != "" {
		os.Remove(m.tmpDir)
	}
	for _, fd := range append(m.objs, m.erofsMnt, m.upper, m.work, m.userns) {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	if m.ownImg {
		m.img.Close()
	}
}
