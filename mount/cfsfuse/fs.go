package cfsfuse

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/gocfs/gocfs/erofs"
)

// cacheTimeout is how long the kernel may cache entries, negative entries
// and attributes. The image never changes, so it could be forever; a day
// keeps the kernel's arithmetic far from any overflow.
const cacheTimeout = 24 * time.Hour

// fileSystem answers the kernel's FUSE requests for one image. Node ids
// are derived from nids (see nodeID), so the kernel's references need no
// bookkeeping (Forget does nothing) and the only per-inode state is the
// bounded node cache, with the listings of the directories in it: a full
// walk of a large image leaves little memory in use.
type fileSystem struct {
	fuse.RawFileSystem // ENOSYS for what a read-only image does not do

	img    *erofs.Image
	root   uint64
	acl    bool
	blocks uint64
	inodes uint64

	objs  *objectDirs
	nodes nodeCache
	files fileHandles
	back  backing
	logf  func(format string, args ...any)
}

func newFileSystem(img *erofs.Image, objs *objectDirs, logf func(string, ...any)) *fileSystem {
	info := img.Info()
	return &fileSystem{
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		img:           img,
		root:          img.Root(),
		acl:           info.HasACL,
		blocks:        uint64(info.Blocks),
		inodes:        info.Inodes,
		objs:          objs,
		logf:          logf,
	}
}

func (fsys *fileSystem) String() string { return "cfsmount" }

func (fsys *fileSystem) Init(s *fuse.Server) { fsys.back.server = s }

// FUSE reserves node id 1 for the root and 0 for "none"; other inodes get
// their nid plus 2, which no nid can turn into 0 or 1.
func (fsys *fileSystem) nodeID(nid uint64) uint64 {
	if nid == fsys.root {
		return fuse.FUSE_ROOT_ID
	}
	return nid + 2
}

func (fsys *fileSystem) nid(id uint64) uint64 {
	if id == fuse.FUSE_ROOT_ID {
		return fsys.root
	}
	return id - 2
}

// node returns the node of a FUSE node id.
func (fsys *fileSystem) node(id uint64) (*node, fuse.Status) {
	return fsys.nodeAt(fsys.nid(id))
}

func (fsys *fileSystem) nodeAt(nid uint64) (*node, fuse.Status) {
	if n := fsys.nodes.get(nid); n != nil {
		return n, fuse.OK
	}
	n, err := newNode(fsys.img, nid, fsys.acl)
	if err != nil {
		fsys.logf("%v", err)
		return nil, fuse.EIO
	}
	fsys.nodes.put(n)
	return n, fuse.OK
}

func (fsys *fileSystem) entry(n *node, out *fuse.EntryOut) {
	out.NodeId = fsys.nodeID(n.ino.Nid)
	out.Attr = n.attr
	out.SetEntryTimeout(cacheTimeout)
	out.SetAttrTimeout(cacheTimeout)
}

func (fsys *fileSystem) Lookup(cancel <-chan struct{}, header *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	dir, st := fsys.node(header.NodeId)
	if !st.Ok() {
		return st
	}
	switch {
	case !dir.isDir():
		return fuse.ENOTDIR
	case name == "." || name == "..":
		// The kernel resolves these itself.
		return fuse.ENOENT
	}
	de, err := fsys.img.Lookup(&dir.ino, name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fsys.negative(out)
	case err != nil:
		fsys.logf("%v", err)
		return fuse.EIO
	}
	n, st := fsys.nodeAt(de.Nid)
	switch {
	case !st.Ok():
		return st
	case n.whiteout:
		return fsys.negative(out)
	case n.lookupErr != 0:
		return fuse.Status(n.lookupErr)
	}
	fsys.entry(n, out)
	return fuse.OK
}

// negative answers a lookup of a name that does not exist so that the
// kernel caches its absence.
func (fsys *fileSystem) negative(out *fuse.EntryOut) fuse.Status {
	*out = fuse.EntryOut{}
	out.SetEntryTimeout(cacheTimeout)
	return fuse.OK
}

func (fsys *fileSystem) GetAttr(cancel <-chan struct{}, input *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	n, st := fsys.node(input.NodeId)
	if !st.Ok() {
		return st
	}
	out.Attr = n.attr
	out.SetTimeout(cacheTimeout)
	return fuse.OK
}

func (fsys *fileSystem) Readlink(cancel <-chan struct{}, header *fuse.InHeader) ([]byte, fuse.Status) {
	n, st := fsys.node(header.NodeId)
	if !st.Ok() {
		return nil, st
	}
	if !n.ino.IsSymlink() {
		return nil, fuse.EINVAL
	}
	target, err := fsys.img.ReadLink(&n.ino)
	if err != nil {
		fsys.logf("%v", err)
		return nil, fuse.EIO
	}
	return []byte(target), fuse.OK
}

func (fsys *fileSystem) StatFs(cancel <-chan struct{}, header *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	*out = fuse.StatfsOut{
		Blocks:  fsys.blocks,
		Files:   fsys.inodes,
		Bsize:   erofs.BlockSize,
		Frsize:  erofs.BlockSize,
		NameLen: erofs.MaxNameLen,
	}
	return fuse.OK
}

// xattrVisible reports whether the caller may see an xattr: trusted.* is
// for callers with CAP_SYS_ADMIN only, which the kernel enforces on
// getxattr but leaves to the filesystem in listxattr. Root stands in for
// the capability here.
func xattrVisible(c *fuse.Caller, name string) bool { return c.Uid == 0 || !privileged(name) }

func (fsys *fileSystem) GetXAttr(cancel <-chan struct{}, header *fuse.InHeader, name string, dest []byte) (uint32, fuse.Status) {
	n, st := fsys.node(header.NodeId)
	if !st.Ok() {
		return 0, st
	}
	v, ok := n.xattr(name)
	if !ok || !xattrVisible(&header.Caller, name) {
		return 0, fuse.ENOATTR
	}
	if len(dest) < len(v) {
		return uint32(len(v)), fuse.ERANGE
	}
	return uint32(copy(dest, v)), fuse.OK
}

func (fsys *fileSystem) ListXAttr(cancel <-chan struct{}, header *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	n, st := fsys.node(header.NodeId)
	if !st.Ok() {
		return 0, st
	}
	size := 0
	for _, x := range n.xattrs {
		if xattrVisible(&header.Caller, x.Name) {
			size += len(x.Name) + 1
		}
	}
	if len(dest) < size {
		return uint32(size), fuse.ERANGE
	}
	b := dest[:0]
	for _, x := range n.xattrs {
		if xattrVisible(&header.Caller, x.Name) {
			b = append(append(b, x.Name...), 0)
		}
	}
	return uint32(len(b)), fuse.OK
}

// A fileHandle is an open external file: its object.
type fileHandle struct {
	n *node
	f *os.File
	// passthrough is set when the kernel reads the object itself.
	passthrough bool
}

func (fsys *fileSystem) Open(cancel <-chan struct{}, input *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	n, st := fsys.node(input.NodeId)
	switch {
	case !st.Ok():
		return st
	case input.Flags&syscall.O_ACCMODE != syscall.O_RDONLY:
		return fuse.EROFS
	case !n.ino.IsReg():
		return fuse.EINVAL
	case n.object == "":
		// The data is in the image, which never changes: let the page
		// cache keep it across opens.
		out.OpenFlags = fuse.FOPEN_KEEP_CACHE
		return fuse.OK
	}
	f, errno := fsys.objs.open(n)
	if errno != 0 {
		return fuse.Status(errno)
	}
	h := &fileHandle{n: n, f: f}
	if id, ok := fsys.back.acquire(n.ino.Nid, f); ok {
		h.passthrough = true
		out.BackingID = id
		out.OpenFlags = fuse.FOPEN_PASSTHROUGH
	} else {
		out.OpenFlags = fuse.FOPEN_KEEP_CACHE
	}
	out.Fh = fsys.files.add(h)
	return fuse.OK
}

func (fsys *fileSystem) Read(cancel <-chan struct{}, input *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	var n *node
	var h *fileHandle
	if input.Fh != 0 {
		if h = fsys.files.get(input.Fh); h == nil {
			return nil, fuse.EBADF
		}
		n = h.n
	} else {
		var st fuse.Status
		if n, st = fsys.node(input.NodeId); !st.Ok() {
			return nil, st
		}
	}
	// Reads stop at the size the image gives, as the page cache does.
	if input.Offset >= n.ino.Size {
		return fuse.ReadResultData(nil), fuse.OK
	}
	size := int(min(uint64(input.Size), n.ino.Size-input.Offset, uint64(len(buf))))
	if h != nil {
		return fuse.ReadResultFd(h.f.Fd(), int64(input.Offset), size), fuse.OK
	}
	k, err := fsys.img.ReadAt(&n.ino, buf[:size], int64(input.Offset))
	if err != nil && err != io.EOF {
		fsys.logf("%v", err)
		return nil, fuse.EIO
	}
	return fuse.ReadResultData(buf[:k]), fuse.OK
}

// Flush has nothing to write back; ENOSYS tells the kernel not to send
// it again, which saves a round trip on every close.
func (fsys *fileSystem) Flush(cancel <-chan struct{}, input *fuse.FlushIn) fuse.Status {
	return fuse.ENOSYS
}

func (fsys *fileSystem) Release(cancel <-chan struct{}, input *fuse.ReleaseIn) {
	h := fsys.files.remove(input.Fh)
	if h == nil {
		return
	}
	if h.passthrough {
		fsys.back.release(h.n.ino.Nid)
	}
	h.f.Close()
}

// A directory listing is read from the image once, on the first READDIR,
// and then served by offset, so that listing a large directory costs
// linear time however many requests it takes. OPENDIR is refused with
// ENOSYS, which makes the kernel open directories without asking (saving
// two round trips per directory opened) and cache their listings itself.
type dirListing struct {
	once sync.Once
	ents []dirEntry
	err  fuse.Status
}

type dirEntry struct {
	name string
	nid  uint64
	mode uint32 // file type bits
}

// fileTypeMode maps EROFS dirent file types to st_mode type bits.
var fileTypeMode = [...]uint32{
	erofs.FileTypeReg:  syscall.S_IFREG,
	erofs.FileTypeDir:  syscall.S_IFDIR,
	erofs.FileTypeChr:  syscall.S_IFCHR,
	erofs.FileTypeBlk:  syscall.S_IFBLK,
	erofs.FileTypeFifo: syscall.S_IFIFO,
	erofs.FileTypeSock: syscall.S_IFSOCK,
	erofs.FileTypeLnk:  syscall.S_IFLNK,
}

func (fsys *fileSystem) OpenDir(cancel <-chan struct{}, input *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return fuse.ENOSYS
}

// entries returns the directory's entries as the kernel mount lists them:
// in on-disk order, "." and ".." included, whiteouts left out.
func (fsys *fileSystem) entries(dir *node) ([]dirEntry, fuse.Status) {
	l := dir.listing
	l.once.Do(func() {
		des, err := fsys.img.ReadDir(&dir.ino)
		if err != nil {
			fsys.logf("%v", err)
			l.err = fuse.EIO
			return
		}
		l.ents = make([]dirEntry, 0, len(des))
		for _, de := range des {
			if de.Type == erofs.FileTypeChr {
				c, st := fsys.nodeAt(de.Nid)
				if !st.Ok() {
					l.err = st
					return
				}
				if c.whiteout {
					continue
				}
			}
			l.ents = append(l.ents, dirEntry{name: de.Name, nid: de.Nid, mode: fileTypeMode[de.Type]})
		}
	})
	return l.ents, l.err
}

func (fsys *fileSystem) ReadDir(cancel <-chan struct{}, input *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return fsys.readDir(input, out, false)
}

func (fsys *fileSystem) ReadDirPlus(cancel <-chan struct{}, input *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return fsys.readDir(input, out, true)
}

func (fsys *fileSystem) readDir(input *fuse.ReadIn, out *fuse.DirEntryList, plus bool) fuse.Status {
	dir, st := fsys.node(input.NodeId)
	if !st.Ok() {
		return st
	}
	if !dir.isDir() {
		return fuse.ENOTDIR
	}
	ents, st := fsys.entries(dir)
	if !st.Ok() {
		return st
	}
	// The offset of an entry is its index plus one: the offset the
	// kernel passes back is where to continue.
	for i := input.Offset; i < uint64(len(ents)); i++ {
		e := &ents[i]
		de := fuse.DirEntry{Name: e.name, Ino: e.nid, Mode: e.mode, Off: i + 1}
		if !plus {
			if !out.AddDirEntry(de) {
				break
			}
			continue
		}
		eo := out.AddDirLookupEntry(de)
		if eo == nil {
			break
		}
		// The kernel takes no attributes for "." and "..", and an entry
		// left without a node id makes it look the name up when it is
		// used: that is how a file overlayfs fails to look up gets its
		// error.
		if e.name == "." || e.name == ".." {
			continue
		}
		if c, st := fsys.nodeAt(e.nid); st.Ok() && c.lookupErr == 0 {
			fsys.entry(c, eo)
		}
	}
	return fuse.OK
}

// fileHandles maps the handles given to the kernel to open external
// files. Handle 0 is never used: it marks files read from the image.
type fileHandles struct {
	mu   sync.Mutex
	next uint64
	m    map[uint64]*fileHandle
}

func (t *fileHandles) add(h *fileHandle) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[uint64]*fileHandle)
	}
	t.next++
	t.m[t.next] = h
	return t.next
}

func (t *fileHandles) get(id uint64) *fileHandle {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[id]
}

func (t *fileHandles) remove(id uint64) *fileHandle {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.m[id]
	delete(t.m, id)
	return h
}

// backing registers open objects with the kernel for FUSE passthrough,
// so that reading an external file costs no round trip through this
// process. The kernel allows one backing file per inode, so the
// registration is shared by the opens of an inode and dropped with the
// last. Registering needs CAP_SYS_ADMIN and a kernel with passthrough; the
// first failure turns it off and reads are then served here.
type backing struct {
	server *fuse.Server

	mu       sync.Mutex
	disabled bool
	ids      map[uint64]*backingID // by nid
}

type backingID struct {
	id   int32
	refs int
}

func (b *backing) acquire(nid uint64, f *os.File) (int32, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.disabled || b.server == nil {
		return 0, false
	}
	if r := b.ids[nid]; r != nil {
		r.refs++
		return r.id, true
	}
	id, errno := b.server.RegisterBackingFd(&fuse.BackingMap{Fd: int32(f.Fd())})
	if errno != 0 {
		b.disabled = true
		return 0, false
	}
	if b.ids == nil {
		b.ids = make(map[uint64]*backingID)
	}
	b.ids[nid] = &backingID{id: id, refs: 1}
	return id, true
}

func (b *backing) release(nid uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.ids[nid]
	if r == nil {
		return
	}
	if r.refs--; r.refs == 0 {
		b.server.UnregisterBackingFd(r.id)
		delete(b.ids, nid)
	}
}
