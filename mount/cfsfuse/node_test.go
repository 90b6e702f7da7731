package cfsfuse

import (
	"bytes"
	"slices"
	"syscall"
	"testing"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/verity"
)

func TestValidRedirect(t *testing.T) {
	for _, c := range []struct {
		r  string
		ok bool
	}{
		{"/ab/cdef", true},
		{"/a", true},
		{"/a/./b", true},
		{"/a/../b", true},
		{"", false},
		{"/", false},
		{"//a", false},
		{"/a//b", false},
		{"/a/", false},
		{"a/b", false},
		{"/a\x00b", false},
	} {
		if got := validRedirect(c.r); got != c.ok {
			t.Errorf("validRedirect(%q) = %v, want %v", c.r, got, c.ok)
		}
	}
}

func TestExternal(t *testing.T) {
	digest := string(bytes.Repeat([]byte{0xab}, 32))
	for _, c := range []struct {
		name               string
		metacopy, redirect string
		hasRedirect        bool
		object             string
		digest             string
		alg                verity.Algorithm
		err                syscall.Errno
	}{
		{name: "plain", redirect: "/ab/cd", hasRedirect: true, object: "ab/cd"},
		{name: "digest", metacopy: "\x00\x24\x00\x01" + digest, redirect: "/ab/cd", hasRedirect: true,
			object: "ab/cd", digest: digest, alg: verity.SHA256},
		{name: "header only", metacopy: "\x00\x04\x00\x00", redirect: "/x", hasRedirect: true, object: "x"},
		{name: "unknown algorithm kept", metacopy: "\x00\x06\x00\x09ab", redirect: "/x", hasRedirect: true,
			object: "x", digest: "ab", alg: 9},
		{name: "no redirect", err: syscall.EIO},
		{name: "relative redirect", redirect: "cd", hasRedirect: true, err: syscall.EIO},
		{name: "empty redirect", redirect: "", hasRedirect: true, err: syscall.EINVAL},
		{name: "relative path redirect", redirect: "ab/cd", hasRedirect: true, err: syscall.EINVAL},
		{name: "double slash", redirect: "//ab", hasRedirect: true, err: syscall.EINVAL},
		{name: "short metacopy", metacopy: "\x00\x03\x00", redirect: "/x", hasRedirect: true, err: syscall.EIO},
		{name: "bad version", metacopy: "\x01\x04\x00\x00", redirect: "/x", hasRedirect: true, err: syscall.EIO},
		{name: "bad length", metacopy: "\x00\x05\x00\x00", redirect: "/x", hasRedirect: true, err: syscall.EIO},
		{name: "too long", metacopy: "\x00\x45\x00\x02" + digest + digest + "x", redirect: "/x", hasRedirect: true, err: syscall.EIO},
	} {
		n := &node{}
		n.external(c.metacopy, c.redirect, c.hasRedirect)
		if n.lookupErr != c.err || n.object != c.object || string(n.digest) != c.digest || n.alg != c.alg {
			t.Errorf("%s: err %v object %q digest %x alg %d, want %v %q %x %d", c.name,
				n.lookupErr, n.object, n.digest, n.alg, c.err, c.object, c.digest, c.alg)
		}
	}
}

// TestNodeView checks the mounted view of inodes: which xattrs are shown
// and under which name, whiteouts, and the data of external files.
func TestNodeView(t *testing.T) {
	digest := bytes.Repeat([]byte{7}, 32)
	file := func(xs ...tree.Xattr) *tree.Inode {
		return &tree.Inode{Mode: tree.TypeReg | 0o644, Nlink: 1, Xattrs: xs}
	}
	root := &tree.Inode{Mode: tree.TypeDir | 0o755, Nlink: 2}
	wh := &tree.Inode{Mode: tree.TypeDir | 0o755, Nlink: 2}
	entries := map[string]*tree.Inode{
		"plain": file(
			tree.Xattr{Name: "user.a", Value: "1"},
			tree.Xattr{Name: "trusted.b", Value: "2"},
			tree.Xattr{Name: "security.c", Value: "3"},
			tree.Xattr{Name: "trusted.overlay.redirect", Value: "/escaped"},
			tree.Xattr{Name: "user.overlay.opaque", Value: "y"},
			tree.Xattr{Name: "other.d", Value: "4"},
		),
		"acl":      file(tree.Xattr{Name: erofs.XattrPosixACLAccess, Value: "\x02\x00\x00\x00"}),
		"external": {Mode: tree.TypeReg | 0o600, Nlink: 1, Size: 5000, Payload: "ab/cdef", Digest: digest},
		"wh":       wh,
	}
	for name, n := range entries {
		if err := root.Insert(&tree.Dirent{Name: name, Inode: n}); err != nil {
			t.Fatal(err)
		}
	}
	root.Nlink++
	if err := wh.Insert(&tree.Dirent{Name: "gone", Inode: &tree.Inode{Mode: tree.TypeChr | 0o644, Nlink: 1}}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := erofs.Write(&buf, root, erofs.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	img, err := erofs.OpenBytes(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	look := func(dir *node, name string) *node {
		t.Helper()
		de, err := img.Lookup(&dir.ino, name)
		if err != nil {
			t.Fatal(err)
		}
		n, err := newNode(img, de.Nid, img.Info().HasACL)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	r, err := newNode(img, img.Root(), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.xattrs) != 0 || r.attr.Ino != img.Root() {
		t.Errorf("root: xattrs %q ino %d", r.xattrs, r.attr.Ino)
	}
	if n := look(r, "00"); !n.whiteout {
		t.Errorf("root whiteout 00 not hidden")
	}
	names := func(n *node) []string {
		var s []string
		for _, x := range n.xattrs {
			s = append(s, x.Name+"="+x.Value)
		}
		slices.Sort(s)
		return s
	}
	for _, c := range []struct {
		path []string
		want []string
	}{
		{[]string{"plain"}, []string{"security.c=3", "trusted.b=2", "trusted.overlay.redirect=/escaped", "user.a=1", "user.overlay.opaque=y"}},
		{[]string{"acl"}, []string{erofs.XattrPosixACLAccess + "=\x02\x00\x00\x00"}},
		{[]string{"external"}, nil},
		{[]string{"wh"}, []string{"trusted.overlay.opaque=x", "trusted.overlay.whiteouts=", "user.overlay.opaque=x", "user.overlay.whiteouts="}},
		{[]string{"wh", "gone"}, []string{"trusted.overlay.whiteout=", "user.overlay.whiteout="}},
	} {
		n := r
		for _, p := range c.path {
			n = look(n, p)
		}
		if got := names(n); !slices.Equal(got, c.want) {
			t.Errorf("%v: xattrs %q, want %q", c.path, got, c.want)
		}
		if n.whiteout || n.lookupErr != 0 {
			t.Errorf("%v: whiteout %v, lookup error %v", c.path, n.whiteout, n.lookupErr)
		}
	}
	ext := look(r, "external")
	if ext.object != "ab/cdef" || !bytes.Equal(ext.digest, digest) || ext.alg != verity.SHA256 || ext.attr.Size != 5000 || ext.attr.Blocks != 16 {
		t.Errorf("external: object %q digest %x alg %v size %d blocks %d", ext.object, ext.digest, ext.alg, ext.attr.Size, ext.attr.Blocks)
	}
	if gone := look(look(r, "wh"), "gone"); gone.attr.Mode != tree.TypeReg|0o644 || gone.attr.Size != 0 {
		t.Errorf("escaped whiteout: mode %o size %d", gone.attr.Mode, gone.attr.Size)
	}
}

func TestNodeCache(t *testing.T) {
	var c nodeCache
	a := &node{ino: erofs.Inode{Nid: 36}}
	b := &node{ino: erofs.Inode{Nid: 36 + nodeCacheSlots}}
	c.put(a)
	if c.get(36) != a || c.get(37) != nil {
		t.Fatal("cached node not found, or found under another nid")
	}
	c.put(b)
	if c.get(36) != nil || c.get(36+nodeCacheSlots) != b {
		t.Fatal("a colliding node does not replace the slot's node")
	}
}
