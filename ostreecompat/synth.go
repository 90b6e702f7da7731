package ostreecompat

import (
	"context"
	"errors"
	"time"

	"github.com/gocfs/gocfs/ostreecompat/ostree"
	"github.com/gocfs/gocfs/store"
)

// ErrNoReflink is wrapped when a file's content could not be cloned from
// the store into the ostree repository (different filesystems, or one
// without reflinks) and copying it was not allowed.
var ErrNoReflink = errors.New("file contents cannot be shared by reflink")

// Metadata keys of synthesized commits; see the package documentation.
const (
	KeyManifestDigest  = "ostree.manifest-digest"
	KeyManifest        = "ostree.manifest"
	KeyImageConfig     = "ostree.container.image-config"
	KeyConfigDigest    = "gocfs.oci.config-digest"
	KeyBootcSynth      = "ostree-ext.composefs-synthesized"
	KeyBootable        = "ostree.bootable"
	KeyLinux           = "ostree.linux"
	KeySynthesizedFrom = "gocfs.synthesized-from"
	KeyComposefsDigest = "ostree.composefs.digest.v0"
)

// SynthOptions configure Synthesize.
type SynthOptions struct {
	// Branch, if set, is the ref pointed at the commit, written last.
	Branch string
	// Copy allows copying a file's bytes where the filesystem refuses to
	// clone them. Without it such a file fails the synthesis with
	// ErrNoReflink.
	Copy bool
	// Parent is the parent commit, if any.
	Parent string
	// Subject and Body of the commit; both may be empty.
	Subject, Body string
	// Timestamp of the commit. Zero means the OCI image's creation time
	// when the image has one, else the image root's mtime, else now: a
	// zero timestamp confuses rpm-ostree.
	Timestamp time.Time
	// Stats, if not nil, receives counts of what was done.
	Stats *SynthStats
}

// SynthStats counts the regular files of a synthesis by how their content
// objects were made.
type SynthStats struct {
	Reflinked int64 // cloned from the store object
	Copied    int64 // copied from the store object
	Inline    int64 // written from the image's inline content
	Existing  int64 // already in the repository
	Bytes     int64 // content bytes of the files cloned or copied
}

// Synthesize writes the ostree commit of the store image image (a digest in
// hex, or an image ref name, as store.Repository.OpenImage takes; or an OCI
// tag or manifest digest of the store, whose EROFS image is used) into dst,
// points opts.Branch at it, and returns the commit's checksum. See the
// package documentation for the layout and metadata of the commit.
func Synthesize(ctx context.Context, st *store.Repository, image string, dst *ostree.Repo, opts SynthOptions) (string, error) {
	return synthesize(ctx, st, image, dst, opts)
}

// VerifySynthesized checks that commit is the commit Synthesize makes of
// the store image image (named as for Synthesize): the commit names the
// image as its source, its tree is the one the image's tree gives (every
// store object is read and hashed again), every object it reaches is in
// the repository, and its composefs digest is that of the commit's tree.
// Content objects are checked to exist, not rehashed: that is
// (*ostree.Repo).VerifyCommit's job.
func VerifySynthesized(ctx context.Context, st *store.Repository, image string, r *ostree.Repo, commit string) error {
	return verifySynthesized(ctx, st, image, r, commit)
}
