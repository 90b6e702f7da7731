package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/store/objects"
	"github.com/gocfs/gocfs/store/splitstream"
	"github.com/gocfs/gocfs/verity"
)

// Kinds of fsck problems, kebab-case as composefs-rs names them (the last
// two are this package's own).
const (
	FsckMetadataParseFailed       = "metadata-parse-failed"
	FsckMetadataAlgorithmMismatch = "metadata-algorithm-mismatch"
	FsckObjectInvalidName         = "object-invalid-name"
	FsckObjectOpenFailed          = "object-open-failed"
	FsckObjectDigestMismatch      = "object-digest-mismatch"
	FsckObjectVerityFailed        = "object-verity-failed"
	FsckObjectVerityMissing       = "object-verity-missing"
	FsckEntryNotSymlink           = "entry-not-symlink"
	FsckBrokenSymlink             = "broken-symlink"
	FsckStatFailed                = "stat-failed"
	FsckUnexpectedFileType        = "unexpected-file-type"
	FsckStreamOpenFailed          = "stream-open-failed"
	FsckStreamReadFailed          = "stream-read-failed"
	FsckMissingObjectRef          = "missing-object-ref"
	FsckMissingNamedRef           = "missing-named-ref"
	FsckObjectCheckFailed         = "object-check-failed"
	FsckImageOpenFailed           = "image-open-failed"
	FsckImageInvalid              = "image-invalid"
	FsckImageMissingObject        = "image-missing-object"
	// FsckInvalidSymlink: an entry of streams/ or images/ that does not
	// link to an object (of the name's digest, for images), or a ref that
	// does not link to an entry.
	FsckInvalidSymlink = "invalid-symlink"
	// FsckRepairFailed: a repair was attempted and failed.
	FsckRepairFailed = "repair-failed"
)

// FsckProblem is one problem Fsck found. It serialises to JSON as
// composefs-rs's errors do: the kind under "type", camelCase fields.
type FsckProblem struct {
	Kind string `json:"type"`
	// Path is the repository-relative path of the file concerned.
	Path string `json:"path,omitempty"`
	// ObjectID is a digest in hex: the missing object, or the object a
	// problem is about.
	ObjectID string `json:"objectId,omitempty"`
	RefName  string `json:"refName,omitempty"`
	// Measured is the digest found for an object with the wrong one.
	Measured string `json:"measured,omitempty"`
	Detail   string `json:"detail,omitempty"`
	// Repaired says Fsck with Repair (or the Repairer) fixed it.
	Repaired bool `json:"repaired,omitempty"`
}

func (p *FsckProblem) String() string {
	s := "fsck: " + p.Kind
	for _, f := range []string{p.Path, p.RefName, p.ObjectID, p.Measured, p.Detail} {
		if f != "" {
			s += ": " + f
		}
	}
	if p.Repaired {
		s += " (repaired)"
	}
	return s
}

// FsckReport is the result of Fsck, JSON-serialisable with composefs-rs's
// field names.
type FsckReport struct {
	HasMetadata      bool   `json:"hasMetadata"`
	ObjectsChecked   uint64 `json:"objectsChecked"`
	ObjectsCorrupted uint64 `json:"objectsCorrupted"`
	StreamsChecked   uint64 `json:"streamsChecked"`
	StreamsCorrupted uint64 `json:"streamsCorrupted"`
	ImagesChecked    uint64 `json:"imagesChecked"`
	ImagesCorrupted  uint64 `json:"imagesCorrupted"`
	BrokenLinks      uint64 `json:"brokenLinks"`
	MissingObjects   uint64 `json:"missingObjects"`
	// Errors lists the problems found, repaired ones included.
	Errors []*FsckProblem `json:"errors"`
	// TempFiles lists leftovers of interrupted writes (and, when another
	// Repository is writing, writes in progress). They are harmless; GC
	// and repairs remove them.
	TempFiles []string `json:"tempFiles,omitempty"`
}

// OK reports whether every problem found has been repaired.
func (f *FsckReport) OK() bool {
	for _, p := range f.Errors {
		if !p.Repaired {
			return false
		}
	}
	return true
}

// FsckOptions configure Fsck.
type FsckOptions struct {
	// MetadataOnly skips checking the digest of every object, the slow
	// part.
	MetadataOnly bool
	// Repair removes what cannot be trusted or leads nowhere: objects
	// whose content does not match their name (objects missing fs-verity
	// in a secure repository get it if their content matches), entries
	// and refs whose symlinks are broken or invalid, temporary leftovers.
	// It holds the repository exclusively, as GC does.
	Repair bool
	// Repairer, with Repair, is offered every problem still unrepaired
	// afterwards, for what only the caller can rebuild (the OCI layer
	// regenerates a missing EROFS image from layer streams, refetches
	// missing layer content). It runs with the repository open normally
	// and returns whether it fixed the problem.
	Repairer func(r *Repository, p *FsckProblem) (bool, error)
}

// Fsck checks the repository: meta.json; that every object's content has
// the digest of its name (fs-verity measurement, or a userspace digest
// where the kernel has none); that streams/ and images/ hold symlinks to
// objects, streams parse, decode and have all their objects and named
// references, images parse and have all the objects they name; that refs
// are directories and symlinks that resolve. The report lists each problem
// with its kind.
func (r *Repository) Fsck(opts FsckOptions) (*FsckReport, error) {
	var end func()
	var err error
	if opts.Repair {
		if err = r.writable(); err == nil {
			end, err = r.beginExclusive()
		}
	} else {
		end, err = r.begin()
	}
	if err != nil {
		return nil, err
	}
	c := &checker{r: r, repair: opts.Repair, rep: &FsckReport{Errors: []*FsckProblem{}}}
	err = c.run(!opts.MetadataOnly)
	end()
	if err != nil {
		return nil, fmt.Errorf("store: fsck %s: %w", r.path, err)
	}
	if opts.Repair && opts.Repairer != nil {
		for _, p := range c.rep.Errors {
			if p.Repaired {
				continue
			}
			ok, err := opts.Repairer(r, p)
			if err != nil {
				p.Detail = strings.TrimPrefix(p.Detail+"; repair failed: "+err.Error(), "; ")
			}
			p.Repaired = ok && err == nil
		}
	}
	return c.rep, nil
}

// checker runs one Fsck.
type checker struct {
	r      *Repository
	repair bool
	mu     sync.Mutex // guards rep during the parallel object check
	rep    *FsckReport
}

func (c *checker) add(p FsckProblem) *FsckProblem {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rep.Errors = append(c.rep.Errors, &p)
	return &p
}

// temp records a temporary leftover and, when repairing, removes it.
func (c *checker) temp(name string) {
	c.rep.TempFiles = append(c.rep.TempFiles, name)
	if c.repair {
		unix.Unlinkat(c.r.fd, name, 0)
	}
}

// remove unlinks name as a repair and records the result in p.
func (c *checker) remove(p *FsckProblem, name string) {
	if !c.repair {
		return
	}
	if err := unix.Unlinkat(c.r.fd, name, 0); err != nil && err != unix.ENOENT {
		c.add(FsckProblem{Kind: FsckRepairFailed, Path: name, Detail: err.Error()})
		return
	}
	p.Repaired = true
}

func (c *checker) run(checkObjects bool) error {
	c.checkMetadata()
	if checkObjects {
		if err := c.checkObjects(); err != nil {
			return err
		}
	}
	for _, category := range []string{streamsDir, imagesDir} {
		if err := c.checkEntries(category); err != nil {
			return err
		}
	}
	for _, category := range []string{streamsDir, imagesDir} {
		if err := c.checkRefs(category); err != nil {
			return err
		}
	}
	return nil
}

func (c *checker) checkMetadata() {
	m, err := readMeta(c.r.fd)
	if err != nil {
		c.add(FsckProblem{Kind: FsckMetadataParseFailed, Path: metaName, Detail: err.Error()})
		return
	}
	c.rep.HasMetadata = true
	alg, _, err := m.check()
	if err != nil {
		c.add(FsckProblem{Kind: FsckMetadataParseFailed, Path: metaName, Detail: err.Error()})
		return
	}
	if alg != c.r.alg {
		c.add(FsckProblem{Kind: FsckMetadataAlgorithmMismatch, Path: metaName,
			Detail: fmt.Sprintf("expected %s, repository opened as %s", m.Algorithm, algorithmName(c.r.alg))})
	}
}

// checkObjects verifies every object, the fan-out directories in parallel.
func (c *checker) checkObjects() error {
	top, err := c.r.readDir(objectsDir)
	if err != nil {
		return err
	}
	var dirs []string
	for _, e := range top {
		name := objectsDir + "/" + e.name
		switch {
		case strings.HasPrefix(e.name, tempPrefix):
			c.temp(name)
		case e.typ == unix.S_IFDIR && isFanout(e.name):
			dirs = append(dirs, e.name)
		default:
			c.add(FsckProblem{Kind: FsckUnexpectedFileType, Path: name, Detail: "not an object fan-out directory"})
		}
	}
	work := make(chan string)
	errs := make(chan error, len(dirs))
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), max(len(dirs), 1)) {
		wg.Go(func() {
			for dir := range work {
				errs <- c.checkObjectDir(dir)
			}
		})
	}
	for _, d := range dirs {
		work <- d
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	// Deterministic order whatever the scheduling.
	sort.SliceStable(c.rep.Errors, func(i, j int) bool {
		return c.rep.Errors[i].Path < c.rep.Errors[j].Path
	})
	return nil
}

func (c *checker) checkObjectDir(fan string) error {
	dir := objectsDir + "/" + fan
	ents, err := c.r.readDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := dir + "/" + e.name
		d, ok := objects.ParsePath(fan+"/"+e.name, c.r.alg.Size())
		if !ok {
			c.add(FsckProblem{Kind: FsckObjectInvalidName, Path: name,
				Detail: fmt.Sprintf("not a %s object name", c.r.alg)})
			continue
		}
		if e.typ != unix.S_IFREG {
			c.add(FsckProblem{Kind: FsckUnexpectedFileType, Path: name, Detail: "not a regular file"})
			continue
		}
		c.mu.Lock()
		c.rep.ObjectsChecked++
		c.mu.Unlock()
		if p := c.checkObject(name, d); p != nil {
			c.mu.Lock()
			c.rep.ObjectsCorrupted++
			c.mu.Unlock()
		}
	}
	return nil
}

// checkObject verifies one object and repairs it if asked; it returns the
// problem found, or nil.
func (c *checker) checkObject(name string, d []byte) *FsckProblem {
	f, err := openFile(c.r.fd, name)
	if err != nil {
		return c.add(FsckProblem{Kind: FsckObjectOpenFailed, Path: name, Detail: err.Error()})
	}
	defer f.Close()
	alg, got, err := c.r.kernel.Measure(f)
	switch {
	case err == nil && alg == c.r.alg && bytes.Equal(got, d):
		return nil
	case err == nil:
		p := c.add(FsckProblem{Kind: FsckObjectDigestMismatch, Path: name, Measured: fmt.Sprintf("%s:%x", alg, got)})
		c.remove(p, name)
		return p
	case errors.Is(err, verity.ErrNoVerity) && c.r.secure:
		p := c.add(FsckProblem{Kind: FsckObjectVerityMissing, Path: name})
		c.sealObject(p, f, name, d)
		return p
	case !errors.Is(err, verity.ErrNoVerity) && !errors.Is(err, verity.ErrNotSupported):
		return c.add(FsckProblem{Kind: FsckObjectVerityFailed, Path: name, Detail: err.Error()})
	}
	got, err = verity.Digest(io.NewSectionReader(f, 0, 1<<62), c.r.alg)
	if err != nil {
		return c.add(FsckProblem{Kind: FsckObjectOpenFailed, Path: name, Detail: err.Error()})
	}
	if !bytes.Equal(got, d) {
		p := c.add(FsckProblem{Kind: FsckObjectDigestMismatch, Path: name, Measured: hexDigest(got)})
		c.remove(p, name)
		return p
	}
	return nil
}

// sealObject repairs an object without fs-verity in a secure repository:
// fs-verity is enabled if the content matches the name, else the object is
// removed.
func (c *checker) sealObject(p *FsckProblem, f *os.File, name string, d []byte) {
	if !c.repair {
		return
	}
	if err := c.r.kernel.Enable(f, c.r.alg); err != nil {
		p.Detail = "enable fs-verity: " + err.Error()
		return
	}
	if _, got, err := c.r.kernel.Measure(f); err == nil && bytes.Equal(got, d) {
		p.Repaired = true
		return
	}
	p.Detail = "content does not match the name: removed"
	c.remove(p, name)
}

// checkEntries checks the first-level entries of streams/ or images/.
func (c *checker) checkEntries(category string) error {
	ents, err := c.r.readDir(category)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := category + "/" + e.name
		switch {
		case e.name == refsDir:
			continue
		case strings.HasPrefix(e.name, tempPrefix):
			c.temp(name)
			continue
		}
		corrupted := &c.rep.StreamsCorrupted
		if category == imagesDir {
			c.rep.ImagesChecked++
			corrupted = &c.rep.ImagesCorrupted
		} else {
			c.rep.StreamsChecked++
		}
		if p := c.checkEntry(category, e, name); p != nil {
			*corrupted++
		}
	}
	return nil
}

// checkEntry checks one entry; it returns the first problem found, or nil.
func (c *checker) checkEntry(category string, e dirEntry, name string) *FsckProblem {
	if e.typ != unix.S_IFLNK {
		return c.add(FsckProblem{Kind: FsckEntryNotSymlink, Path: name})
	}
	target, err := c.r.readlink(name)
	if err != nil {
		return c.add(FsckProblem{Kind: FsckStatFailed, Path: name, Detail: err.Error()})
	}
	d, ok := c.r.parseObjectLink(target)
	if !ok || (category == imagesDir && hexDigest(d) != e.name) {
		p := c.add(FsckProblem{Kind: FsckInvalidSymlink, Path: name, Detail: fmt.Sprintf("links to %q", target)})
		c.remove(p, name)
		return p
	}
	if ok, err := c.r.exists(name); err != nil {
		return c.add(FsckProblem{Kind: FsckStatFailed, Path: name, Detail: err.Error()})
	} else if !ok {
		c.rep.BrokenLinks++
		p := c.add(FsckProblem{Kind: FsckBrokenSymlink, Path: name, ObjectID: hexDigest(d)})
		c.remove(p, name)
		return p
	}
	if category == imagesDir {
		return c.checkImage(name, d)
	}
	return c.checkStream(name, d)
}

// missing checks that an object is present; if it is absent, or its
// presence cannot be checked, it adds and returns the problem made by mk.
func (c *checker) missing(d []byte, mk func() FsckProblem) *FsckProblem {
	ok, err := c.r.objs.Has(d)
	switch {
	case err != nil:
		p := mk()
		p.Kind, p.Detail = FsckObjectCheckFailed, err.Error()
		return c.add(p)
	case !ok:
		c.rep.MissingObjects++
		return c.add(mk())
	}
	return nil
}

func (c *checker) checkStream(name string, d []byte) *FsckProblem {
	rd, err := c.r.readStream(d)
	if err != nil {
		return c.add(FsckProblem{Kind: FsckStreamOpenFailed, Path: name, Detail: err.Error()})
	}
	var first *FsckProblem
	note := func(p *FsckProblem) {
		if first == nil {
			first = p
		}
	}
	complete := true
	for _, o := range rd.ObjectRefs() {
		if p := c.missing(o, func() FsckProblem {
			return FsckProblem{Kind: FsckMissingObjectRef, Path: name, ObjectID: hexDigest(o)}
		}); p != nil {
			complete = false
			note(p)
		}
	}
	for _, n := range rd.NamedRefs() {
		note(c.missing(n.Digest, func() FsckProblem {
			return FsckProblem{Kind: FsckMissingNamedRef, Path: name, RefName: n.Name, ObjectID: hexDigest(n.Digest)}
		}))
	}
	if err := c.decodeStream(rd, complete); err != nil {
		note(c.add(FsckProblem{Kind: FsckStreamReadFailed, Path: name, Detail: err.Error()}))
	}
	return first
}

// decodeStream decodes every chunk and, when all objects are there, checks
// that the chunks add up to the recorded stream size.
func (c *checker) decodeStream(rd *splitstream.Reader, complete bool) error {
	sizes := map[string]int64{}
	var total int64
	err := rd.Chunks(func(ch splitstream.Chunk) error {
		if !ch.IsExternal() {
			total += ch.Size
			return nil
		}
		if !complete {
			return nil
		}
		n, ok := sizes[string(ch.Object)]
		if !ok {
			var st unix.Stat_t
			if err := unix.Fstatat(c.r.fd, objectPath(ch.Object), &st, 0); err != nil {
				return fmt.Errorf("object %x: %w", ch.Object, err)
			}
			n = st.Size
			sizes[string(ch.Object)] = n
		}
		total += n
		return nil
	})
	if err != nil {
		return err
	}
	if complete && total != rd.StreamSize() {
		return fmt.Errorf("chunks add up to %d bytes, the stream records %d", total, rd.StreamSize())
	}
	return nil
}

func (c *checker) checkImage(name string, d []byte) *FsckProblem {
	var first *FsckProblem
	err := c.r.imageObjects(d, func(o []byte) {
		p := c.missing(o, func() FsckProblem {
			return FsckProblem{Kind: FsckImageMissingObject, Path: name, ObjectID: hexDigest(o)}
		})
		if first == nil {
			first = p
		}
	})
	if err != nil {
		kind := FsckImageInvalid
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, objects.ErrDigestMismatch) {
			kind = FsckImageOpenFailed
		}
		return c.add(FsckProblem{Kind: kind, Path: name, Detail: err.Error()})
	}
	return first
}

// checkRefs checks the refs tree of a category.
func (c *checker) checkRefs(category string) error {
	base := category + "/" + refsDir
	return c.r.walkDir(base, "", false, func(name string, typ uint32) error {
		full := base + "/" + name
		switch {
		case strings.HasPrefix(name[strings.LastIndexByte(name, '/')+1:], tempPrefix):
			c.temp(full)
		case typ == unix.S_IFLNK:
			if _, err := c.r.refEntry(category, name); err != nil {
				p := c.add(FsckProblem{Kind: FsckInvalidSymlink, Path: full, Detail: err.Error()})
				c.remove(p, full)
				return nil
			}
			ok, err := c.r.exists(full)
			switch {
			case err != nil:
				c.add(FsckProblem{Kind: FsckStatFailed, Path: full, Detail: err.Error()})
			case !ok:
				c.rep.BrokenLinks++
				p := c.add(FsckProblem{Kind: FsckBrokenSymlink, Path: full})
				c.remove(p, full)
			}
		default:
			c.add(FsckProblem{Kind: FsckUnexpectedFileType, Path: full, Detail: "not a directory or symlink"})
		}
		return nil
	})
}
