package store

import (
	"bufio"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"

	"github.com/gocfs/gocfs/store/objects"
)

// Objects returns the repository's object directory, for sources that
// fill it directly (a directory scan).
func (r *Repository) Objects() *objects.Dir { return r.objs }

// CmdlineImages returns the image digests (hex) a kernel command line boots:
// composefs=HEX and composefs.digest=ALGORITHM:HEX, with or without the "?"
// that marks an insecure boot. GC keeps them whatever the refs say.
func CmdlineImages(cmdline string) []string {
	var ids []string
	for _, arg := range strings.Fields(cmdline) {
		key, val, ok := strings.Cut(arg, "=")
		if !ok || (key != "composefs" && key != "composefs.digest") {
			continue
		}
		val = strings.TrimPrefix(val, "?")
		if _, rest, ok := strings.Cut(val, ":"); ok {
			val = rest
		}
		if _, err := hex.DecodeString(val); err == nil && (len(val) == 64 || len(val) == 128) {
			ids = append(ids, strings.ToLower(val))
		}
	}
	return ids
}

// MountSource is the source a composefs mount of the image with the given
// digest (hex) shows in the mount table; LiveImages finds mounted images by
// it, since the EROFS mount under the overlay is usually not attached.
func MountSource(id string) string { return "composefs:" + id }

// LiveImages returns the images of this repository the running system
// uses: those the kernel command line names and those mounted now (an
// overlay whose source is MountSource(id), or an EROFS or cfsmount mount
// whose source is one of the repository's images or objects).
// GC takes them as roots: deleting the root filesystem's image while it is
// mounted would break the next boot.
func (r *Repository) LiveImages() ([]string, error) {
	var ids []string
	if b, err := os.ReadFile("/proc/cmdline"); err == nil {
		ids = append(ids, CmdlineImages(string(b))...)
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ids, nil // no /proc: nothing else to find
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// Fields after the " - " separator: fstype, source, options.
		_, after, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fs := strings.Fields(after)
		if len(fs) < 2 {
			continue
		}
		src := unescapeMountinfo(fs[1])
		switch fs[0] {
		case "overlay":
			if id, ok := strings.CutPrefix(src, MountSource("")); ok {
				ids = append(ids, id)
			}
		case "erofs", "fuse.composefs": // a kernel EROFS mount, or cfsmount
			if id, ok := r.imageIDOf(src); ok {
				ids = append(ids, id)
			}
		}
	}
	return ids, sc.Err()
}

// imageIDOf maps a mount source to the digest of the repository image it
// is: images/HEX, or the object the image is stored as.
func (r *Repository) imageIDOf(src string) (string, bool) {
	rel, err := filepath.Rel(r.path, src)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", false
	}
	parts := strings.Split(rel, "/")
	switch {
	case len(parts) == 2 && parts[0] == "images":
		return parts[1], true
	case len(parts) == 3 && parts[0] == "objects":
		return parts[1] + parts[2], true
	}
	return "", false
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of
// /proc/self/mountinfo fields.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := parseOctal(s[i+1 : i+4]); err == nil {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func parseOctal(s string) (byte, error) {
	var v int
	for _, c := range s {
		if c < '0' || c > '7' {
			return 0, os.ErrInvalid
		}
		v = v*8 + int(c-'0')
	}
	if v > 255 {
		return 0, os.ErrInvalid
	}
	return byte(v), nil
}
