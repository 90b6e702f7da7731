package mount

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/verity"
)

// digestAlgorithm returns the algorithm of a digest by its size, or 0.
func digestAlgorithm(d []byte) verity.Algorithm {
	switch len(d) {
	case verity.SHA256.Size():
		return verity.SHA256
	case verity.SHA512.Size():
		return verity.SHA512
	}
	return 0
}

// checkDigest compares the image's fs-verity digest with want: the
// kernel's measurement if the file has fs-verity, else (unless kernelOnly)
// one computed from its contents.
func checkDigest(img *os.File, size int64, want []byte, kernelOnly bool) error {
	alg := digestAlgorithm(want)
	kalg, got, err := verity.Measure(img)
	switch {
	case err == nil:
		if kalg != alg {
			return fmt.Errorf("the image's fs-verity uses %s, the expected digest is %s: %w", kalg, alg, ErrWrongDigest)
		}
	case errors.Is(err, verity.ErrNoVerity) || errors.Is(err, verity.ErrNotSupported):
		if kernelOnly {
			return fmt.Errorf("verity required: %w (%w)", ErrImageNoVerity, err)
		}
		if got, err = verity.Digest(io.NewSectionReader(img, 0, size), alg); err != nil {
			return fmt.Errorf("computing the image's fs-verity digest: %w", err)
		}
	default:
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("fs-verity digest %x, expected %x: %w", got, want, ErrWrongDigest)
	}
	return nil
}

// verityWanted decides whether the overlay gets verity=require.
func (m *mounter) verityWanted() (bool, error) {
	switch m.opts.Verity {
	case VerityRequire:
		if !m.caps.OverlayVerity {
			return false, fmt.Errorf("verity required: overlayfs has no verity option (Linux 6.6): %w", ErrUnsupported)
		}
		// One object tells whether this kernel and filesystem do fs-verity
		// at all; refuse a mount whose every read would fail.
		if err := m.checkObjects(1); err != nil {
			return false, fmt.Errorf("verity required: %w", err)
		}
		return true, nil
	case VerityTry:
		return m.caps.OverlayVerity && m.checkObjects(-1) == nil, nil
	}
	return false, nil
}

// checkObjects checks that the first limit external files of the image
// (all if limit < 0) record an fs-verity digest and that their objects, in
// the first object directory holding them, have fs-verity. Missing objects
// are passed over: reading them fails whatever the verity mode.
func (m *mounter) checkObjects(limit int) error {
	img := m.image
	root, err := img.Inode(img.Root())
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	type pending struct {
		ino  *erofs.Inode
		path string
	}
	dirs := []pending{{root, "/"}}
	// A corrupt image can link a directory below itself.
	seen := map[uint64]bool{root.Nid: true}
	checked := 0
	for len(dirs) > 0 {
		dir := dirs[len(dirs)-1]
		dirs = dirs[:len(dirs)-1]
		ents, err := img.ReadDir(dir.ino)
		if err != nil {
			return fmt.Errorf("image: %s: %w", dir.path, err)
		}
		for _, e := range ents {
			if e.Name == "." || e.Name == ".." || (e.Type != erofs.FileTypeDir && e.Type != erofs.FileTypeReg) {
				continue
			}
			ino, err := img.Inode(e.Nid)
			if err != nil {
				return fmt.Errorf("image: %s: %w", path.Join(dir.path, e.Name), err)
			}
			if ino.IsDir() {
				if seen[ino.Nid] {
					return fmt.Errorf("image: %s: directory nid %d is linked twice: %w", path.Join(dir.path, e.Name), ino.Nid, erofs.ErrCorrupt)
				}
				seen[ino.Nid] = true
				dirs = append(dirs, pending{ino, path.Join(dir.path, e.Name)})
				continue
			}
			found, err := m.checkObject(ino)
			if err != nil {
				return fmt.Errorf("image file %q: %w", path.Join(dir.path, e.Name), err)
			}
			if found {
				if checked++; checked == limit {
					return nil
				}
			}
		}
	}
	return nil
}

// checkObject checks one regular file and reports whether it is external
// and its object present.
func (m *mounter) checkObject(ino *erofs.Inode) (bool, error) {
	xs, err := m.image.Xattrs(ino)
	if err != nil {
		return false, err
	}
	var redirect string
	hasDigest := false
	for _, x := range xs {
		switch x.Name {
		case erofs.XattrRedirect:
			redirect = x.Value
		case erofs.XattrMetacopy:
			// A header of version, length, flags and algorithm, then the
			// digest; the algorithm is 0 without one.
			hasDigest = len(x.Value) > 4 && x.Value[3] != 0
		}
	}
	if redirect == "" {
		return false, nil
	}
	rel, ok := objectPath(redirect)
	if !ok {
		return false, fmt.Errorf("unexpected object path %q", redirect)
	}
	for i, dir := range m.objs {
		var st unix.Statx_t
		err := unix.Statx(dir, rel, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, unix.STATX_TYPE, &st)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("object %s in %s: %w", rel, m.opts.ObjectDirs[i], err)
		}
		if !hasDigest {
			return true, fmt.Errorf("the image records no fs-verity digest for object %s: %w", rel, ErrObjectNoVerity)
		}
		if st.Attributes&unix.STATX_ATTR_VERITY == 0 {
			return true, fmt.Errorf("object %s in %s: %w", rel, m.opts.ObjectDirs[i], ErrObjectNoVerity)
		}
		return true, nil
	}
	return false, nil
}

// objectPath turns a redirect into a path relative to an object directory,
// refusing anything that could leave it.
func objectPath(redirect string) (string, bool) {
	rel := strings.TrimLeft(redirect, "/")
	if rel == "" || len(rel) > unix.PathMax {
		return "", false
	}
	for _, part := range strings.Split(rel, "/") {
		if part == "" || part == "." || part == ".." {
			return "", false
		}
	}
	return rel, true
}

// ParseDigest parses an image digest written in hex, as mount.composefs's
// digest= option and kernel command lines give it.
func ParseDigest(s string) ([]byte, error) {
	d, err := hex.DecodeString(s)
	if err != nil || digestAlgorithm(d) == 0 {
		return nil, fmt.Errorf("invalid fs-verity digest %q: want %d or %d hex digits",
			s, 2*verity.SHA256.Size(), 2*verity.SHA512.Size())
	}
	return d, nil
}
