// Package mount mounts composefs images with the Linux kernel: the EROFS
// image is mounted read-only and becomes the metadata layer of an overlayfs
// whose data-only layers are object directories, so that every external file
// of the image reads the object its trusted.overlay.redirect names.
//
// # Tiers
//
// Kernels differ in how an overlay can be given its layers, so a mount takes
// one of these paths (tiers), all through the new mount API (fsopen, fsconfig,
// fsmount, move_mount):
//
//   - TierFD (Linux 6.15 and later): the EROFS is mounted file-backed and
//     never attached anywhere; its detached mount is passed to overlayfs as
//     "lowerdir+" with FSCONFIG_SET_FD, and each object directory as
//     "datadir+", an O_PATH descriptor. Nothing appears in the mount table
//     but the final overlay, and no path is looked up twice.
//   - TierString (6.5 to 6.14): detached mounts cannot be layers yet, so the
//     EROFS is attached for a moment to a private temporary directory and the
//     layers are named by /proc/self/fd/N strings, with the "lowerdir+" and
//     "datadir+" keys where the kernel has them (6.7) and as one
//     "lowerdir=EROFS::DATA1::DATA2" value otherwise. /proc/self/fd names need
//     no escaping of ",", ":" or "\" and cannot be swapped under us.
//   - TierLegacy (before 6.5): no data-only layers. The object directories
//     are ordinary lower layers below the image ("lowerdir=EROFS:DATA1"); the
//     whiteouts "00" to "ff" a composefs image has in its root hide their
//     fan-out directories. This is imperfect, as with the C tools: anything
//     else in an object directory's top level shows through in the mount's
//     root, and an image whose root has a directory named like a fan-out
//     directory (where it can have no whiteout) shows the objects in it.
//   - TierLoop: the image goes through a loop device (read-only, autoclear,
//     direct I/O, 4096-byte blocks) instead of being file-backed. File-backed
//     EROFS needs Linux 6.12 and an image on a block-device filesystem: it
//     refuses images on tmpfs or ramfs with ENOTBLK. The layers are passed as
//     in the best tier the kernel has. The loop device's descriptor is held until
//     the EROFS superblock exists, and autoclear frees the device when the
//     last mount of it goes.
//
// Probe finds out once per process which of these the kernel can do: it
// creates an overlay fs context and checks which parameters it validates
// and accepts, and for TierFD builds (but never mounts) an overlay from two
// detached tmpfs mounts. The automatic choice is TierFD, else TierString,
// else TierLegacy, and TierLoop for any of them when the file-backed EROFS
// mount fails with ENOTBLK. Options.Tier forces a tier.
//
// Every overlay gets metacopy=on and redirect_dir=on (kernels may default to
// off), the EROFS gets noacl unless the image header has FlagHasACL, and
// temporary mounts, directories and loop devices are released before Mount
// returns, on success and on every error. Errors from the kernel carry the
// messages it left in the fs context.
//
// # Verity
//
// With VerityRequire the overlay gets verity=require: the kernel refuses to
// open any external file whose object has no fs-verity digest matching the
// one in the image. The mount is refused if the first object checked has no
// fs-verity (typically the kernel or the filesystem has none), rather than
// made with every read failing. VerityTry uses verity=require only when that
// cannot make reads fail: the kernel's overlayfs knows the option, and every
// object present that the image references has fs-verity and a digest in the
// image, which means walking the whole image when they do. Otherwise it
// mounts without verity, where a kernel without fs-verity would fail every
// read with EIO.
//
// Options.Digest pins the image itself and is checked before anything is
// mounted: against the kernel's fs-verity measurement when the image file has
// fs-verity, else (unless VerityRequire, which insists on the kernel's
// measurement) by hashing the image in user space. The user-space check
// protects against the wrong or a damaged image, not against someone who can
// write to the image file while it is mounted; only fs-verity makes the file
// immutable.
package mount

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Tier is a way of assembling the mount; see the package documentation.
type Tier int

// The tiers. TierAuto lets Mount choose.
const (
	TierAuto Tier = iota
	TierFD
	TierString
	TierLoop
	TierLegacy
)

func (t Tier) String() string {
	switch t {
	case TierAuto:
		return "auto"
	case TierFD:
		return "fd"
	case TierString:
		return "string"
	case TierLoop:
		return "loop"
	case TierLegacy:
		return "legacy"
	}
	return fmt.Sprintf("Tier(%d)", int(t))
}

// VerityMode says how object contents are verified.
type VerityMode int

// The verity modes.
const (
	// VerityOff leaves objects unverified.
	VerityOff VerityMode = iota
	// VerityTry verifies objects when the kernel and the objects allow it
	// and mounts without verification otherwise.
	VerityTry
	// VerityRequire makes the kernel verify every object against the
	// digest the image records; a mount that cannot is refused.
	VerityRequire
)

func (v VerityMode) String() string {
	switch v {
	case VerityOff:
		return "off"
	case VerityTry:
		return "try"
	case VerityRequire:
		return "require"
	}
	return fmt.Sprintf("VerityMode(%d)", int(v))
}

// Options describe a composefs mount.
type Options struct {
	// Image is the EROFS image, open for reading. The caller keeps
	// ownership; the mount holds its own reference to the file. If nil,
	// ImagePath is opened.
	Image     *os.File
	ImagePath string

	// ObjectDirs are the object directories, searched in order for the
	// object an external file names. At least one is needed.
	ObjectDirs []string

	// ReadOnly makes the mount read-only even with an upper directory.
	// Without one the mount is always read-only.
	ReadOnly bool
	// UpperDir and WorkDir, both or neither, make a writable overlay whose
	// changes land in UpperDir. They must be on the same filesystem.
	UpperDir, WorkDir string

	Verity VerityMode
	// Digest, if set, is the fs-verity digest (sha256 or sha512) the image
	// file must have.
	Digest []byte

	// IDMap, if set, names a user namespace (for example /proc/PID/ns/user)
	// whose ID mapping the image's owners are shown through (an idmapped
	// mount of the EROFS layer).
	IDMap string

	// Source is the mount's source as the mount table shows it; default
	// "composefs".
	Source string
	// TempDir is where TierString and TierLegacy attach the EROFS for a
	// moment; default os.TempDir().
	TempDir string

	// Tier forces a tier; TierAuto chooses from Probe.
	Tier Tier

	// noAppend makes TierString give the layers as one "lowerdir=A::B"
	// value, as on kernels without the "+" keys, so that tests on newer
	// kernels cover that form.
	noAppend bool
}

// Info describes a finished mount.
type Info struct {
	// Tier is how the layers were passed: TierFD, TierString or
	// TierLegacy.
	Tier Tier
	// Loop reports that the image went through a loop device.
	Loop bool
	// Verity reports that the overlay verifies objects (verity=require).
	Verity bool
}

// Errors for errors.Is. Errors returned also say which image, directory or
// object they concern.
var (
	// ErrWrongDigest: the image's fs-verity digest is not Options.Digest.
	ErrWrongDigest = errors.New("image has wrong fs-verity digest")
	// ErrImageNoVerity: VerityRequire with a Digest, and the image file has
	// no fs-verity the kernel can measure.
	ErrImageNoVerity = errors.New("image has no fs-verity")
	// ErrObjectNoVerity: VerityRequire, and an object the image uses has
	// no fs-verity (or the image records no digest for it), so reading it
	// would fail.
	ErrObjectNoVerity = errors.New("object has no fs-verity")
	// ErrUnsupported: the kernel cannot do what was asked (the tier, the
	// verity mode, an idmapped mount).
	ErrUnsupported = errors.New("not supported by this kernel")
)

// Error is the error Mount and MountDetached return.
type Error struct {
	Image  string
	Target string // "" for MountDetached
	Err    error
}

func (e *Error) Error() string {
	if e.Target == "" {
		return fmt.Sprintf("mount composefs %s: %v", e.Image, e.Err)
	}
	return fmt.Sprintf("mount composefs %s on %s: %v", e.Image, e.Target, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Mount mounts the composefs image described by opts on target, an existing
// directory.
func Mount(target string, opts Options) (Info, error) {
	fd, info, err := mountDetached(opts)
	if err != nil {
		return Info{}, &Error{Image: opts.name(), Target: target, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return Info{}, &Error{Image: opts.name(), Target: target, Err: fmt.Errorf("move_mount: %w", err)}
	}
	return info, nil
}

// MountDetached builds the composefs mount described by opts without
// attaching it anywhere and returns its mount descriptor, for move_mount(2)
// to attach later (for example on the new root after switching to it).
// Closing the descriptor without attaching it releases everything.
func MountDetached(opts Options) (*os.File, Info, error) {
	fd, info, err := mountDetached(opts)
	if err != nil {
		return nil, Info{}, &Error{Image: opts.name(), Err: err}
	}
	return os.NewFile(uintptr(fd), "composefs:"+opts.name()), info, nil
}

// Unmount unmounts the composefs mount at target. Loop devices and layers go
// with the last reference to the mount.
func Unmount(target string) error {
	if err := unix.Unmount(target, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

func (o *Options) name() string {
	switch {
	case o.Image != nil:
		return o.Image.Name()
	case o.ImagePath != "":
		return o.ImagePath
	}
	return "(no image)"
}
