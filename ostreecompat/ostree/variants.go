package ostree

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/bits"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/ostreecompat/gvariant"
)

// GVariant types of the objects.
var (
	fileHeaderType = gvariant.MustParseType("(uuuusa(ayay))")
	dirMetaType    = gvariant.MustParseType("(uuua(ayay))")
	dirTreeType    = gvariant.MustParseType("(a(say)a(sayay))")
	commitType     = gvariant.MustParseType("(a{sv}aya(say)sstayay)")
	metadataType   = gvariant.MustParseType("a{sv}")
)

// ChecksumSize is the size of an object checksum, a sha256.
const ChecksumSize = sha256.Size

// ErrInvalid is wrapped by errors about objects or values ostree does not
// accept: malformed GVariants, bad names, modes, checksums.
var ErrInvalid = errors.New("ostree: invalid")

// ValidChecksum reports whether s is a checksum in lower-case hex.
func ValidChecksum(s string) bool {
	if len(s) != 2*ChecksumSize {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func checksumBytes(what, s string) ([]byte, error) {
	if !ValidChecksum(s) {
		return nil, fmt.Errorf("%s checksum %q: %w", what, s, ErrInvalid)
	}
	b, _ := hex.DecodeString(s)
	return b, nil
}

func checksumString(what string, b any) (string, error) {
	x, _ := b.([]byte)
	if len(x) != ChecksumSize {
		return "", fmt.Errorf("%s checksum of %d bytes: %w", what, len(x), ErrInvalid)
	}
	return hex.EncodeToString(x), nil
}

// The file type bits and the permission bits ostree allows in a mode.
const (
	typeMask  = tree.TypeMask
	permsMask = 0o7777
)

// ostree stores its integers big-endian inside little-endian GVariants.
func be32(x uint32) uint32 { return bits.ReverseBytes32(x) }
func be64(x uint64) uint64 { return bits.ReverseBytes64(x) }

// xattrsValue returns the a(ayay) of xattrs as ostree canonicalises them:
// sorted by name, each name NUL-terminated, xattrs with empty values left
// out (the kernel's listing never shows them to libostree).
func xattrsValue(xs []tree.Xattr) ([]any, error) {
	s := make([]tree.Xattr, 0, len(xs))
	for _, x := range xs {
		if x.Name == "" || strings.IndexByte(x.Name, 0) >= 0 {
			return nil, fmt.Errorf("xattr name %q: %w", x.Name, ErrInvalid)
		}
		if x.Value != "" {
			s = append(s, x)
		}
	}
	slices.SortFunc(s, func(a, b tree.Xattr) int { return strings.Compare(a.Name, b.Name) })
	v := make([]any, len(s))
	for i, x := range s {
		if i > 0 && s[i-1].Name == x.Name {
			return nil, fmt.Errorf("xattr %q twice: %w", x.Name, ErrInvalid)
		}
		name := make([]byte, len(x.Name)+1)
		copy(name, x.Name)
		v[i] = []any{name, []byte(x.Value)}
	}
	return v, nil
}

// parseXattrs reads an a(ayay): names must be NUL-terminated C strings.
func parseXattrs(v any) ([]tree.Xattr, error) {
	xs := v.([]any)
	if len(xs) == 0 {
		return nil, nil
	}
	out := make([]tree.Xattr, len(xs))
	for i, x := range xs {
		e := x.([]any)
		name, value := e[0].([]byte), e[1].([]byte)
		if len(name) < 2 || bytes.IndexByte(name, 0) != len(name)-1 {
			return nil, fmt.Errorf("xattr name %q not a NUL-terminated string: %w", name, ErrInvalid)
		}
		out[i] = tree.Xattr{Name: string(name[:len(name)-1]), Value: string(value)}
	}
	return out, nil
}

// FileMeta is the metadata of a content object: what its checksum covers
// besides the content.
type FileMeta struct {
	UID, GID uint32
	// Mode is st_mode with the file type, S_IFREG or S_IFLNK, and the
	// permission, setuid, setgid and sticky bits.
	Mode uint32
	// Target is a symlink's target; empty for regular files.
	Target string
	// Xattrs in any order; empty values are left out, as libostree never
	// sees them.
	Xattrs []tree.Xattr
}

// IsSymlink reports whether the object is a symlink.
func (m *FileMeta) IsSymlink() bool { return m.Mode&typeMask == tree.TypeLnk }

func (m *FileMeta) check() error {
	switch m.Mode & typeMask {
	case tree.TypeReg:
		if m.Target != "" {
			return fmt.Errorf("regular file with a symlink target: %w", ErrInvalid)
		}
	case tree.TypeLnk:
		if m.Target == "" {
			return fmt.Errorf("symlink without a target: %w", ErrInvalid)
		}
		if !utf8.ValidString(m.Target) {
			return fmt.Errorf("symlink target %q is not valid UTF-8: %w", m.Target, ErrInvalid)
		}
		if strings.IndexByte(m.Target, 0) >= 0 {
			return fmt.Errorf("symlink target %q holds a NUL: %w", m.Target, ErrInvalid)
		}
	default:
		return fmt.Errorf("mode %#o is neither a regular file nor a symlink: %w", m.Mode, ErrInvalid)
	}
	if m.Mode&^(typeMask|permsMask) != 0 {
		return fmt.Errorf("mode %#o has bits outside the type and permissions: %w", m.Mode, ErrInvalid)
	}
	return nil
}

// Header returns the (uuuusa(ayay)) the content checksum covers.
func (m *FileMeta) Header() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	xs, err := xattrsValue(m.Xattrs)
	if err != nil {
		return nil, err
	}
	return gvariant.Marshal(fileHeaderType, []any{be32(m.UID), be32(m.GID), be32(m.Mode), uint32(0), m.Target, xs})
}

// NewContentHash returns a sha256 that has hashed the length-prefixed
// header of m: writing the content to it and summing gives the object's
// checksum.
func NewContentHash(m *FileMeta) (hash.Hash, error) {
	hdr, err := m.Header()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	var pre [8]byte
	binary.BigEndian.PutUint32(pre[:4], uint32(len(hdr)))
	h.Write(pre[:])
	h.Write(hdr)
	return h, nil
}

// ContentChecksum returns the checksum of the content object with metadata
// m and the content content returns (nothing for a symlink: content may be
// nil).
func ContentChecksum(m *FileMeta, content io.Reader) (string, error) {
	h, err := NewContentHash(m)
	if err != nil {
		return "", err
	}
	if content != nil && !m.IsSymlink() {
		if _, err := io.Copy(h, content); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// bareUserMeta returns the user.ostreemeta value of a bare-user object.
func (m *FileMeta) bareUserMeta() ([]byte, error) {
	xs, err := xattrsValue(m.Xattrs)
	if err != nil {
		return nil, err
	}
	return gvariant.Marshal(dirMetaType, []any{be32(m.UID), be32(m.GID), be32(m.Mode), xs})
}

// parseBareUserMeta reads a user.ostreemeta value into m's UID, GID, Mode
// and Xattrs.
func parseBareUserMeta(b []byte) (*FileMeta, error) {
	v, err := gvariant.Unmarshal(dirMetaType, b)
	if err != nil {
		return nil, err
	}
	t := v.([]any)
	xs, err := parseXattrs(t[3])
	if err != nil {
		return nil, err
	}
	return &FileMeta{UID: be32(t[0].(uint32)), GID: be32(t[1].(uint32)), Mode: be32(t[2].(uint32)), Xattrs: xs}, nil
}

// DirMeta is a directory's metadata object.
type DirMeta struct {
	UID, GID uint32
	// Mode includes S_IFDIR.
	Mode   uint32
	Xattrs []tree.Xattr
}

// MarshalBinary returns the object's bytes.
func (d *DirMeta) MarshalBinary() ([]byte, error) {
	if d.Mode&typeMask != tree.TypeDir || d.Mode&^(typeMask|permsMask) != 0 {
		return nil, fmt.Errorf("directory mode %#o: %w", d.Mode, ErrInvalid)
	}
	xs, err := xattrsValue(d.Xattrs)
	if err != nil {
		return nil, err
	}
	return gvariant.Marshal(dirMetaType, []any{be32(d.UID), be32(d.GID), be32(d.Mode), xs})
}

// ParseDirMeta parses a dirmeta object.
func ParseDirMeta(b []byte) (*DirMeta, error) {
	m, err := parseBareUserMeta(b)
	if err != nil {
		return nil, fmt.Errorf("dirmeta: %w", err)
	}
	if m.Mode&typeMask != tree.TypeDir || m.Mode&^(typeMask|permsMask) != 0 {
		return nil, fmt.Errorf("dirmeta: mode %#o: %w", m.Mode, ErrInvalid)
	}
	return &DirMeta{UID: m.UID, GID: m.GID, Mode: m.Mode, Xattrs: m.Xattrs}, nil
}

// DirTree is a directory's tree object: its entries, each naming a content
// object or a subdirectory's dirtree and dirmeta.
type DirTree struct {
	Files []FileEntry
	Dirs  []DirEntry
}

// FileEntry is a file or symlink in a DirTree.
type FileEntry struct {
	Name     string
	Checksum string
}

// DirEntry is a subdirectory in a DirTree.
type DirEntry struct {
	Name string
	Tree string // dirtree checksum
	Meta string // dirmeta checksum
}

// ValidName checks a directory entry name as ostree does: not empty, "."
// or "..", no "/" or NUL, valid UTF-8.
func ValidName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("name %q: %w", name, ErrInvalid)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("name %q holds a slash or NUL: %w", name, ErrInvalid)
	case !utf8.ValidString(name):
		return fmt.Errorf("name %q is not valid UTF-8: %w", name, ErrInvalid)
	}
	return nil
}

// MarshalBinary returns the object's bytes, entries sorted by name.
func (t *DirTree) MarshalBinary() ([]byte, error) {
	files := slices.Clone(t.Files)
	dirs := slices.Clone(t.Dirs)
	slices.SortFunc(files, func(a, b FileEntry) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(dirs, func(a, b DirEntry) int { return strings.Compare(a.Name, b.Name) })
	seen := make(map[string]bool, len(files)+len(dirs))
	fv := make([]any, len(files))
	for i, f := range files {
		if err := ValidName(f.Name); err != nil {
			return nil, err
		}
		if seen[f.Name] {
			return nil, fmt.Errorf("name %q twice in a directory: %w", f.Name, ErrInvalid)
		}
		seen[f.Name] = true
		c, err := checksumBytes("file "+f.Name, f.Checksum)
		if err != nil {
			return nil, err
		}
		fv[i] = []any{f.Name, c}
	}
	dv := make([]any, len(dirs))
	for i, d := range dirs {
		if err := ValidName(d.Name); err != nil {
			return nil, err
		}
		if seen[d.Name] {
			return nil, fmt.Errorf("name %q twice in a directory: %w", d.Name, ErrInvalid)
		}
		seen[d.Name] = true
		tc, err := checksumBytes("dirtree "+d.Name, d.Tree)
		if err != nil {
			return nil, err
		}
		mc, err := checksumBytes("dirmeta "+d.Name, d.Meta)
		if err != nil {
			return nil, err
		}
		dv[i] = []any{d.Name, tc, mc}
	}
	return gvariant.Marshal(dirTreeType, []any{fv, dv})
}

// ParseDirTree parses a dirtree object. Names must be valid and sorted,
// each at most once.
func ParseDirTree(b []byte) (*DirTree, error) {
	v, err := gvariant.Unmarshal(dirTreeType, b)
	if err != nil {
		return nil, fmt.Errorf("dirtree: %w", err)
	}
	tv := v.([]any)
	t := &DirTree{}
	for _, x := range tv[0].([]any) {
		e := x.([]any)
		c, err := checksumString("dirtree file", e[1])
		if err != nil {
			return nil, err
		}
		t.Files = append(t.Files, FileEntry{Name: e[0].(string), Checksum: c})
	}
	for _, x := range tv[1].([]any) {
		e := x.([]any)
		tc, err := checksumString("dirtree subdirectory", e[1])
		if err != nil {
			return nil, err
		}
		mc, err := checksumString("dirtree subdirectory", e[2])
		if err != nil {
			return nil, err
		}
		t.Dirs = append(t.Dirs, DirEntry{Name: e[0].(string), Tree: tc, Meta: mc})
	}
	// Each array sorted, and no name in both.
	seen := make(map[string]bool, len(t.Files)+len(t.Dirs))
	check := func(name, prev string, first bool) error {
		if err := ValidName(name); err != nil {
			return fmt.Errorf("dirtree: %w", err)
		}
		if !first && name <= prev || seen[name] {
			return fmt.Errorf("dirtree: %q out of order or repeated: %w", name, ErrInvalid)
		}
		seen[name] = true
		return nil
	}
	for i, f := range t.Files {
		if err := check(f.Name, t.Files[max(i-1, 0)].Name, i == 0); err != nil {
			return nil, err
		}
	}
	for i, d := range t.Dirs {
		if err := check(d.Name, t.Dirs[max(i-1, 0)].Name, i == 0); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Metadata is one entry of a commit's metadata (a{sv}). Order matters: the
// commit checksum covers the entries in the order given, as libostree
// writes them in insertion order.
type Metadata struct {
	Key   string
	Value gvariant.Variant
}

func metadataValue(md []Metadata) ([]any, error) {
	v := make([]any, len(md))
	for i, m := range md {
		if m.Key == "" {
			return nil, fmt.Errorf("empty metadata key: %w", ErrInvalid)
		}
		v[i] = gvariant.DictEntry{Key: m.Key, Value: m.Value}
	}
	return v, nil
}

func parseMetadata(v any) ([]Metadata, error) {
	xs := v.([]any)
	md := make([]Metadata, len(xs))
	for i, x := range xs {
		e := x.(gvariant.DictEntry)
		md[i] = Metadata{Key: e.Key.(string), Value: e.Value.(gvariant.Variant)}
		if md[i].Key == "" {
			return nil, fmt.Errorf("empty metadata key: %w", ErrInvalid)
		}
	}
	return md, nil
}

// MarshalMetadata returns the a{sv} of md, as a commitmeta object holds it.
func MarshalMetadata(md []Metadata) ([]byte, error) {
	v, err := metadataValue(md)
	if err != nil {
		return nil, err
	}
	return gvariant.Marshal(metadataType, v)
}

// ParseMetadata parses an a{sv}, the content of a commitmeta object.
func ParseMetadata(b []byte) ([]Metadata, error) {
	v, err := gvariant.Unmarshal(metadataType, b)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	return parseMetadata(v)
}

// LookupMetadata returns the value of the first entry with the key.
func LookupMetadata(md []Metadata, key string) (gvariant.Variant, bool) {
	for _, m := range md {
		if m.Key == key {
			return m.Value, true
		}
	}
	return gvariant.Variant{}, false
}

// Commit is a commit object.
type Commit struct {
	Metadata []Metadata
	// Parent is the parent commit's checksum, or empty.
	Parent  string
	Subject string
	Body    string
	// Timestamp is in seconds since the epoch, UTC.
	Timestamp uint64
	RootTree  string // the root dirtree's checksum
	RootMeta  string // the root dirmeta's checksum
}

// Lookup returns the value of a metadata key.
func (c *Commit) Lookup(key string) (gvariant.Variant, bool) { return LookupMetadata(c.Metadata, key) }

// ContentChecksum returns what `ostree show` prints as ContentChecksum: the
// sha256 of the root dirtree and dirmeta checksums, which identifies the
// tree whatever the commit's other fields.
func (c *Commit) ContentChecksum() string {
	t, _ := hex.DecodeString(c.RootTree)
	m, _ := hex.DecodeString(c.RootMeta)
	h := sha256.New()
	h.Write(t)
	h.Write(m)
	return hex.EncodeToString(h.Sum(nil))
}

// MarshalBinary returns the object's bytes.
func (c *Commit) MarshalBinary() ([]byte, error) {
	md, err := metadataValue(c.Metadata)
	if err != nil {
		return nil, err
	}
	parent := []byte{}
	if c.Parent != "" {
		if parent, err = checksumBytes("parent", c.Parent); err != nil {
			return nil, err
		}
	}
	if strings.IndexByte(c.Subject, 0) >= 0 || strings.IndexByte(c.Body, 0) >= 0 ||
		!utf8.ValidString(c.Subject) || !utf8.ValidString(c.Body) {
		return nil, fmt.Errorf("subject or body not a valid UTF-8 string: %w", ErrInvalid)
	}
	rt, err := checksumBytes("root dirtree", c.RootTree)
	if err != nil {
		return nil, err
	}
	rm, err := checksumBytes("root dirmeta", c.RootMeta)
	if err != nil {
		return nil, err
	}
	return gvariant.Marshal(commitType, []any{md, parent, []any{}, c.Subject, c.Body, be64(c.Timestamp), rt, rm})
}

// ParseCommit parses a commit object.
func ParseCommit(b []byte) (*Commit, error) {
	v, err := gvariant.Unmarshal(commitType, b)
	if err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	t := v.([]any)
	md, err := parseMetadata(t[0])
	if err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	c := &Commit{Metadata: md, Subject: t[3].(string), Body: t[4].(string), Timestamp: be64(t[5].(uint64))}
	if p := t[1].([]byte); len(p) != 0 {
		if c.Parent, err = checksumString("commit parent", p); err != nil {
			return nil, err
		}
	}
	if c.RootTree, err = checksumString("commit root dirtree", t[6]); err != nil {
		return nil, err
	}
	if c.RootMeta, err = checksumString("commit root dirmeta", t[7]); err != nil {
		return nil, err
	}
	return c, nil
}
