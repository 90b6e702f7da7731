package ostree

import (
	"bytes"
	"fmt"

	"github.com/gocfs/gocfs/erofs/tree"
)

// Root names a tree: its root dirtree and dirmeta, what a commit points to.
type Root struct {
	Tree string
	Meta string
}

// FileFunc stores the content object of the regular file n, found at path
// ("/"-separated, from the root, with a leading "/"), and returns its
// checksum.
type FileFunc func(path string, n *tree.Inode) (string, error)

// FileMetaOf returns the metadata of a regular file or symlink of a tree.
// Modes keep only the file type and permission bits.
func FileMetaOf(n *tree.Inode) *FileMeta {
	m := &FileMeta{UID: n.UID, GID: n.GID, Mode: n.Mode & (typeMask | permsMask), Xattrs: n.Xattrs}
	if n.IsSymlink() {
		m.Target = n.Payload
	}
	return m
}

// WriteTree stores the tree rooted at root and returns its root dirtree
// and dirmeta. Directories and symlinks are written here; regular files by
// files, or, when files is nil, from their inline Content (a regular file
// without content must then be empty). An inode reached through several
// names (a hardlink) is stored once. Names and symlink targets must be valid
// UTF-8, and the tree may hold only directories, regular files and symlinks:
// anything else is an error naming its path.
func (r *Repo) WriteTree(root *tree.Inode, files FileFunc) (Root, error) {
	return writeTree(r, root, files)
}

// ChecksumTree returns the root dirtree and dirmeta WriteTree would give the
// tree, writing nothing. files is called as by WriteTree and must only
// compute checksums.
func ChecksumTree(root *tree.Inode, files FileFunc) (Root, error) {
	return writeTree(nil, root, files)
}

func writeTree(r *Repo, root *tree.Inode, files FileFunc) (Root, error) {
	if root == nil || !root.IsDir() {
		return Root{}, fmt.Errorf("ostree: write tree: the root is not a directory")
	}
	w := &treeWriter{r: r, files: files, sums: map[*tree.Inode]string{}, metas: map[string]bool{}}
	return w.dir("", root)
}

// treeWriter writes a tree's objects into r, or, when r is nil, only
// computes their checksums.
type treeWriter struct {
	r     *Repo
	files FileFunc
	sums  map[*tree.Inode]string // content checksums of inodes written
	metas map[string]bool        // dirmeta objects written
}

func (w *treeWriter) metadata(t ObjectType, b []byte) (string, error) {
	if w.r == nil {
		return sha256Hex(b), nil
	}
	return w.r.writeMetadata(t, b)
}

func (w *treeWriter) writeFile(m *FileMeta, content []byte) (string, error) {
	if w.r == nil {
		return ContentChecksum(m, bytes.NewReader(content))
	}
	return w.r.WriteFile(m, bytes.NewReader(content))
}

func (w *treeWriter) dir(path string, n *tree.Inode) (Root, error) {
	var dt DirTree
	for _, d := range n.Entries {
		p := path + "/" + d.Name
		if err := ValidName(d.Name); err != nil {
			return Root{}, fmt.Errorf("ostree: %q: %w", p, err)
		}
		c := d.Inode
		switch {
		case c.IsDir():
			if d.Hardlink {
				return Root{}, fmt.Errorf("ostree: %q: hardlinked directory: %w", p, ErrInvalid)
			}
			sub, err := w.dir(p, c)
			if err != nil {
				return Root{}, err
			}
			dt.Dirs = append(dt.Dirs, DirEntry{Name: d.Name, Tree: sub.Tree, Meta: sub.Meta})
		case c.IsReg() || c.IsSymlink():
			sum, err := w.file(p, c)
			if err != nil {
				return Root{}, err
			}
			dt.Files = append(dt.Files, FileEntry{Name: d.Name, Checksum: sum})
		default:
			return Root{}, fmt.Errorf("ostree: %q: file type %#o cannot be stored in ostree: %w", p, c.Type(), ErrInvalid)
		}
	}
	b, err := dt.MarshalBinary()
	if err != nil {
		return Root{}, fmt.Errorf("ostree: %q: %w", path+"/", err)
	}
	tc, err := w.metadata(ObjDirTree, b)
	if err != nil {
		return Root{}, err
	}
	b, err = (&DirMeta{UID: n.UID, GID: n.GID, Mode: n.Mode & (typeMask | permsMask), Xattrs: n.Xattrs}).MarshalBinary()
	if err != nil {
		return Root{}, fmt.Errorf("ostree: %q: %w", path+"/", err)
	}
	mc, err := w.dirMeta(b)
	if err != nil {
		return Root{}, err
	}
	return Root{Tree: tc, Meta: mc}, nil
}

func (w *treeWriter) dirMeta(b []byte) (string, error) {
	if w.metas[string(b)] {
		return sha256Hex(b), nil
	}
	c, err := w.metadata(ObjDirMeta, b)
	if err == nil {
		w.metas[string(b)] = true
	}
	return c, err
}

func (w *treeWriter) file(path string, n *tree.Inode) (string, error) {
	if c, ok := w.sums[n]; ok {
		return c, nil
	}
	var c string
	var err error
	switch {
	case n.IsSymlink():
		c, err = w.writeFile(FileMetaOf(n), nil)
	case w.files != nil:
		c, err = w.files(path, n)
	case n.Content == nil && n.Size != 0:
		err = fmt.Errorf("regular file of %d bytes without content: %w", n.Size, ErrInvalid)
	case n.Content != nil && uint64(len(n.Content)) != n.Size:
		err = fmt.Errorf("%d bytes of content for size %d: %w", len(n.Content), n.Size, ErrInvalid)
	default:
		c, err = w.writeFile(FileMetaOf(n), n.Content)
	}
	if err != nil {
		return "", fmt.Errorf("ostree: %q: %w", path, err)
	}
	w.sums[n] = c
	return c, nil
}

// ReadTree reads the tree a root dirtree and dirmeta describe, as ostree
// builds its composefs images of it: every name its own inode (nlink 1,
// mtime 0); regular files with their Size and, when not empty, their object
// as Payload (LoosePath, relative to objects/); symlinks with their target
// as Payload. Content is not read.
func (r *Repo) ReadTree(root Root) (*tree.Inode, error) {
	rd := &treeReader{r: r, metas: map[string]*DirMeta{}, files: map[string]*tree.Inode{}}
	return rd.dir("", root, 0)
}

// maxTreeDepth bounds directory nesting, against dirtrees that name
// themselves.
const maxTreeDepth = 1024

type treeReader struct {
	r     *Repo
	metas map[string]*DirMeta
	files map[string]*tree.Inode // content objects read, copied for each name
}

func (rd *treeReader) dir(path string, root Root, depth int) (*tree.Inode, error) {
	if depth > maxTreeDepth {
		return nil, fmt.Errorf("ostree: %q: directories nested deeper than %d", path+"/", maxTreeDepth)
	}
	dm, ok := rd.metas[root.Meta]
	if !ok {
		var err error
		if dm, err = rd.r.ReadDirMeta(root.Meta); err != nil {
			return nil, fmt.Errorf("%w (directory %q)", err, path+"/")
		}
		rd.metas[root.Meta] = dm
	}
	dt, err := rd.r.ReadDirTree(root.Tree)
	if err != nil {
		return nil, fmt.Errorf("%w (directory %q)", err, path+"/")
	}
	n := &tree.Inode{Mode: dm.Mode, UID: dm.UID, GID: dm.GID, Nlink: 1, Xattrs: dm.Xattrs}
	for _, f := range dt.Files {
		c, err := rd.file(f.Checksum)
		if err != nil {
			return nil, fmt.Errorf("%w (file %q)", err, path+"/"+f.Name)
		}
		if err := n.Insert(&tree.Dirent{Name: f.Name, Inode: c}); err != nil {
			return nil, fmt.Errorf("ostree: %q: %w", path+"/"+f.Name, err)
		}
	}
	for _, d := range dt.Dirs {
		c, err := rd.dir(path+"/"+d.Name, Root{Tree: d.Tree, Meta: d.Meta}, depth+1)
		if err != nil {
			return nil, err
		}
		if err := n.Insert(&tree.Dirent{Name: d.Name, Inode: c}); err != nil {
			return nil, fmt.Errorf("ostree: %q: %w", path+"/"+d.Name, err)
		}
	}
	return n, nil
}

func (rd *treeReader) file(checksum string) (*tree.Inode, error) {
	if n, ok := rd.files[checksum]; ok {
		c := *n
		return &c, nil
	}
	n, err := rd.readFile(checksum)
	if err != nil {
		return nil, err
	}
	rd.files[checksum] = n
	c := *n
	return &c, nil
}

func (rd *treeReader) readFile(checksum string) (*tree.Inode, error) {
	m, f, err := rd.r.OpenFile(checksum)
	if err != nil {
		return nil, err
	}
	n := &tree.Inode{Mode: m.Mode, UID: m.UID, GID: m.GID, Nlink: 1, Xattrs: m.Xattrs}
	if m.IsSymlink() {
		n.Payload = m.Target
		n.Size = uint64(len(m.Target))
		return n, nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("ostree: %w", err)
	}
	n.Size = uint64(st.Size())
	if n.Size > 0 {
		n.Payload = LoosePath(checksum, ObjFile)
	}
	return n, nil
}
