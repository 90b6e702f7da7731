// Package ocibuild builds OCI container images for tests from declarative
// layer specifications, without any external tool: layer tarballs (gzip,
// zstd or uncompressed), the image configuration with its diff_ids, the
// manifest, an OCI image layout, and a push to a registry with
// containers/image.
//
// It also computes, independently of the code under test, the filesystem
// tree a composefs repository must make of an image: the layers applied in
// order with overlay whiteouts, then the transformations composefs-rs applies
// to every OCI image (and, for bootable images, the boot transformation).
//
// Everything is deterministic: the same specification always gives the same
// blobs and digests, so images that share layer specifications share blobs.
package ocibuild

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"path"
	"strconv"
	"strings"
)

// Type is the kind of a layer entry.
type Type uint8

// Entry types. Whiteout and Opaque are not files but the overlay markers a
// layer uses to delete a lower name (".wh.NAME") or the whole lower content
// of a directory (".wh..wh..opq").
const (
	Dir Type = iota + 1
	File
	Symlink
	Hardlink
	Char
	Block
	Fifo
	Whiteout
	Opaque
)

// typeNames are the spellings of the types in specifications, by value.
var typeNames = [...]string{
	Dir: "dir", File: "file", Symlink: "symlink", Hardlink: "hardlink",
	Char: "char", Block: "block", Fifo: "fifo", Whiteout: "whiteout", Opaque: "opaque",
}

func (t Type) String() string {
	if n := typeName(t); n != "" {
		return n
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

func typeName(t Type) string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return ""
}

func parseType(s string) (Type, bool) {
	for t, n := range typeNames {
		if n != "" && n == s {
			return Type(t), true
		}
	}
	return 0, false
}

// Entry is one member of a layer.
type Entry struct {
	// Path is absolute and clean ("/usr/bin/sh"); "/" is the root.
	// For Whiteout it names the deleted file, for Opaque the directory
	// whose lower content is hidden.
	Path string
	Type Type
	// Mode holds the permission bits, including setuid, setgid and sticky.
	Mode     uint32
	UID, GID int
	Mtime    int64 // seconds since the epoch
	// Content is a regular file's data. When it is nil the data is Size
	// pseudo-random bytes derived from Seed.
	Content []byte
	Size    int64
	Seed    uint64
	// Target is a symlink's target, or the absolute path of the file a
	// hardlink names.
	Target       string
	Major, Minor uint32
	// Xattrs are carried as PAX SCHILY.xattr records.
	Xattrs map[string]string
}

// Data returns a regular file's content.
func (e *Entry) Data() []byte {
	if e.Content != nil {
		return e.Content
	}
	return Generate(e.Seed, e.Size)
}

// DataSize returns the size of a regular file's content.
func (e *Entry) DataSize() int64 {
	if e.Content != nil {
		return int64(len(e.Content))
	}
	return e.Size
}

// Generate returns n pseudo-random bytes determined by seed. Random data
// does not compress, so generated files cost what they weigh in transfers.
func Generate(seed uint64, n int64) []byte {
	b := make([]byte, n)
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	rand.NewChaCha8(key).Read(b)
	return b
}

// ParseEntries reads a layer specification: one entry per line,
//
//	PATH TYPE [KEY=VALUE ...]
//
// with TYPE one of dir, file, symlink, hardlink, char, block, fifo, whiteout
// and opaque, and the keys
//
//	mode=OCTAL uid=N gid=N mtime=N           metadata
//	content=ESCAPED | size=N seed=N          regular file data
//	target=ESCAPED                           symlink target, hardlink path
//	rdev=MAJOR:MINOR                         devices
//	xattr.NAME=ESCAPED                       extended attributes
//
// Blank lines and lines starting with "#" are ignored. PATH, content,
// target and xattr values use backslash escapes: \\, \n, \t, \s (space) and
// \xHH. Unset modes default to 0755 for directories, 0777 for symlinks and
// 0644 otherwise; an unset mtime is defaultMtime.
func ParseEntries(spec string, defaultMtime int64) ([]Entry, error) {
	var es []Entry
	sc := bufio.NewScanner(strings.NewReader(spec))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		e, err := parseEntry(strings.Fields(text), defaultMtime)
		if err != nil {
			return nil, fmt.Errorf("layer spec line %d: %w", line, err)
		}
		es = append(es, e)
	}
	return es, sc.Err()
}

// MustParseEntries is ParseEntries for specifications written in the
// program: it panics on a malformed one.
func MustParseEntries(spec string, defaultMtime int64) []Entry {
	es, err := ParseEntries(spec, defaultMtime)
	if err != nil {
		panic(err)
	}
	return es
}

func parseEntry(f []string, defaultMtime int64) (Entry, error) {
	if len(f) < 2 {
		return Entry{}, fmt.Errorf("want PATH TYPE [KEY=VALUE ...], got %q", strings.Join(f, " "))
	}
	p, err := unescape(f[0])
	if err != nil {
		return Entry{}, fmt.Errorf("path: %w", err)
	}
	typ, ok := parseType(f[1])
	if !ok {
		return Entry{}, fmt.Errorf("%s: unknown type %q", p, f[1])
	}
	e := Entry{Path: p, Type: typ, Mtime: defaultMtime, Mode: defaultMode(typ)}
	for _, kv := range f[2:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return Entry{}, fmt.Errorf("%s: %q is not KEY=VALUE", p, kv)
		}
		if err := e.set(k, v); err != nil {
			return Entry{}, fmt.Errorf("%s: %s: %w", p, k, err)
		}
	}
	if err := e.validate(); err != nil {
		return Entry{}, fmt.Errorf("%s: %w", p, err)
	}
	return e, nil
}

func defaultMode(t Type) uint32 {
	switch t {
	case Dir:
		return 0o755
	case Symlink:
		return 0o777
	}
	return 0o644
}

func (e *Entry) set(k, v string) error {
	var err error
	switch {
	case k == "mode":
		var m uint64
		m, err = strconv.ParseUint(v, 8, 12)
		e.Mode = uint32(m)
	case k == "uid":
		e.UID, err = parseID(v)
	case k == "gid":
		e.GID, err = parseID(v)
	case k == "mtime":
		e.Mtime, err = strconv.ParseInt(v, 10, 64)
	case k == "content":
		var s string
		s, err = unescape(v)
		e.Content = []byte(s)
	case k == "size":
		e.Size, err = strconv.ParseInt(v, 10, 40)
	case k == "seed":
		e.Seed, err = strconv.ParseUint(v, 10, 64)
	case k == "target":
		e.Target, err = unescape(v)
	case k == "rdev":
		maj, min, ok := strings.Cut(v, ":")
		if !ok {
			return fmt.Errorf("want MAJOR:MINOR, got %q", v)
		}
		var a, b uint64
		if a, err = strconv.ParseUint(maj, 10, 32); err == nil {
			b, err = strconv.ParseUint(min, 10, 32)
		}
		e.Major, e.Minor = uint32(a), uint32(b)
	case strings.HasPrefix(k, "xattr."):
		var val string
		if val, err = unescape(v); err == nil {
			if e.Xattrs == nil {
				e.Xattrs = map[string]string{}
			}
			e.Xattrs[k[len("xattr."):]] = val
		}
	default:
		return fmt.Errorf("unknown key")
	}
	return err
}

func parseID(v string) (int, error) {
	n, err := strconv.ParseUint(v, 10, 32)
	return int(n), err
}

// validate rejects entries that cannot be written as described.
func (e *Entry) validate() error {
	if !path.IsAbs(e.Path) || path.Clean(e.Path) != e.Path {
		return fmt.Errorf("path is not absolute and clean")
	}
	if e.Path == "/" && e.Type != Dir && e.Type != Opaque {
		return fmt.Errorf("the root can only be a directory or opaque")
	}
	if typeName(e.Type) == "" {
		return fmt.Errorf("unknown type %d", e.Type)
	}
	if e.Type != File && (e.Content != nil || e.Size != 0) {
		return fmt.Errorf("content or size on a %s", e.Type)
	}
	if e.Content != nil && e.Size != 0 {
		return fmt.Errorf("both content and size")
	}
	if e.Size < 0 {
		return fmt.Errorf("negative size %d", e.Size)
	}
	if (e.Type == Symlink || e.Type == Hardlink) != (e.Target != "") {
		return fmt.Errorf("target is required for symlinks and hardlinks only")
	}
	if e.Type == Hardlink && (!path.IsAbs(e.Target) || path.Clean(e.Target) != e.Target) {
		return fmt.Errorf("hardlink target %q is not absolute and clean", e.Target)
	}
	if e.Type != Char && e.Type != Block && (e.Major != 0 || e.Minor != 0) {
		return fmt.Errorf("rdev on a %s", e.Type)
	}
	if e.Mode&^0o7777 != 0 {
		return fmt.Errorf("mode %o has more than permission bits", e.Mode)
	}
	return nil
}

// unescape decodes the backslash escapes of a specification field.
func unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		if i+1 == len(s) {
			return "", fmt.Errorf("trailing backslash in %q", s)
		}
		i++
		switch s[i] {
		case '\\':
			b.WriteByte('\\')
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 's':
			b.WriteByte(' ')
		case 'x':
			if i+3 > len(s) {
				return "", fmt.Errorf("short \\x escape in %q", s)
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", fmt.Errorf("bad \\x escape in %q", s)
			}
			b.WriteByte(byte(v))
			i += 2
		default:
			return "", fmt.Errorf("unknown escape \\%c in %q", s[i], s)
		}
	}
	return b.String(), nil
}
