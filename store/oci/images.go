package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/store/splitstream"
	"github.com/gocfs/gocfs/verity"
)

// TreeFromLayers builds the filesystem tree of an image from its layer
// streams, given by digest in layer order, with the rules of composefs-rs
// (create_filesystem and transform_for_oci), so that both make the same
// image of the same layers:
//
//   - every entry's parent directory must exist (as a directory, not a
//     symlink to one), so paths never leave the tree and never follow
//     links; ".." components are refused;
//   - a directory over a directory takes the new metadata and keeps its
//     entries; anything else replaces whatever had the name; the entry of
//     the root ("./") sets the root's metadata;
//   - ".wh.NAME" deletes NAME and ".wh..wh..opq" empties its directory, in
//     archive order, whether the entries came from lower layers or from
//     earlier in the same one;
//   - a hardlink shares the inode its target names when it is applied; the
//     target must exist and not be a directory;
//   - modes keep their permission bits, mtimes their whole seconds, and of
//     the xattrs (PAX SCHILY.xattr records) only security.capability is
//     kept: the others, typically the build host's SELinux labels and
//     user.* attributes, would make an image's digest depend on where it
//     was built (composefs-rs#132, bootc#2194);
//   - regular files of up to InlineMax bytes are inline, larger ones name
//     the object holding their body;
//   - at the end the root takes /usr's mode, owner, mtime and xattrs
//     (layers rarely describe the root, and runtimes ignore it when they
//     do), so an image must have /usr; /run, a tmpfs at run time, is
//     emptied and takes /usr's mtime.
//
// The layer streams are trusted to hold what their names say: they come
// from the repository, whose objects are checked when it is secure.
func TreeFromLayers(repo *store.Repository, layerStreams [][]byte) (*tree.Inode, error) {
	a := newLayerApplier()
	for i, d := range layerStreams {
		if err := applyStream(repo, a, d); err != nil {
			return nil, fmt.Errorf("layer %d (stream %x): %w", i+1, d, err)
		}
	}
	return a.finish()
}

func applyStream(repo *store.Repository, a *layerApplier, d []byte) error {
	f, err := repo.OpenObject(d)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	rd, err := splitstream.NewReader(f, st.Size())
	if err != nil {
		return err
	}
	if rd.ContentType() != splitstream.ContentTypeOCILayer {
		return fmt.Errorf("not a layer stream (content type %#x)", rd.ContentType())
	}
	cr, err := rd.ChunkReader()
	if err != nil {
		return err
	}
	defer cr.Close()
	return a.apply(cr)
}

// BootTransform turns the tree of an image into that of its boot image, as
// composefs-rs's transform_for_boot does: /boot and /sysroot, which must
// exist, are emptied and take /usr's mtime. /boot holds the kernel and the
// UKI that embeds the image digest, so it cannot be part of the image;
// /sysroot is where the physical root is mounted at boot.
//
// composefs-rs then labels the tree with the SELinux policy the image
// carries; BootTransform does not, so the boot images of images with a
// policy differ from composefs-rs's.
func BootTransform(root *tree.Inode) error {
	usr, err := topDir(root, "usr")
	if err == nil && usr == nil {
		err = errors.New("the image has no /usr")
	}
	if err != nil {
		return fmt.Errorf("boot image: %w", err)
	}
	for _, name := range []string{"boot", "sysroot"} {
		d, err := topDir(root, name)
		if err == nil && d == nil {
			err = fmt.Errorf("the image has no /%s", name)
		}
		if err != nil {
			return fmt.Errorf("boot image: %w", err)
		}
		d.Entries = nil
		d.Mtime.Sec = usr.Mtime.Sec
	}
	finishTree(root, true)
	return nil
}

// checkImageAlgorithm refuses to make images in repositories whose object
// digests a composefs image cannot record (in its overlay metacopy xattrs).
func checkImageAlgorithm(repo *store.Repository) error {
	if !tree.ValidDigestSize(repo.Algorithm().Size()) {
		return fmt.Errorf("EROFS images cannot name %s objects", repo.Algorithm())
	}
	return nil
}

// writeOptions returns the EROFS writer options for the repository's image
// format: 0 is what C mkcomposefs writes by default, 1 is mkcomposefs
// --min-version=1 --max-version=1 (cfsctl's default). composefs-rs's legacy
// format 2 is not supported.
func writeOptions(repo *store.Repository) (erofs.WriteOptions, error) {
	switch v := repo.ErofsVersion(); v {
	case 0:
		return erofs.WriteOptions{}, nil
	case 1:
		return erofs.WriteOptions{Versions: &erofs.VersionRange{Min: 1, Max: 1}}, nil
	default:
		return erofs.WriteOptions{}, fmt.Errorf("the repository's EROFS format %d is not supported", v)
	}
}

// writeImage stores the EROFS image of a tree and returns its digest.
func writeImage(repo *store.Repository, root *tree.Inode) ([]byte, error) {
	opts, err := writeOptions(repo)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := erofs.Write(pw, root, opts)
		pw.CloseWithError(err)
	}()
	d, err := repo.WriteImage(pr, "")
	// Unblocks the writer if the store stopped reading early.
	pr.CloseWithError(errors.New("image not stored"))
	<-done
	return d, err
}

// imageID computes the digest of a tree's EROFS image without storing it.
func imageID(repo *store.Repository, root *tree.Inode) ([]byte, error) {
	opts, err := writeOptions(repo)
	if err != nil {
		return nil, err
	}
	h := verity.New(repo.Algorithm())
	if _, err := erofs.Write(h, root, opts); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// ImageSet names the EROFS images made of an image: the plain one and,
// when asked for, the boot image.
type ImageSet struct {
	Image     Hex `json:"image"`
	BootImage Hex `json:"bootImage,omitempty"`
}

// EnsureImages makes sure the image with manifest digest md has its EROFS
// image, and its boot image when bootable, recorded in its configuration
// stream (the composefs.image.v1 and composefs.image.boot.v1 references,
// which keep them alive), and, if tag is not empty, tags the image, last.
// Missing images are made from the layer streams; then the configuration
// stream is rewritten (same configuration, new references, so a new
// stream), and the manifest stream after it, since it refers to the
// configuration stream. The old streams become garbage.
func EnsureImages(repo *store.Repository, md digest.Digest, tag string, bootable bool) (*ImageSet, error) {
	si, err := openStoredImage(repo, md)
	if err != nil {
		return nil, err
	}
	if !si.container() {
		return nil, fmt.Errorf("image %s is an artifact, not a container image", md)
	}
	set, made, err := makeImages(repo, si, bootable)
	if err != nil {
		return nil, err
	}
	if !made {
		if tag != "" {
			if err := setTag(repo, md, tag); err != nil {
				return nil, err
			}
		}
		return set, nil
	}
	if si.configStream, err = writeConfigStream(repo, si.manifest.Config.Digest, si.config); err != nil {
		return nil, err
	}
	if _, err := writeManifestStream(repo, si, tag); err != nil {
		return nil, err
	}
	return set, nil
}

// makeImages makes the images of a container image its configuration
// stream does not name (or names but the repository lacks) and records them
// in si.config. It reports whether it made any.
func makeImages(repo *store.Repository, si *storedImage, bootable bool) (*ImageSet, bool, error) {
	set := &ImageSet{Image: si.config.images[ImageRef]}
	if bootable {
		set.BootImage = si.config.images[BootImageRef]
	}
	ok, err := haveImages(repo, set, bootable)
	if err != nil || ok {
		return set, false, err
	}
	if err := checkImageAlgorithm(repo); err != nil {
		return nil, false, err
	}
	root, err := treeOf(repo, si)
	if err != nil {
		return nil, false, err
	}
	if set.Image, err = writeImage(repo, root); err != nil {
		return nil, false, fmt.Errorf("image %s: %w", si.manifestDigest, err)
	}
	si.config.images[ImageRef] = set.Image
	if bootable {
		if err := BootTransform(root); err != nil {
			return nil, false, fmt.Errorf("image %s: %w", si.manifestDigest, err)
		}
		if set.BootImage, err = writeImage(repo, root); err != nil {
			return nil, false, fmt.Errorf("image %s: boot image: %w", si.manifestDigest, err)
		}
		si.config.images[BootImageRef] = set.BootImage
	}
	return set, true, nil
}

// haveImages reports whether the images set names are all present.
func haveImages(repo *store.Repository, set *ImageSet, bootable bool) (bool, error) {
	ds := []Hex{set.Image}
	if bootable {
		ds = append(ds, set.BootImage)
	}
	for _, d := range ds {
		if len(d) != repo.Algorithm().Size() {
			return false, nil
		}
		ok, err := repo.HasObject(d)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// treeOf builds the tree of a stored image.
func treeOf(repo *store.Repository, si *storedImage) (*tree.Inode, error) {
	streams := make([][]byte, len(si.config.diffIDs))
	for i, d := range si.config.diffIDs {
		streams[i] = si.config.layers[d]
	}
	root, err := TreeFromLayers(repo, streams)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", si.manifestDigest, err)
	}
	return root, nil
}

// ComputeID returns the digest the EROFS image (or boot image) of a stored
// image has, without storing anything: the digest a boot configuration
// pins. name is a tag or a manifest digest.
func ComputeID(repo *store.Repository, name string, bootable bool) (Hex, error) {
	md, err := resolveName(repo, name)
	if err != nil {
		return nil, err
	}
	si, err := openStoredImage(repo, md)
	if err != nil {
		return nil, err
	}
	if !si.container() {
		return nil, fmt.Errorf("image %s is an artifact, not a container image", md)
	}
	if err := checkImageAlgorithm(repo); err != nil {
		return nil, err
	}
	root, err := treeOf(repo, si)
	if err != nil {
		return nil, err
	}
	if bootable {
		if err := BootTransform(root); err != nil {
			return nil, fmt.Errorf("image %s: %w", md, err)
		}
	}
	id, err := imageID(repo, root)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", md, err)
	}
	return id, nil
}

// ImageInfo describes a tagged image.
type ImageInfo struct {
	Tag            string        `json:"tag"`
	ManifestDigest digest.Digest `json:"manifestDigest"`
	ConfigDigest   digest.Digest `json:"configDigest,omitempty"`
	// Container is false for artifacts.
	Container    bool       `json:"container"`
	Architecture string     `json:"architecture,omitempty"`
	OS           string     `json:"os,omitempty"`
	Created      *time.Time `json:"created,omitempty"`
	Layers       int        `json:"layers"`
	Image        Hex        `json:"image,omitempty"`
	BootImage    Hex        `json:"bootImage,omitempty"`
	// Error says why the image could not be read; the other fields
	// but Tag and ManifestDigest are then empty.
	Error string `json:"error,omitempty"`
}

// String formats the image for a listing: tag, manifest digest, platform
// or "artifact", and the image digest, or the error.
func (i ImageInfo) String() string {
	if i.Error != "" {
		return fmt.Sprintf("%s\terror: %s", i.Tag, i.Error)
	}
	kind := "artifact"
	if i.Container {
		kind = i.OS + "/" + i.Architecture
	}
	img := "-"
	if i.Image != nil {
		img = i.Image.String()
	}
	return fmt.Sprintf("%s\t%s\t%s\t%s", i.Tag, i.ManifestDigest, kind, img)
}

func infoOf(si *storedImage, tag string) ImageInfo {
	info := ImageInfo{
		Tag:            tag,
		ManifestDigest: si.manifestDigest,
		ConfigDigest:   si.manifest.Config.Digest,
		Container:      si.container(),
		Layers:         len(si.manifest.Layers),
		Image:          si.config.images[ImageRef],
		BootImage:      si.config.images[BootImageRef],
	}
	if info.Container {
		var cfg v1.Image
		if json.Unmarshal(si.config.json, &cfg) == nil {
			info.Architecture, info.OS, info.Created = cfg.Architecture, cfg.OS, cfg.Created
		}
	}
	return info
}

// Images returns the tagged images of a repository, by tag. An image that
// cannot be read is listed with the reason in Error.
func Images(repo *store.Repository) ([]ImageInfo, error) {
	refs, err := repo.Refs(store.Streams)
	if err != nil {
		return nil, err
	}
	var infos []ImageInfo
	for ref, entry := range refs {
		enc, ok := strings.CutPrefix(ref, tagRefPrefix)
		if !ok {
			continue
		}
		tag := decodeTag(enc)
		md, err := manifestOfEntry(entry, tag)
		if err != nil {
			infos = append(infos, ImageInfo{Tag: tag, Error: err.Error()})
			continue
		}
		si, err := openStoredImage(repo, md)
		if err != nil {
			infos = append(infos, ImageInfo{Tag: tag, ManifestDigest: md, Error: err.Error()})
			continue
		}
		infos = append(infos, infoOf(si, tag))
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Tag < infos[j].Tag })
	return infos, nil
}

// Inspection is everything a repository knows of an image.
type Inspection struct {
	ImageInfo
	Manifest json.RawMessage `json:"manifest"`
	Config   json.RawMessage `json:"config"`
}

// Inspect describes the image name designates: a tag, or a manifest digest
// ("sha256:..." or "@sha256:...").
func Inspect(repo *store.Repository, name string) (*Inspection, error) {
	md, err := resolveName(repo, name)
	if err != nil {
		return nil, err
	}
	si, err := openStoredImage(repo, md)
	if err != nil {
		return nil, err
	}
	tag := ""
	if _, err := digest.Parse(strings.TrimPrefix(name, "@")); err != nil {
		tag = name
	}
	in := &Inspection{ImageInfo: infoOf(si, tag), Manifest: si.manifestJSON, Config: si.config.json}
	if !json.Valid(in.Config) {
		// An artifact's configuration need not be JSON.
		in.Config = nil
	}
	return in, nil
}

// Tag gives the image src designates (a tag or a manifest digest) the tag
// tag, replacing what the tag named before.
func Tag(repo *store.Repository, src, tag string) error {
	md, err := resolveName(repo, src)
	if err != nil {
		return err
	}
	return setTag(repo, md, tag)
}

// Untag removes a tag. The image stays until the next garbage collection,
// unless another tag names it.
func Untag(repo *store.Repository, tag string) error {
	ref, err := tagRef(tag)
	if err != nil {
		return err
	}
	if err := repo.DeleteRef(store.Streams, ref); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("tag %q: %w", tag, ErrNotFound)
		}
		return err
	}
	return nil
}

// ImportTar stores a tar archive read from r as a layer splitstream named
// id, the body of every regular file of more than InlineMax bytes as an
// object, and returns the stream's digest.
func ImportTar(repo *store.Repository, r io.Reader, id string) (Hex, error) {
	sw := splitstream.NewWriter(repo.Algorithm(), splitstream.ContentTypeOCILayer)
	ing := newIngester(context.Background(), repo, runtime.GOMAXPROCS(0))
	if _, err := splitTar(r, sw, ing); err != nil {
		return nil, fmt.Errorf("import tar %s: %w", id, err)
	}
	d, err := repo.WriteStream(id, sw, "")
	if err != nil {
		return nil, fmt.Errorf("import tar %s: %w", id, err)
	}
	return d, nil
}
