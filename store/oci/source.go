package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/directory"
	"go.podman.io/image/v5/docker"
	dockerarchive "go.podman.io/image/v5/docker/archive"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	ociarchive "go.podman.io/image/v5/oci/archive"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"
)

// transports are the containers/image transports Pull accepts, by the name
// that prefixes a reference ("docker://quay.io/x:tag", "oci:DIR:TAG").
var transports = map[string]types.ImageTransport{}

func init() {
	for _, t := range []types.ImageTransport{
		docker.Transport, layout.Transport, ociarchive.Transport, dockerarchive.Transport, directory.Transport,
	} {
		transports[t.Name()] = t
	}
}

// ParseReference parses an image reference of the form TRANSPORT:REF with
// one of the transports docker, oci, oci-archive, docker-archive and dir,
// as skopeo spells them.
func ParseReference(ref string) (types.ImageReference, error) {
	name, rest, ok := strings.Cut(ref, ":")
	if !ok {
		return nil, fmt.Errorf("image reference %q: no transport (docker://, oci:, oci-archive:, docker-archive: or dir:)", ref)
	}
	t := transports[name]
	if t == nil {
		return nil, fmt.Errorf("image reference %q: unsupported transport %q", ref, name)
	}
	r, err := t.ParseReference(rest)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	return r, nil
}

// systemContext returns the containers/image settings for a pull: the
// caller's, or the defaults, which read registries.conf, the auth.json files
// and the certificate directories of the system and the user; TLS
// verification is turned off for registries on request.
func systemContext(opts *PullOptions) *types.SystemContext {
	sys := &types.SystemContext{}
	if opts.SystemContext != nil {
		c := *opts.SystemContext
		sys = &c
	}
	if opts.TLSVerify != nil {
		sys.DockerInsecureSkipTLSVerify = types.NewOptionalBool(!*opts.TLSVerify)
		sys.OCIInsecureSkipTLSVerify = !*opts.TLSVerify
	}
	return sys
}

// resolvedImage is the image manifest a reference designates, with
// everything Pull needs from it.
type resolvedImage struct {
	// digest is the digest of the manifest as the source stores it (for
	// a manifest list, of the instance chosen).
	digest digest.Digest
	// manifest holds the OCI form of the manifest: the source's bytes for
	// an OCI manifest, a translation of a Docker schema 2 one.
	manifest []byte
	parsed   *manifest.OCI1
}

// resolveManifest reads the manifest of the image src holds, choosing the
// instance for the platform of sys (by default the running one) from a
// manifest list. containers/image checks the digest of what it reads
// against the reference when that names a digest, and against the list's
// entry for an instance.
func resolveManifest(ctx context.Context, src types.ImageSource, sys *types.SystemContext) (*resolvedImage, error) {
	unparsed := image.UnparsedInstance(src, nil)
	raw, mime, err := unparsed.Manifest(ctx)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if mime == "" {
		mime = manifest.GuessMIMEType(raw)
	}
	if manifest.MIMETypeIsMultiImage(mime) {
		list, err := manifest.ListFromBlob(raw, mime)
		if err != nil {
			return nil, fmt.Errorf("manifest list: %w", err)
		}
		inst, err := list.ChooseInstance(sys)
		if err != nil {
			return nil, fmt.Errorf("manifest list: %w", err)
		}
		unparsed = image.UnparsedInstance(src, &inst)
		if raw, mime, err = unparsed.Manifest(ctx); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", inst, err)
		}
		if mime == "" {
			mime = manifest.GuessMIMEType(raw)
		}
	}
	d, err := manifest.Digest(raw)
	if err != nil {
		return nil, fmt.Errorf("manifest digest: %w", err)
	}
	ri := &resolvedImage{digest: d}
	switch mime {
	case v1.MediaTypeImageManifest:
		if ri.parsed, err = manifest.OCI1FromManifest(raw); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", d, err)
		}
		ri.manifest = raw
	case manifest.DockerV2Schema2MediaType:
		if ri.parsed, err = ociFromSchema2(raw); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", d, err)
		}
		if ri.manifest, err = ri.parsed.Serialize(); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", d, err)
		}
	case manifest.DockerV2Schema1MediaType, manifest.DockerV2Schema1SignedMediaType:
		return nil, fmt.Errorf("manifest %s: legacy Docker schema 1 images are not supported", d)
	default:
		return nil, fmt.Errorf("manifest %s: unsupported manifest type %q", d, mime)
	}
	if err := checkManifest(ri.parsed); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d, err)
	}
	return ri, nil
}

// ociFromSchema2 translates a Docker schema 2 manifest into the OCI form
// composefs-rs stores (what skopeo's image proxy hands it): the same blobs
// with OCI media types. Unlike containers/image's own conversion it keeps
// the configuration blob, whose JSON an OCI image configuration reads
// as is, instead of re-serialising it under a digest the source lacks.
func ociFromSchema2(raw []byte) (*manifest.OCI1, error) {
	s2, err := manifest.Schema2FromManifest(raw)
	if err != nil {
		return nil, err
	}
	config := v1.Descriptor{
		MediaType: v1.MediaTypeImageConfig,
		Size:      s2.ConfigDescriptor.Size,
		Digest:    s2.ConfigDescriptor.Digest,
	}
	layers := make([]v1.Descriptor, len(s2.LayersDescriptors))
	for i, l := range s2.LayersDescriptors {
		layers[i] = v1.Descriptor{Size: l.Size, Digest: l.Digest, URLs: l.URLs}
		switch l.MediaType {
		case manifest.DockerV2Schema2LayerMediaType:
			layers[i].MediaType = v1.MediaTypeImageLayerGzip
		case manifest.DockerV2SchemaLayerMediaTypeUncompressed:
			layers[i].MediaType = v1.MediaTypeImageLayer
		case manifest.DockerV2SchemaLayerMediaTypeZstd:
			layers[i].MediaType = v1.MediaTypeImageLayerZstd
		case manifest.DockerV2Schema2ForeignLayerMediaType:
			layers[i].MediaType = mediaTypeLayerNonDistributable
		case manifest.DockerV2Schema2ForeignLayerMediaTypeGzip:
			layers[i].MediaType = mediaTypeLayerNonDistributableGzip
		default:
			return nil, fmt.Errorf("layer %d: unknown Docker layer media type %q", i+1, l.MediaType)
		}
	}
	return manifest.OCI1FromComponents(config, layers), nil
}

// checkManifest checks what Pull relies on: well-formed digests and sizes.
func checkManifest(m *manifest.OCI1) error {
	if m.SchemaVersion != 2 {
		return fmt.Errorf("schema version %d, want 2", m.SchemaVersion)
	}
	if err := checkDescriptor(m.Config); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	for i, l := range m.Layers {
		if err := checkDescriptor(l); err != nil {
			return fmt.Errorf("layer %d: %w", i+1, err)
		}
	}
	return nil
}

func checkDescriptor(d v1.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("digest %q: %w", d.Digest, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("%s: negative size %d", d.Digest, d.Size)
	}
	return nil
}

// isContainerImage reports whether a manifest describes a container image,
// whose layers are archives of a filesystem, rather than an artifact.
func isContainerImage(m *manifest.OCI1) bool { return m.Config.MediaType == v1.MediaTypeImageConfig }

// The media types of non-distributable layers, which the OCI specification
// deprecates but images still use.
const (
	mediaTypeLayerNonDistributable     = "application/vnd.oci.image.layer.nondistributable.v1.tar"
	mediaTypeLayerNonDistributableGzip = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
	mediaTypeLayerNonDistributableZstd = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
)

// compression of a layer, from its media type.
type compression int

const (
	notArchive compression = iota
	uncompressed
	gzipped
	zstdCompressed
)

func layerCompression(mediaType string) compression {
	switch mediaType {
	case v1.MediaTypeImageLayer, mediaTypeLayerNonDistributable:
		return uncompressed
	case v1.MediaTypeImageLayerGzip, mediaTypeLayerNonDistributableGzip:
		return gzipped
	case v1.MediaTypeImageLayerZstd, mediaTypeLayerNonDistributableZstd:
		return zstdCompressed
	}
	return notArchive
}

// maxConfigSize bounds an image configuration read into memory.
const maxConfigSize = 64 << 20

// blob is a blob of the source being read; it checks at its end that it
// had the size and digest the descriptor promised, so that nothing is
// trusted before the whole blob was seen.
type blob struct {
	rc       io.ReadCloser
	desc     v1.Descriptor
	verifier digest.Verifier
	n        int64
	err      error
}

func openBlob(ctx context.Context, src types.ImageSource, desc v1.Descriptor) (*blob, error) {
	if !desc.Digest.Algorithm().Available() {
		return nil, fmt.Errorf("blob %s: unsupported digest algorithm", desc.Digest)
	}
	rc, _, err := src.GetBlob(ctx, types.BlobInfo{Digest: desc.Digest, Size: desc.Size, MediaType: desc.MediaType, URLs: desc.URLs}, none.NoCache)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	return &blob{rc: rc, desc: desc, verifier: desc.Digest.Verifier()}, nil
}

// errBlobDigest is wrapped by the errors for blobs that are not what their
// descriptors say.
var errBlobDigest = errors.New("blob does not match its digest")

func (b *blob) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.rc.Read(p)
	b.n += int64(n)
	b.verifier.Write(p[:n])
	switch {
	case b.n > b.desc.Size:
		b.err = fmt.Errorf("blob %s: more than the %d bytes of its descriptor: %w", b.desc.Digest, b.desc.Size, errBlobDigest)
	case err == io.EOF && b.n < b.desc.Size:
		b.err = fmt.Errorf("blob %s: %d bytes, its descriptor says %d: %w", b.desc.Digest, b.n, b.desc.Size, io.ErrUnexpectedEOF)
	case err == io.EOF && !b.verifier.Verified():
		b.err = fmt.Errorf("blob %s: %w", b.desc.Digest, errBlobDigest)
	case err != nil && err != io.EOF:
		b.err = fmt.Errorf("blob %s: %w", b.desc.Digest, err)
	default:
		return n, err
	}
	return n, b.err
}

// finish reads what is left of the blob, which checks its digest.
func (b *blob) finish() error {
	_, err := io.Copy(io.Discard, b)
	return err
}

func (b *blob) Close() error { return b.rc.Close() }

// readConfig reads an image configuration blob.
func readConfig(ctx context.Context, src types.ImageSource, desc v1.Descriptor) ([]byte, error) {
	if desc.Size > maxConfigSize {
		return nil, fmt.Errorf("config %s: %d bytes, more than %d", desc.Digest, desc.Size, maxConfigSize)
	}
	b, err := openBlob(ctx, src, desc)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer b.Close()
	data, err := io.ReadAll(b)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return data, nil
}

// decompressor returns the archive of a layer blob.
func decompressor(r io.Reader, c compression) (io.Reader, func(), error) {
	switch c {
	case gzipped:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case zstdCompressed:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<30))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	}
	return r, func() {}, nil
}
