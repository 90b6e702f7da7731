package cfsfuse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/store/objects"
	"github.com/gocfs/gocfs/verity"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root for kernel EROFS and overlay mounts")
	}
}

// writeImage writes the image of root to a file in dir.
func writeImage(t testing.TB, dir string, root *tree.Inode, opts erofs.WriteOptions) string {
	t.Helper()
	p := filepath.Join(dir, "image.cfs")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := erofs.Write(f, root, opts); err != nil {
		t.Fatalf("writing image: %v", err)
	}
	return p
}

func loadImage(t testing.TB, p string) *erofs.Image {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := ReadImage(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// publicTempDir returns a new temporary directory that every user can
// reach, for the tests that look at mounts as another user.
func publicTempDir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{filepath.Dir(d), d} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// mountFUSE serves the image at imgPath on a new directory until the test
// ends.
func mountFUSE(t testing.TB, imgPath string, opts Options) string {
	t.Helper()
	mnt := filepath.Join(publicTempDir(t), "fuse")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	srv, err := Mount(mnt, loadImage(t, imgPath), opts)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("Unmount: %v", err)
		}
		srv.Wait()
	})
	return mnt
}

// mountKernel mounts the image with the kernel, EROFS under overlayfs with
// the object directories as data-only layers, as mount.composefs does.
func mountKernel(t testing.TB, imgPath string, objectDirs ...string) string {
	t.Helper()
	requireRoot(t)
	work := publicTempDir(t)
	lower := filepath.Join(work, "lower")
	mnt := filepath.Join(work, "kernel")
	for _, d := range []string{lower, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount(imgPath, lower, "erofs", unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("mount erofs %s: %v", imgPath, err)
	}
	t.Cleanup(func() { unix.Unmount(lower, unix.MNT_DETACH) })
	opts := "ro,metacopy=on,redirect_dir=on,lowerdir=" + lower + "::" + strings.Join(objectDirs, "::")
	if err := unix.Mount("composefs", mnt, "overlay", unix.MS_RDONLY, opts); err != nil {
		t.Fatalf("mount overlay %s: %v", opts, err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	return mnt
}

// fileInfo is what a walk sees of one path.
type fileInfo struct {
	Err      string // lstat error; nothing else is filled in then
	Mode     uint32
	UID, GID uint32
	Nlink    uint64
	Size     int64
	Blocks   int64
	Blksize  int64
	Ino      uint64
	Rdev     uint64
	Atime    unix.Timespec
	Mtime    unix.Timespec
	Ctime    unix.Timespec
	Target   string
	Xattrs   []string // name=value, in listing order
	Data     string   // sha256 of the content, or the error reading it
	Dirents  []string // "name ino type", in getdents order
}

// snapshot maps slash-separated paths ("/" is the root) to what they show.
type snapshot map[string]*fileInfo

// takeSnapshot walks the tree at root: everything lstat, getdents,
// listxattr, getxattr and readlink report, then the content of every
// regular file. Contents are read after all metadata, so that opening a
// file cannot change what stat reports for it (overlayfs reports a
// metacopy file's blocks from its data once opened). Errors are part of
// what a tree shows, so they are recorded, not reported.
func takeSnapshot(root string) snapshot {
	s := snapshot{}
	var files []string
	var walk func(rel string)
	walk = func(rel string) {
		p := filepath.Join(root, rel)
		fi := &fileInfo{}
		s[rel] = fi
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			fi.Err = err.Error()
			return
		}
		*fi = fileInfo{
			Mode: st.Mode, UID: st.Uid, GID: st.Gid, Nlink: st.Nlink, Size: st.Size,
			Blocks: st.Blocks, Blksize: st.Blksize, Ino: st.Ino, Rdev: st.Rdev,
			Atime: st.Atim, Mtime: st.Mtim, Ctime: st.Ctim,
		}
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			// The kernel reports the block size of the host's device with
			// that number, when there is one: not a property of the image.
			fi.Blksize = 0
		}
		fi.Xattrs = listXattrs(p)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				target = "error: " + errnoString(err)
			}
			fi.Target = target
		case unix.S_IFREG:
			files = append(files, rel)
		case unix.S_IFDIR:
			ents, err := readDirents(p)
			if err != nil {
				fi.Dirents = []string{"error: " + errnoString(err)}
			}
			for _, e := range ents {
				fi.Dirents = append(fi.Dirents, fmt.Sprintf("%q %d %d", e.name, e.ino, e.typ))
			}
			for _, e := range ents {
				if e.name != "." && e.name != ".." {
					walk(path.Join(rel, e.name))
				}
			}
		}
	}
	walk("/")
	buf := make([]byte, 1<<20)
	for _, rel := range files {
		s[rel].Data = contentSum(filepath.Join(root, rel), buf)
	}
	return s
}

func contentSum(p string, buf []byte) string {
	f, err := os.Open(p)
	if err != nil {
		return "error: " + errnoString(err)
	}
	defer f.Close()
	h := newContentHash()
	n, err := io.CopyBuffer(h, onlyReader{f}, buf)
	if err != nil {
		return "error: " + errnoString(err)
	}
	return contentString(h, n)
}

// contentTable is for the content digests of the snapshots, which cover
// gigabytes: CRC-32C, which the CPU computes, with the length guards
// against mistakes, not against an adversary.
var contentTable = crc32.MakeTable(crc32.Castagnoli)

func newContentHash() hash.Hash32 { return crc32.New(contentTable) }

func contentString(h hash.Hash32, n int64) string {
	return fmt.Sprintf("%d bytes crc32c %08x", n, h.Sum32())
}

// onlyReader hides every method but Read, so that io.CopyBuffer uses the
// buffer it is given.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func errnoString(err error) string {
	var e unix.Errno
	if errors.As(err, &e) {
		return e.Error()
	}
	return err.Error()
}

func sum(b []byte) string {
	h := newContentHash()
	h.Write(b)
	return contentString(h, int64(len(b)))
}

type dirent struct {
	name string
	ino  uint64
	typ  uint8
}

// readDirents returns what getdents64 reports, "." and ".." included, in
// order.
func readDirents(p string) ([]dirent, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var ents []dirent
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return ents, nil
		}
		for b := buf[:n]; len(b) > 0; {
			// struct linux_dirent64: ino, off, reclen, type, name.
			reclen := int(binary.NativeEndian.Uint16(b[16:]))
			name := b[19:reclen]
			name = name[:bytes.IndexByte(name, 0)]
			ents = append(ents, dirent{name: string(name), ino: binary.NativeEndian.Uint64(b), typ: b[18]})
			b = b[reclen:]
		}
	}
}

// listXattrs returns each xattr listed, with its value or the error
// reading it.
func listXattrs(p string) []string {
	var buf [64 << 10]byte
	n, err := unix.Llistxattr(p, buf[:])
	if err != nil {
		return []string{"error: " + errnoString(err)}
	}
	var xs []string
	for name := range strings.SplitSeq(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		var v [64 << 10]byte
		m, err := unix.Lgetxattr(p, name, v[:])
		if err != nil {
			xs = append(xs, fmt.Sprintf("%s error: %v", name, err))
			continue
		}
		xs = append(xs, name+"="+strconv.Quote(string(v[:m])))
	}
	return xs
}

// compareExact checks that two mounts show exactly the same.
func compareExact(t testing.TB, what string, got, want snapshot) {
	t.Helper()
	r := &reporter{t: t, what: what}
	for _, p := range sortedKeys(want) {
		g, ok := got[p]
		if !ok {
			r.errorf("%q: missing", p)
			continue
		}
		if g2, w2 := fmt.Sprintf("%+v", *g), fmt.Sprintf("%+v", *want[p]); g2 != w2 {
			r.errorf("%q:\n got %s\nwant %s", p, g2, w2)
		}
	}
	for _, p := range sortedKeys(got) {
		if _, ok := want[p]; !ok {
			r.errorf("%q: unexpected", p)
		}
	}
	r.done(len(want))
}

// compareExpected checks a mount against what a source tree says it
// shows. Inode numbers must group paths as the source does (hardlinks
// share one, nothing else does); directory sizes, blocks, atime and ctime
// depend on the filesystem and are not compared, nor are dirent inode
// numbers.
func compareExpected(t testing.TB, what string, got, want snapshot) {
	t.Helper()
	r := &reporter{t: t, what: what}
	ino := map[uint64]uint64{}  // wanted id -> inode number seen
	back := map[uint64]uint64{} // inode number seen -> wanted id
	for _, p := range sortedKeys(want) {
		w := want[p]
		g, ok := got[p]
		if !ok {
			r.errorf("%q: missing", p)
			continue
		}
		if g.Err != "" || w.Err != "" {
			if g.Err != w.Err {
				r.errorf("%s: lstat error %q, want %q", p, g.Err, w.Err)
			}
			continue
		}
		if i, ok := ino[w.Ino]; ok && i != g.Ino {
			r.errorf("%s: inode %d, want %d like its hardlinks", p, g.Ino, i)
		}
		if id, ok := back[g.Ino]; ok && id != w.Ino {
			r.errorf("%s: inode %d shared with a different file", p, g.Ino)
		}
		ino[w.Ino], back[g.Ino] = g.Ino, w.Ino
		isDir := w.Mode&unix.S_IFMT == unix.S_IFDIR
		gs, ws := *g, *w
		gs.Dirents = nil
		for _, d := range g.Dirents {
			// Only the quoted name, without inode number and type.
			gs.Dirents = append(gs.Dirents, d[:strings.LastIndexByte(d[:strings.LastIndexByte(d, ' ')], ' ')])
		}
		for _, f := range []*fileInfo{&gs, &ws} {
			f.Ino, f.Blocks, f.Blksize, f.Atime, f.Ctime = 0, 0, 0, unix.Timespec{}, unix.Timespec{}
			f.Xattrs = slices.Sorted(slices.Values(f.Xattrs))
			if isDir {
				f.Size = 0
			}
		}
		if g2, w2 := fmt.Sprintf("%+v", gs), fmt.Sprintf("%+v", ws); g2 != w2 {
			r.errorf("%q:\n got %s\nwant %s", p, g2, w2)
		}
	}
	for _, p := range sortedKeys(got) {
		if _, ok := want[p]; !ok {
			r.errorf("%q: unexpected", p)
		}
	}
	r.done(len(want))
}

// reporter limits how many differences a comparison prints.
type reporter struct {
	t    testing.TB
	what string
	n    int
}

func (r *reporter) errorf(format string, args ...any) {
	r.t.Helper()
	if r.n++; r.n <= 20 {
		r.t.Errorf("%s: "+format, append([]any{r.what}, args...)...)
	}
}

func (r *reporter) done(entries int) {
	r.t.Helper()
	if r.n > 20 {
		r.t.Errorf("%s: %d more differences", r.what, r.n-20)
	}
	r.t.Logf("%s: compared %d paths", r.what, entries)
}

func sortedKeys(s snapshot) []string {
	ks := make([]string, 0, len(s))
	for k := range s {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// expectTree returns what a mount of the image of root shows root, as the
// composefs format and overlayfs define it. data returns the content
// digest of an external file.
func expectTree(root *tree.Inode, info erofs.ImageInfo, data func(p string, n *tree.Inode) string) snapshot {
	s := snapshot{}
	ids := map[*tree.Inode]uint64{}
	var visit func(p string, n *tree.Inode)
	visit = func(p string, n *tree.Inode) {
		id, ok := ids[n]
		if !ok {
			id = uint64(len(ids) + 1)
			ids[n] = id
		}
		fi := &fileInfo{
			Mode: n.Mode & 0xffff, UID: n.UID, GID: n.GID, Nlink: uint64(n.Nlink), Ino: id,
			Mtime: unix.Timespec{Sec: n.Mtime.Sec, Nsec: int64(n.Mtime.Nsec)},
		}
		s[p] = fi
		xs := map[string]string{}
		for _, x := range n.Xattrs {
			xs[x.Name] = x.Value
		}
		switch n.Type() {
		case tree.TypeReg:
			fi.Size = int64(n.Size)
			switch {
			case n.Content != nil:
				fi.Data = sum(n.Content)
			case n.Size == 0:
				fi.Data = sum(nil)
			case n.Payload == "":
				// A metacopy file without a redirect: overlayfs finds no
				// data for it and fails its lookup.
				*fi = fileInfo{Err: unix.EIO.Error()}
				return
			default:
				fi.Data = data(p, n)
			}
		case tree.TypeLnk:
			fi.Size = int64(len(n.Payload))
			fi.Target = n.Payload
		case tree.TypeChr, tree.TypeBlk:
			fi.Rdev = n.Rdev
			if n.IsWhiteout() {
				fi.Mode = unix.S_IFREG | fi.Mode&^unix.S_IFMT
				fi.Rdev = 0
				fi.Data = sum(nil)
				xs[erofs.OverlayPrefix+"whiteout"] = ""
				xs[erofs.XattrUserWhiteout] = ""
			}
		case tree.TypeDir:
			fi.Nlink = 2
			names := []string{".", ".."}
			whiteouts := false
			for _, d := range n.Entries {
				names = append(names, d.Name)
				switch {
				case d.Inode.IsDir():
					fi.Nlink++
				case d.Inode.IsWhiteout():
					whiteouts = true
				}
			}
			slices.Sort(names)
			for _, name := range names {
				fi.Dirents = append(fi.Dirents, fmt.Sprintf("%q", name))
			}
			if whiteouts {
				xs[erofs.OverlayPrefix+"whiteouts"] = ""
				xs[erofs.XattrUserWhiteouts] = ""
				if info.Version >= 1 {
					xs[erofs.XattrOpaque] = "x"
					xs[erofs.XattrUserOpaque] = "x"
				}
			}
		}
		for name, v := range xs {
			acl := name == erofs.XattrPosixACLAccess || name == erofs.XattrPosixACLDefault
			switch {
			case acl && !info.HasACL, !acl && !strings.HasPrefix(name, "user.") &&
				!strings.HasPrefix(name, "trusted.") && !strings.HasPrefix(name, "security."):
				continue
			}
			if strings.HasPrefix(name, "user.") && !n.IsReg() && !n.IsDir() && !n.IsWhiteout() {
				// Listed, but the kernel reads user.* xattrs of
				// regular files and directories only.
				fi.Xattrs = append(fi.Xattrs, name+" error: "+unix.ENODATA.Error())
				continue
			}
			fi.Xattrs = append(fi.Xattrs, name+"="+strconv.Quote(v))
		}
		if n.IsDir() {
			for _, d := range n.Entries {
				visit(path.Join(p, d.Name), d.Inode)
			}
		}
	}
	visit("/", root)
	return s
}

// synthObjects gives the external files of a tree content of their size
// and stores it, under its fs-verity digest, in an object directory:
// a 16-byte marker of the object at each MiB and at the end, zeros (holes)
// elsewhere, so that even multi-GiB trees cost little disk and time. Files
// naming the same object and size share content.
type synthObjects struct {
	dir   string
	sums  map[string]string // object path -> content digest
	count uint64
	buf   []byte
}

func newSynthObjects(t testing.TB) *synthObjects {
	t.Helper()
	return &synthObjects{dir: fastTempDir(t), sums: map[string]string{}}
}

// fastTempDir returns a temporary directory on a tmpfs if the system has
// one at the usual place: object stores of tens of thousands of files are
// created there many times faster than on a disk filesystem. Images must
// not go there: the kernel mounts EROFS images from files on block-backed
// filesystems only.
func fastTempDir(t testing.TB) string {
	t.Helper()
	var st unix.Statfs_t
	if unix.Statfs("/dev/shm", &st) != nil || st.Type != unix.TMPFS_MAGIC {
		return t.TempDir()
	}
	d, err := os.MkdirTemp("/dev/shm", "cfsfuse-test")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// fill replaces the payload and digest of every external file below root.
func (s *synthObjects) fill(t testing.TB, root *tree.Inode) {
	t.Helper()
	rewritten := map[*tree.Inode]bool{}
	byKey := map[string][2]string{} // old payload and size -> new payload and digest
	err := tree.Walk(root, func(_ string, d *tree.Dirent) error {
		n := d.Inode
		if !n.IsReg() || n.Content != nil || n.Size == 0 || n.Payload == "" || rewritten[n] {
			return nil
		}
		rewritten[n] = true
		key := fmt.Sprintf("%s\x00%d", n.Payload, n.Size)
		if v, ok := byKey[key]; ok {
			n.Payload, n.Digest = v[0], []byte(v[1])
			return nil
		}
		digest, err := s.write(int64(n.Size))
		if err != nil {
			return err
		}
		n.Payload, n.Digest = objects.Path(digest), digest
		byKey[key] = [2]string{n.Payload, string(digest)}
		return nil
	})
	if err != nil {
		t.Fatalf("writing objects: %v", err)
	}
}

const markerStride = 1 << 20

// marker returns the marker of object seed at offset off; the end marker
// has offset ^0.
func marker(seed, off uint64) []byte {
	var m [16]byte
	binary.LittleEndian.PutUint64(m[:], seed)
	binary.LittleEndian.PutUint64(m[8:], off)
	return m[:]
}

// markers calls fn with each marker of an object of size bytes and where
// it goes, in the order they are written: later ones overwrite earlier
// ones where they overlap, and none reaches beyond size.
func markers(seed uint64, size int64, fn func(m []byte, off int64)) {
	for off := int64(0); off < size; off += markerStride {
		fn(marker(seed, uint64(off))[:min(16, size-off)], off)
	}
	if size >= 16 {
		fn(marker(seed, ^uint64(0)), size-16)
	}
}

// write stores a new object of size bytes and returns its digest. The
// content is hashed as it is generated, one stride at a time, and the file
// gets only the markers and its size, so that its zeros are holes.
func (s *synthObjects) write(size int64) ([]byte, error) {
	s.count++
	seed := s.count
	if s.buf == nil {
		s.buf = make([]byte, markerStride)
	}
	h := verity.New(verity.SHA256)
	c := newContentHash()
	for start := int64(0); start < size; start += markerStride {
		chunk := s.buf[:min(markerStride, size-start)]
		clear(chunk)
		markers(seed, size, func(m []byte, off int64) {
			if off < start+int64(len(chunk)) && off+int64(len(m)) > start {
				lo := max(off, start)
				copy(chunk[lo-start:], m[lo-off:])
			}
		})
		h.Write(chunk)
		c.Write(chunk)
	}
	digest := h.Sum(nil)
	name := objects.Path(digest)
	if err := os.MkdirAll(filepath.Join(s.dir, name[:2]), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	markers(seed, size, func(m []byte, off int64) {
		if err == nil {
			_, err = f.WriteAt(m, off)
		}
	})
	if err == nil {
		err = f.Truncate(size)
	}
	if err != nil {
		return nil, err
	}
	s.sums[name] = contentString(c, size)
	return digest, nil
}

// data is the content digest of an external file for expectTree.
func (s *synthObjects) data(_ string, n *tree.Inode) string { return s.sums[n.Payload] }
