package ostreecompat

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/ostreecompat/gvariant"
	"github.com/gocfs/gocfs/ostreecompat/ostree"
	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/store/objects"
	"github.com/gocfs/gocfs/store/oci"
	"github.com/gocfs/gocfs/verity"
)

// source is a store image to synthesize a commit of.
type source struct {
	digest string // the image's fs-verity digest, hex
	root   *tree.Inode
	oci    *oci.Inspection // the OCI image it was made of, or nil
}

// openSource resolves image as Synthesize documents and reads its tree.
func openSource(st *store.Repository, image string) (*source, error) {
	f, d, err := st.OpenImage(image)
	var ins *oci.Inspection
	if errors.Is(err, store.ErrNotFound) {
		var ierr error
		if ins, ierr = oci.Inspect(st, image); ierr != nil {
			return nil, fmt.Errorf("image %s: not an image or OCI image of the store: %w", image, err)
		}
		if len(ins.Image) == 0 {
			return nil, fmt.Errorf("OCI image %s has no EROFS image (an artifact?)", image)
		}
		f, d, err = st.OpenImage(ins.Image.String())
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	root, _, err := erofs.ReadTree(f, fi.Size())
	if err != nil {
		return nil, fmt.Errorf("image %x: %w", d, err)
	}
	src := &source{digest: hex.EncodeToString(d), root: root, oci: ins}
	if src.oci == nil {
		if src.oci, err = ociImageOf(st, src.digest); err != nil {
			return nil, err
		}
	}
	return src, nil
}

// ociImageOf returns the tagged OCI image whose EROFS image (or boot image)
// is the image with the given digest, or nil.
func ociImageOf(st *store.Repository, digest string) (*oci.Inspection, error) {
	infos, err := oci.Images(st)
	if err != nil {
		return nil, err
	}
	for _, in := range infos {
		if in.Error == "" && (in.Image.String() == digest || in.BootImage.String() == digest) {
			return oci.Inspect(st, in.Tag)
		}
	}
	return nil, nil
}

// Top-level directories mounted over at boot: only the directories
// themselves go into a commit.
var apiMounts = []string{"dev", "proc", "run", "sys", "tmp"}

// ostreeLayout rearranges an image's tree as ostree deployments want it:
// /etc becomes /usr/etc, the API mount points are emptied, and
// security.selinux labels end with a NUL as the kernel stores them.
func ostreeLayout(root *tree.Inode) error {
	for _, name := range apiMounts {
		d := root.Lookup(name)
		if d == nil {
			continue
		}
		if !d.Inode.IsDir() {
			root.Remove(name)
			continue
		}
		empty := *d.Inode
		empty.Entries = nil
		d.Inode = &empty
	}
	if d := root.Lookup("etc"); d != nil && d.Inode.IsDir() {
		root.Remove("etc")
		usr := root.Lookup("usr")
		if usr == nil {
			usr = &tree.Dirent{Name: "usr", Inode: &tree.Inode{Mode: tree.TypeDir | 0o755, Nlink: 2}}
			if err := root.Insert(usr); err != nil {
				return err
			}
		}
		if !usr.Inode.IsDir() {
			return errors.New("/usr is not a directory, so /etc cannot move to /usr/etc")
		}
		if err := mergeDir(usr.Inode, "etc", d.Inode, "/usr/etc"); err != nil {
			return err
		}
	}
	fixLabels(root, map[*tree.Inode]bool{})
	return nil
}

// mergeDir puts src into dir under name, merging it into a directory
// already there: src's metadata and entries win, subdirectories merge.
func mergeDir(dir *tree.Inode, name string, src *tree.Inode, path string) error {
	d := dir.Lookup(name)
	if d == nil {
		return dir.Insert(&tree.Dirent{Name: name, Inode: src})
	}
	if !d.Inode.IsDir() {
		return fmt.Errorf("%s is not a directory, so /etc cannot merge into it", path)
	}
	dst := d.Inode
	dst.Mode, dst.UID, dst.GID, dst.Xattrs, dst.Mtime = src.Mode, src.UID, src.GID, src.Xattrs, src.Mtime
	for _, e := range src.Entries {
		if e.Inode.IsDir() && !e.Hardlink {
			if o := dst.Lookup(e.Name); o != nil && o.Inode.IsDir() {
				if err := mergeDir(dst, e.Name, e.Inode, path+"/"+e.Name); err != nil {
					return err
				}
				continue
			}
		}
		dst.Remove(e.Name)
		if err := dst.Insert(e); err != nil {
			return err
		}
	}
	return nil
}

// fixLabels appends the NUL the kernel keeps at the end of SELinux labels
// to labels without one (composefs-rs strips it), so that checksums match
// what ostree fsck reads back from a labelled filesystem.
func fixLabels(n *tree.Inode, seen map[*tree.Inode]bool) {
	if seen[n] {
		return
	}
	seen[n] = true
	for i, x := range n.Xattrs {
		if x.Name == "security.selinux" && x.Value != "" && x.Value[len(x.Value)-1] != 0 {
			xs := slices.Clone(n.Xattrs)
			xs[i].Value += "\x00"
			n.Xattrs = xs
		}
	}
	for _, e := range n.Entries {
		fixLabels(e.Inode, seen)
	}
}

// fileJob is a regular file of the tree, once per inode.
type fileJob struct {
	path string
	n    *tree.Inode
}

// fileSum is what hashing a regular file gives: its content checksum and
// the sha256 fs-verity digest of its content (nil when empty).
type fileSum struct {
	checksum string
	verity   []byte
}

// synth holds the state of one synthesis or verification.
type synth struct {
	ctx   context.Context
	st    *store.Repository
	dst   *ostree.Repo // nil when only computing checksums
	copy  bool
	stats SynthStats
	// noClone is set once the filesystem refused a clone: the remaining
	// files are copied without trying.
	noClone atomic.Bool
	// trustDigests: the store's digests are sha256 fs-verity digests the
	// kernel checks on open, so they are the ones ostree's image wants.
	trustDigests bool

	mu   sync.Mutex
	sums map[*tree.Inode]fileSum
}

func newSynth(ctx context.Context, st *store.Repository, dst *ostree.Repo, copy bool) *synth {
	return &synth{ctx: ctx, st: st, dst: dst, copy: copy, sums: map[*tree.Inode]fileSum{},
		trustDigests: st.Secure() && st.Algorithm() == verity.SHA256}
}

// regularFiles lists the tree's regular files, each inode once, and refuses
// what an ostree commit cannot hold, naming its path.
func regularFiles(root *tree.Inode) ([]fileJob, error) {
	var jobs []fileJob
	seen := map[*tree.Inode]bool{}
	err := tree.Walk(root, func(p string, d *tree.Dirent) error {
		n := d.Inode
		if err := ostree.ValidName(d.Name); err != nil {
			return fmt.Errorf("%q: %w", "/"+p, err)
		}
		switch {
		case n.IsReg():
			if !seen[n] {
				seen[n] = true
				jobs = append(jobs, fileJob{"/" + p, n})
			}
		case n.IsSymlink():
			if !utf8.ValidString(n.Payload) {
				return fmt.Errorf("%q: symlink target %q is not valid UTF-8", "/"+p, n.Payload)
			}
		case n.IsDir():
		default:
			return fmt.Errorf("%q: file type %#o cannot be stored in an ostree commit", "/"+p, n.Type())
		}
		return nil
	})
	return jobs, err
}

// files hashes (and, with a destination, stores) every regular file, in
// parallel.
func (s *synth) files(jobs []fileJob) error {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	ch := make(chan fileJob)
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			buf := make([]byte, 256<<10)
			for j := range ch {
				sum, err := s.file(j, buf)
				if err != nil {
					once.Do(func() { first = err; cancel() })
					continue
				}
				s.mu.Lock()
				s.sums[j.n] = sum
				s.mu.Unlock()
			}
		})
	}
feed:
	for _, j := range jobs {
		select {
		case ch <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if first != nil {
		return first
	}
	return s.ctx.Err()
}

func (s *synth) file(j fileJob, buf []byte) (fileSum, error) {
	if err := s.ctx.Err(); err != nil {
		return fileSum{}, err
	}
	m := ostree.FileMetaOf(j.n)
	if j.n.Content != nil || j.n.Size == 0 {
		return s.inlineFile(j, m)
	}
	sum, err := s.externalFile(j, m, buf)
	if err != nil {
		return fileSum{}, fmt.Errorf("%s: %w", j.path, err)
	}
	return sum, nil
}

func (s *synth) inlineFile(j fileJob, m *ostree.FileMeta) (fileSum, error) {
	if uint64(len(j.n.Content)) != j.n.Size {
		return fileSum{}, fmt.Errorf("%s: %d bytes inline for size %d", j.path, len(j.n.Content), j.n.Size)
	}
	var sum fileSum
	var err error
	if s.dst != nil {
		sum.checksum, err = s.dst.WriteFile(m, bytes.NewReader(j.n.Content))
		atomic.AddInt64(&s.stats.Inline, 1)
	} else {
		sum.checksum, err = ostree.ContentChecksum(m, bytes.NewReader(j.n.Content))
	}
	if err != nil {
		return fileSum{}, fmt.Errorf("%s: %w", j.path, err)
	}
	if len(j.n.Content) > 0 {
		sum.verity = verity.DigestBytes(j.n.Content, verity.SHA256)
	}
	return sum, nil
}

// objectDigest returns the store digest naming an external file's object.
func (s *synth) objectDigest(n *tree.Inode) ([]byte, error) {
	size := s.st.Algorithm().Size()
	if n.Payload != "" {
		d, ok := objects.ParsePath(n.Payload, size)
		if !ok {
			return nil, fmt.Errorf("payload %q does not name an object of the store", n.Payload)
		}
		if n.Digest != nil && !bytes.Equal(n.Digest, d) {
			return nil, fmt.Errorf("payload %q and digest %x disagree", n.Payload, n.Digest)
		}
		return d, nil
	}
	if len(n.Digest) != size {
		return nil, errors.New("external file without a store object")
	}
	return n.Digest, nil
}

func (s *synth) externalFile(j fileJob, m *ostree.FileMeta, buf []byte) (fileSum, error) {
	d, err := s.objectDigest(j.n)
	if err != nil {
		return fileSum{}, err
	}
	src, err := s.st.OpenObject(d)
	if err != nil {
		return fileSum{}, err
	}
	defer src.Close()
	h, err := ostree.NewContentHash(m)
	if err != nil {
		return fileSum{}, err
	}
	var vh *verity.Hash
	w := io.Writer(h)
	if !s.trustDigests {
		vh = verity.New(verity.SHA256)
		w = io.MultiWriter(h, vh)
	}
	n, err := io.CopyBuffer(w, struct{ io.Reader }{src}, buf)
	if err != nil {
		return fileSum{}, fmt.Errorf("reading store object %x: %w", d, err)
	}
	if uint64(n) != j.n.Size {
		return fileSum{}, fmt.Errorf("store object %x has %d bytes, the image says %d", d, n, j.n.Size)
	}
	sum := fileSum{checksum: hex.EncodeToString(h.Sum(nil)), verity: d}
	if vh != nil {
		sum.verity = vh.Sum(nil)
	}
	if s.dst == nil {
		return sum, nil
	}
	ok, err := s.dst.HasObject(ostree.ObjFile, sum.checksum)
	if err != nil {
		return fileSum{}, err
	}
	if ok {
		atomic.AddInt64(&s.stats.Existing, 1)
		return sum, nil
	}
	err = s.dst.WriteFileObject(sum.checksum, m, func(f *os.File) error { return s.fill(f, src, n) })
	if err != nil {
		return fileSum{}, err
	}
	atomic.AddInt64(&s.stats.Bytes, n)
	return sum, nil
}

// fill puts the content of the store object src into the new object file
// dst: cloned, or copied where cloning is refused and copying allowed.
func (s *synth) fill(dst, src *os.File, size int64) error {
	if !s.noClone.Load() {
		err := unix.IoctlFileClone(int(dst.Fd()), int(src.Fd()))
		if err == nil {
			atomic.AddInt64(&s.stats.Reflinked, 1)
			return nil
		}
		if !refused(err) {
			return fmt.Errorf("cloning %s: %w", src.Name(), err)
		}
		if !s.copy {
			return fmt.Errorf("cloning %s into %s: %w: %w", src.Name(), s.dst.Path(), ErrNoReflink, err)
		}
		s.noClone.Store(true)
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return err
	}
	n, err := io.Copy(dst, src)
	if err != nil {
		return fmt.Errorf("copying %s: %w", src.Name(), err)
	}
	if n != size {
		return fmt.Errorf("copying %s: %d bytes, want %d", src.Name(), n, size)
	}
	atomic.AddInt64(&s.stats.Copied, 1)
	return nil
}

// refused reports whether a FICLONE error means the filesystems cannot
// share blocks (rather than that something failed).
func refused(err error) bool {
	for _, e := range []error{unix.EOPNOTSUPP, unix.EXDEV, unix.EINVAL, unix.ENOTTY, unix.ENOSYS} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// checksumOf is the FileFunc of WriteTree and ChecksumTree: the files are
// hashed (and stored) by then.
func (s *synth) checksumOf(path string, n *tree.Inode) (string, error) {
	sum, ok := s.sums[n]
	if !ok {
		return "", fmt.Errorf("%s: not hashed", path)
	}
	return sum.checksum, nil
}

// verityByChecksum maps content checksums to sha256 fs-verity digests.
func (s *synth) verityByChecksum() map[string][]byte {
	m := make(map[string][]byte, len(s.sums))
	for _, sum := range s.sums {
		if sum.verity != nil {
			m[sum.checksum] = sum.verity
		}
	}
	return m
}

// plan reads the image and hashes (and, with a destination, stores) its
// files: what synthesis and verification share.
func (s *synth) plan(image string) (*source, error) {
	src, err := openSource(s.st, image)
	if err != nil {
		return nil, err
	}
	if err := ostreeLayout(src.root); err != nil {
		return nil, fmt.Errorf("image %s: %w", src.digest, err)
	}
	jobs, err := regularFiles(src.root)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", src.digest, err)
	}
	if err := s.files(jobs); err != nil {
		return nil, fmt.Errorf("image %s: %w", src.digest, err)
	}
	return src, nil
}

func synthesize(ctx context.Context, st *store.Repository, image string, dst *ostree.Repo, opts SynthOptions) (string, error) {
	s := newSynth(ctx, st, dst, opts.Copy)
	if opts.Stats != nil {
		defer func() { *opts.Stats = s.stats }()
	}
	src, err := s.plan(image)
	if err != nil {
		return "", err
	}
	root, err := dst.WriteTree(src.root, s.checksumOf)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", src.digest, err)
	}
	cfs, err := composefsDigest(dst, root, s.verityByChecksum())
	if err != nil {
		return "", fmt.Errorf("image %s: %w", src.digest, err)
	}
	md, err := commitMetadata(src, cfs)
	if err != nil {
		return "", err
	}
	c := &ostree.Commit{
		Metadata:  md,
		Parent:    opts.Parent,
		Subject:   opts.Subject,
		Body:      opts.Body,
		Timestamp: commitTime(src, opts.Timestamp),
		RootTree:  root.Tree,
		RootMeta:  root.Meta,
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	commit, err := dst.WriteCommit(c)
	if err != nil {
		return "", err
	}
	if opts.Branch != "" {
		if err := dst.SetRef(opts.Branch, commit); err != nil {
			return "", err
		}
	}
	return commit, nil
}

func commitTime(src *source, t time.Time) uint64 {
	switch {
	case !t.IsZero():
	case src.oci != nil && src.oci.Created != nil && src.oci.Created.Unix() > 0:
		t = *src.oci.Created
	case src.root.Mtime.Sec > 0:
		return uint64(src.root.Mtime.Sec)
	default:
		t = time.Now()
	}
	return uint64(max(t.Unix(), 0))
}

func variant(sig string, v any) gvariant.Variant {
	return gvariant.Variant{Type: gvariant.MustParseType(sig), Value: v}
}

// commitMetadata returns the metadata of a synthesized commit, in the
// order the package documentation gives.
func commitMetadata(src *source, cfs []byte) ([]ostree.Metadata, error) {
	var md []ostree.Metadata
	add := func(k, sig string, v any) { md = append(md, ostree.Metadata{Key: k, Value: variant(sig, v)}) }
	if o := src.oci; o != nil {
		add(KeyManifestDigest, "s", o.ManifestDigest.String())
		add(KeyManifest, "s", string(o.Manifest))
		if o.Config != nil {
			add(KeyImageConfig, "s", string(o.Config))
		}
		if o.ConfigDigest != "" {
			add(KeyConfigDigest, "s", o.ConfigDigest.String())
		}
		add(KeyBootcSynth, "b", true)
	}
	if kver := kernelVersion(src.root); kver != "" {
		add(KeyBootable, "b", true)
		add(KeyLinux, "s", kver)
	}
	add(KeySynthesizedFrom, "s", src.digest)
	add(KeyComposefsDigest, "ay", cfs)
	for _, m := range md {
		if _, err := gvariant.Marshal(m.Value.Type, m.Value.Value); err != nil {
			return nil, fmt.Errorf("commit metadata %s: %w", m.Key, err)
		}
	}
	return md, nil
}

// kernelVersion returns the version of the one kernel the tree has as
// /usr/lib/modules/VERSION/vmlinuz, as `ostree commit --bootable` finds it;
// "" for none or several.
func kernelVersion(root *tree.Inode) string {
	mods, err := tree.Resolve(root, "usr/lib/modules")
	if err != nil || !mods.IsDir() {
		return ""
	}
	kver := ""
	for _, d := range mods.Entries {
		if !d.Inode.IsDir() {
			continue
		}
		if k := d.Inode.Lookup("vmlinuz"); k != nil && k.Inode.IsReg() {
			if kver != "" {
				return ""
			}
			kver = d.Name
		}
	}
	return kver
}

func verifySynthesized(ctx context.Context, st *store.Repository, image string, r *ostree.Repo, commit string) error {
	c, err := r.ReadCommit(commit)
	if err != nil {
		return err
	}
	from, ok := c.Lookup(KeySynthesizedFrom)
	if !ok {
		return fmt.Errorf("commit %s: no %s: not synthesized from a store image", commit, KeySynthesizedFrom)
	}
	s := newSynth(ctx, st, nil, false)
	src, err := s.plan(image)
	if err != nil {
		return err
	}
	if v, _ := from.Value.(string); from.Type.String() != "s" || v != src.digest {
		return fmt.Errorf("commit %s: synthesized from image %v, not %s", commit, from.Value, src.digest)
	}
	want, err := ostree.ChecksumTree(src.root, s.checksumOf)
	if err != nil {
		return fmt.Errorf("image %s: %w", src.digest, err)
	}
	if want.Tree != c.RootTree || want.Meta != c.RootMeta {
		return fmt.Errorf("commit %s: root dirtree %s dirmeta %s, the image gives %s %s",
			commit, c.RootTree, c.RootMeta, want.Tree, want.Meta)
	}
	if err := checkPresent(r, want); err != nil {
		return fmt.Errorf("commit %s: %w", commit, err)
	}
	cfs, err := composefsDigest(r, want, s.verityByChecksum())
	if err != nil {
		return fmt.Errorf("commit %s: %w", commit, err)
	}
	got, ok := c.Lookup(KeyComposefsDigest)
	if b, _ := got.Value.([]byte); !ok || got.Type.String() != "ay" || !bytes.Equal(b, cfs) {
		return fmt.Errorf("commit %s: %s is %x, the tree's composefs image has %x", commit, KeyComposefsDigest, got.Value, cfs)
	}
	return nil
}

// checkPresent checks that every object of a tree is in the repository;
// metadata objects are also checked against their checksums.
func checkPresent(r *ostree.Repo, root ostree.Root) error {
	seen := map[string]bool{}
	var dir func(root ostree.Root, path string) error
	dir = func(root ostree.Root, path string) error {
		if !seen[root.Meta] {
			seen[root.Meta] = true
			if _, err := r.ReadDirMeta(root.Meta); err != nil {
				return fmt.Errorf("%s: %w", path+"/", err)
			}
		}
		if seen[root.Tree] {
			return nil
		}
		seen[root.Tree] = true
		dt, err := r.ReadDirTree(root.Tree)
		if err != nil {
			return fmt.Errorf("%s: %w", path+"/", err)
		}
		for _, f := range dt.Files {
			ok, err := r.HasObject(ostree.ObjFile, f.Checksum)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%s/%s: file object %s missing", path, f.Name, f.Checksum)
			}
		}
		for _, d := range dt.Dirs {
			if err := dir(ostree.Root{Tree: d.Tree, Meta: d.Meta}, path+"/"+d.Name); err != nil {
				return err
			}
		}
		return nil
	}
	return dir(root, "")
}
