// Package cfsfuse serves a composefs image read-only through FUSE, without
// the kernel's EROFS or overlayfs: for inspecting images, and for systems
// or users that cannot mount them.
//
// The mount shows what the kernel's composefs mount (the image as an EROFS
// lower layer of overlayfs, with the object directories as data-only
// layers) shows of the same image:
//
//   - st_ino is the inode's nid, as EROFS reports it (the root's is 36 in
//     images libcomposefs writes); hardlinks share it and their link count.
//   - Mode, owner, size, link count, device numbers and mtime are the
//     image's; atime and ctime equal mtime, as in EROFS; st_blocks is the
//     size rounded up to 4096-byte blocks.
//   - The whiteouts composefs stores escaped appear as empty regular files
//     with overlay whiteout xattrs; the root's own whiteouts ("00" to "ff")
//     are hidden, in listings and lookups.
//   - Xattrs: trusted.overlay.overlay.X is shown as trusted.overlay.X, the
//     overlay's own trusted.overlay.* xattrs (metacopy, redirect, the
//     root's opaque) are hidden, names outside the user, trusted and
//     security namespaces are hidden as EROFS hides them, and POSIX ACLs
//     appear (and are enforced) only in images whose header says they have
//     ACLs. As in the kernel, only root sees trusted.* xattrs (the kernel
//     checks CAP_SYS_ADMIN on getxattr itself and leaves listxattr to the
//     filesystem, which goes by uid 0): other users, the one who made an
//     unprivileged mount included, see user.*, security.* and ACLs, and so
//     the whiteout and opaque markers only as their user.overlay.* copies.
//   - External files read from the first object directory that has the
//     object their redirect names, resolved within the directory without
//     following symlinks (with openat2, Linux 5.6); a missing object makes
//     open fail with ENOENT, a malformed metacopy or redirect makes lookup
//     fail with EIO or EINVAL, as overlayfs does.
//
// With Options.Verify, opening an external file checks the object's
// fs-verity digest against the one in the image, as overlayfs does with
// verity=require: a mismatch, or a file whose image names no digest, gives
// EIO. The kernel's measurement is used when the object has fs-verity;
// otherwise the object is hashed once and the verdict kept until the object
// file changes (its ctime). Without fs-verity nothing stops an object from
// being changed in place after it was checked; object directories are
// expected to hold immutable files.
//
// The image is read into memory when opened (ReadImage) and never changes,
// so the kernel may cache everything: entries, negative entries,
// attributes, symlink targets, directory listings and file data, for a day.
// When the process may (root, kernels with FUSE passthrough), external
// files are handed to the kernel, which then reads the objects directly;
// otherwise reads are spliced from the objects. Decoded inodes are kept in
// a bounded cache.
//
// The mount is read-only, nosuid and nodev. As root it is made with
// mount(2) and open to all users (allow_other), like a kernel mount; other
// users mount through fusermount3, and only they can use the mount unless
// Options.AllowOther is set (which /etc/fuse.conf must allow).
package cfsfuse

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs"
)

// ErrMountpointBusy is returned by Mount when something is already mounted
// on the mount point.
var ErrMountpointBusy = errors.New("mount point busy: something is mounted on it already")

// Options configure Mount.
type Options struct {
	// ObjectDirs are the directories holding the data of external files,
	// searched in order (the basedirs of mount.composefs). With none,
	// opening an external file fails as for a missing object.
	ObjectDirs []string
	// Verify checks each object's fs-verity digest when a file is opened.
	Verify bool
	// AllowOther lets other users than the one mounting use the mount. It
	// is always on for root.
	AllowOther bool
	// Source is shown as the mount's source in the mount table, normally
	// the image's path.
	Source string
	// NoPassthrough serves the data of external files through this
	// process even where the kernel could read the objects itself.
	NoPassthrough bool
	// Logf receives the problems met while serving (corrupt inodes,
	// unreadable or mismatching objects); nil discards them.
	Logf func(format string, args ...any)
	// Debug logs every FUSE request and reply through the log package.
	Debug bool
}

// maxRequest is the largest read the kernel is asked to send: 1 MiB (256
// pages, the kernel's default limit) needs fewer round trips than the
// 128 KiB default.
const maxRequest = 1 << 20

// Server is a mounted image.
type Server struct {
	dir  string
	srv  *fuse.Server
	done chan struct{}
}

// ReadImage reads the composefs image in f into memory and checks its
// header and superblock. The rest of the image is checked as it is used:
// a corrupt inode makes the requests that need it fail with EIO.
func ReadImage(f *os.File) (*erofs.Image, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", f.Name())
	}
	// Check the header and superblock before reading a file that may be
	// large and no image at all.
	if _, err := erofs.Open(f, st.Size()); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	data := make([]byte, st.Size())
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, st.Size()), data); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	img, err := erofs.OpenBytes(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return img, nil
}

// Mount serves img on the directory dir until it is unmounted.
func Mount(dir string, img *erofs.Image, opts Options) (*Server, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := checkMountpoint(dir); err != nil {
		return nil, err
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	objs, err := openObjectDirs(opts.ObjectDirs, opts.Verify, logf)
	if err != nil {
		return nil, err
	}
	root := os.Geteuid() == 0
	mo := &fuse.MountOptions{
		AllowOther:           opts.AllowOther || root,
		Options:              []string{"ro", "default_permissions"},
		FsName:               opts.Source,
		Name:                 "composefs",
		MaxWrite:             maxRequest,
		EnableSymlinkCaching: true,
		EnableAcl:            img.Info().HasACL,
		DirectMount:          root,
		DirectMountFlags:     unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV,
		Debug:                opts.Debug,
	}
	if opts.Debug {
		mo.Logger = log.Default()
	}
	fsys := newFileSystem(img, objs, logf)
	fsys.back.disabled = opts.NoPassthrough
	srv, err := fuse.NewServer(fsys, dir, mo)
	if err != nil {
		objs.close()
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	s := &Server{dir: dir, srv: srv, done: make(chan struct{})}
	go func() {
		srv.Serve()
		objs.close()
		close(s.done)
	}()
	if err := srv.WaitMount(); err != nil {
		// WaitMount ends by opening a file in the new mount: if the
		// mount was unmounted from outside in between, that open finds
		// the bare mount point. The mount did exist and has ended, which
		// is what Wait then reports.
		select {
		case <-s.done:
			return s, nil
		case <-time.After(time.Second):
		}
		s.Unmount()
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	return s, nil
}

// checkMountpoint refuses what mounting would fail on or hide: a path that
// is not a directory, or one something is mounted on already.
func checkMountpoint(dir string) error {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, dir, 0, unix.STATX_TYPE, &stx); err != nil {
		return fmt.Errorf("mount point %s: %w", dir, err)
	}
	if stx.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("mount point %s: %w", dir, unix.ENOTDIR)
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return fmt.Errorf("%s: %w", dir, ErrMountpointBusy)
	}
	return nil
}

// Wait blocks until the image is unmounted and every file open in it is
// closed.
func (s *Server) Wait() { <-s.done }

// Unmount unmounts the image. When files are still open in it, the mount
// is detached instead: it leaves the directory tree at once, and the files
// open in it keep working until they are closed, when Wait returns.
func (s *Server) Unmount() error {
	err := s.srv.Unmount()
	if err == nil {
		return nil
	}
	if derr := detach(s.dir); derr != nil {
		return fmt.Errorf("unmount %s: %v; lazy unmount: %w", s.dir, err, derr)
	}
	return nil
}

func detach(dir string) error {
	if os.Geteuid() == 0 {
		return unix.Unmount(dir, unix.MNT_DETACH)
	}
	out, err := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("fusermount3: %w: %s", err, out)
	}
	return nil
}
