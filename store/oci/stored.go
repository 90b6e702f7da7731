package oci

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"

	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/store/splitstream"
)

// Hex is an fs-verity digest that prints, and marshals to JSON, as
// lower-case hex.
type Hex []byte

func (h Hex) String() string { return hex.EncodeToString(h) }

// MarshalText implements encoding.TextMarshaler.
func (h Hex) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Hex) UnmarshalText(b []byte) error {
	d, err := hex.DecodeString(string(b))
	if err != nil {
		return fmt.Errorf("digest %q: %w", b, err)
	}
	*h = d
	return nil
}

// Bounds of what is read into memory: a manifest, and the stream of a
// manifest or a configuration (whose content is an object).
const (
	maxManifestSize   = 4 << 20
	maxMetadataStream = 16 << 20
)

// configData is what a configuration stream holds: the configuration's
// bytes, the layer streams by diff_id and the images made of it.
type configData struct {
	json []byte
	// diffIDs are the layers in order: rootfs.diff_ids of an image, the
	// manifest's layer digests for an artifact.
	diffIDs []digest.Digest
	// layers maps diff_ids to layer stream digests.
	layers map[digest.Digest][]byte
	// images maps the image ref names (ImageRef, BootImageRef and
	// composefs-rs's legacy ones) to image digests.
	images map[string][]byte
}

// imageRefNames are the named references to images a configuration stream
// may carry, in the order composefs-rs adds them.
var imageRefNames = []string{LegacyImageRef, ImageRef, LegacyBootImageRef, BootImageRef}

// storedImage is an image as a repository holds it: the manifest stream
// and the configuration stream it names.
type storedImage struct {
	manifestDigest digest.Digest
	manifestStream []byte
	manifestJSON   []byte
	manifest       *manifest.OCI1
	configStream   []byte
	config         *configData
}

func (si *storedImage) container() bool { return isContainerImage(si.manifest) }

// openStoredImage reads the manifest and configuration streams of the image
// with the given manifest digest.
func openStoredImage(repo *store.Repository, md digest.Digest) (*storedImage, error) {
	rd, sd, err := repo.OpenStream(ManifestStreamID(md))
	if err != nil {
		return nil, err
	}
	si := &storedImage{manifestDigest: md, manifestStream: sd}
	if si.manifestJSON, err = streamData(repo, rd, splitstream.ContentTypeOCIManifest, maxManifestSize); err != nil {
		return nil, fmt.Errorf("manifest stream %s: %w", md, err)
	}
	if si.manifest, err = manifest.OCI1FromManifest(si.manifestJSON); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", md, err)
	}
	if err := checkManifest(si.manifest); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", md, err)
	}
	cd := si.manifest.Config.Digest
	si.configStream = rd.NamedRef(configRefPrefix + cd.String())
	if si.configStream == nil {
		return nil, fmt.Errorf("manifest stream %s: no reference to its config %s", md, cd)
	}
	crd, err := openStreamDigest(repo, si.configStream)
	if err != nil {
		return nil, fmt.Errorf("config stream %s: %w", cd, err)
	}
	if si.config, err = readConfigStream(repo, crd, cd, si.manifest); err != nil {
		return nil, fmt.Errorf("config stream %s: %w", cd, err)
	}
	return si, nil
}

// openStreamDigest reads the splitstream object d.
func openStreamDigest(repo *store.Repository, d []byte) (*splitstream.Reader, error) {
	f, err := repo.OpenObject(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMetadataStream+1))
	if err != nil {
		return nil, fmt.Errorf("stream %x: %w", d, err)
	}
	if len(b) > maxMetadataStream {
		return nil, fmt.Errorf("stream %x: more than %d bytes", d, maxMetadataStream)
	}
	return splitstream.NewReader(bytes.NewReader(b), int64(len(b)))
}

// streamData returns the content of a stream that holds one object, as
// manifest, configuration and artifact blob streams do.
func streamData(repo *store.Repository, rd *splitstream.Reader, contentType uint64, limit int64) ([]byte, error) {
	if rd.ContentType() != contentType {
		return nil, fmt.Errorf("content type %#x, want %#x", rd.ContentType(), contentType)
	}
	refs := rd.ObjectRefs()
	if len(refs) != 1 {
		return nil, fmt.Errorf("%d objects, want 1", len(refs))
	}
	if rd.StreamSize() > limit {
		return nil, fmt.Errorf("%d bytes, more than %d", rd.StreamSize(), limit)
	}
	var buf bytes.Buffer
	err := rd.Reassemble(&buf, func(d []byte) (io.ReadCloser, error) { return repo.OpenObject(d) })
	if err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// readConfigStream reads a configuration stream: the configuration, whose
// digest it checks, and its named references. m is the image's manifest,
// or nil for a container image's configuration read on its own.
func readConfigStream(repo *store.Repository, rd *splitstream.Reader, cd digest.Digest, m *manifest.OCI1) (*configData, error) {
	data, err := streamData(repo, rd, splitstream.ContentTypeOCIConfig, maxConfigSize)
	if err != nil {
		return nil, err
	}
	if cd.Validate() != nil || !cd.Algorithm().Available() || cd.Algorithm().FromBytes(data) != cd {
		return nil, fmt.Errorf("content does not match the digest %s", cd)
	}
	c := &configData{json: data, layers: map[digest.Digest][]byte{}, images: map[string][]byte{}}
	if c.diffIDs, err = layerIDs(data, m); err != nil {
		return nil, err
	}
	for _, n := range rd.NamedRefs() {
		if slices.Contains(imageRefNames, n.Name) {
			c.images[n.Name] = n.Digest
			continue
		}
		if d, err := digest.Parse(n.Name); err == nil {
			c.layers[d] = n.Digest
		}
	}
	for _, d := range c.diffIDs {
		if c.layers[d] == nil {
			return nil, fmt.Errorf("no reference to layer %s", d)
		}
	}
	return c, nil
}

// layerIDs returns the layer identifiers of an image: the configuration's
// rootfs.diff_ids for a container image, the manifest's layer digests for
// an artifact, as composefs-rs names them. Without a manifest the
// configuration is taken for a container image's.
func layerIDs(config []byte, m *manifest.OCI1) ([]digest.Digest, error) {
	if m != nil && !isContainerImage(m) {
		ids := make([]digest.Digest, len(m.Layers))
		for i, l := range m.Layers {
			ids[i] = l.Digest
		}
		return ids, nil
	}
	var cfg v1.Image
	if err := json.Unmarshal(config, &cfg); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if m != nil && len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("config lists %d layers, the manifest %d", len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	for i, d := range cfg.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("config: diff_id %d %q: %w", i+1, d, err)
		}
		if !d.Algorithm().Available() {
			return nil, fmt.Errorf("config: diff_id %d %q: unsupported algorithm", i+1, d)
		}
	}
	return cfg.RootFS.DiffIDs, nil
}

// writeConfigStream stores a configuration stream: one named reference per
// layer in configuration order, then the image references, and the
// configuration itself as its only object.
func writeConfigStream(repo *store.Repository, cd digest.Digest, c *configData) ([]byte, error) {
	sw := splitstream.NewWriter(repo.Algorithm(), splitstream.ContentTypeOCIConfig)
	addLayerRefs(sw, c)
	for _, name := range imageRefNames {
		if d := c.images[name]; d != nil {
			sw.AddNamedRef(name, d)
		}
	}
	if err := writeData(repo, sw, c.json); err != nil {
		return nil, fmt.Errorf("config stream %s: %w", cd, err)
	}
	d, err := repo.WriteStream(ConfigStreamID(cd), sw, "")
	if err != nil {
		return nil, fmt.Errorf("config stream %s: %w", cd, err)
	}
	return d, nil
}

// addLayerRefs adds one named reference per distinct layer, in order.
func addLayerRefs(sw *splitstream.Writer, c *configData) {
	seen := make(map[digest.Digest]bool, len(c.diffIDs))
	for _, d := range c.diffIDs {
		if !seen[d] {
			seen[d] = true
			sw.AddNamedRef(d.String(), c.layers[d])
		}
	}
}

// writeData stores data as an object and makes it the stream's content.
func writeData(repo *store.Repository, sw *splitstream.Writer, data []byte) error {
	d, err := repo.EnsureObject(bytes.NewReader(data))
	if err != nil {
		return err
	}
	sw.WriteExternal(d, int64(len(data)))
	return nil
}

// writeManifestStream stores a manifest stream, referring to the
// configuration stream and to every layer stream, and points the tag at
// it, last, when one is given.
func writeManifestStream(repo *store.Repository, si *storedImage, tag string) ([]byte, error) {
	ref := ""
	if tag != "" {
		var err error
		if ref, err = tagRef(tag); err != nil {
			return nil, err
		}
	}
	sw := splitstream.NewWriter(repo.Algorithm(), splitstream.ContentTypeOCIManifest)
	sw.AddNamedRef(configRefPrefix+si.manifest.Config.Digest.String(), si.configStream)
	addLayerRefs(sw, si.config)
	if err := writeData(repo, sw, si.manifestJSON); err != nil {
		return nil, fmt.Errorf("manifest stream %s: %w", si.manifestDigest, err)
	}
	d, err := repo.WriteStream(ManifestStreamID(si.manifestDigest), sw, ref)
	if err != nil {
		return nil, fmt.Errorf("manifest stream %s: %w", si.manifestDigest, err)
	}
	return d, nil
}

// setTag points a tag at an image's manifest stream.
func setTag(repo *store.Repository, md digest.Digest, tag string) error {
	ref, err := tagRef(tag)
	if err != nil {
		return err
	}
	return repo.SetRef(store.Streams, ref, ManifestStreamID(md))
}

// ErrNotFound is wrapped by the errors for images a repository lacks.
var ErrNotFound = errors.New("image not found")

// resolveName returns the manifest digest an image name designates: a tag,
// or a manifest digest ("sha256:..." or "@sha256:...").
func resolveName(repo *store.Repository, name string) (digest.Digest, error) {
	if d, err := digest.Parse(strings.TrimPrefix(name, "@")); err == nil {
		if _, ok, err := repo.HasStream(ManifestStreamID(d)); err != nil {
			return "", err
		} else if !ok {
			return "", fmt.Errorf("image %s: %w", d, ErrNotFound)
		}
		return d, nil
	}
	ref, err := tagRef(name)
	if err != nil {
		return "", err
	}
	refs, err := repo.Refs(store.Streams)
	if err != nil {
		return "", err
	}
	entry, ok := refs[ref]
	if !ok {
		return "", fmt.Errorf("image %q: %w", name, ErrNotFound)
	}
	return manifestOfEntry(entry, name)
}

// manifestOfEntry returns the manifest digest of a manifest stream id.
func manifestOfEntry(entry, name string) (digest.Digest, error) {
	s, ok := strings.CutPrefix(entry, manifestPrefix)
	if !ok {
		return "", fmt.Errorf("tag %q points to %q, not to a manifest stream", name, entry)
	}
	d, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("tag %q points to %q: %w", name, entry, err)
	}
	return d, nil
}
