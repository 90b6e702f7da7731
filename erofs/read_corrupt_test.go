package erofs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/erofs/tree"
)

func hbPut16(b []byte, off int, v uint16) { binary.LittleEndian.PutUint16(b[off:], v) }
func hbPut32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
func hbPut64(b []byte, off int, v uint64) { binary.LittleEndian.PutUint64(b[off:], v) }

// Offsets of inode fields (compact and extended alike).
const (
	hbFormatOff = 0
	hbXcountOff = 2
	hbModeOff   = 4
	hbNlinkOff  = 6
	hbSizeOff   = 8
	hbUOff      = 16
)

func TestReadTreeRejectsCorruptImages(t *testing.T) {
	sb := SuperblockOffset
	tests := []struct {
		name   string
		build  func(b *hbImage)                    // changes before building, if any
		mutate func(b *hbImage, img []byte) []byte // changes to the built image
		want   error                               // nil: the image must be accepted
		msg    string                              // part of the error message
	}{
		{name: "composefs magic", mutate: func(b *hbImage, img []byte) []byte { img[0] ^= 1; return img },
			want: ErrNotComposefs, msg: "bad composefs magic"},
		{name: "header version", mutate: func(b *hbImage, img []byte) []byte { hbPut32(img, 4, 2); return img },
			want: ErrUnsupported, msg: "header version 2"},
		{name: "format version", mutate: func(b *hbImage, img []byte) []byte { hbPut32(img, 12, 2); return img },
			want: ErrUnsupported, msg: "format version 2"},
		{name: "superblock magic", mutate: func(b *hbImage, img []byte) []byte { img[sb] ^= 1; return img },
			want: ErrNotComposefs, msg: "superblock magic"},
		{name: "block size", mutate: func(b *hbImage, img []byte) []byte { img[sb+12] = 13; return img },
			want: ErrUnsupported, msg: "block size 2^13"},
		{name: "incompatible feature", mutate: func(b *hbImage, img []byte) []byte { hbPut32(img, sb+80, 0x6); return img },
			want: ErrUnsupported, msg: "incompatible features 0x2"},
		{name: "chunked-file feature", mutate: func(b *hbImage, img []byte) []byte { hbPut32(img, sb+80, 0x4); return img }},
		{name: "directory block bits", mutate: func(b *hbImage, img []byte) []byte { img[sb+90] = 1; return img },
			want: ErrUnsupported, msg: "directory block bits"},
		{name: "long xattr prefixes", mutate: func(b *hbImage, img []byte) []byte { img[sb+91] = 1; return img },
			want: ErrUnsupported, msg: "long xattr prefixes"},
		{name: "extension slots", mutate: func(b *hbImage, img []byte) []byte { img[sb+13] = 200; return img },
			want: ErrCorrupt, msg: "extension slots"},
		{name: "block count", mutate: func(b *hbImage, img []byte) []byte {
			hbPut32(img, sb+36, uint32(len(img)/BlockSize+1))
			return img
		}, want: ErrCorrupt, msg: "declares"},
		{name: "trailing data", mutate: func(b *hbImage, img []byte) []byte { return append(img, make([]byte, BlockSize)...) },
			want: ErrCorrupt, msg: "declares"},
		{name: "shorter than a block", mutate: func(b *hbImage, img []byte) []byte { return img[:2048] },
			want: ErrNotComposefs, msg: "shorter than one block"},
		{name: "root nid beyond the image", mutate: func(b *hbImage, img []byte) []byte { hbPut16(img, sb+14, 0xffff); return img },
			want: ErrCorrupt, msg: "nid 65535: inode slot beyond"},
		{name: "root not a directory", mutate: func(b *hbImage, img []byte) []byte {
			hbPut16(img, sb+14, uint16(b.nodes[hbFile].nid))
			return img
		}, want: ErrCorrupt, msg: "not a directory"},
		{name: "metadata block beyond the image", mutate: func(b *hbImage, img []byte) []byte { hbPut32(img, sb+40, 1000); return img },
			want: ErrCorrupt, msg: "metadata block 1000"},
		{name: "xattr block beyond the image", mutate: func(b *hbImage, img []byte) []byte { hbPut32(img, sb+44, 1000); return img },
			want: ErrCorrupt, msg: "shared xattr block 1000"},

		{name: "compressed layout", mutate: func(b *hbImage, img []byte) []byte {
			hbPut16(img, b.nodes[hbFile].off+hbFormatOff, LayoutCompressedFull<<InodeLayoutShift)
			return img
		}, want: ErrUnsupported, msg: "compressed data layout 1"},
		{name: "unknown layout", mutate: func(b *hbImage, img []byte) []byte {
			hbPut16(img, b.nodes[hbFile].off+hbFormatOff, 5<<InodeLayoutShift)
			return img
		}, want: ErrUnsupported, msg: "unknown data layout 5"},
		{name: "unknown format bits", mutate: func(b *hbImage, img []byte) []byte {
			img[b.nodes[hbFile].off+hbFormatOff] |= 0x10
			return img
		}, want: ErrUnsupported, msg: "unknown bits"},
		{name: "no file type", mutate: func(b *hbImage, img []byte) []byte {
			hbPut16(img, b.nodes[hbFile].off+hbModeOff, 0o170644)
			return img
		}, want: ErrCorrupt, msg: "no valid file type"},
		{name: "chunk-based directory", mutate: func(b *hbImage, img []byte) []byte {
			hbPut16(img, b.nodes[hbDir].off+hbFormatOff, LayoutChunkBased<<InodeLayoutShift)
			return img
		}, want: ErrCorrupt, msg: "chunk-based layout for mode 040700"},
		{name: "xattr area beyond the image", mutate: func(b *hbImage, img []byte) []byte {
			hbPut16(img, b.nodes[hbWhiteout1].off+hbXcountOff, 0xffff)
			return img
		}, want: ErrCorrupt, msg: "xattr area"},
		{name: "inline data crosses a block", mutate: func(b *hbImage, img []byte) []byte {
			hbPut32(img, b.nodes[hbFile].off+hbSizeOff, 4000)
			return img
		}, want: ErrCorrupt, msg: "cross a block boundary"},
		{name: "data blocks beyond the image", mutate: func(b *hbImage, img []byte) []byte {
			hbPut32(img, b.nodes[hbBlockFile].off+hbUOff, 1000)
			return img
		}, want: ErrCorrupt, msg: "data blocks from block 1000"},
		{name: "inline file too large", build: func(b *hbImage) { b.nodes[hbBlockFile].block = make([]byte, 6000) },
			want: ErrCorrupt, msg: "6000 bytes of file data"},

		{name: "first name offset not a dirent multiple", mutate: func(b *hbImage, img []byte) []byte {
			img[b.tailOff(hbRoot)+8]++
			return img
		}, want: ErrCorrupt, msg: "first name offset"},
		{name: "first name offset beyond the block", mutate: func(b *hbImage, img []byte) []byte {
			hbPut16(img, b.tailOff(hbRoot)+8, 4092)
			return img
		}, want: ErrCorrupt, msg: "first name offset 4092"},
		{name: "names out of order", mutate: func(b *hbImage, img []byte) []byte {
			_, a := b.direntOff(hbRoot, "hard1")
			_, c := b.direntOff(hbRoot, "hard2")
			img[a+4], img[c+4] = '2', '1'
			return img
		}, want: ErrCorrupt, msg: "not in ascending order"},
		{name: "name with slash", mutate: func(b *hbImage, img []byte) []byte {
			_, a := b.direntOff(hbRoot, "link")
			img[a+1] = '/'
			return img
		}, want: ErrCorrupt, msg: "holds NUL or /"},
		{name: "name with NUL", mutate: func(b *hbImage, img []byte) []byte {
			_, a := b.direntOff(hbRoot, "blockdev")
			img[a+1] = 0
			return img
		}, want: ErrCorrupt, msg: "holds NUL or /"},
		{name: "empty name", mutate: func(b *hbImage, img []byte) []byte {
			r, a := b.direntOff(hbRoot, "fifo")
			hbPut16(img, r+DirentSize+8, uint16(a-b.tailOff(hbRoot)))
			return img
		}, want: ErrCorrupt, msg: "outside the names area"},
		{name: "name inside the dirents", mutate: func(b *hbImage, img []byte) []byte {
			r, _ := b.direntOff(hbRoot, "fifo")
			hbPut16(img, r+8, 5)
			return img
		}, want: ErrCorrupt, msg: "outside the names area"},
		{name: "dirent type mismatch", mutate: func(b *hbImage, img []byte) []byte {
			r, _ := b.direntOff(hbRoot, "fifo")
			img[r+10] = FileTypeReg
			return img
		}, want: ErrCorrupt, msg: "/fifo: erofs: nid"},
		{name: "dirent type out of range", mutate: func(b *hbImage, img []byte) []byte {
			r, _ := b.direntOff(hbRoot, "fifo")
			img[r+10] = 9
			return img
		}, want: ErrCorrupt, msg: "file type 9"},
		{name: "dirent nid beyond the image", mutate: func(b *hbImage, img []byte) []byte {
			r, _ := b.direntOff(hbRoot, "fifo")
			hbPut64(img, r, 1<<40)
			return img
		}, want: ErrCorrupt, msg: "inode slot beyond"},
		{name: "dot elsewhere", mutate: func(b *hbImage, img []byte) []byte {
			r, _ := b.direntOff(hbRoot, ".")
			hbPut64(img, r, b.nodes[hbDir].nid)
			return img
		}, want: ErrCorrupt, msg: `"." names nid`},
		{name: "dotdot elsewhere", mutate: func(b *hbImage, img []byte) []byte {
			r, _ := b.direntOff(hbDir, "..")
			hbPut64(img, r, b.nodes[hbDir].nid)
			return img
		}, want: ErrCorrupt, msg: `".." names nid`},
		{name: "directory reached twice", mutate: func(b *hbImage, img []byte) []byte {
			r, _ := b.direntOff(hbRoot, "link")
			hbPut64(img, r, b.nodes[hbDir].nid)
			img[r+10] = FileTypeDir
			return img
		}, want: ErrCorrupt, msg: "directory reached a second time"},
		{name: "directory cycle", mutate: func(b *hbImage, img []byte) []byte {
			r, _ := b.direntOff(hbDir, "file")
			hbPut64(img, r, b.nodes[hbRoot].nid)
			img[r+10] = FileTypeDir
			return img
		}, want: ErrCorrupt, msg: "read /a-dir/file: erofs: nid 36: directory reached a second time"},
		{name: "directory link count", mutate: func(b *hbImage, img []byte) []byte {
			hbPut16(img, b.nodes[hbRoot].off+hbNlinkOff, 5)
			return img
		}, want: ErrCorrupt, msg: "5 links but 1 subdirectories"},
		{name: "directory without dot", mutate: func(b *hbImage, img []byte) []byte {
			_, a := b.direntOff(hbDir, ".")
			img[a] = '+'
			return img
		}, want: ErrCorrupt, msg: `lacks "." or ".."`},

		{name: "inline xattr overruns the area", mutate: func(b *hbImage, img []byte) []byte {
			n := b.nodes[hbFile]
			hbPut16(img, n.off+n.coreSize()+XattrIbodyHeaderSize+4*len(n.shared)+2, 200)
			return img
		}, want: ErrCorrupt, msg: "overrun the area"},
		{name: "shared ids overrun the area", mutate: func(b *hbImage, img []byte) []byte {
			n := b.nodes[hbRoot]
			img[n.off+n.coreSize()+4] = 200
			return img
		}, want: ErrCorrupt, msg: "200 shared xattr ids overrun"},
		{name: "shared id beyond the image", mutate: func(b *hbImage, img []byte) []byte {
			n := b.nodes[hbFile]
			hbPut32(img, n.off+n.coreSize()+XattrIbodyHeaderSize, 0xfffffff0)
			return img
		}, want: ErrCorrupt, msg: "shared xattr id 4294967280"},
		{name: "unknown xattr index", mutate: func(b *hbImage, img []byte) []byte {
			n := b.nodes[hbFile]
			img[n.off+n.coreSize()+XattrIbodyHeaderSize+4*len(n.shared)+1] = 9
			return img
		}, want: ErrCorrupt, msg: "unknown name index 9"},
		{name: "long xattr prefix", mutate: func(b *hbImage, img []byte) []byte {
			n := b.nodes[hbFile]
			img[n.off+n.coreSize()+XattrIbodyHeaderSize+4*len(n.shared)+1] = 0x81
			return img
		}, want: ErrCorrupt, msg: "long name prefix 1"},
		{name: "xattr name with NUL", mutate: func(b *hbImage, img []byte) []byte {
			n := b.nodes[hbFile]
			img[n.off+n.coreSize()+XattrIbodyHeaderSize+4*len(n.shared)+4] = 0
			return img
		}, want: ErrCorrupt, msg: "holds a NUL byte"},
		{name: "empty xattr name", build: func(b *hbImage) { b.nodes[hbFifo].xattrs = []hbXattr{{XattrIndexNone, "", "v"}} },
			want: ErrCorrupt, msg: "empty name"},
		{name: "xattr name too long", build: func(b *hbImage) {
			b.nodes[hbFifo].xattrs = []hbXattr{{XattrIndexTrusted, strings.Repeat("n", 250), "v"}}
		}, want: ErrCorrupt, msg: "258-byte name"},
		{name: "xattrs too large", build: func(b *hbImage) {
			for i := range 300 {
				b.nodes[hbFifo].xattrs = append(b.nodes[hbFifo].xattrs,
					hbXattr{XattrIndexUser, strings.Repeat("x", 3) + string(rune('a'+i%26)) + string(rune('a'+i/26)), strings.Repeat("v", 250)})
			}
		}, want: ErrCorrupt, msg: "xattrs take more than 32767 bytes"},
		{name: "redirect with NUL", build: func(b *hbImage) {
			b.nodes[hbChunked].xattrs[1].value = "/ab\x00def"
		}, want: ErrCorrupt, msg: "redirect of 7 bytes"},
		{name: "redirect too long", build: func(b *hbImage) {
			b.nodes[hbChunked].xattrs[1].value = "/" + strings.Repeat("a", MaxPayloadLen+1)
		}, want: ErrCorrupt, msg: "redirect of 4097 bytes"},
		{name: "special file size", mutate: func(b *hbImage, img []byte) []byte {
			hbPut32(img, b.nodes[hbFifo].off+hbSizeOff, 1)
			return img
		}, want: ErrCorrupt, msg: "special file of mode 010644 has size 1"},
		{name: "duplicate xattrs replace", build: func(b *hbImage) {
			b.nodes[hbFifo].xattrs = []hbXattr{{XattrIndexUser, "a", "1"}, {XattrIndexUser, "b", "2"}, {XattrIndexUser, "a", "3"}}
		}},

		{name: "chunk table maps a block", mutate: func(b *hbImage, img []byte) []byte {
			img[b.tailOff(hbChunked)] = 0
			return img
		}, want: ErrCorrupt, msg: "chunk 0 maps a block"},
		{name: "chunk indexes", mutate: func(b *hbImage, img []byte) []byte {
			img[b.nodes[hbChunked].off+hbUOff] |= ChunkFormatIndexes
			return img
		}, want: ErrUnsupported, msg: "chunk indexes"},
		{name: "chunk format bits", mutate: func(b *hbImage, img []byte) []byte {
			img[b.nodes[hbChunked].off+hbUOff] |= 0x80
			return img
		}, want: ErrUnsupported, msg: "chunk format 0x88"},
		{name: "too many chunks", mutate: func(b *hbImage, img []byte) []byte {
			img[b.nodes[hbChunked].off+hbUOff] = 0
			hbPut32(img, b.nodes[hbChunked].off+hbSizeOff, 0xffffffff)
			return img
		}, want: ErrCorrupt, msg: "1048576 chunks"},

		{name: "empty symlink", mutate: func(b *hbImage, img []byte) []byte {
			hbPut32(img, b.nodes[hbLink].off+hbSizeOff, 0)
			return img
		}, want: ErrCorrupt, msg: "symlink target of 0 bytes"},
		{name: "symlink with NUL", mutate: func(b *hbImage, img []byte) []byte {
			img[b.tailOff(hbLink)+2] = 0
			return img
		}, want: ErrCorrupt, msg: "holds a NUL byte"},
		{name: "linked whiteout", mutate: func(b *hbImage, img []byte) []byte {
			hbPut16(img, b.nodes[hbWhiteout0].off+hbNlinkOff, 2)
			return img
		}, want: ErrCorrupt, msg: "whiteout with 2 links"},
		{name: "inode count", mutate: func(b *hbImage, img []byte) []byte { hbPut64(img, sb+16, hbNodes+1); return img },
			want: ErrCorrupt, msg: "13 inodes reachable, superblock declares 14"},
		{name: "ACL flag", mutate: func(b *hbImage, img []byte) []byte { hbPut32(img, 8, 0); return img },
			want: ErrCorrupt, msg: "ACL flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := hbSample()
			if tt.build != nil {
				tt.build(b)
			}
			img := b.build()
			if tt.mutate != nil {
				img = tt.mutate(b, img)
			}
			_, _, err := ReadTree(bytes.NewReader(img), int64(len(img)))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v; want %v containing %q", err, tt.want, tt.msg)
			}
		})
	}
}

// TestReadTreeDuplicateXattrs checks libcomposefs' replacement order: the
// last xattr moves into the place of the one replaced.
func TestReadTreeDuplicateXattrs(t *testing.T) {
	b := hbSample()
	b.nodes[hbFifo].xattrs = []hbXattr{{XattrIndexUser, "a", "1"}, {XattrIndexUser, "b", "2"},
		{XattrIndexUser, "c", "3"}, {XattrIndexUser, "a", "4"}}
	img := b.build()
	root, _, err := ReadTree(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	got := root.Lookup("fifo").Inode.Xattrs
	if s := hbXattrString(got); s != "user.c=3 user.b=2 user.a=4" {
		t.Errorf("xattrs %s", s)
	}
}

func hbXattrString(xs []tree.Xattr) string {
	var parts []string
	for _, x := range xs {
		parts = append(parts, x.Name+"="+x.Value)
	}
	return strings.Join(parts, " ")
}

// TestReadTreeDepth checks that nesting is bounded.
func TestReadTreeDepth(t *testing.T) {
	for _, depth := range []int{maxDepth - 1, maxDepth} {
		b := &hbImage{}
		for i := range depth + 1 {
			n := &hbNode{mode: 0o40755}
			if i < depth {
				n.ents = []hbEnt{{"d", i + 1}}
			}
			b.nodes = append(b.nodes, n)
		}
		img := b.build()
		_, _, err := ReadTree(bytes.NewReader(img), int64(len(img)))
		if depth < maxDepth && err != nil {
			t.Errorf("depth %d: %v", depth, err)
		}
		if depth >= maxDepth && (!errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "nested")) {
			t.Errorf("depth %d: error %v", depth, err)
		}
	}
}
