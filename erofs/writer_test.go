package erofs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/erofs/tree"
)

var (
	wtMtime           = tree.Timespec{Sec: 1000}
	wtDefaultVersions = VersionRange{Min: DefaultMinVersion, Max: DefaultMaxVersion}
)

func wtDir(es ...*tree.Dirent) *tree.Inode {
	return &tree.Inode{Mode: tree.TypeDir | 0o755, Nlink: 2, Mtime: wtMtime, Entries: es}
}

// wtFile is an external file of the given size, or an empty one.
func wtFile(size uint64) *tree.Inode {
	return &tree.Inode{Mode: tree.TypeReg | 0o644, Nlink: 1, Mtime: wtMtime, Size: size}
}

func wtWhiteout() *tree.Inode {
	return &tree.Inode{Mode: tree.TypeChr | 0o600, Nlink: 1, Mtime: wtMtime}
}

func wtEntry(name string, n *tree.Inode) *tree.Dirent { return &tree.Dirent{Name: name, Inode: n} }

func wtLink(name string, n *tree.Inode) *tree.Dirent {
	return &tree.Dirent{Name: name, Inode: n, Hardlink: true}
}

// wtPrepare runs every phase of Write except the output.
func wtPrepare(t *testing.T, root *tree.Inode, vr VersionRange) *imageWriter {
	t.Helper()
	iw := &imageWriter{}
	if err := iw.prepare(root, vr); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	return iw
}

// wtLookup returns the node index of a slash-separated path.
func (iw *imageWriter) wtLookup(t *testing.T, p string) int32 {
	t.Helper()
	i := int32(0)
	for _, name := range strings.Split(strings.Trim(p, "/"), "/") {
		if name == "" {
			continue
		}
		n := &iw.nodes[i]
		k := slices.IndexFunc(iw.dirents[n.dirents.off:n.dirents.end()], func(d wdirent) bool { return d.name == name })
		if k < 0 {
			t.Fatalf("%s: no entry %q", p, name)
		}
		i = iw.dirents[n.dirents.off+int32(k)].target
	}
	return i
}

func (iw *imageWriter) wtXattrsOf(i int32) []tree.Xattr {
	var xs []tree.Xattr
	n := &iw.nodes[i]
	for _, x := range iw.xattrs[n.xattrs.off:n.xattrs.end()] {
		xs = append(xs, tree.Xattr{Name: x.name, Value: x.value})
	}
	return xs
}

func (iw *imageWriter) wtEntryNames(i int32) []string {
	var names []string
	n := &iw.nodes[i]
	for _, d := range iw.dirents[n.dirents.off:n.dirents.end()] {
		names = append(names, d.name)
	}
	return names
}

func wtWrite(t *testing.T, root *tree.Inode, opts WriteOptions) ([]byte, *WriteResult) {
	t.Helper()
	var b bytes.Buffer
	res, err := Write(&b, root, opts)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if res.Size != int64(b.Len()) || res.Size%BlockSize != 0 {
		t.Fatalf("result size %d, wrote %d bytes", res.Size, b.Len())
	}
	return b.Bytes(), res
}

// wtInode is an inode decoded from a written image, with the offsets of
// its xattr area and inline data.
type wtInode struct {
	inode
	xattrs, inline int
}

func wtReadInode(t *testing.T, img []byte, nid uint64) wtInode {
	t.Helper()
	off := int(nid << InodeSlotBits)
	if off+InodeExtendedSize > len(img) {
		t.Fatalf("nid %d beyond the image", nid)
	}
	var ino wtInode
	ino.unmarshal(img[off:])
	ino.xattrs = off + ino.size()
	ino.inline = ino.xattrs + xattrAreaSize(ino.XattrCount)
	return ino
}

type wtDirent struct {
	name  string
	nid   uint64
	ftype uint8
}

// wtReadDir decodes a directory's entries from its blocks and inline tail.
func wtReadDir(t *testing.T, img []byte, nid uint64) []wtDirent {
	t.Helper()
	ino := wtReadInode(t, img, nid)
	var chunks [][]byte
	full := ino.Size / BlockSize
	for b := range full {
		off := (uint64(ino.U) + b) * BlockSize
		chunks = append(chunks, img[off:off+BlockSize])
	}
	if tail := ino.Size % BlockSize; tail > 0 {
		if ino.layout() != LayoutFlatInline {
			t.Fatalf("nid %d: directory tail with layout %d", nid, ino.layout())
		}
		chunks = append(chunks, img[ino.inline:ino.inline+int(tail)])
	}
	var ents []wtDirent
	for _, c := range chunks {
		var first dirent
		first.unmarshal(c)
		n := int(first.NameOff) / DirentSize
		for k := range n {
			var d, next dirent
			d.unmarshal(c[k*DirentSize:])
			end := len(c)
			if k+1 < n {
				next.unmarshal(c[(k+1)*DirentSize:])
				end = int(next.NameOff)
			} else if z := bytes.IndexByte(c[d.NameOff:], 0); z >= 0 {
				end = int(d.NameOff) + z
			}
			ents = append(ents, wtDirent{string(c[d.NameOff:end]), d.Nid, d.FileType})
		}
	}
	return ents
}

func TestWriteExternalChunks(t *testing.T) {
	tests := []struct {
		size  uint64
		bits  uint32
		count uint64
	}{
		{1, 12, 1},
		{4096, 12, 1},
		{4097, 13, 1},
		{1 << 20, 20, 1},
		{1<<20 + 1, 21, 1},
		{1 << 43, 43, 1},
		{1<<43 + 1, 43, 2},
		{9000000000000000, 43, 1024},
		{9500000000000000, 43, 1081},
		{math.MaxUint64, 43, 1 << 21},
	}
	for _, tt := range tests {
		bits, count := externalChunks(tt.size)
		if bits != tt.bits || count != tt.count {
			t.Errorf("externalChunks(%d) = %d, %d; want %d, %d", tt.size, bits, count, tt.bits, tt.count)
		}
	}
}

func TestWriteTailPadding(t *testing.T) {
	const reg, lnk = tree.TypeReg, tree.TypeLnk
	tests := []struct {
		name          string
		typ           uint32
		pos, nonTail  uint64
		tail          uint32
		pad           uint64
		blocks, after uint32 // data blocks and inline tail afterwards
	}{
		{"fits", reg, 1152, 32, 100, 0, 0, 100},
		{"no tail", reg, 4064, 64, 0, 0, 0, 0},
		{"fills the block", reg, 3968, 32, 96, 0, 0, 96},
		{"one byte over: next block", reg, 3968, 32, 97, 96, 0, 97},
		{"padding rounded to a slot", reg, 3968, 44, 100, 96, 0, 100},
		{"a full-block tail after padding", reg, 4096, 32, 4096, 4064, 0, 4096},
		{"too big even after padding", reg, 3968, 44, 4092, 128, 1, 0},
		{"symlink fits", lnk, 1152, 32, 100, 0, 0, 100},
		{"symlink would cross a block", lnk, 4000, 32, 100, 96, 0, 100},
		{"symlink target moved out", lnk, 1152, 32, 4095, 2944, 1, 0},
		{"symlink target moved out, no padding", lnk, 4096, 32, 4064, 0, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iw := &imageWriter{}
			n := &wnode{mode: tt.typ | 0o644, tail: tt.tail}
			pad := iw.tailPadding(n, tt.pos, tt.nonTail)
			if pad != tt.pad || n.blocks != tt.blocks || n.tail != tt.after {
				t.Errorf("padding %d, blocks %d, tail %d; want %d, %d, %d", pad, n.blocks, n.tail, tt.pad, tt.blocks, tt.after)
			}
			if pad%InodeSlotSize != 0 {
				t.Errorf("padding %d is not a whole number of slots", pad)
			}
		})
	}
}

// wtNamedEntries returns n files whose entries take 12+nameLen bytes each.
func wtNamedEntries(n, nameLen int) []*tree.Dirent {
	var es []*tree.Dirent
	for i := range n {
		name := fmt.Sprintf("%03d", i) + strings.Repeat("x", nameLen-3)
		es = append(es, wtEntry(name, wtFile(0)))
	}
	return es
}

func TestWriteDirLayout(t *testing.T) {
	const dots = DirentSize + 1 + DirentSize + 2
	tests := []struct {
		name         string
		entries      []*tree.Dirent
		blocks, tail uint32
	}{
		{"empty", nil, 0, dots},
		{"half a block inline", append(wtNamedEntries(7, 250), wtEntry("zz"+strings.Repeat("y", 173), wtFile(0))), 0, 2048},
		{"over half a block", append(wtNamedEntries(7, 250), wtEntry("zz"+strings.Repeat("y", 174), wtFile(0))), 1, 0},
		{"block and tail", wtNamedEntries(20, 250), 1, 5 * 262},
		{"exactly a block", append(wtNamedEntries(15, 250), wtEntry("zz"+strings.Repeat("y", 125), wtFile(0))), 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := wtDir(tt.entries...)
			root := wtDir(wtEntry("sub", sub))
			iw := wtPrepare(t, root, wtDefaultVersions)
			n := &iw.nodes[iw.wtLookup(t, "sub")]
			if n.blocks != tt.blocks || n.tail != tt.tail {
				t.Fatalf("blocks %d, tail %d; want %d, %d", n.blocks, n.tail, tt.blocks, tt.tail)
			}
			img, _ := wtWrite(t, root, WriteOptions{})
			ino := wtReadInode(t, img, n.nid)
			if want := uint64(tt.blocks)*BlockSize + uint64(tt.tail); ino.Size != want {
				t.Errorf("i_size %d, want %d", ino.Size, want)
			}
			wantLayout := LayoutFlatPlain
			if tt.tail > 0 {
				wantLayout = LayoutFlatInline
			}
			if ino.layout() != wantLayout {
				t.Errorf("layout %d, want %d", ino.layout(), wantLayout)
			}
			var got []string
			for _, d := range wtReadDir(t, img, n.nid) {
				got = append(got, d.name)
			}
			want := []string{".", ".."}
			for _, e := range tt.entries {
				want = append(want, e.Name)
			}
			if !slices.Equal(got, want) {
				t.Errorf("entries read back %q, want %q", got, want)
			}
		})
	}
}

func TestWriteEntryOrder(t *testing.T) {
	// Names sorting before "." or between "." and ".." must keep their
	// place: the C writer inserts "." and ".." in byte order.
	sub := wtDir(wtEntry("+x", wtFile(0)), wtEntry("-x", wtFile(0)), wtEntry(".-", wtFile(0)),
		wtEntry(".a", wtFile(0)), wtEntry("a", wtFile(0)))
	f0a, fzz := wtFile(0), wtFile(0)
	root := wtDir(wtEntry("0a", f0a), wtEntry("sub", sub), wtEntry("zz", fzz))
	iw := wtPrepare(t, root, wtDefaultVersions)
	if got, want := iw.wtEntryNames(iw.wtLookup(t, "sub")), []string{"+x", "-x", ".", ".-", "..", ".a", "a"}; !slices.Equal(got, want) {
		t.Errorf("sub entries %q, want %q", got, want)
	}
	want := []string{".", ".."}
	for _, name := range rootWhiteoutNames {
		want = append(want, name)
	}
	want = append(want, "sub", "zz")
	if got := iw.wtEntryNames(0); !slices.Equal(got, want) {
		t.Errorf("root entries %q, want %q", got, want)
	}
	if n := &iw.nodes[iw.wtLookup(t, "0a")]; n.in != f0a {
		t.Errorf("0a is not the tree's file")
	}
	// Breadth first: the root's children in entry order, then sub's.
	if i := iw.wtLookup(t, "00"); i != 1 {
		t.Errorf("00 is inode %d, want 1", i)
	}
	if i, j := iw.wtLookup(t, "zz"), iw.wtLookup(t, "sub/+x"); i != 258 || j != 259 {
		t.Errorf("zz, sub/+x are inodes %d, %d; want 258, 259", i, j)
	}
}

func TestWriteCompactInodes(t *testing.T) {
	tests := []struct {
		name    string
		node    func() *tree.Inode
		compact bool
	}{
		{"plain", func() *tree.Inode { return wtFile(10) }, true},
		{"newer mtime", func() *tree.Inode { n := wtFile(10); n.Mtime.Sec++; return n }, false},
		{"newer mtime by 1ns", func() *tree.Inode { n := wtFile(10); n.Mtime.Nsec++; return n }, false},
		{"uid 65535", func() *tree.Inode { n := wtFile(10); n.UID = 65535; return n }, true},
		{"uid 65536", func() *tree.Inode { n := wtFile(10); n.UID = 65536; return n }, false},
		{"gid 65536", func() *tree.Inode { n := wtFile(10); n.GID = 65536; return n }, false},
		{"nlink 65535", func() *tree.Inode { n := wtFile(10); n.Nlink = 65535; return n }, true},
		{"nlink 65536", func() *tree.Inode { n := wtFile(10); n.Nlink = 65536; return n }, false},
		{"size 4 GiB - 1", func() *tree.Inode { return wtFile(1<<32 - 1) }, true},
		{"size 4 GiB", func() *tree.Inode { return wtFile(1 << 32) }, false},
		// The C writer looks at st_size even for devices, which it
		// writes with size 0.
		{"chardev with a large size", func() *tree.Inode {
			return &tree.Inode{Mode: tree.TypeChr | 0o600, Rdev: 5, Mtime: wtMtime, Size: 1 << 32}
		}, false},
		{"whiteout with a large size", func() *tree.Inode { n := wtWhiteout(); n.Size = 1 << 32; return n }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := wtDir(wtEntry("f", tt.node()))
			iw := wtPrepare(t, root, wtDefaultVersions)
			f := &iw.nodes[iw.wtLookup(t, "f")]
			if f.compact != tt.compact {
				t.Fatalf("compact = %v, want %v", f.compact, tt.compact)
			}
			img, _ := wtWrite(t, root, WriteOptions{})
			ino := wtReadInode(t, img, f.nid)
			if ino.extended() == tt.compact {
				t.Errorf("i_format %#x, compact %v", ino.Format, tt.compact)
			}
		})
	}

	// An older file makes the tree's minimum mtime its own: then the root
	// needs an extended inode.
	old := wtFile(10)
	old.Mtime.Sec--
	root := wtDir(wtEntry("old", old))
	iw := wtPrepare(t, root, wtDefaultVersions)
	if iw.nodes[0].compact || !iw.nodes[iw.wtLookup(t, "old")].compact {
		t.Errorf("root compact %v, old compact %v; want false, true", iw.nodes[0].compact, iw.nodes[iw.wtLookup(t, "old")].compact)
	}
	img, _ := wtWrite(t, root, WriteOptions{})
	var sb superblock
	sb.unmarshal(img[SuperblockOffset:])
	if sb.BuildTime != uint64(old.Mtime.Sec) {
		t.Errorf("build time %d, want %d", sb.BuildTime, old.Mtime.Sec)
	}
}

func TestWriteExternalFile(t *testing.T) {
	d := bytes.Repeat([]byte{0xab}, tree.DigestSize)
	d512 := bytes.Repeat([]byte{0xcd}, tree.DigestSizeSHA512)
	tests := []struct {
		name     string
		node     *tree.Inode
		format   uint16
		tail     int // bytes of null chunk addresses inline
		wantXatt []tree.Xattr
	}{
		{"with digest and payload", &tree.Inode{Mode: tree.TypeReg | 0o644, Mtime: wtMtime, Size: 4097, Digest: d, Payload: "ab/cd"},
			1, 4, []tree.Xattr{{Name: XattrMetacopy, Value: "\x00\x24\x00\x01" + string(d)}, {Name: XattrRedirect, Value: "/ab/cd"}}},
		{"sha512 digest", &tree.Inode{Mode: tree.TypeReg | 0o644, Mtime: wtMtime, Size: 4097, Digest: d512, Payload: "ab/cd"},
			1, 4, []tree.Xattr{{Name: XattrMetacopy, Value: "\x00\x44\x00\x02" + string(d512)}, {Name: XattrRedirect, Value: "/ab/cd"}}},
		{"no digest, absolute payload", &tree.Inode{Mode: tree.TypeReg | 0o644, Mtime: wtMtime, Size: 1, Payload: "/x"},
			0, 4, []tree.Xattr{{Name: XattrMetacopy, Value: ""}, {Name: XattrRedirect, Value: "//x"}}},
		{"neither", &tree.Inode{Mode: tree.TypeReg | 0o644, Mtime: wtMtime, Size: 1 << 44},
			31, 8, []tree.Xattr{{Name: XattrMetacopy, Value: ""}}},
		{"empty: no overlay xattrs", &tree.Inode{Mode: tree.TypeReg | 0o644, Mtime: wtMtime, Payload: "ab/cd", Digest: d},
			0, 0, nil},
		{"inline content wins", &tree.Inode{Mode: tree.TypeReg | 0o644, Mtime: wtMtime, Size: 3, Content: []byte("abc"), Payload: "ab/cd", Digest: d},
			0, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := wtDir(wtEntry("f", tt.node))
			iw := wtPrepare(t, root, wtDefaultVersions)
			i := iw.wtLookup(t, "f")
			if got := iw.wtXattrsOf(i); !reflect.DeepEqual(got, tt.wantXatt) {
				t.Errorf("xattrs %q, want %q", got, tt.wantXatt)
			}
			img, _ := wtWrite(t, root, WriteOptions{})
			ino := wtReadInode(t, img, iw.nodes[i].nid)
			if tt.tail == 0 {
				if ino.layout() == LayoutChunkBased {
					t.Errorf("chunk-based layout for a file without external data")
				}
				return
			}
			if ino.layout() != LayoutChunkBased || uint16(ino.U) != tt.format {
				t.Errorf("layout %d, chunk format %d; want %d, %d", ino.layout(), ino.U, LayoutChunkBased, tt.format)
			}
			if ino.Size != tt.node.Size {
				t.Errorf("i_size %d, want %d", ino.Size, tt.node.Size)
			}
			if got := img[ino.inline : ino.inline+tt.tail]; !bytes.Equal(got, bytes.Repeat([]byte{0xff}, tt.tail)) {
				t.Errorf("chunk table % x, want all null addresses", got)
			}
		})
	}
}

func TestWriteTooManyChunks(t *testing.T) {
	// 1024 chunks fill a block. Without a digest, the inode and its xattrs
	// are a whole number of slots and the table fits inline after padding
	// to the next block; with one, the padding overshoots and the table
	// moves to a data block of null addresses.
	for _, digest := range [][]byte{nil, bytes.Repeat([]byte{1}, tree.DigestSize)} {
		f := wtFile(9000000000000000)
		f.Digest = digest
		root := wtDir(wtEntry("f", f))
		iw := wtPrepare(t, root, wtDefaultVersions)
		n := &iw.nodes[iw.wtLookup(t, "f")]
		img, _ := wtWrite(t, root, WriteOptions{})
		ino := wtReadInode(t, img, n.nid)
		table := img[ino.inline : ino.inline+BlockSize]
		wantBlocks := uint32(0)
		if digest != nil {
			wantBlocks = 1
			table = img[len(img)-BlockSize:]
		}
		if n.chunks != MaxChunks || n.blocks != wantBlocks || n.tail != (1-wantBlocks)*BlockSize {
			t.Errorf("digest %v: chunks %d, blocks %d, tail %d", digest != nil, n.chunks, n.blocks, n.tail)
		}
		if !bytes.Equal(table, nullChunkBlock) {
			t.Errorf("digest %v: no table of null addresses", digest != nil)
		}
	}

	_, err := Write(io.Discard, wtDir(wtEntry("f", wtFile(9500000000000000))), WriteOptions{})
	if err == nil || !strings.Contains(err.Error(), "1081 chunks") {
		t.Errorf("Write = %v, want an error about 1081 chunks", err)
	}
}

func TestWriteSplitXattrPrefix(t *testing.T) {
	tests := []struct {
		name   string
		index  uint8
		suffix string
	}{
		{"user.foo", XattrIndexUser, "foo"},
		{"user.", XattrIndexUser, ""},
		{"trusted.overlay.opaque", XattrIndexTrusted, "overlay.opaque"},
		{"security.selinux", XattrIndexSecurity, "selinux"},
		{"system.posix_acl_access", XattrIndexPosixACLAccess, ""},
		{"system.posix_acl_default", XattrIndexPosixACLDflt, ""},
		{"system.posix_acl_accessX", XattrIndexPosixACLAccess, "X"},
		{"system.other", XattrIndexNone, "system.other"},
		{"lustre.x", XattrIndexNone, "lustre.x"},
		{"userfoo", XattrIndexNone, "userfoo"},
	}
	for _, tt := range tests {
		index, suffix := splitXattrPrefix(tt.name)
		if index != tt.index || suffix != tt.suffix {
			t.Errorf("splitXattrPrefix(%q) = %d, %q; want %d, %q", tt.name, index, suffix, tt.index, tt.suffix)
		}
	}
}

func TestWriteXattrBloom(t *testing.T) {
	bit := func(index uint8, suffix string) uint32 {
		return 1 << (xxh32([]byte(suffix), XattrFilterSeed+uint32(index)) % 32)
	}
	tests := []struct {
		names []string
		want  uint32
	}{
		{nil, math.MaxUint32},
		{[]string{"user.foo"}, ^bit(XattrIndexUser, "foo")},
		{[]string{"trusted.foo"}, ^bit(XattrIndexTrusted, "foo")},
		{[]string{"security.selinux", "user.foo", "weird"},
			^(bit(XattrIndexSecurity, "selinux") | bit(XattrIndexUser, "foo") | bit(XattrIndexNone, "weird"))},
	}
	for _, tt := range tests {
		var xs []wxattr
		for _, n := range tt.names {
			xs = append(xs, wxattr{name: n})
		}
		if got := xattrBloom(xs); got != tt.want {
			t.Errorf("xattrBloom(%q) = %#08x, want %#08x", tt.names, got, tt.want)
		}
	}
}

func wtXattrs(n *tree.Inode, kv ...string) *tree.Inode {
	for i := 0; i < len(kv); i += 2 {
		n.Xattrs = append(n.Xattrs, tree.Xattr{Name: kv[i], Value: kv[i+1]})
	}
	return n
}

func TestWriteSharedXattrs(t *testing.T) {
	root := wtDir(
		wtEntry("f1", wtXattrs(wtFile(0), "user.u", "1", "user.b", "xx", "user.a", "x")),
		wtEntry("f2", wtXattrs(wtFile(0), "user.a", "x", "user.b", "xx")),
		wtEntry("f3", wtXattrs(wtFile(0), "user.b", "y", "user.c", "")),
		wtEntry("f4", wtXattrs(wtFile(0), "user.c", "", "user.b", "y")),
		wtEntry("f5", wtXattrs(wtFile(0), "user.b", "x")),
		wtEntry("f6", wtXattrs(wtFile(0), "user.b", "x")),
	)
	iw := wtPrepare(t, root, wtDefaultVersions)
	// Descending by name, then longer values first, then value bytes
	// descending.
	want := []tree.Xattr{{Name: "user.c", Value: ""}, {Name: "user.b", Value: "xx"}, {Name: "user.b", Value: "y"}, {Name: "user.b", Value: "x"}, {Name: "user.a", Value: "x"}}
	var got []tree.Xattr
	for _, k := range iw.sharedTable {
		got = append(got, tree.Xattr{Name: iw.xattrs[k].name, Value: iw.xattrs[k].value})
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("shared table %q, want %q", got, want)
	}
	if iw.sharedSize != 5*8 {
		t.Errorf("shared table of %d bytes, want 40", iw.sharedSize)
	}

	img, _ := wtWrite(t, root, WriteOptions{})
	var sb superblock
	sb.unmarshal(img[SuperblockOffset:])
	if sb.XattrBlkAddr != uint32(iw.inodesEnd/BlockSize) {
		t.Errorf("xattr_blkaddr %d, want %d", sb.XattrBlkAddr, iw.inodesEnd/BlockSize)
	}
	table := img[iw.inodesEnd : iw.inodesEnd+iw.sharedSize]
	if wantTable := []byte("\x01\x01\x00\x00c\x00\x00\x00" + "\x01\x01\x02\x00bxx\x00" + "\x01\x01\x01\x00by\x00\x00" +
		"\x01\x01\x01\x00bx\x00\x00" + "\x01\x01\x01\x00ax\x00\x00"); !bytes.Equal(table, wantTable) {
		t.Errorf("shared table bytes % x, want % x", table, wantTable)
	}
	// f1 refers to user.a and user.b=xx, in its own name order, and keeps
	// user.u inline.
	ino := wtReadInode(t, img, iw.nodes[iw.wtLookup(t, "f1")].nid)
	area := img[ino.xattrs : ino.xattrs+xattrAreaSize(ino.XattrCount)]
	base := uint32(iw.inodesEnd % BlockSize)
	le := binary.LittleEndian
	if area[4] != 2 || le.Uint32(area[12:]) != (base+32)/4 || le.Uint32(area[16:]) != (base+8)/4 {
		t.Errorf("f1 xattr area % x: want 2 shared ids %d, %d", area, (base+32)/4, (base+8)/4)
	}
	if got := area[20:]; !bytes.Equal(got, []byte("\x01\x01\x01\x00u1\x00\x00")) {
		t.Errorf("f1 inline xattrs % x", got)
	}
}

func TestWriteSharedXattrsPerInodeLimit(t *testing.T) {
	var kv []string
	for i := range MaxSharedXattrsPerInode + 2 {
		kv = append(kv, fmt.Sprintf("user.k%03d", i), "v")
	}
	root := wtDir(wtEntry("a", wtXattrs(wtFile(0), kv...)), wtEntry("b", wtXattrs(wtFile(0), kv...)))
	iw := wtPrepare(t, root, wtDefaultVersions)
	for _, p := range []string{"a", "b"} {
		n := &iw.nodes[iw.wtLookup(t, p)]
		if n.nShared != MaxSharedXattrsPerInode {
			t.Errorf("%s: %d shared xattrs, want %d", p, n.nShared, MaxSharedXattrsPerInode)
		}
		xs := iw.xattrs[n.xattrs.off:n.xattrs.end()]
		for k, x := range xs {
			if shared := x.sharedOff >= 0; shared != (k < MaxSharedXattrsPerInode) {
				t.Errorf("%s: xattr %s shared = %v", p, x.name, shared)
			}
		}
	}
	// Writing the image must still work, with the extras inline.
	wtWrite(t, root, WriteOptions{})
}

func TestWriteWhiteouts(t *testing.T) {
	build := func() *tree.Inode {
		wh := wtXattrs(wtWhiteout(), "user.x", "1", "trusted.overlay.foo", "bar")
		wh.Size = 3
		d := wtXattrs(wtDir(wtEntry("h", wh), wtLink("i", wh)),
			"trusted.overlay.opaque", "y", "user.overlay.whiteouts", "old")
		return wtDir(wtEntry("d", d), wtEntry("e", wtDir()))
	}
	dirV0 := []tree.Xattr{
		{Name: "trusted.overlay.overlay.opaque", Value: "y"},
		{Name: XattrEscapedWhiteouts, Value: ""},
		{Name: XattrUserWhiteouts, Value: ""},
	}
	dirV1 := []tree.Xattr{
		{Name: XattrEscapedOpaque, Value: "x"},
		{Name: XattrEscapedWhiteouts, Value: ""},
		{Name: XattrUserOpaque, Value: "x"},
		{Name: XattrUserWhiteouts, Value: ""},
	}
	whiteout := []tree.Xattr{
		{Name: "trusted.overlay.overlay.foo", Value: "bar"},
		{Name: XattrEscapedWhiteout, Value: ""},
		{Name: XattrUserWhiteout, Value: ""},
		{Name: "user.x", Value: "1"},
	}
	for _, tt := range []struct {
		vr      VersionRange
		version int
		dir     []tree.Xattr
	}{
		{VersionRange{0, 0}, 0, dirV0},
		{wtDefaultVersions, 1, dirV1},
	} {
		t.Run(fmt.Sprint(tt.version), func(t *testing.T) {
			root := build()
			iw := wtPrepare(t, root, tt.vr)
			if iw.version != tt.version {
				t.Errorf("version %d, want %d", iw.version, tt.version)
			}
			if got := iw.wtXattrsOf(iw.wtLookup(t, "d")); !reflect.DeepEqual(got, tt.dir) {
				t.Errorf("directory xattrs %q, want %q", got, tt.dir)
			}
			h := iw.wtLookup(t, "d/h")
			if got := iw.wtXattrsOf(h); !reflect.DeepEqual(got, whiteout) {
				t.Errorf("whiteout xattrs %q, want %q", got, whiteout)
			}
			if got := iw.wtXattrsOf(iw.wtLookup(t, "e")); got != nil {
				t.Errorf("directory without whiteouts has xattrs %q", got)
			}
			if got, want := iw.wtXattrsOf(0), []tree.Xattr{{Name: XattrOpaque, Value: "y"}}; !reflect.DeepEqual(got, want) {
				t.Errorf("root xattrs %q, want %q", got, want)
			}

			img, res := wtWrite(t, root, WriteOptions{Versions: &tt.vr})
			if res.Version != tt.version {
				t.Errorf("result version %d, want %d", res.Version, tt.version)
			}
			var hdr header
			hdr.unmarshal(img)
			if hdr.ComposefsVersion != uint32(tt.version) {
				t.Errorf("header version %d, want %d", hdr.ComposefsVersion, tt.version)
			}
			ino := wtReadInode(t, img, iw.nodes[h].nid)
			if ino.Mode != tree.TypeReg|0o600 || ino.Size != 0 || ino.U != 0 {
				t.Errorf("whiteout inode mode %o, size %d, i_u %d; want an empty 0100600 file", ino.Mode, ino.Size, ino.U)
			}
			for _, d := range wtReadDir(t, img, iw.nodes[iw.wtLookup(t, "d")].nid) {
				if (d.name == "h" || d.name == "i") && (d.nid != iw.nodes[h].nid || d.ftype != FileTypeReg) {
					t.Errorf("entry %s: nid %d, type %d; want %d, %d", d.name, d.nid, d.ftype, iw.nodes[h].nid, FileTypeReg)
				}
			}
		})
	}
}

func TestWriteVersions(t *testing.T) {
	plain := func() *tree.Inode { return wtDir(wtEntry("f", wtFile(0))) }
	withWhiteout := func() *tree.Inode { return wtDir(wtEntry("w", wtWhiteout())) }
	tests := []struct {
		name    string
		root    func() *tree.Inode
		vr      *VersionRange
		version int
		err     bool
	}{
		{"default", plain, nil, 0, false},
		{"default with whiteout", withWhiteout, nil, 1, false},
		{"0..1", plain, &VersionRange{0, 1}, 0, false},
		{"0..0 with whiteout", withWhiteout, &VersionRange{0, 0}, 0, false},
		{"1..1", plain, &VersionRange{1, 1}, 1, false},
		{"1..1 with whiteout", withWhiteout, &VersionRange{1, 1}, 1, false},
		{"max below min", plain, &VersionRange{1, 0}, 0, true},
		{"negative", plain, &VersionRange{-1, 0}, 0, true},
		{"too new", plain, &VersionRange{0, 2}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Write(io.Discard, tt.root(), WriteOptions{Versions: tt.vr})
			if tt.err {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Version != tt.version {
				t.Errorf("version %d, want %d", res.Version, tt.version)
			}
		})
	}
}

func TestWriteRootWhiteouts(t *testing.T) {
	root := wtXattrs(wtDir(wtEntry("0a", wtFile(0)), wtEntry("zz", wtFile(0))),
		"security.selinux", "label", "user.x", "y")
	root.UID, root.GID, root.Mtime = 7, 8, tree.Timespec{Sec: 5, Nsec: 6}
	iw := wtPrepare(t, root, wtDefaultVersions)
	if len(iw.nodes) != 1+255+2 {
		t.Fatalf("%d inodes, want %d", len(iw.nodes), 1+255+2)
	}
	if iw.version != 0 {
		t.Errorf("the root whiteouts moved the image to version %d", iw.version)
	}
	for _, name := range rootWhiteoutNames {
		if name == "0a" {
			continue
		}
		n := &iw.nodes[iw.wtLookup(t, name)]
		if n.in != nil || n.mode != tree.TypeChr|0o644 || n.rdev != 0 || n.nlink != 1 ||
			n.uid != 7 || n.gid != 8 || n.mtime != root.Mtime {
			t.Fatalf("%s: %+v", name, n)
		}
	}
	if got, want := iw.wtXattrsOf(iw.wtLookup(t, "ff")), []tree.Xattr{{Name: "security.selinux", Value: "label"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("whiteout xattrs %q, want %q", got, want)
	}
	img, _ := wtWrite(t, root, WriteOptions{})
	for _, d := range wtReadDir(t, img, iw.rootNid) {
		if len(d.name) == 2 && d.name != "0a" && d.name != "zz" && d.name != ".." && d.ftype != FileTypeChr {
			t.Errorf("%s: file type %d, want %d", d.name, d.ftype, FileTypeChr)
		}
	}

	// Without a label on the root, the whiteouts have no xattrs.
	iw = wtPrepare(t, wtDir(), wtDefaultVersions)
	if got := iw.wtXattrsOf(iw.wtLookup(t, "00")); got != nil {
		t.Errorf("whiteout xattrs %q, want none", got)
	}
}

func TestWriteHardlinks(t *testing.T) {
	f := wtFile(100)
	f.Nlink = 3
	b := wtDir(wtEntry("c", wtDir()), wtEntry("f", f))
	b.Nlink = 99 // recomputed
	root := wtDir(wtLink("a", f), wtEntry("b", b), wtLink("c", f))
	iw := wtPrepare(t, root, wtDefaultVersions)
	fi := iw.wtLookup(t, "b/f")
	if iw.wtLookup(t, "a") != fi || iw.wtLookup(t, "c") != fi {
		t.Errorf("hardlink entries do not point at the primary's inode")
	}
	// The inode sits where its primary entry is: after all of the root's
	// entries and b's directory c.
	if want := int32(1 + 256 + 2); fi != want {
		t.Errorf("file is inode %d, want %d", fi, want)
	}
	if n := &iw.nodes[fi]; n.nlink != 3 {
		t.Errorf("file nlink %d, want 3 as given", n.nlink)
	}
	if n := &iw.nodes[iw.wtLookup(t, "b")]; n.nlink != 3 {
		t.Errorf("directory nlink %d, want 3", n.nlink)
	}
	if n := &iw.nodes[0]; n.nlink != 3 {
		t.Errorf("root nlink %d, want 3 (hardlink entries do not count)", n.nlink)
	}
	img, _ := wtWrite(t, root, WriteOptions{})
	for _, d := range wtReadDir(t, img, iw.rootNid) {
		if (d.name == "a" || d.name == "c") && d.nid != iw.nodes[fi].nid {
			t.Errorf("entry %s: nid %d, want %d", d.name, d.nid, iw.nodes[fi].nid)
		}
		if d.name == ".." && d.nid != iw.rootNid {
			t.Errorf("root's .. is nid %d, want the root", d.nid)
		}
	}
}

func TestWriteInlineData(t *testing.T) {
	content := func(n int) []byte { return bytes.Repeat([]byte("0123456789abcdef"), n/16+1)[:n] }
	for _, size := range []int{1, 15, 2048, 2049, 4095, 4096, 4097, 5000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			c := content(size)
			target := strings.Repeat("t", min(size, MaxPayloadLen))
			root := wtDir(
				wtEntry("f", &tree.Inode{Mode: tree.TypeReg | 0o644, Mtime: wtMtime, Size: uint64(size), Content: c}),
				wtEntry("l", &tree.Inode{Mode: tree.TypeLnk | 0o777, Mtime: wtMtime, Payload: target}))
			iw := wtPrepare(t, root, wtDefaultVersions)
			img, _ := wtWrite(t, root, WriteOptions{})
			for _, tt := range []struct {
				path string
				want []byte
			}{{"f", c}, {"l", []byte(target)}} {
				ino := wtReadInode(t, img, iw.nodes[iw.wtLookup(t, tt.path)].nid)
				if ino.Size != uint64(len(tt.want)) {
					t.Fatalf("%s: i_size %d, want %d", tt.path, ino.Size, len(tt.want))
				}
				full := int(ino.Size / BlockSize)
				tail := int(ino.Size % BlockSize)
				if ino.layout() == LayoutFlatPlain && tail > 0 {
					full, tail = full+1, 0
				}
				var got []byte
				if full > 0 {
					off := int(ino.U) * BlockSize
					got = append(got, img[off:off+int(ino.Size)-tail]...)
				}
				got = append(got, img[ino.inline:ino.inline+tail]...)
				if !bytes.Equal(got, tt.want) {
					t.Errorf("%s: data read back differs (%d blocks, tail %d)", tt.path, full, tail)
				}
				// Inline data stays within a block; a symlink's
				// inode is in that block too.
				start := ino.inline
				if tt.path == "l" {
					start = int(iw.nodes[iw.wtLookup(t, tt.path)].nid << InodeSlotBits)
				}
				if tail > 0 && start/BlockSize != (ino.inline+tail-1)/BlockSize {
					t.Errorf("%s: inline data crosses a block boundary", tt.path)
				}
			}
		})
	}
}

// wtFailWriter fails once n bytes have been written.
type wtFailWriter struct{ n int }

var errWtWrite = errors.New("disk full")

func (w *wtFailWriter) Write(b []byte) (int, error) {
	if len(b) > w.n {
		k := w.n
		w.n = 0
		return k, errWtWrite
	}
	w.n -= len(b)
	return len(b), nil
}

func TestWriteFailure(t *testing.T) {
	root := wtDir(wtEntry("f", wtFile(10)))
	res, err := Write(&wtFailWriter{n: 5000}, root, WriteOptions{})
	if !errors.Is(err, errWtWrite) || res != nil {
		t.Errorf("Write = %v, %v; want %v", res, err, errWtWrite)
	}
}

func TestWriteErrors(t *testing.T) {
	dir := func(es ...*tree.Dirent) *tree.Inode { return wtDir(es...) }
	reg := func() *tree.Inode { return wtFile(0) }
	lnk := func(target string) *tree.Inode { return &tree.Inode{Mode: tree.TypeLnk | 0o777, Payload: target} }
	loop := wtDir()
	loop.Entries = []*tree.Dirent{wtEntry("self", loop)}
	twice := wtDir()
	shared := reg()
	tests := []struct {
		name string
		root *tree.Inode
		want string
	}{
		{"nil root", nil, "no root"},
		{"root not a directory", reg(), "root is not a directory"},
		{"no file type", dir(wtEntry("x", &tree.Inode{Mode: 0o644})), "/x: invalid file type"},
		{"entries on a file", dir(wtEntry("x", &tree.Inode{Mode: tree.TypeReg, Entries: []*tree.Dirent{wtEntry("y", reg())}})), "only directories"},
		{"empty name", dir(wtEntry("", reg())), "invalid entry name"},
		{"dot", dir(wtEntry(".", reg())), "invalid entry name"},
		{"dotdot", dir(wtEntry("..", reg())), "invalid entry name"},
		{"slash", dir(wtEntry("a/b", reg())), "invalid entry name"},
		{"NUL", dir(wtEntry("a\x00", reg())), "invalid entry name"},
		{"long name", dir(wtEntry(strings.Repeat("n", 256), reg())), "invalid entry name"},
		{"unsorted", dir(wtEntry("b", reg()), wtEntry("a", reg())), "not sorted"},
		{"duplicate", dir(wtEntry("a", reg()), wtEntry("a", reg())), "not sorted or not unique"},
		{"nil entry", dir(nil), "has no inode"},
		{"nil inode", dir(wtEntry("a", nil)), "has no inode"},
		{"empty symlink", dir(wtEntry("l", lnk(""))), "/l: invalid symlink: empty target"},
		{"long symlink", dir(wtEntry("l", lnk(strings.Repeat("t", 4096)))), "invalid symlink"},
		{"NUL in symlink", dir(wtEntry("l", lnk("a\x00b"))), "invalid symlink"},
		{"long payload", dir(wtEntry("f", &tree.Inode{Mode: tree.TypeReg, Size: 1, Payload: strings.Repeat("p", 4096)})), "invalid payload"},
		{"big content", dir(wtEntry("f", &tree.Inode{Mode: tree.TypeReg, Size: 5001, Content: make([]byte, 5001)})), "exceeds the maximum"},
		{"size not content size", dir(wtEntry("f", &tree.Inode{Mode: tree.TypeReg, Size: 4, Content: []byte("abc")})), "does not match"},
		{"short digest", dir(wtEntry("f", &tree.Inode{Mode: tree.TypeReg, Size: 1, Digest: make([]byte, 31)})), "digest is 31 bytes"},
		{"too many chunks", dir(wtEntry("f", wtFile(9500000000000000))), "more than the 1024"},
		{"empty xattr name", dir(wtEntry("f", wtXattrs(reg(), "", "v"))), "invalid xattr name"},
		{"long xattr name", dir(wtEntry("f", wtXattrs(reg(), "user."+strings.Repeat("n", 251), "v"))), "invalid xattr name"},
		{"NUL in xattr name", dir(wtEntry("f", wtXattrs(reg(), "user.\x00", "v"))), "invalid xattr name"},
		{"long xattr value", dir(wtEntry("f", wtXattrs(reg(), "user.a", strings.Repeat("v", 65536)))), "exceeds the maximum"},
		{"xattrs too big", dir(wtEntry("f", wtXattrs(reg(), "user.a", strings.Repeat("v", 30000), "user.b", strings.Repeat("v", 3000)))), "more than the 32767"},
		{"duplicate xattr", dir(wtEntry("f", wtXattrs(reg(), "trusted.overlay.x", "1", "trusted.overlay.x", "2"))), `duplicate xattr "trusted.overlay.x"`},
		{"hardlink to a directory", dir(wtEntry("d", twice), wtLink("e", twice)), "hardlink to a directory"},
		{"hardlink outside the tree", dir(wtLink("h", reg())), "no primary entry"},
		{"two primary entries", dir(wtEntry("a", shared), wtLink("b", shared), wtEntry("c", shared)), "already placed at /a"},
		{"directory twice", dir(wtEntry("a", twice), wtEntry("b", twice)), "/b: directory already in the tree as /a"},
		{"directory loop", dir(wtEntry("loop", loop)), "/loop/self: directory already in the tree as /loop"},
		{"root inside itself", func() *tree.Inode { r := wtDir(); r.Entries = []*tree.Dirent{wtEntry("r", r)}; return r }(), "directory already in the tree as /"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Write(io.Discard, tt.root, WriteOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Write = %v, %v; want an error containing %q", res, err, tt.want)
			}
		})
	}
}

// wtClone copies a tree deeply, keeping shared inodes shared.
func wtClone(n *tree.Inode, seen map[*tree.Inode]*tree.Inode) *tree.Inode {
	if c, ok := seen[n]; ok {
		return c
	}
	c := *n
	seen[n] = &c
	c.Content = bytes.Clone(n.Content)
	c.Digest = bytes.Clone(n.Digest)
	c.Xattrs = slices.Clone(n.Xattrs)
	c.Entries = nil
	for _, d := range n.Entries {
		c.Entries = append(c.Entries, &tree.Dirent{Name: d.Name, Hardlink: d.Hardlink, Inode: wtClone(d.Inode, seen)})
	}
	return &c
}

func TestWriteDoesNotModifyTree(t *testing.T) {
	digest := bytes.Repeat([]byte{1}, tree.DigestSize)
	wh := wtXattrs(wtWhiteout(), "trusted.overlay.x", "1")
	ext := wtXattrs(&tree.Inode{Mode: tree.TypeReg | 0o644, Nlink: 2, Size: 1 << 20, Payload: "01/02", Digest: digest},
		"user.z", "1", "trusted.overlay.metacopy", "old", "security.selinux", "l")
	root := wtXattrs(wtDir(
		wtEntry("00", wtFile(0)),
		wtEntry("d", wtXattrs(wtDir(wtEntry("wh", wh), wtLink("wh2", wh)), "trusted.overlay.opaque", "y")),
		wtEntry("ext", ext),
		wtLink("ext2", ext),
		wtEntry("in", &tree.Inode{Mode: tree.TypeReg | 0o600, Size: 3, Content: []byte("abc")}),
		wtEntry("l", &tree.Inode{Mode: tree.TypeLnk | 0o777, Size: 99, Payload: "target"}),
	), "security.selinux", "l", "trusted.overlay.opaque", "z", "system.posix_acl_default", "acl")
	want := wtClone(root, map[*tree.Inode]*tree.Inode{})
	for _, vr := range []VersionRange{{0, 0}, {0, 1}} {
		_, res := wtWrite(t, root, WriteOptions{Versions: &vr})
		if res.Flags != FlagHasACL {
			t.Errorf("flags %#x, want %#x", res.Flags, FlagHasACL)
		}
		if !reflect.DeepEqual(root, want) {
			t.Fatalf("Write modified the tree")
		}
	}
}

// An image of a sha512 repository carries 64-byte digests; reading it back
// gives them again.
func TestWriteReadSHA512Digest(t *testing.T) {
	d := bytes.Repeat([]byte{0x5a}, tree.DigestSizeSHA512)
	f := &tree.Inode{Mode: tree.TypeReg | 0o644, Nlink: 1, Size: 5000, Digest: d, Payload: "5a/" + strings.Repeat("5a", 63)}
	root := &tree.Inode{Mode: tree.TypeDir | 0o755, Entries: []*tree.Dirent{{Name: "f", Inode: f}}}
	img, _ := wtWrite(t, root, WriteOptions{})
	back, _, err := ReadTree(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	got := back.Lookup("f").Inode
	if !bytes.Equal(got.Digest, d) || got.Payload != f.Payload {
		t.Errorf("digest %x payload %q, want %x %q", got.Digest, got.Payload, d, f.Payload)
	}
}
