package ostreecompat

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/ostreecompat/ostree"
	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/store/oci"
)

// Policy says whether an ostree repository shares file contents with a
// composefs store, with the names of bootc's [install.storage] unified
// setting.
type Policy int

const (
	// PolicyDisabled keeps the two stores apart: SetUnified with it
	// removes the markers, and Commit refuses it.
	PolicyDisabled Policy = iota
	// PolicyEnabled shares every file's data blocks (FICLONE) and fails,
	// before writing anything, where the filesystem cannot.
	PolicyEnabled
	// PolicyEnabledWithCopy shares where the filesystem can and copies
	// the bytes where it cannot (ext4, or two filesystems).
	PolicyEnabledWithCopy
)

var policyNames = [...]string{"disabled", "enabled", "enabled-with-copy"}

func (p Policy) String() string {
	if p < 0 || int(p) >= len(policyNames) {
		return fmt.Sprintf("Policy(%d)", int(p))
	}
	return policyNames[p]
}

// ParsePolicy parses a policy name: disabled, enabled or enabled-with-copy.
func ParsePolicy(s string) (Policy, error) {
	for i, n := range policyNames {
		if s == n {
			return Policy(i), nil
		}
	}
	return 0, fmt.Errorf("unified-storage policy %q: want disabled, enabled or enabled-with-copy", s)
}

// MarshalText writes the policy's name.
func (p Policy) MarshalText() ([]byte, error) {
	if p < 0 || int(p) >= len(policyNames) {
		return nil, fmt.Errorf("invalid unified-storage policy %d", int(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText parses a policy's name.
func (p *Policy) UnmarshalText(b []byte) error {
	v, err := ParsePolicy(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Scope is what set-unified joins to the composefs store (bootc's
// set-unified argument). bootc's "full" also routes pulls through
// containers-storage, which this project does not have; here it extends the
// sharing from the commits made from the store to every file the ostree
// repository already held.
type Scope int

const (
	// ScopeComposefs binds the ostree repository to the store: every
	// tagged store image gets a commit whose files share the store
	// objects' blocks. The state becomes bound.
	ScopeComposefs Scope = iota
	// ScopeFull does what ScopeComposefs does, then makes every other
	// ostree file object whose bytes equal a store object share that
	// object's blocks (the kernel compares the bytes: FIDEDUPERANGE), so
	// classic commits stop holding a second copy. The state becomes
	// unified.
	ScopeFull
)

var scopeNames = [...]string{"composefs", "full"}

func (s Scope) String() string {
	if s < 0 || int(s) >= len(scopeNames) {
		return fmt.Sprintf("Scope(%d)", int(s))
	}
	return scopeNames[s]
}

// ParseScope parses composefs or full.
func ParseScope(s string) (Scope, error) {
	for i, n := range scopeNames {
		if s == n {
			return Scope(i), nil
		}
	}
	return 0, fmt.Errorf("unified-storage scope %q: want composefs or full", s)
}

// MarshalText writes the scope's name.
func (s Scope) MarshalText() ([]byte, error) {
	if s < 0 || int(s) >= len(scopeNames) {
		return nil, fmt.Errorf("invalid unified-storage scope %d", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText parses a scope's name.
func (s *Scope) UnmarshalText(b []byte) error {
	v, err := ParseScope(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// State is the unified-storage state the markers record.
type State int

const (
	// StateNone: no marker; the stores are independent.
	StateNone State = iota
	// StateBound: the ostree repository's config has [composefs]
	// unified=true (bootc's binding signal) and the store has no marker
	// of scope full: commits of store images share their blocks.
	StateBound
	// StateUnified: bound, and the store's marker records scope full.
	StateUnified
)

var stateNames = [...]string{"none", "bound", "unified"}

func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("State(%d)", int(s))
	}
	return stateNames[s]
}

// MarshalText writes the state's name.
func (s State) MarshalText() ([]byte, error) {
	if s < 0 || int(s) >= len(stateNames) {
		return nil, fmt.Errorf("invalid unified-storage state %d", int(s))
	}
	return []byte(s.String()), nil
}

// MarkerName is the store's unified-storage marker, in the store's
// directory beside meta.json (where bootc keeps its bootc.json, whose
// meaning, containers-storage taking part, does not apply here).
const MarkerName = "ostree-unified.json"

// markerVersion is the Marker format this package writes and reads.
const markerVersion = 1

// Marker is the content of MarkerName: pretty JSON with kebab-case keys, as
// bootc writes bootc.json. It is written last, after every commit and the
// ostree config, so a failed run never leaves it behind.
type Marker struct {
	Version int    `json:"version"`
	Unified Policy `json:"unified"`
	Scope   Scope  `json:"scope"`
	// OSTreeRepo is the bound ostree repository, relative to the store's
	// directory when it can be (../ostree/repo on a sysroot).
	OSTreeRepo string `json:"ostree-repo"`
}

// ReadMarker returns the store's marker, or nil when there is none.
func ReadMarker(storeDir string) (*Marker, error) {
	p := filepath.Join(storeDir, MarkerName)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("unified-storage marker: %w", err)
	}
	var m Marker
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("unified-storage marker %s: %w", p, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("unified-storage marker %s: data after the JSON object", p)
	}
	if m.Version != markerVersion {
		return nil, fmt.Errorf("unified-storage marker %s: version %d, this tool reads version %d", p, m.Version, markerVersion)
	}
	if m.Unified == PolicyDisabled {
		return nil, fmt.Errorf("unified-storage marker %s: policy disabled is never recorded", p)
	}
	if m.OSTreeRepo == "" {
		return nil, fmt.Errorf("unified-storage marker %s: no ostree-repo", p)
	}
	return &m, nil
}

// RepoPath returns the marker's ostree repository as a path usable from
// the current directory.
func (m *Marker) RepoPath(storeDir string) string {
	if filepath.IsAbs(m.OSTreeRepo) {
		return m.OSTreeRepo
	}
	return filepath.Join(storeDir, m.OSTreeRepo)
}

func writeMarker(storeDir string, m *Marker) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("unified-storage marker: %w", err)
	}
	return replaceFile(filepath.Join(storeDir, MarkerName), append(b, '\n'), 0o644)
}

func removeMarker(storeDir string) error {
	err := os.Remove(filepath.Join(storeDir, MarkerName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unified-storage marker: %w", err)
	}
	return syncPath(storeDir)
}

// relRepoPath is repoPath as the marker records it: relative to the
// store, so that the marker holds wherever the sysroot is mounted (at
// /sysroot in the initramfs, at / after boot).
func relRepoPath(storeDir, repoPath string) string {
	a, errA := filepath.Abs(storeDir)
	b, errB := filepath.Abs(repoPath)
	if errA != nil || errB != nil {
		return repoPath
	}
	rel, err := filepath.Rel(a, b)
	if err != nil {
		return b
	}
	return rel
}

// ProbeReflink reports whether a file in srcDir can share its blocks with
// a file in dstDir: it makes a one-byte unnamed file in each and clones the
// first into the second (FICLONE), as bootc's probe does, but across the two
// directories, since a clone also needs both on the same mount. The files
// vanish when closed. An error means a directory could not be used; a
// filesystem that cannot clone gives false and no error.
func ProbeReflink(srcDir, dstDir string) (bool, error) {
	src, err := probeFile(srcDir)
	if err != nil {
		return false, err
	}
	defer src.Close()
	if _, err := src.Write([]byte{0}); err != nil {
		return false, fmt.Errorf("reflink probe in %s: %w", srcDir, err)
	}
	dst, err := probeFile(dstDir)
	if err != nil {
		return false, err
	}
	defer dst.Close()
	return unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())) == nil, nil
}

// probeFile opens an unnamed temporary file in dir: O_TMPFILE, or a named
// file removed at once where the filesystem lacks it.
func probeFile(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), filepath.Join(dir, "(reflink probe)")), nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		return nil, fmt.Errorf("reflink probe in %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".reflink-probe-*")
	if err != nil {
		return nil, fmt.Errorf("reflink probe in %s: %w", dir, err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("reflink probe in %s: %w", dir, err)
	}
	return f, nil
}

// Filesystem names the filesystem dir is on, for messages: "xfs",
// "btrfs", "ext4" and so on, or the magic number in hex.
func Filesystem(dir string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "an unknown filesystem"
	}
	if n, ok := fsNames[int64(st.Type)]; ok {
		return n
	}
	return fmt.Sprintf("filesystem type %#x", st.Type)
}

var fsNames = map[int64]string{
	unix.XFS_SUPER_MAGIC:       "xfs",
	unix.BTRFS_SUPER_MAGIC:     "btrfs",
	unix.EXT4_SUPER_MAGIC:      "ext4",
	unix.TMPFS_MAGIC:           "tmpfs",
	unix.OVERLAYFS_SUPER_MAGIC: "overlayfs",
	unix.F2FS_SUPER_MAGIC:      "f2fs",
	unix.BCACHEFS_SUPER_MAGIC:  "bcachefs",
	unix.NFS_SUPER_MAGIC:       "nfs",
	unix.FUSE_SUPER_MAGIC:      "fuse",
	unix.RAMFS_MAGIC:           "ramfs",
}

// CheckPolicy decides, before anything is written, whether copying file
// contents from the store directory storeDir into the ostree repository
// repoDir will share blocks: for PolicyEnabled it must (the error wraps
// ErrNoReflink and names the filesystem otherwise); for
// PolicyEnabledWithCopy it does where the probe succeeds. PolicyDisabled
// shares nothing and is an error here.
func CheckPolicy(p Policy, storeDir, repoDir string) (reflink bool, err error) {
	switch p {
	case PolicyEnabled, PolicyEnabledWithCopy:
	case PolicyDisabled:
		return false, errors.New("unified-storage policy disabled: nothing is to be shared")
	default:
		return false, fmt.Errorf("invalid unified-storage policy %d", int(p))
	}
	objs := filepath.Join(storeDir, "objects")
	tmp := filepath.Join(repoDir, "tmp")
	ok, err := ProbeReflink(objs, tmp)
	if err != nil {
		return false, err
	}
	if !ok && p == PolicyEnabled {
		return false, noReflinkError(objs, tmp)
	}
	return ok, nil
}

// noReflinkError says why blocks cannot be shared between the two
// directories and what to do instead.
func noReflinkError(src, dst string) error {
	fsSrc, fsDst := Filesystem(src), Filesystem(dst)
	var why string
	switch {
	case !sameDevice(src, dst):
		why = fmt.Sprintf("%s (%s) and %s (%s) are on different filesystems", src, fsSrc, dst, fsDst)
	case !sameMount(src, dst):
		why = fmt.Sprintf("%s and %s are on different mounts of one %s filesystem", src, dst, fsSrc)
	default:
		why = fmt.Sprintf("%s is on %s, which cannot share file contents (no reflink support; xfs made with reflink=1 and btrfs can)", dst, fsDst)
	}
	return fmt.Errorf("unified-storage policy enabled: %w: %s; use policy enabled-with-copy to copy the contents instead", ErrNoReflink, why)
}

func sameDevice(a, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Stat(a, &sa) != nil || unix.Stat(b, &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev
}

// sameMount compares the mount IDs statx reports.
func sameMount(a, b string) bool {
	var sa, sb unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, a, 0, unix.STATX_MNT_ID, &sa) != nil ||
		unix.Statx(unix.AT_FDCWD, b, 0, unix.STATX_MNT_ID, &sb) != nil {
		return true
	}
	return sa.Mnt_id == sb.Mnt_id
}

// The ostree repository's side of the binding: bootc's key, which it reads
// to decide that the repository's commits come from the composefs store.
const (
	configGroup      = "composefs"
	configUnifiedKey = "unified"
)

// RepoBound reports whether the ostree repository records the binding:
// [composefs] unified=true in its config.
func RepoBound(repo *ostree.Repo) (bool, error) {
	v, ok, err := repo.ConfigValue(configGroup, configUnifiedKey)
	if err != nil || !ok {
		return false, err
	}
	switch v {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, fmt.Errorf("%s: [%s] %s=%q: not a boolean", filepath.Join(repo.Path(), "config"), configGroup, configUnifiedKey, v)
}

// ImageRef is the ostree ref that binds a store image (its digest in hex)
// to the commit synthesized from it. It keeps the commit from pruning while
// the image is in the store, and is how Fsck and SetUnified find it.
func ImageRef(imageHex string) string { return "composefs/image/" + imageHex }

// CommitOptions configure Commit.
type CommitOptions struct {
	// Branch, if set, is an ostree ref pointed at the commit besides
	// ImageRef.
	Branch string
	// Policy says whether the commit's files share the store objects'
	// blocks; see Policy.
	Policy Policy
	// Reuse takes the commit ImageRef names, if any, instead of
	// synthesizing another.
	Reuse bool
}

// CommitResult says what Commit made.
type CommitResult struct {
	Image  string `json:"image"`
	Commit string `json:"commit"`
	// Reflinked says the filesystem let the files share the store's
	// blocks; false means they were copied.
	Reflinked bool `json:"reflinked"`
	// Reused says the commit existed already.
	Reused bool `json:"reused,omitempty"`
}

// Commit synthesizes the ostree commit of a store image (named as
// Synthesize takes it) into repo and points ImageRef and opts.Branch at it.
// The policy is checked first, so that PolicyEnabled on a filesystem
// without reflinks fails before anything is written. PolicyDisabled is
// refused: a commit made from the store is unified storage.
func Commit(ctx context.Context, st *store.Repository, repo *ostree.Repo, image string, opts CommitOptions) (*CommitResult, error) {
	if opts.Policy == PolicyDisabled {
		return nil, errors.New("unified-storage policy disabled: a commit made from the composefs repository shares its blocks with it; " +
			"use enabled or enabled-with-copy, or ostree commit of a checkout for a separate copy")
	}
	if opts.Branch != "" {
		if err := ostree.ValidRef(opts.Branch); err != nil {
			return nil, fmt.Errorf("branch: %w", err)
		}
	}
	res := &CommitResult{}
	var err error
	if res.Reflinked, err = CheckPolicy(opts.Policy, st.Path(), repo.Path()); err != nil {
		return nil, err
	}
	if res.Image, err = ResolveImage(st, image); err != nil {
		return nil, err
	}
	if opts.Reuse {
		if c, err := repo.ResolveRef(ImageRef(res.Image)); err == nil {
			if cm, err := repo.ReadCommit(c); err == nil && SynthesizedFrom(cm) == res.Image {
				res.Commit, res.Reused = c, true
			}
		}
	}
	if res.Commit == "" {
		res.Commit, err = Synthesize(ctx, st, image, repo, SynthOptions{Branch: ImageRef(res.Image), Copy: opts.Policy == PolicyEnabledWithCopy})
		if err != nil {
			return nil, fmt.Errorf("synthesize the commit of %s: %w", image, err)
		}
	}
	for _, ref := range []string{ImageRef(res.Image), opts.Branch} {
		if ref != "" {
			if err := repo.SetRef(ref, res.Commit); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

// ResolveImage returns the digest (hex) of the store image name
// designates, as Synthesize resolves it: an image digest or image ref, or
// an OCI tag or manifest digest.
func ResolveImage(st *store.Repository, name string) (string, error) {
	f, id, err := st.OpenImage(name)
	if err == nil {
		f.Close()
		return hex.EncodeToString(id), nil
	}
	if !errors.Is(err, store.ErrNotFound) && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	ins, ierr := oci.Inspect(st, name)
	if ierr != nil {
		return "", fmt.Errorf("image %s: neither an image of the repository (%v) nor an OCI image (%v)", name, err, ierr)
	}
	if len(ins.Image) == 0 {
		return "", fmt.Errorf("image %s: the OCI image has no EROFS image (not a container image?)", name)
	}
	return ins.Image.String(), nil
}

// SynthesizedFrom returns the store image (its digest in hex) a commit was
// synthesized from, or "" for a commit not synthesized by this package.
func SynthesizedFrom(c *ostree.Commit) string {
	v, ok := c.Lookup(KeySynthesizedFrom)
	if !ok {
		return ""
	}
	s, _ := v.Value.(string)
	return s
}

// Status is the unified-storage state of a store and an ostree
// repository.
type Status struct {
	State State `json:"state"`
	// Bound says the ostree config has [composefs] unified=true.
	Bound bool `json:"bound"`
	// Marker is the store's marker, if any.
	Marker *Marker `json:"marker,omitempty"`
	// OSTreeRepo is the repository looked at.
	OSTreeRepo string `json:"ostreeRepo"`
	// Filesystem is the repository's filesystem, and ReflinksSupported
	// whether store objects can share blocks with its files.
	Filesystem        string `json:"filesystem"`
	ReflinksSupported bool   `json:"reflinksSupported"`
	// Problem says why the markers disagree, when they do.
	Problem string `json:"problem,omitempty"`
}

// ReadStatus reads the markers of the store directory storeDir and the
// ostree repository and probes for reflinks between them.
func ReadStatus(storeDir string, repo *ostree.Repo) (*Status, error) {
	repoDir := repo.Path()
	s := &Status{OSTreeRepo: repoDir, Filesystem: Filesystem(repoDir)}
	var err error
	if s.Marker, err = ReadMarker(storeDir); err != nil {
		return nil, err
	}
	if s.Bound, err = RepoBound(repo); err != nil {
		return nil, err
	}
	if s.ReflinksSupported, err = ProbeReflink(filepath.Join(storeDir, "objects"), filepath.Join(repoDir, "tmp")); err != nil {
		return nil, err
	}
	switch {
	case s.Bound && s.Marker != nil && s.Marker.Scope == ScopeFull:
		s.State = StateUnified
	case s.Bound:
		s.State = StateBound
	case s.Marker != nil:
		s.Problem = fmt.Sprintf("the store's %s records scope %s, but %s has no [%s] %s=true", MarkerName, s.Marker.Scope,
			filepath.Join(repoDir, "config"), configGroup, configUnifiedKey)
	}
	if s.Marker != nil && !sameFile(s.Marker.RepoPath(storeDir), repoDir) {
		s.Problem = fmt.Sprintf("the store's %s names the ostree repository %s, not %s", MarkerName, s.Marker.RepoPath(storeDir), repoDir)
	}
	return s, nil
}

func sameFile(a, b string) bool {
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

// UnifyOptions configure SetUnified.
type UnifyOptions struct {
	Scope  Scope
	Policy Policy
}

// UnifyResult says what SetUnified did.
type UnifyResult struct {
	State   State           `json:"state"`
	Commits []*CommitResult `json:"commits"`
	// Dedupe is the second step of ScopeFull.
	Dedupe *DedupeResult `json:"dedupe,omitempty"`
}

// SetUnified binds the ostree repository repo to the store:
//
//   - with PolicyDisabled it removes the store's marker, then the binding
//     key: the state becomes none, and existing commits stay as they are;
//   - otherwise it checks the policy (PolicyEnabled fails here, having
//     written nothing, where the filesystem cannot share blocks), makes or
//     reuses the commit of every image the store has a ref for (Commit),
//     and for ScopeFull makes the repository's other file objects share
//     the blocks of equal store objects (FIDEDUPERANGE; skipped where the
//     filesystem has no reflinks, as enabled-with-copy allows). Only then
//     does it write [composefs] unified=true into the ostree config and,
//     last, the store's marker with the policy and scope.
//
// Disabling writes unified=false rather than removing the key (bootc reads
// both as unbound). A failure on the way leaves the markers as they were, so the system is
// never recorded as more unified than it is; what was already written
// (commits, shared blocks) is valid on its own, and running again finishes
// the work.
func SetUnified(ctx context.Context, st *store.Repository, repo *ostree.Repo, opts UnifyOptions) (*UnifyResult, error) {
	repoDir := repo.Path()
	if opts.Policy == PolicyDisabled {
		if err := removeMarker(st.Path()); err != nil {
			return nil, err
		}
		if bound, err := RepoBound(repo); err != nil || bound {
			if err := repo.SetConfigValue(configGroup, configUnifiedKey, "false"); err != nil {
				return nil, err
			}
		}
		return &UnifyResult{State: StateNone}, nil
	}
	if opts.Scope != ScopeComposefs && opts.Scope != ScopeFull {
		return nil, fmt.Errorf("invalid unified-storage scope %d", int(opts.Scope))
	}
	reflink, err := CheckPolicy(opts.Policy, st.Path(), repoDir)
	if err != nil {
		return nil, err
	}
	images, err := TaggedImages(st)
	if err != nil {
		return nil, err
	}
	res := &UnifyResult{State: StateBound}
	for _, img := range images {
		c, err := Commit(ctx, st, repo, img.Name, CommitOptions{Policy: opts.Policy, Reuse: true})
		if err != nil {
			return nil, fmt.Errorf("image %s (%s): %w", img.Image, img.Name, err)
		}
		res.Commits = append(res.Commits, c)
	}
	if opts.Scope == ScopeFull {
		res.State = StateUnified
		if reflink {
			if res.Dedupe, err = dedupeRepo(ctx, st, repoDir); err != nil {
				return nil, err
			}
		}
	}
	if err := repo.SetConfigValue(configGroup, configUnifiedKey, "true"); err != nil {
		return nil, err
	}
	m := &Marker{Version: markerVersion, Unified: opts.Policy, Scope: opts.Scope, OSTreeRepo: relRepoPath(st.Path(), repoDir)}
	if err := writeMarker(st.Path(), m); err != nil {
		return nil, err
	}
	return res, nil
}

// TaggedImage is an image the store keeps by a name.
type TaggedImage struct {
	// Name is the OCI tag, or the image ref, that keeps the image.
	Name  string `json:"name"`
	Image string `json:"image"`
}

// TaggedImages lists the images the store keeps by a name: the EROFS
// images of OCI tags (by tag, so that their commits carry the OCI
// metadata), then those of image refs (images/refs/); an image with
// several names is listed once, under the first. A tag that cannot be read
// is an error.
func TaggedImages(st *store.Repository) ([]TaggedImage, error) {
	tags, err := oci.Images(st)
	if err != nil {
		return nil, err
	}
	var out []TaggedImage
	seen := map[string]bool{}
	add := func(name, image string) {
		if !seen[image] {
			seen[image] = true
			out = append(out, TaggedImage{Name: name, Image: image})
		}
	}
	for _, t := range tags {
		if t.Error != "" {
			return nil, fmt.Errorf("OCI tag %s: %s", t.Tag, t.Error)
		}
		if len(t.Image) > 0 {
			add(t.Tag, t.Image.String())
		}
	}
	refs, err := st.Refs(store.Images)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(refs))
	for n := range refs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		add(n, refs[n])
	}
	return out, nil
}

// DefaultPolicy is the policy of commits made without one: the one the
// store's marker records, else PolicyEnabledWithCopy (share where
// possible).
func DefaultPolicy(storeDir string) (Policy, error) {
	m, err := ReadMarker(storeDir)
	if err != nil {
		return 0, err
	}
	if m != nil {
		return m.Unified, nil
	}
	return PolicyEnabledWithCopy, nil
}
