package store

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/store/splitstream"
)

// maxStreamSize bounds the splitstreams OpenStream reads into memory.
const maxStreamSize = 1 << 30

// EnsureObject stores everything rd returns until io.EOF as an object,
// unless one with the same content exists, and returns its digest. In a
// secure repository the object gets fs-verity and is named by the kernel's
// measurement.
func (r *Repository) EnsureObject(rd io.Reader) ([]byte, error) {
	end, err := r.beginWrite()
	if err != nil {
		return nil, err
	}
	defer end()
	d, err := r.objs.Add(rd)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return d, nil
}

// EnsureObjectFromFile stores the content of f as EnsureObject does, sharing
// its data blocks where the filesystem can (reflink) instead of copying.
func (r *Repository) EnsureObjectFromFile(f *os.File) ([]byte, error) {
	end, err := r.beginWrite()
	if err != nil {
		return nil, err
	}
	defer end()
	d, err := r.objs.AddFile(f)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", f.Name(), err)
	}
	return d, nil
}

// HasObject reports whether the object is present.
func (r *Repository) HasObject(digest []byte) (bool, error) {
	end, err := r.begin()
	if err != nil {
		return false, err
	}
	defer end()
	ok, err := r.objs.Has(digest)
	if err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	return ok, nil
}

// OpenObject opens an object for reading. Where the kernel can measure it
// (always, in a secure repository) its fs-verity digest is checked.
func (r *Repository) OpenObject(digest []byte) (*os.File, error) {
	end, err := r.begin()
	if err != nil {
		return nil, err
	}
	defer end()
	return r.openObject(digest)
}

func (r *Repository) openObject(digest []byte) (*os.File, error) {
	f, err := r.objs.Open(digest)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := r.objs.Verify(f, digest, false); err != nil {
		f.Close()
		return nil, fmt.Errorf("store: object %x: %w", digest, err)
	}
	return f, nil
}

// WriteStream stores the finished splitstream sw as an object and names it
// streams/id, and, if ref is not empty, makes streams/refs/ref point to it.
// The filesystem is synced before the name is published, so the stream is
// never visible without every object it refers to. An existing stream of the
// same id is replaced. It returns the stream's digest.
func (r *Repository) WriteStream(id string, sw *splitstream.Writer, ref string) ([]byte, error) {
	if err := validStreamID(id); err != nil {
		return nil, fmt.Errorf("store: write stream: %w", err)
	}
	if ref != "" {
		if err := validRef(ref); err != nil {
			return nil, fmt.Errorf("store: write stream %s: %w", id, err)
		}
	}
	if sw.Algorithm() != r.alg {
		return nil, fmt.Errorf("store: write stream %s: %s splitstream in a %s repository", id, sw.Algorithm(), r.alg)
	}
	end, err := r.beginWrite()
	if err != nil {
		return nil, err
	}
	defer end()
	var buf bytes.Buffer
	if _, err := sw.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("store: write stream %s: %w", id, err)
	}
	d, err := r.objs.Add(&buf)
	if err != nil {
		return nil, fmt.Errorf("store: write stream %s: %w", id, err)
	}
	if err := r.publish(streamsDir, id, d, ref); err != nil {
		return nil, fmt.Errorf("store: write stream %s: %w", id, err)
	}
	return d, nil
}

// publish syncs, then links category/entry to the object and the ref, if
// any, to the entry.
func (r *Repository) publish(category, entry string, digest []byte, ref string) error {
	if err := r.sync(); err != nil {
		return err
	}
	name := category + "/" + entry
	if err := r.symlink(name, objectPath(digest)); err != nil {
		return err
	}
	if ref != "" {
		return r.symlink(category+"/"+refsDir+"/"+ref, name)
	}
	return nil
}

// HasStream reports whether the stream id exists, and its digest. A stream
// whose object is missing does not exist.
func (r *Repository) HasStream(id string) ([]byte, bool, error) {
	if err := validStreamID(id); err != nil {
		return nil, false, fmt.Errorf("store: stream %q: %w", id, err)
	}
	end, err := r.begin()
	if err != nil {
		return nil, false, err
	}
	defer end()
	d, err := r.entryDigest(streamsDir, id)
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("store: %w", err)
	}
	ok, err := r.objs.Has(d)
	if err != nil || !ok {
		return nil, false, err
	}
	return d, true, nil
}

// entryDigest returns the digest of the object a first-level entry
// (streams/<id>, images/<hex>) links to.
func (r *Repository) entryDigest(category, entry string) ([]byte, error) {
	name := category + "/" + entry
	target, err := r.readlink(name)
	if err == unix.ENOENT {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, &os.PathError{Op: "readlink", Path: name, Err: err}
	}
	d, ok := r.parseObjectLink(target)
	if !ok {
		return nil, fmt.Errorf("%s: symlink to %q, not to a %s object", name, target, r.alg)
	}
	return d, nil
}

// refEntry returns the first-level entry a ref (category/refs/name) links
// to.
func (r *Repository) refEntry(category, name string) (string, error) {
	full := category + "/" + refsDir + "/" + name
	target, err := r.readlink(full)
	if err == unix.ENOENT {
		return "", fmt.Errorf("%s: %w", full, ErrNotFound)
	}
	if err != nil {
		return "", &os.PathError{Op: "readlink", Path: full, Err: err}
	}
	resolved := path.Join(path.Dir(full), target)
	entry, ok := strings.CutPrefix(resolved, category+"/")
	if !ok || strings.Contains(entry, "/") || entry == refsDir || target[0] == '/' {
		return "", fmt.Errorf("%s: symlink to %q, not to an entry of %s/", full, target, category)
	}
	return entry, nil
}

// resolve finds the entry for a name given to OpenStream or OpenImage:
// "refs/<ref>" is a ref, a valid entry name is itself if present, and other
// names are tried as refs.
func (r *Repository) resolve(category, name string) (string, error) {
	if ref, ok := strings.CutPrefix(name, refsDir+"/"); ok {
		if err := validRef(ref); err != nil {
			return "", err
		}
		return r.refEntry(category, ref)
	}
	if validName(name) == nil {
		if _, err := r.lstat(category + "/" + name); err == nil {
			return name, nil
		} else if err != unix.ENOENT {
			return "", &os.PathError{Op: "lstat", Path: category + "/" + name, Err: err}
		}
	}
	if err := validRef(name); err != nil {
		return "", err
	}
	return r.refEntry(category, name)
}

// OpenStream opens the stream with the given id, or the one a ref names
// ("refs/<name>", or a bare ref name that is not a stream id), and returns
// it with its digest. The stream is read into memory and its digest checked
// as OpenObject checks.
func (r *Repository) OpenStream(nameOrID string) (*splitstream.Reader, []byte, error) {
	end, err := r.begin()
	if err != nil {
		return nil, nil, err
	}
	defer end()
	rd, d, err := r.openStream(nameOrID)
	if err != nil {
		return nil, nil, fmt.Errorf("store: open stream %s: %w", nameOrID, err)
	}
	return rd, d, nil
}

func (r *Repository) openStream(nameOrID string) (*splitstream.Reader, []byte, error) {
	id, err := r.resolve(streamsDir, nameOrID)
	if err != nil {
		return nil, nil, err
	}
	d, err := r.entryDigest(streamsDir, id)
	if err != nil {
		return nil, nil, err
	}
	rd, err := r.readStream(d)
	return rd, d, err
}

// readStream reads and parses the splitstream object d.
func (r *Repository) readStream(d []byte) (*splitstream.Reader, error) {
	f, err := r.openObject(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := readAll(f, maxStreamSize)
	if err != nil {
		return nil, err
	}
	rd, err := splitstream.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, err
	}
	if rd.Algorithm() != r.alg {
		return nil, fmt.Errorf("%s splitstream in a %s repository: %w", rd.Algorithm(), r.alg, splitstream.ErrFormat)
	}
	return rd, nil
}

// WriteImage stores the EROFS image img as an object, names it
// images/<hex digest>, and, if ref is not empty, makes images/refs/ref point
// to it. Only images this program made may be stored: they are the ones a
// mount trusts. The filesystem is synced before the names are published. It
// returns the image's digest.
func (r *Repository) WriteImage(img io.Reader, ref string) ([]byte, error) {
	if ref != "" {
		if err := validRef(ref); err != nil {
			return nil, fmt.Errorf("store: write image: %w", err)
		}
	}
	end, err := r.beginWrite()
	if err != nil {
		return nil, err
	}
	defer end()
	d, err := r.objs.Add(img)
	if err != nil {
		return nil, fmt.Errorf("store: write image: %w", err)
	}
	if err := r.publish(imagesDir, hex.EncodeToString(d), d, ref); err != nil {
		return nil, fmt.Errorf("store: write image %x: %w", d, err)
	}
	return d, nil
}

// OpenImage opens an image by digest (lower-case hex), by "refs/<name>", or
// by a bare ref name, and returns it with its digest. An image named by
// digest is verified: by the kernel's measurement, which a secure repository
// requires, or else by reading it. Images named by ref are the repository
// owner's and are not verified.
func (r *Repository) OpenImage(nameOrDigest string) (*os.File, []byte, error) {
	end, err := r.begin()
	if err != nil {
		return nil, nil, err
	}
	defer end()
	f, d, err := r.openImage(nameOrDigest)
	if err != nil {
		return nil, nil, fmt.Errorf("store: open image %s: %w", nameOrDigest, err)
	}
	return f, d, nil
}

func (r *Repository) openImage(name string) (*os.File, []byte, error) {
	want, byDigest := r.parseHex(name)
	entry := name
	if !byDigest {
		var err error
		if entry, err = r.resolve(imagesDir, name); err != nil {
			return nil, nil, err
		}
	}
	d, err := r.entryDigest(imagesDir, entry)
	if err != nil {
		return nil, nil, err
	}
	if hex.EncodeToString(d) != entry {
		return nil, nil, fmt.Errorf("%s/%s links to object %x", imagesDir, entry, d)
	}
	f, err := r.objs.Open(d)
	if err != nil {
		return nil, nil, err
	}
	if byDigest {
		if err := r.objs.Verify(f, want, true); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	return f, d, nil
}

// parseHex parses a full digest in lower-case hex.
func (r *Repository) parseHex(s string) ([]byte, bool) {
	if len(s) != 2*r.alg.Size() || strings.ToLower(s) != s {
		return nil, false
	}
	d, err := hex.DecodeString(s)
	return d, err == nil
}

// RefKind selects the refs of images or of streams.
type RefKind int

// The kinds of refs.
const (
	Images RefKind = iota
	Streams
)

func (k RefKind) dir() (string, error) {
	switch k {
	case Images:
		return imagesDir, nil
	case Streams:
		return streamsDir, nil
	}
	return "", fmt.Errorf("store: unknown ref kind %d", int(k))
}

// SetRef makes the ref name point to target: an image digest (hex) for
// Images, a stream id for Streams. The target must exist. An existing ref is
// replaced atomically.
func (r *Repository) SetRef(kind RefKind, name, target string) error {
	category, err := kind.dir()
	if err != nil {
		return err
	}
	if err := validRef(name); err != nil {
		return fmt.Errorf("store: set ref: %w", err)
	}
	if err := validStreamID(target); err != nil {
		return fmt.Errorf("store: set ref %s: target: %w", name, err)
	}
	end, err := r.beginWrite()
	if err != nil {
		return err
	}
	defer end()
	entry := category + "/" + target
	if ok, err := r.exists(entry); err != nil {
		return fmt.Errorf("store: set ref %s: %w", name, err)
	} else if !ok {
		return fmt.Errorf("store: set ref %s: %s: %w", name, entry, ErrNotFound)
	}
	if err := r.symlink(category+"/"+refsDir+"/"+name, entry); err != nil {
		return fmt.Errorf("store: set ref %s: %w", name, err)
	}
	return nil
}

// DeleteRef removes a ref. What it kept alive goes at the next GC.
func (r *Repository) DeleteRef(kind RefKind, name string) error {
	category, err := kind.dir()
	if err != nil {
		return err
	}
	if err := validRef(name); err != nil {
		return fmt.Errorf("store: delete ref: %w", err)
	}
	end, err := r.beginWrite()
	if err != nil {
		return err
	}
	defer end()
	full := category + "/" + refsDir + "/" + name
	if t, err := r.lstat(full); err != nil || t != unix.S_IFLNK {
		if err == nil || err == unix.ENOENT {
			return fmt.Errorf("store: delete ref %s: %w", full, ErrNotFound)
		}
		return fmt.Errorf("store: delete ref %s: %w", full, err)
	}
	if err := unix.Unlinkat(r.fd, full, 0); err != nil {
		return fmt.Errorf("store: delete ref %s: %w", full, err)
	}
	return nil
}

// Refs returns the refs of a kind: ref name to the entry it points to (a
// stream id or an image digest in hex), or to the raw symlink target for a
// ref that does not point to an entry.
func (r *Repository) Refs(kind RefKind) (map[string]string, error) {
	category, err := kind.dir()
	if err != nil {
		return nil, err
	}
	end, err := r.begin()
	if err != nil {
		return nil, err
	}
	defer end()
	refs := make(map[string]string)
	err = r.walkRefs(category, func(name string, typ uint32) error {
		if typ != unix.S_IFLNK {
			return nil
		}
		entry, err := r.refEntry(category, name)
		if err != nil {
			target, lerr := r.readlink(category + "/" + refsDir + "/" + name)
			if lerr != nil {
				return lerr
			}
			entry = target
		}
		refs[name] = entry
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: refs of %s: %w", category, err)
	}
	return refs, nil
}

// walkRefs calls fn for everything below category/refs but directories,
// with the path relative to refs/ and the file type; temporary names are
// skipped.
func (r *Repository) walkRefs(category string, fn func(name string, typ uint32) error) error {
	return r.walkDir(category+"/"+refsDir, "", true, fn)
}

// walkDir calls fn for everything below dir but the directories it
// descends into, optionally skipping temporary names. A missing dir is
// empty.
func (r *Repository) walkDir(dir, prefix string, skipTemp bool, fn func(name string, typ uint32) error) error {
	names, err := r.readDir(dir)
	if errors.Is(err, fs.ErrNotExist) && prefix == "" {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range names {
		if skipTemp && strings.HasPrefix(e.name, tempPrefix) {
			continue
		}
		if e.typ == unix.S_IFDIR {
			if err := r.walkDir(dir+"/"+e.name, prefix+e.name+"/", skipTemp, fn); err != nil {
				return err
			}
			continue
		}
		if err := fn(prefix+e.name, e.typ); err != nil {
			return err
		}
	}
	return nil
}

type dirEntry struct {
	name string
	typ  uint32 // S_IF* bits
}

// readDir lists a directory of the repository with file types.
func (r *Repository) readDir(dir string) ([]dirEntry, error) {
	fd, err := openDir(r.fd, dir)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, &os.PathError{Op: "readdir", Path: dir, Err: err}
	}
	out := make([]dirEntry, len(ents))
	for i, e := range ents {
		out[i] = dirEntry{e.Name(), modeType(e.Type())}
	}
	return out, nil
}

func modeType(m fs.FileMode) uint32 {
	switch {
	case m&fs.ModeDir != 0:
		return unix.S_IFDIR
	case m&fs.ModeSymlink != 0:
		return unix.S_IFLNK
	case m.IsRegular():
		return unix.S_IFREG
	}
	return 0 // something else: device, fifo, socket
}
