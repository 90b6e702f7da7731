// Package dumpfile reads and writes the composefs-dump(5) text format, the
// line-based description of a composefs tree that mkcomposefs --from-file
// reads and composefs-info dump prints.
//
// Each line describes one file with eleven space-separated fields followed by
// its extended attributes:
//
//	PATH SIZE MODE NLINK UID GID RDEV MTIME PAYLOAD CONTENT DIGEST [KEY=VALUE ...]
//
// Parse accepts what the C mkcomposefs accepts (a little more strictly where
// the C parser silently produces garbage) and Write prints exactly what the C
// composefs-info dump prints for the same tree.
package dumpfile

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"

	"github.com/gocfs/gocfs/erofs/tree"
)

// maxXattrText bounds the xattr part of one line. The C parser imposes it to
// keep its duplicate-name checks cheap; it is part of the format. The other
// limits are the tree's (tree.MaxNameLen and friends).
const maxXattrText = math.MaxUint16

// Fields of a line, in order.
const (
	fieldPath = iota
	fieldSize
	fieldMode
	fieldNlink
	fieldUID
	fieldGID
	fieldRdev
	fieldMtime
	fieldPayload
	fieldContent
	fieldDigest
	numFields
)

// ParseOptions controls Parse.
type ParseOptions struct {
	// Strict adds the checks of the C tools' CFS_PARSE_STRICT mode: the last
	// line must end in a newline, a symlink's SIZE must equal the length of
	// its target and it must have no CONTENT, and RDEV must be 0 except on
	// character and block devices.
	Strict bool
}

// An Error reports an invalid line of a dumpfile.
type Error struct {
	Line int    // 1-based line number
	Path string // the line's PATH field as written, or "" if not known
	Err  error
}

func (e *Error) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("line %d: %s: %v", e.Line, e.Path, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// errTooManyXattrs is the one limit that a valid tree can exceed once
// written out (escaping can make the xattr text four times longer than the
// xattrs), so a dump of such a tree does not parse again.
var errTooManyXattrs = fmt.Errorf("xattrs longer than %d bytes of text", maxXattrText)

// Parse reads a dumpfile and returns the root directory of the tree it
// describes.
//
// Hardlink lines (MODE starting with '@') become entries with Hardlink set
// whose Inode is the inode of the line their PAYLOAD names; as in the C
// tool, a hardlink may name a file described later in the file or another
// hardlink, and all fields of a hardlink line other than PATH, MODE and
// PAYLOAD are ignored. The NLINK fields are kept as given.
//
// Fields that the image ignores for a file's type are dropped: PAYLOAD,
// CONTENT and DIGEST of directories, devices, fifos and sockets, CONTENT and
// DIGEST of symlinks, and RDEV of non-devices. An empty CONTENT is no
// content, as in the C library. Other fields are kept as given, including
// the SIZE of directories and devices and the mode bits above the 16 that an
// image stores.
//
// Errors that concern a line are of type *Error.
func Parse(r io.Reader, opts ParseOptions) (*tree.Inode, error) {
	p := &parser{strict: opts.Strict, interned: make(map[string]string)}
	br := bufio.NewReaderSize(r, 1<<20)
	var long []byte
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long[:0], line...)
			for err == bufio.ErrBufferFull {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("reading dumpfile: %w", err)
		}
		if len(line) == 0 {
			break
		}
		p.lineNo++
		if line[len(line)-1] == '\n' {
			line = line[:len(line)-1]
		} else if p.strict {
			return nil, &Error{Line: p.lineNo, Err: errors.New("missing newline at end of file")}
		}
		if perr := p.parseLine(line); perr != nil {
			return nil, perr
		}
		if err == io.EOF {
			break
		}
	}
	if p.root == nil {
		return nil, errors.New("dumpfile has no entries")
	}
	if err := p.resolveLinks(); err != nil {
		return nil, err
	}
	return p.root, nil
}

type parser struct {
	strict bool
	lineNo int
	// rawPath is the PATH field of the current line, for messages.
	rawPath []byte

	root *tree.Inode
	// dir caches the directory that received the previous entry: dumpfiles
	// list the entries of a directory together, so most lines need no walk
	// from the root.
	dir     *tree.Inode
	dirPath []byte

	links []pendingLink

	// Scratch buffers for unescaped fields.
	pathBuf, payloadBuf, contentBuf, digestBuf, keyBuf, valueBuf []byte

	// interned holds xattr names and short values, which repeat on most
	// files (security.selinux and its few labels, for instance).
	interned map[string]string

	// Inodes, entries and digests are carved from larger blocks to save an
	// allocation per file.
	inodes  []tree.Inode
	dirents []tree.Dirent
	digests []byte
}

// pendingLink is a hardlink line whose target is resolved once every line
// has been read.
type pendingLink struct {
	d      *tree.Dirent
	target string
	line   int
	path   string
}

func (p *parser) errorf(format string, args ...any) error {
	return &Error{Line: p.lineNo, Path: shorten(p.rawPath), Err: fmt.Errorf(format, args...)}
}

func (p *parser) wrap(what string, err error) error {
	return &Error{Line: p.lineNo, Path: shorten(p.rawPath), Err: fmt.Errorf("%s: %w", what, err)}
}

// shorten keeps error messages readable for absurdly long paths.
func shorten(b []byte) string {
	const max = 256
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

func (p *parser) newInode() *tree.Inode {
	if len(p.inodes) == 0 {
		p.inodes = make([]tree.Inode, 256)
	}
	n := &p.inodes[0]
	p.inodes = p.inodes[1:]
	return n
}

func (p *parser) newDirent(name string, n *tree.Inode) *tree.Dirent {
	if len(p.dirents) == 0 {
		p.dirents = make([]tree.Dirent, 256)
	}
	d := &p.dirents[0]
	p.dirents = p.dirents[1:]
	d.Name, d.Inode = name, n
	return d
}

func (p *parser) newDigest(size int) []byte {
	if len(p.digests) < size {
		p.digests = make([]byte, 256*tree.DigestSize)
	}
	d := p.digests[:size:size]
	p.digests = p.digests[size:]
	return d
}

func (p *parser) intern(b []byte) string {
	if s, ok := p.interned[string(b)]; ok {
		return s
	}
	s := string(b)
	p.interned[s] = s
	return s
}

// unescapeInto unescapes field, reusing *buf as scratch space.
func unescapeInto(buf *[]byte, field []byte) ([]byte, error) {
	out, err := unescape(*buf, field)
	if err == nil && len(out) > 0 && len(field) > 0 && &out[0] != &field[0] {
		*buf = out[:0]
	}
	return out, err
}

func isDash(field []byte) bool { return len(field) == 1 && field[0] == '-' }

func (p *parser) parseLine(line []byte) error {
	p.rawPath = nil
	if i := bytes.IndexByte(line, 0); i >= 0 {
		return p.errorf("NUL byte at column %d", i+1)
	}
	// Missing trailing fields read as empty, as in the C parser.
	var f [numFields][]byte
	rest := line
	for i := range f {
		f[i], rest = cut(rest)
	}
	p.rawPath = f[fieldPath]

	path, err := unescapeInto(&p.pathBuf, f[fieldPath])
	if err != nil {
		return p.wrap("PATH", err)
	}
	if len(path) == 0 {
		return p.errorf("empty PATH")
	}
	if bytes.IndexByte(path, 0) >= 0 {
		return p.errorf("PATH contains a NUL byte")
	}

	modeField := f[fieldMode]
	hardlink := len(modeField) > 0 && modeField[0] == '@'
	if hardlink {
		modeField = modeField[1:]
	}
	mode, ok := parseUint(modeField, 8, math.MaxUint32)
	if !ok {
		return p.errorf("invalid MODE %q", shorten(f[fieldMode]))
	}
	if !validType(uint32(mode)) {
		return p.errorf("MODE %o has no valid file type", mode)
	}
	isDir := mode&tree.TypeMask == tree.TypeDir
	if hardlink && isDir {
		return p.errorf("directories cannot be hardlinked")
	}

	var n *tree.Inode
	var d *tree.Dirent
	if len(path) == 1 && path[0] == '/' {
		if p.root != nil {
			return p.errorf("root directory listed twice")
		}
		if !isDir {
			return p.errorf("root must be a directory")
		}
		n = p.newInode()
		p.root = n
	} else {
		if p.root == nil {
			return p.errorf(`root directory "/" must be the first entry`)
		}
		parent, name, err := p.parent(path)
		if err != nil {
			return err
		}
		if !hardlink {
			n = p.newInode()
		}
		d = p.newDirent(string(name), n)
		// Insert fails only on a name that is taken.
		if parent.Insert(d) != nil {
			return p.errorf("already exists")
		}
	}

	if hardlink {
		if isDash(f[fieldPayload]) {
			return p.errorf("hardlink without a target PAYLOAD")
		}
		target, err := unescapeInto(&p.payloadBuf, f[fieldPayload])
		if err != nil {
			return p.wrap("PAYLOAD", err)
		}
		d.Hardlink = true
		p.links = append(p.links, pendingLink{d: d, target: string(target), line: p.lineNo, path: shorten(p.rawPath)})
		return nil
	}
	n.Mode = uint32(mode)
	return p.parseInode(n, &f, rest)
}

// parseInode fills n from the fields of a line that is not a hardlink.
func (p *parser) parseInode(n *tree.Inode, f *[numFields][]byte, xattrs []byte) error {
	size, ok := parseUint(f[fieldSize], 10, math.MaxUint64)
	if !ok {
		return p.errorf("invalid SIZE %q", shorten(f[fieldSize]))
	}
	nlink, ok := parseUint(f[fieldNlink], 10, math.MaxUint32)
	if !ok {
		return p.errorf("invalid NLINK %q", shorten(f[fieldNlink]))
	}
	uid, ok := parseUint(f[fieldUID], 10, math.MaxUint32)
	if !ok {
		return p.errorf("invalid UID %q", shorten(f[fieldUID]))
	}
	gid, ok := parseUint(f[fieldGID], 10, math.MaxUint32)
	if !ok {
		return p.errorf("invalid GID %q", shorten(f[fieldGID]))
	}
	rdev, ok := parseUint(f[fieldRdev], 10, math.MaxUint64)
	if !ok {
		return p.errorf("invalid RDEV %q", shorten(f[fieldRdev]))
	}
	mtime, ok := parseMtime(f[fieldMtime])
	if !ok {
		return p.errorf("invalid MTIME %q", shorten(f[fieldMtime]))
	}

	// "-" leaves an optional field unset.
	hasPayload := !isDash(f[fieldPayload])
	hasContent := !isDash(f[fieldContent])
	// A missing DIGEST field (a short line) is read by the C tool as a
	// digest of uninitialized bytes; it can only mean "none".
	hasDigest := !isDash(f[fieldDigest]) && len(f[fieldDigest]) > 0
	var payload, content, digest []byte
	var rawDigest [tree.DigestSizeSHA512]byte
	var digestLen int
	var err error
	if hasPayload {
		if payload, err = unescapeInto(&p.payloadBuf, f[fieldPayload]); err != nil {
			return p.wrap("PAYLOAD", err)
		}
		if bytes.IndexByte(payload, 0) >= 0 {
			return p.errorf("PAYLOAD contains a NUL byte")
		}
	}
	if hasContent {
		if content, err = unescapeInto(&p.contentBuf, f[fieldContent]); err != nil {
			return p.wrap("CONTENT", err)
		}
		if uint64(len(content)) != size {
			return p.errorf("CONTENT has %d bytes, SIZE says %d", len(content), size)
		}
	}
	if hasDigest {
		if digest, err = unescapeInto(&p.digestBuf, f[fieldDigest]); err != nil {
			return p.wrap("DIGEST", err)
		}
		// The C tool does not check DIGEST and turns malformed hex into
		// arbitrary bytes; refusing it is the only sensible reading.
		digestLen = len(digest) / 2
		if len(digest)%2 != 0 || !tree.ValidDigestSize(digestLen) {
			return p.errorf("DIGEST %q is not %d or %d hex digits", shorten(f[fieldDigest]), 2*tree.DigestSize, 2*tree.DigestSizeSHA512)
		}
		if _, err := hex.Decode(rawDigest[:], digest); err != nil {
			return p.errorf("DIGEST %q is not %d or %d hex digits", shorten(f[fieldDigest]), 2*tree.DigestSize, 2*tree.DigestSizeSHA512)
		}
	}

	n.Nlink = uint32(nlink)
	n.UID = uint32(uid)
	n.GID = uint32(gid)
	n.Mtime = mtime
	typ := n.Type()
	if typ == tree.TypeChr || typ == tree.TypeBlk {
		n.Rdev = rdev
	} else if p.strict && rdev != 0 {
		return p.errorf("RDEV %d on a file that is not a device", rdev)
	}

	switch typ {
	case tree.TypeLnk:
		if len(payload) == 0 {
			return p.errorf("symlink without a target")
		}
		if len(payload) > tree.MaxPayloadLen {
			return p.errorf("symlink target longer than %d bytes", tree.MaxPayloadLen)
		}
		if p.strict {
			if size != uint64(len(payload)) {
				return p.errorf("symlink SIZE %d differs from its target length %d", size, len(payload))
			}
			if len(content) > 0 {
				return p.errorf("symlink with CONTENT")
			}
		}
		// The target length is the size; a lenient SIZE is ignored.
		n.Size = uint64(len(payload))
		n.Payload = string(payload)
		return p.parseXattrs(n, xattrs)
	default:
		if len(payload) > tree.MaxPayloadLen {
			return p.errorf("PAYLOAD longer than %d bytes", tree.MaxPayloadLen)
		}
		if len(content) > tree.MaxInlineContent {
			return p.errorf("CONTENT longer than %d bytes", tree.MaxInlineContent)
		}
	}
	n.Size = size
	if typ == tree.TypeReg {
		n.Payload = string(payload)
		if len(content) > 0 {
			n.Content = bytes.Clone(content)
		}
		if hasDigest {
			n.Digest = p.newDigest(digestLen)
			copy(n.Digest, rawDigest[:digestLen])
		}
	}
	return p.parseXattrs(n, xattrs)
}

func (p *parser) parseXattrs(n *tree.Inode, text []byte) error {
	if len(text) > maxXattrText {
		return &Error{Line: p.lineNo, Path: shorten(p.rawPath), Err: errTooManyXattrs}
	}
	size := 0 // as the C library accounts it, see tree.MaxXattrsSize
	for len(text) > 0 {
		var x []byte
		x, text = cut(text)
		eq := bytes.IndexByte(x, '=')
		if eq < 0 {
			return p.errorf("xattr %q without '='", shorten(x))
		}
		key, err := unescapeInto(&p.keyBuf, x[:eq])
		if err != nil {
			return p.wrap("xattr name", err)
		}
		value, err := unescapeInto(&p.valueBuf, x[eq+1:])
		if err != nil {
			return p.wrap("xattr value", err)
		}
		switch {
		case len(key) == 0:
			return p.errorf("empty xattr name")
		case bytes.IndexByte(key, 0) >= 0:
			return p.errorf("xattr name %q contains a NUL byte", key)
		case len(key) > tree.MaxXattrNameLen:
			return p.errorf("xattr name longer than %d bytes", tree.MaxXattrNameLen)
		}
		// Values cannot exceed their 64 KiB limit: maxXattrText is smaller.

		// A repeated name replaces the earlier value. The earlier entry's
		// slot goes to the last one, as in the C library, so that the
		// order of xattrs matches what it would hold.
		for i := range n.Xattrs {
			if old := n.Xattrs[i]; old.Name == string(key) {
				size -= tree.XattrSize(len(old.Name), len(old.Value))
				last := len(n.Xattrs) - 1
				n.Xattrs[i] = n.Xattrs[last]
				n.Xattrs = n.Xattrs[:last]
				break
			}
		}
		if len(n.Xattrs) == 0 {
			size = tree.XattrsHeaderSize
		}
		size += tree.XattrSize(len(key), len(value))
		if size > tree.MaxXattrsSize {
			return p.errorf("xattrs larger than %d bytes", tree.MaxXattrsSize)
		}
		v := string(value)
		if len(value) <= 64 {
			v = p.intern(value)
		}
		n.Xattrs = append(n.Xattrs, tree.Xattr{Name: p.intern(key), Value: v})
	}
	return nil
}

// parent checks an absolute path and returns the directory that is to hold
// it and its last component.
func (p *parser) parent(path []byte) (*tree.Inode, []byte, error) {
	if path[0] != '/' {
		return nil, nil, p.errorf("path is not absolute")
	}
	i := bytes.LastIndexByte(path, '/')
	dirPath, name := path[:i], path[i+1:]
	if err := p.checkName(name); err != nil {
		return nil, nil, err
	}
	if p.dir != nil && bytes.Equal(dirPath, p.dirPath) {
		return p.dir, name, nil
	}
	dir := p.root
	for rest := dirPath; len(rest) > 0; {
		rest = rest[1:]
		j := bytes.IndexByte(rest, '/')
		if j < 0 {
			j = len(rest)
		}
		c := rest[:j]
		rest = rest[j:]
		if err := p.checkName(c); err != nil {
			return nil, nil, err
		}
		d := lookup(dir, c)
		if d == nil {
			return nil, nil, p.errorf("parent directory does not exist")
		}
		if d.Inode == nil || !d.Inode.IsDir() {
			return nil, nil, p.errorf("parent is not a directory")
		}
		dir = d.Inode
	}
	p.dir = dir
	p.dirPath = append(p.dirPath[:0], dirPath...)
	return dir, name, nil
}

func (p *parser) checkName(c []byte) error {
	switch {
	case len(c) == 0:
		return p.errorf("empty path component")
	case len(c) == 1 && c[0] == '.', len(c) == 2 && c[0] == '.' && c[1] == '.':
		return p.errorf("invalid path component %q", c)
	case len(c) > tree.MaxNameLen:
		return p.errorf("name longer than %d bytes", tree.MaxNameLen)
	}
	return nil
}

// lookup finds a name in a directory without converting it to a string.
func lookup(dir *tree.Inode, name []byte) *tree.Dirent {
	es := dir.Entries
	i := sort.Search(len(es), func(i int) bool { return es[i].Name >= string(name) })
	if i < len(es) && es[i].Name == string(name) {
		return es[i]
	}
	return nil
}

// resolveLinks points every hardlink at the inode its target path names,
// following hardlinks to hardlinks.
func (p *parser) resolveLinks() error {
	if len(p.links) == 0 {
		return nil
	}
	index := make(map[*tree.Dirent]int, len(p.links))
	for i := range p.links {
		index[p.links[i].d] = i
	}
	const (
		unresolved = iota
		resolving
		resolved
	)
	state := make([]uint8, len(p.links))
	var resolve func(i int) (*tree.Inode, error)
	resolve = func(i int) (*tree.Inode, error) {
		l := &p.links[i]
		fail := func(format string, args ...any) error {
			return &Error{Line: l.line, Path: l.path, Err: fmt.Errorf(format, args...)}
		}
		switch state[i] {
		case resolved:
			return l.d.Inode, nil
		case resolving:
			return nil, fail("hardlink cycle")
		}
		state[i] = resolving
		d, ok := p.lookupTarget(l.target)
		if !ok {
			return nil, fail("hardlink target %q does not exist", l.target)
		}
		if d == l.d {
			return nil, fail("hardlink to itself")
		}
		var n *tree.Inode
		if d == nil {
			n = p.root
		} else if d.Hardlink {
			var err error
			if n, err = resolve(index[d]); err != nil {
				return nil, err
			}
		} else {
			n = d.Inode
		}
		if n.IsDir() {
			return nil, fail("hardlink target %q is a directory", l.target)
		}
		l.d.Inode = n
		state[i] = resolved
		return n, nil
	}
	for i := range p.links {
		if _, err := resolve(i); err != nil {
			return err
		}
	}
	return nil
}

// lookupTarget finds the entry a hardlink's PAYLOAD names; nil means the
// root. As in the C tool, empty components are skipped and only
// directories are descended into.
func (p *parser) lookupTarget(target string) (*tree.Dirent, bool) {
	var d *tree.Dirent
	dir := p.root
	for rest := target; rest != ""; {
		var c string
		c, rest, _ = strings.Cut(rest, "/")
		if c == "" {
			continue
		}
		if dir == nil || !dir.IsDir() {
			return nil, false
		}
		if d = dir.Lookup(c); d == nil {
			return nil, false
		}
		// An unresolved hardlink has no inode yet; it is never a directory.
		dir = d.Inode
	}
	return d, true
}

// cut splits b at its first space, as the C parser's fields are split.
func cut(b []byte) (field, rest []byte) {
	if i := bytes.IndexByte(b, ' '); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, b[len(b):]
}

// parseUint parses a non-empty string of digits in base 8 or 10 that must
// not exceed max. Unlike strtoull in the C tool it takes no sign, spaces or
// prefix and does not wrap around.
func parseUint(b []byte, base, max uint64) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		d := uint64(c) - '0'
		if d >= base || v > (max-d)/base {
			return 0, false
		}
		v = v*base + d
	}
	return v, true
}

// parseMtime parses SEC.NSEC. The seconds may be negative, as
// composefs-info prints them signed (the C parser reads them through
// strtoull, which wraps "-N" to the same 64 bits).
func parseMtime(b []byte) (tree.Timespec, bool) {
	secs, nsecs, ok := bytes.Cut(b, []byte{'.'})
	if !ok {
		return tree.Timespec{}, false
	}
	neg := len(secs) > 0 && secs[0] == '-'
	if neg {
		secs = secs[1:]
	}
	sec, ok1 := parseUint(secs, 10, math.MaxUint64)
	nsec, ok2 := parseUint(nsecs, 10, math.MaxUint32)
	if !ok1 || !ok2 {
		return tree.Timespec{}, false
	}
	if neg {
		sec = -sec
	}
	return tree.Timespec{Sec: int64(sec), Nsec: uint32(nsec)}, true
}

func validType(mode uint32) bool {
	switch mode & tree.TypeMask {
	case tree.TypeReg, tree.TypeDir, tree.TypeLnk, tree.TypeBlk, tree.TypeChr, tree.TypeSock, tree.TypeFifo:
		return true
	}
	return false
}
