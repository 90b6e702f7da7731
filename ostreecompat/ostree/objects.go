package ostree

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ObjectType is the type of an object, which its file name extension says.
type ObjectType int

// The object types this package writes.
const (
	ObjFile ObjectType = iota + 1
	ObjDirTree
	ObjDirMeta
	ObjCommit
	ObjCommitMeta
)

// Ext returns the object file name extension, without the dot.
func (t ObjectType) Ext() string {
	switch t {
	case ObjFile:
		return "file"
	case ObjDirTree:
		return "dirtree"
	case ObjDirMeta:
		return "dirmeta"
	case ObjCommit:
		return "commit"
	case ObjCommitMeta:
		return "commitmeta"
	}
	return "unknown"
}

func (t ObjectType) String() string { return t.Ext() }

// LoosePath returns the path of an object relative to the objects
// directory: "XX/<rest>.<ext>". For a file object this is also the payload
// ostree's composefs images name it by.
func LoosePath(checksum string, t ObjectType) string {
	return checksum[:2] + "/" + checksum[2:] + "." + t.Ext()
}

func objectPath(checksum string, t ObjectType) string { return "objects/" + LoosePath(checksum, t) }

// HasObject reports whether the object exists.
func (r *Repo) HasObject(t ObjectType, checksum string) (bool, error) {
	if !ValidChecksum(checksum) {
		return false, fmt.Errorf("ostree: %s checksum %q: %w", t, checksum, ErrInvalid)
	}
	var st unix.Stat_t
	err := unix.Fstatat(r.dirfd(), objectPath(checksum, t), &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOENT):
		return false, nil
	}
	return false, fmt.Errorf("ostree: %s: %w", filepath.Join(r.path, objectPath(checksum, t)), err)
}

// ensureObjDir makes objects/XX for the checksum.
func (r *Repo) ensureObjDir(checksum string) error {
	b, err := hex.DecodeString(checksum[:2])
	if err != nil {
		return fmt.Errorf("ostree: checksum %q: %w", checksum, ErrInvalid)
	}
	if r.objDirs[b[0]].Load() {
		return nil
	}
	err = unix.Mkdirat(r.dirfd(), "objects/"+checksum[:2], 0o755)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("ostree: %s: %w", filepath.Join(r.path, "objects", checksum[:2]), err)
	}
	r.objDirs[b[0]].Store(true)
	return nil
}

// tempFile is a file being written under a random name in tmp/. (Unnamed
// O_TMPFILE files would leave nothing behind a crash, but cost ext4 and XFS
// a trip through their orphan lists: five times slower here.) libostree
// removes what crashes leave in tmp/ once it is a day old.
type tempFile struct {
	r    *Repo
	f    *os.File
	name string // relative to the repository
}

func randomName(prefix string) string {
	var b [8]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// createTemp creates an empty regular file to fill and publish.
func (r *Repo) createTemp() (*tempFile, error) {
	for {
		name := randomName("tmp/tmpobject-")
		fd, err := unix.Openat(r.dirfd(), name, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ostree: %s: %w", filepath.Join(r.path, name), err)
		}
		return &tempFile{r: r, f: os.NewFile(uintptr(fd), filepath.Join(r.path, name)), name: name}, nil
	}
}

// publish renames the complete file to dst (relative to the repository),
// keeping what is there already: an existing object has the same content.
// The temporary file is closed.
func (t *tempFile) publish(dst string) error {
	defer t.discard()
	err := renameNoReplace(t.r.dirfd(), t.name, dst)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("ostree: %s: %w", filepath.Join(t.r.path, dst), err)
	}
	if err == nil {
		t.name = ""
	}
	return nil
}

// discard closes the file and removes it unless published.
func (t *tempFile) discard() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
	if t.name != "" {
		unix.Unlinkat(t.r.dirfd(), t.name, 0)
		t.name = ""
	}
}

// renameNoReplace renames old to new unless new exists (EEXIST), on
// filesystems without RENAME_NOREPLACE by a link and an unlink.
func renameNoReplace(dirfd int, old, new string) error {
	err := unix.Renameat2(dirfd, old, dirfd, new, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		if err = unix.Linkat(dirfd, old, dirfd, new, 0); err == nil {
			unix.Unlinkat(dirfd, old, 0)
		}
	}
	return err
}

// writeMetadata stores the bytes of a metadata object under their sha256.
func (r *Repo) writeMetadata(t ObjectType, data []byte) (string, error) {
	sum := sha256.Sum256(data)
	c := hex.EncodeToString(sum[:])
	if ok, err := r.HasObject(t, c); err != nil || ok {
		return c, err
	}
	if err := r.ensureObjDir(c); err != nil {
		return "", err
	}
	tf, err := r.createTemp()
	if err != nil {
		return "", err
	}
	if _, err := tf.f.Write(data); err != nil {
		tf.discard()
		return "", fmt.Errorf("ostree: writing %s %s: %w", t, c, err)
	}
	return c, tf.publish(objectPath(c, t))
}

// maxMetadataSize bounds the metadata objects read into memory; libostree
// refuses those over 10 MiB too (OSTREE_MAX_METADATA_SIZE).
const maxMetadataSize = 10 << 20

// ReadObject returns the bytes of a metadata object, checked against its
// name (a commitmeta, named after its commit, is not checked).
func (r *Repo) ReadObject(t ObjectType, checksum string) ([]byte, error) {
	if !ValidChecksum(checksum) || t == ObjFile {
		return nil, fmt.Errorf("ostree: read %s %q: %w", t, checksum, ErrInvalid)
	}
	p := objectPath(checksum, t)
	fd, err := unix.Openat(r.dirfd(), p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("ostree: %s %s: %w", t, checksum, ErrNotFound)
		}
		return nil, fmt.Errorf("ostree: %s: %w", filepath.Join(r.path, p), err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(r.path, p))
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("ostree: %s: %w", f.Name(), err)
	}
	if len(data) > maxMetadataSize {
		return nil, fmt.Errorf("ostree: %s: larger than %d bytes: %w", f.Name(), maxMetadataSize, ErrInvalid)
	}
	if t != ObjCommitMeta {
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != checksum {
			return nil, fmt.Errorf("ostree: %s: content has checksum %x: %w", f.Name(), sum, ErrInvalid)
		}
	}
	return data, nil
}

// WriteCommit stores a commit object and returns its checksum. Its root
// dirtree and dirmeta must exist. Everything written before is made durable
// first (syncfs), so that a commit never outlives a crash without its tree.
func (r *Repo) WriteCommit(c *Commit) (string, error) {
	b, err := c.MarshalBinary()
	if err != nil {
		return "", fmt.Errorf("ostree: commit: %w", err)
	}
	for _, o := range []struct {
		t ObjectType
		c string
	}{{ObjDirTree, c.RootTree}, {ObjDirMeta, c.RootMeta}} {
		ok, err := r.HasObject(o.t, o.c)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", fmt.Errorf("ostree: commit: root %s %s: %w", o.t, o.c, ErrNotFound)
		}
	}
	if err := r.sync(); err != nil {
		return "", err
	}
	return r.writeMetadata(ObjCommit, b)
}

// WriteCommitMeta stores the detached metadata of a commit, replacing any.
func (r *Repo) WriteCommitMeta(commit string, md []Metadata) error {
	if !ValidChecksum(commit) {
		return fmt.Errorf("ostree: commitmeta for %q: %w", commit, ErrInvalid)
	}
	b, err := MarshalMetadata(md)
	if err != nil {
		return fmt.Errorf("ostree: commitmeta for %s: %w", commit, err)
	}
	if err := r.ensureObjDir(commit); err != nil {
		return err
	}
	if err := r.replaceFile(objectPath(commit, ObjCommitMeta), b); err != nil {
		return fmt.Errorf("ostree: commitmeta for %s: %w", commit, err)
	}
	return nil
}

// replaceFile writes data to a synced temporary file in tmp/ and renames it
// over dst (relative to the repository).
func (r *Repo) replaceFile(dst string, data []byte) error {
	f, err := os.CreateTemp(filepath.Join(r.path, "tmp"), "replace-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(r.path, dst))
}

// ReadDirMeta reads a dirmeta object.
func (r *Repo) ReadDirMeta(checksum string) (*DirMeta, error) {
	return readParsed(r, ObjDirMeta, checksum, ParseDirMeta)
}

// ReadDirTree reads a dirtree object.
func (r *Repo) ReadDirTree(checksum string) (*DirTree, error) {
	return readParsed(r, ObjDirTree, checksum, ParseDirTree)
}

// ReadCommit reads a commit object.
func (r *Repo) ReadCommit(checksum string) (*Commit, error) {
	return readParsed(r, ObjCommit, checksum, ParseCommit)
}

// readParsed reads a metadata object and parses it, naming the object in
// a parse error.
func readParsed[T any](r *Repo, typ ObjectType, checksum string, parse func([]byte) (T, error)) (T, error) {
	var zero T
	b, err := r.ReadObject(typ, checksum)
	if err != nil {
		return zero, err
	}
	v, err := parse(b)
	if err != nil {
		return zero, fmt.Errorf("ostree: %s: %w", objectPath(checksum, typ), err)
	}
	return v, nil
}

// ReadCommitMeta reads the detached metadata of a commit; a commit without
// any has none (nil, no error).
func (r *Repo) ReadCommitMeta(commit string) ([]Metadata, error) {
	b, err := r.ReadObject(ObjCommitMeta, commit)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	md, err := ParseMetadata(b)
	if err != nil {
		return nil, fmt.Errorf("ostree: %s: %w", objectPath(commit, ObjCommitMeta), err)
	}
	return md, nil
}

// sync makes everything written to the repository's filesystem durable.
func (r *Repo) sync() error {
	if err := unix.Syncfs(r.dirfd()); err != nil {
		return fmt.Errorf("ostree: %s: syncfs: %w", r.path, err)
	}
	return nil
}

// writeFileAtomic writes data to dir/name through a temporary file in the
// same directory, synced and renamed over name.
func writeFileAtomic(dir, name string, data []byte, perm os.FileMode) error {
	p := filepath.Join(dir, name)
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-"+filepath.Base(p)+"-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	return syncDir(filepath.Dir(p))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
