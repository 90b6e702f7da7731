package store

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/store/objects"
)

// maxImageSize bounds the EROFS images read into memory to find the
// objects they name.
const maxImageSize = 4 << 30

// GCOptions configure GC.
type GCOptions struct {
	// DryRun counts what would be removed and removes nothing. It takes
	// the repository shared only, like composefs-rs.
	DryRun bool
	// ExtraRoots are more names to keep, with what they reach: entries of
	// images/ (image digests in hex) or streams/ (stream ids). Callers
	// add the images the kernel command line boots (composefs=) and the
	// ones mounted, which the refs alone may not keep.
	ExtraRoots []string
}

// GCResult says what GC removed (or, in a dry run, would remove). The JSON
// names are composefs-rs's.
type GCResult struct {
	ObjectsRemoved uint64 `json:"objects_removed"`
	ObjectsBytes   uint64 `json:"objects_bytes"`
	ImagesPruned   uint64 `json:"images_pruned"`
	StreamsPruned  uint64 `json:"streams_pruned"`
	// TempRemoved counts leftovers of interrupted writes: temporary files
	// and symlinks.
	TempRemoved uint64 `json:"temp_removed"`
}

// GC removes every object that no root reaches, then the symlinks (entries
// of images/ and streams/, refs) left broken. The roots are all refs and
// opts.ExtraRoots. An image keeps the objects its files name; a stream
// keeps its object references and, recursively, the streams (or images)
// its named references name.
//
// Unless DryRun, GC waits until every other Repository is closed and holds
// the repository exclusively while it runs (see the package comment). It
// removes nothing if a root cannot be read: fix the repository (Fsck with
// Repair) first.
func (r *Repository) GC(opts GCOptions) (*GCResult, error) {
	var end func()
	var err error
	if opts.DryRun {
		end, err = r.begin()
	} else if err = r.writable(); err == nil {
		end, err = r.beginExclusive()
	}
	if err != nil {
		return nil, err
	}
	defer end()
	res, err := r.gc(opts)
	if err != nil {
		return nil, fmt.Errorf("store: gc %s: %w", r.path, err)
	}
	return res, nil
}

// liveSet tracks reachable objects and what has been walked.
type liveSet struct {
	r       *Repository
	objects map[string]bool // digest -> live
	walked  map[string]bool // digests of streams and images walked
	streams map[string]bool // digests of streams/ entries
	images  map[string]bool // digests of images/ entries
}

func (r *Repository) gc(opts GCOptions) (*GCResult, error) {
	ls := &liveSet{r: r, objects: map[string]bool{}, walked: map[string]bool{}}
	streams, err := r.entries(streamsDir)
	if err != nil {
		return nil, err
	}
	images, err := r.entries(imagesDir)
	if err != nil {
		return nil, err
	}
	ls.streams = digestSet(streams)
	ls.images = digestSet(images)

	roots, err := r.roots(opts.ExtraRoots, streams, images)
	if err != nil {
		return nil, err
	}
	for _, root := range roots {
		if err := ls.walk(root.digest, root.image); err != nil {
			return nil, fmt.Errorf("root %s: %w", root.name, err)
		}
	}

	// Links go before the objects they name, so that GC killed half-way
	// leaves unreachable objects (garbage for the next run), never an
	// entry whose object is gone.
	res := &GCResult{}
	for _, c := range []struct {
		category string
		entries  map[string][]byte
		count    *uint64
	}{{imagesDir, images, &res.ImagesPruned}, {streamsDir, streams, &res.StreamsPruned}} {
		n, err := r.pruneLinks(c.category, c.entries, ls.objects, opts.DryRun, &res.TempRemoved)
		if err != nil {
			return nil, err
		}
		*c.count = n
	}
	if err := r.sweepObjects(ls.objects, opts.DryRun, res); err != nil {
		return nil, err
	}
	return res, nil
}

func digestSet(entries map[string][]byte) map[string]bool {
	s := make(map[string]bool, len(entries))
	for _, d := range entries {
		if d != nil {
			s[string(d)] = true
		}
	}
	return s
}

// entries lists the first-level entries of images/ or streams/ with the
// digest each links to; nil for a link that is not to an object.
func (r *Repository) entries(category string) (map[string][]byte, error) {
	ents, err := r.readDir(category)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(ents))
	for _, e := range ents {
		if e.name == refsDir || strings.HasPrefix(e.name, tempPrefix) || e.typ != unix.S_IFLNK {
			continue
		}
		d, err := r.entryDigest(category, e.name)
		if err != nil {
			d = nil
		}
		out[e.name] = d
	}
	return out, nil
}

type root struct {
	name   string
	digest []byte
	image  bool
}

// roots lists the GC roots: every ref, then the extra roots.
func (r *Repository) roots(extra []string, streams, images map[string][]byte) ([]root, error) {
	var roots []root
	for _, c := range []struct {
		category string
		entries  map[string][]byte
	}{{imagesDir, images}, {streamsDir, streams}} {
		err := r.walkRefs(c.category, func(name string, typ uint32) error {
			if typ != unix.S_IFLNK {
				return nil
			}
			entry, err := r.refEntry(c.category, name)
			if err != nil {
				return nil // not a ref to an entry: fsck reports it
			}
			if d := c.entries[entry]; d != nil {
				roots = append(roots, root{c.category + "/" + refsDir + "/" + name, d, c.category == imagesDir})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	// Like composefs-rs, an extra root the repository does not have is
	// ignored: a booted image may come from elsewhere.
	for _, name := range extra {
		if d := images[name]; d != nil {
			roots = append(roots, root{imagesDir + "/" + name, d, true})
		}
		if d := streams[name]; d != nil {
			roots = append(roots, root{streamsDir + "/" + name, d, false})
		}
	}
	return roots, nil
}

// walk marks an object live and, for streams and images, what it reaches.
// A missing object is no error here (there is nothing to keep); an object
// that is there but cannot be read is, since what it reaches is unknown.
func (ls *liveSet) walk(d []byte, image bool) error {
	ls.objects[string(d)] = true
	if ls.walked[string(d)] {
		return nil
	}
	ls.walked[string(d)] = true
	ok, err := ls.r.objs.Has(d)
	if err != nil || !ok {
		return err
	}
	if image {
		return ls.r.imageObjects(d, func(o []byte) { ls.objects[string(o)] = true })
	}
	rd, err := ls.r.readStream(d)
	if err != nil {
		return fmt.Errorf("stream %x: %w", d, err)
	}
	for _, o := range rd.ObjectRefs() {
		ls.objects[string(o)] = true
	}
	for _, n := range rd.NamedRefs() {
		// Named references name streams (OCI layers, configs) or
		// images (an OCI config's composefs.image refs); anything else
		// is just kept.
		switch {
		case ls.streams[string(n.Digest)]:
			err = ls.walk(n.Digest, false)
		case ls.images[string(n.Digest)]:
			err = ls.walk(n.Digest, true)
		default:
			ls.objects[string(n.Digest)] = true
		}
		if err != nil {
			return fmt.Errorf("stream %x: named reference %q: %w", d, n.Name, err)
		}
	}
	return nil
}

// imageObjects calls fn with the digest of every object the image d names
// (through the overlay redirect of its external files). Redirects that are
// not object paths of this repository's algorithm cannot name its objects
// and are skipped.
func (r *Repository) imageObjects(d []byte, fn func([]byte)) error {
	f, err := r.openObject(d)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := readAll(f, maxImageSize)
	if err != nil {
		return err
	}
	img, err := erofs.OpenBytes(data)
	if err != nil {
		return fmt.Errorf("image %x: %w", d, err)
	}
	seen := map[uint64]bool{}
	queue := []uint64{img.Root()}
	for len(queue) > 0 {
		nid := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if seen[nid] {
			continue
		}
		seen[nid] = true
		ino, err := img.Inode(nid)
		if err != nil {
			return fmt.Errorf("image %x: %w", d, err)
		}
		switch {
		case ino.IsDir():
			ents, err := img.ReadDir(ino)
			if err != nil {
				return fmt.Errorf("image %x: %w", d, err)
			}
			for _, e := range ents {
				if e.Name != "." && e.Name != ".." {
					queue = append(queue, e.Nid)
				}
			}
		case ino.IsReg():
			xs, err := img.Xattrs(ino)
			if err != nil {
				return fmt.Errorf("image %x: %w", d, err)
			}
			for _, x := range xs {
				if x.Name != erofs.XattrRedirect {
					continue
				}
				if o, ok := objects.ParsePath(strings.TrimPrefix(x.Value, "/"), r.alg.Size()); ok {
					fn(o)
				}
			}
		}
	}
	return nil
}

// sweepObjects removes the objects not in live, and temporary files of
// interrupted writes. Only names of objects of this repository's algorithm
// in objects/XX/ are touched.
func (r *Repository) sweepObjects(live map[string]bool, dryRun bool, res *GCResult) error {
	top, err := r.readDir(objectsDir)
	if err != nil {
		return err
	}
	for _, fan := range top {
		if strings.HasPrefix(fan.name, tempPrefix) {
			res.TempRemoved++
			if !dryRun {
				if err := unix.Unlinkat(r.fd, objectsDir+"/"+fan.name, 0); err != nil && err != unix.ENOENT {
					return &os.PathError{Op: "unlink", Path: objectsDir + "/" + fan.name, Err: err}
				}
			}
			continue
		}
		if fan.typ != unix.S_IFDIR || !isFanout(fan.name) {
			continue
		}
		dir := objectsDir + "/" + fan.name
		ents, err := r.readDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			d, ok := objects.ParsePath(fan.name+"/"+e.name, r.alg.Size())
			if !ok || live[string(d)] {
				continue
			}
			name := dir + "/" + e.name
			var st unix.Stat_t
			if err := unix.Fstatat(r.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return &os.PathError{Op: "stat", Path: name, Err: err}
			}
			res.ObjectsRemoved++
			res.ObjectsBytes += uint64(st.Size)
			if !dryRun {
				if err := unix.Unlinkat(r.fd, name, 0); err != nil && err != unix.ENOENT {
					return &os.PathError{Op: "unlink", Path: name, Err: err}
				}
			}
		}
	}
	return nil
}

// isFanout reports whether name is an objects/ fan-out directory name.
func isFanout(name string) bool {
	_, ok := objects.ParsePath(name+"/", 1)
	return ok && len(name) == 2
}

// pruneLinks removes the entries of category whose object is gone (or goes
// in this GC: not live), then the refs left without an entry, and counts
// them; temporary symlinks are removed and counted in temp. A dry run
// removes nothing and counts what a real run would remove.
func (r *Repository) pruneLinks(category string, entries map[string][]byte, live map[string]bool, dryRun bool, temp *uint64) (uint64, error) {
	var count uint64
	gone := map[string]bool{}
	ents, err := r.readDir(category)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	remove := func(name string) error {
		if dryRun {
			return nil
		}
		if err := unix.Unlinkat(r.fd, name, 0); err != nil && err != unix.ENOENT {
			return &os.PathError{Op: "unlink", Path: name, Err: err}
		}
		return nil
	}
	for _, e := range ents {
		name := category + "/" + e.name
		switch {
		case strings.HasPrefix(e.name, tempPrefix):
			*temp++
			if err := remove(name); err != nil {
				return 0, err
			}
			continue
		case e.name == refsDir || e.typ != unix.S_IFLNK:
			continue
		}
		broken := false
		if d := entries[e.name]; d != nil {
			broken = !live[string(d)]
		}
		if !broken {
			ok, err := r.exists(name)
			if err != nil {
				return 0, &os.PathError{Op: "stat", Path: name, Err: err}
			}
			broken = !ok
		}
		if broken {
			gone[e.name] = true
			count++
			if err := remove(name); err != nil {
				return 0, err
			}
		}
	}
	n, err := r.pruneRefs(category, category+"/"+refsDir, gone, remove, temp)
	return count + n, err
}

// pruneRefs removes the refs below dir that are broken or point to removed
// entries.
func (r *Repository) pruneRefs(category, dir string, gone map[string]bool, remove func(string) error, temp *uint64) (uint64, error) {
	ents, err := r.readDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var count uint64
	for _, e := range ents {
		name := dir + "/" + e.name
		switch {
		case strings.HasPrefix(e.name, tempPrefix):
			*temp++
			if err := remove(name); err != nil {
				return 0, err
			}
			continue
		case e.typ == unix.S_IFDIR:
			n, err := r.pruneRefs(category, name, gone, remove, temp)
			if err != nil {
				return 0, err
			}
			count += n
			continue
		case e.typ != unix.S_IFLNK:
			continue
		}
		ref := strings.TrimPrefix(name, category+"/"+refsDir+"/")
		broken := false
		if entry, err := r.refEntry(category, ref); err == nil && gone[entry] {
			broken = true
		} else {
			ok, err := r.exists(name)
			if err != nil {
				return 0, &os.PathError{Op: "stat", Path: name, Err: err}
			}
			broken = !ok
		}
		if broken {
			count++
			if err := remove(name); err != nil {
				return 0, err
			}
		}
	}
	return count, nil
}

// hexDigest formats a digest for messages and reports.
func hexDigest(d []byte) string { return hex.EncodeToString(d) }
