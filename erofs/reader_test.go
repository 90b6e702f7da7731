package erofs

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/erofs/tree"
)

// hbDump prints a tree one line per inode, in depth-first name order, with
// every field the reader sets; hardlink entries are marked with @.
func hbDump(root *tree.Inode) string {
	var sb strings.Builder
	line := func(p string, n *tree.Inode, hardlink bool) {
		at := ""
		if hardlink {
			at = "@"
		}
		content := fmt.Sprintf("%q", n.Content)
		if len(n.Content) > 64 {
			content = fmt.Sprintf("sha256:%x", sha256.Sum256(n.Content))
		}
		fmt.Fprintf(&sb, "%s %d %s%o %d %d %d %d %d.%d %q %s %x", p, n.Size, at, n.Mode, n.Nlink,
			n.UID, n.GID, n.Rdev, n.Mtime.Sec, n.Mtime.Nsec, n.Payload, content, n.Digest)
		for _, x := range n.Xattrs {
			fmt.Fprintf(&sb, " %s=%q", x.Name, x.Value)
		}
		sb.WriteByte('\n')
	}
	line("/", root, false)
	tree.Walk(root, func(p string, d *tree.Dirent) error {
		line("/"+p, d.Inode, d.Hardlink)
		return nil
	})
	return sb.String()
}

func TestReadTreeHandBuilt(t *testing.T) {
	img := hbSample().build()
	root, info, err := ReadTree(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	want := `/ 229 40755 3 0 0 0 1000.0 "" "" ` +
		` trusted.overlay.opaque="x" user.overlay.opaque="x" security.selinux="system_u:object_r:usr_t:s0"
/a-dir 60 40700 2 7 8 0 1000.0 "" "" 
/a-dir/file 6 100644 1 0 0 0 1000.0 "" "hello\n"  user.a="1" user.shared="v" security.selinux="system_u:object_r:usr_t:s0"
/a-dir/hard3 11 100600 3 0 0 0 1000.0 "" "shared data"  other.x="1" system.posix_acl_access="acl"
/blockdev 0 60600 1 0 0 2049 1000.0 "" "" 
/chunked 1048576 100755 1 0 0 0 1000.0 "ab/cdef" "" 3031323334353637383961626364656630313233343536373839616263646566
/escaped 0 20640 1 0 0 0 1000.0 "" "" 
/ext 0 100444 1 100000 0 0 5000.0 "" "" 
/fifo 0 10644 1 0 0 0 1000.0 "" "" 
/hard1 11 @100600 3 0 0 0 1000.0 "" "shared data"  other.x="1" system.posix_acl_access="acl"
/hard2 11 @100600 3 0 0 0 1000.0 "" "shared data"  other.x="1" system.posix_acl_access="acl"
/link 10 120777 1 0 0 0 1000.0 "a-dir/file" "" 
/zblock 4100 100644 1 0 0 0 1000.0 "" ` + fmt.Sprintf("sha256:%x", sha256.Sum256(hbSample().nodes[hbBlockFile].block)) + ` 
`
	if got := hbDump(root); got != want {
		t.Errorf("tree:\n%s\nwant:\n%s", got, want)
	}
	wantInfo := ImageInfo{Version: 0, Flags: FlagHasACL, HasACL: true, Inodes: hbNodes, RootNid: 36,
		BuildTime: tree.Timespec{Sec: 1000}, Blocks: uint32(len(img) / BlockSize), FeatureCompat: FeatureCompat}
	if *info != wantInfo {
		t.Errorf("info %+v, want %+v", *info, wantInfo)
	}
	// The three names of the hardlinked file share one inode.
	a := root.Lookup("a-dir").Inode.Lookup("hard3")
	if root.Lookup("hard1").Inode != a.Inode || root.Lookup("hard2").Inode != a.Inode || a.Hardlink {
		t.Error("hardlinks do not share the primary inode")
	}
}

// hbOpeners open an image both ways: in memory and through a ReaderAt.
var hbOpeners = map[string]func([]byte) (*Image, error){
	"bytes":    OpenBytes,
	"readerat": func(b []byte) (*Image, error) { return Open(hbReaderAt{bytes.NewReader(b)}, int64(len(b))) },
}

// hbReaderAt hides everything but ReadAt.
type hbReaderAt struct{ r io.ReaderAt }

func (h hbReaderAt) ReadAt(p []byte, off int64) (int, error) { return h.r.ReadAt(p, off) }

func TestImageLowLevel(t *testing.T) {
	b := hbSample()
	data := b.build()
	for name, open := range hbOpeners {
		t.Run(name, func(t *testing.T) {
			img, err := open(data)
			if err != nil {
				t.Fatal(err)
			}
			if img.Root() != b.nodes[hbRoot].nid || img.Size() != int64(len(data)) {
				t.Fatalf("root %d size %d", img.Root(), img.Size())
			}
			root, err := img.Inode(img.Root())
			if err != nil {
				t.Fatal(err)
			}
			ents, err := img.ReadDir(root)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range ents {
				names = append(names, e.Name)
				want := b.nodes[hbRoot].nid
				for _, he := range b.dirEntries(hbRoot) {
					if he.name == e.Name {
						want = b.nodes[he.node].nid
					}
				}
				if e.Nid != want {
					t.Errorf("%s: nid %d, want %d", e.Name, e.Nid, want)
				}
				got, err := img.Lookup(root, e.Name)
				if err != nil || got != e {
					t.Errorf("Lookup(%q) = %+v, %v; want %+v", e.Name, got, err, e)
				}
			}
			if got := strings.Join(names, " "); got != ". .. 00 01 a-dir blockdev chunked escaped ext fifo hard1 hard2 link zblock" {
				t.Errorf("entries %s", got)
			}
			for _, miss := range []string{"", "+", "0", "000", "a", "hard", "zz", "zblock0", "\xff"} {
				if _, err := img.Lookup(root, miss); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("Lookup(%q): %v, want ErrNotExist", miss, err)
				}
			}

			ino := func(i int) *Inode {
				t.Helper()
				n, err := img.Inode(b.nodes[i].nid)
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			file := ino(hbFile)
			xs, err := img.Xattrs(file)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(xs) != "[{user.a 1} {user.shared v} {security.selinux system_u:object_r:usr_t:s0}]" {
				t.Errorf("xattrs %v", xs)
			}
			if file.Mode != 0o100644 || file.Size != 6 || file.Layout != LayoutFlatInline || file.Extended || file.Ino != hbFile {
				t.Errorf("file inode %+v", file)
			}
			if ext := ino(hbExt); !ext.Extended || ext.Mtime.Sec != 5000 || ext.UID != 100000 {
				t.Errorf("extended inode %+v", ext)
			}
			if bd := ino(hbBlockdev); bd.Rdev != 0x0801 {
				t.Errorf("rdev %#x", bd.Rdev)
			}
			if target, err := img.ReadLink(ino(hbLink)); err != nil || target != "a-dir/file" {
				t.Errorf("ReadLink = %q, %v", target, err)
			}
			if _, err := img.ReadLink(file); err == nil {
				t.Error("ReadLink of a regular file succeeded")
			}

			bf := ino(hbBlockFile)
			want := b.nodes[hbBlockFile].block
			for _, c := range []struct{ off, n int }{{0, 4100}, {0, 5000}, {4095, 2}, {4096, 4}, {4099, 10}, {4100, 1}, {5000, 1}} {
				p := make([]byte, c.n)
				n, err := img.ReadAt(bf, p, int64(c.off))
				end := min(c.off+c.n, len(want))
				wantN := max(end-c.off, 0)
				if n != wantN || !bytes.Equal(p[:n], want[min(c.off, len(want)):end]) {
					t.Errorf("ReadAt(%d, %d) = %d, %v", c.off, c.n, n, err)
				}
				if (c.off+c.n >= len(want)) != (err == io.EOF) || (err != nil && err != io.EOF) {
					t.Errorf("ReadAt(%d, %d): err %v", c.off, c.n, err)
				}
			}
			f, err := img.OpenFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := io.ReadAll(f); err != nil || string(got) != "hello\n" {
				t.Errorf("OpenFile: %q, %v", got, err)
			}

			ch := ino(hbChunked)
			if ch.Layout != LayoutChunkBased || ch.ChunkBits != 20 || ch.ChunkCount() != 1 {
				t.Errorf("chunked inode %+v", ch)
			}
			if tab, err := img.ChunkTable(ch); err != nil || len(tab) != 1 || tab[0] != NullAddr {
				t.Errorf("ChunkTable = %v, %v", tab, err)
			}
			if _, err := img.ReadAt(ch, make([]byte, 1), 0); !errors.Is(err, ErrNoData) {
				t.Errorf("ReadAt of a chunk-based file: %v", err)
			}
			if _, err := img.ReadDir(file); err == nil {
				t.Error("ReadDir of a file succeeded")
			}
		})
	}
}

// hbFailingReaderAt fails every read that reaches past limit.
type hbFailingReaderAt struct {
	r     io.ReaderAt
	limit int64
}

var errHbIO = errors.New("injected I/O error")

func (h hbFailingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > h.limit {
		return 0, errHbIO
	}
	return h.r.ReadAt(p, off)
}

func TestReadErrors(t *testing.T) {
	b := hbSample()
	img := b.build()
	if _, _, err := ReadTree(bytes.NewReader(img), int64(len(img))+BlockSize); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("image shorter than its size: %v", err)
	}
	if _, _, err := ReadTree(bytes.NewReader(img), -1); err == nil {
		t.Error("negative size accepted")
	}
	if _, err := Open(nil, 0); err == nil {
		t.Error("nil reader accepted")
	}
	// Reads beyond the first block fail: the superblock and root are
	// there, the rest gives the injected error.
	at := hbFailingReaderAt{bytes.NewReader(img), BlockSize}
	im, err := Open(at, int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadTree(at, int64(len(img))); !errors.Is(err, errHbIO) {
		t.Errorf("ReadTree: %v, want the reader's error", err)
	}
	f, err := im.Inode(b.nodes[hbBlockFile].nid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.ReadAt(f, make([]byte, 10), 0); !errors.Is(err, errHbIO) {
		t.Errorf("ReadAt: %v, want the reader's error", err)
	}
}
