package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sort"
	"sync"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"

	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/store/splitstream"
)

// PullOptions configure Pull. The zero value pulls without tagging, with
// the system's registry configuration.
type PullOptions struct {
	// Tag names the image in the repository (streams/refs/oci/<tag>), the
	// root that keeps it from garbage collection. Empty means no tag.
	Tag string
	// TLSVerify, when set, turns TLS verification of registries on or
	// off; nil leaves it to registries.conf (on, except for registries
	// configured as insecure).
	TLSVerify *bool
	// Bootable also makes the boot image (see BootTransform).
	Bootable bool
	// Progress shows a bar per layer fetched when it is a terminal, and
	// nothing otherwise.
	Progress io.Writer
	// Threads bounds the layers fetched, and the file bodies hashed and
	// stored, at once; zero means GOMAXPROCS.
	Threads int
	// SystemContext holds containers/image settings (credentials, paths
	// of registries.conf and auth.json, platform choice, ...); nil means
	// the system's and the user's defaults.
	SystemContext *types.SystemContext
}

// PullResult describes a pulled image.
type PullResult struct {
	// ManifestDigest is the digest of the image manifest as the source
	// stores it (for a manifest list, of the instance chosen for this
	// platform). A Docker schema 2 manifest is stored in OCI form under
	// this digest, as composefs-rs stores it.
	ManifestDigest digest.Digest `json:"manifestDigest"`
	ConfigDigest   digest.Digest `json:"configDigest"`
	// ManifestStream and ConfigStream are the digests of the streams
	// that hold them.
	ManifestStream Hex `json:"manifestStream"`
	ConfigStream   Hex `json:"configStream"`
	// Image and BootImage are the digests of the EROFS images; empty for
	// artifacts, and BootImage unless Bootable was asked for.
	Image     Hex    `json:"image,omitempty"`
	BootImage Hex    `json:"bootImage,omitempty"`
	Tag       string `json:"tag,omitempty"`
	// Artifact is set for images whose configuration is not an OCI
	// image configuration: their layers are stored as blobs and no EROFS
	// image is made.
	Artifact bool `json:"artifact,omitempty"`
	// Layers counts the image's layers, LayersFetched those that were
	// not in the repository yet, and BytesFetched their blob sizes.
	Layers        int   `json:"layers"`
	LayersFetched int   `json:"layersFetched"`
	BytesFetched  int64 `json:"bytesFetched"`
	// Objects and ObjectBytes count the file bodies of the fetched layers
	// stored as objects (present ones included); InlineBytes counts what
	// their streams hold inline.
	Objects     int64 `json:"objects"`
	ObjectBytes int64 `json:"objectBytes"`
	InlineBytes int64 `json:"inlineBytes"`
}

// Pull stores an image in the repository, as composefs-rs's pull does:
// each layer as a splitstream named by its diff_id (its file bodies as
// objects), the configuration and the manifest as streams that refer to
// the layers, and, for a container image, the EROFS image (and boot image)
// of its filesystem, referenced from the configuration stream; the tag, if
// any, is written last. Layers and configurations already in the
// repository are not fetched again.
//
// ref is a containers/image reference: "docker://REGISTRY/NAME:TAG",
// "oci:DIR[:TAG]", "oci-archive:FILE[:TAG]", "docker-archive:FILE" or
// "dir:DIR". Every blob is checked against its digest and size, and every
// layer's uncompressed archive against its diff_id, before anything refers
// to it. Layers may be uncompressed, gzip or zstd (including zstd:chunked)
// tar archives.
func Pull(ctx context.Context, repo *store.Repository, ref string, opts PullOptions) (*PullResult, error) {
	if ro, why := repo.ReadOnly(); ro {
		return nil, fmt.Errorf("pull %s: %w: %s", ref, store.ErrReadOnly, why)
	}
	if opts.Tag != "" {
		if _, err := tagRef(opts.Tag); err != nil {
			return nil, fmt.Errorf("pull %s: %w", ref, err)
		}
	}
	res, err := pull(ctx, repo, ref, &opts)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	return res, nil
}

func pull(ctx context.Context, repo *store.Repository, ref string, opts *PullOptions) (*PullResult, error) {
	imgRef, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	sys := systemContext(opts)
	src, err := imgRef.NewImageSource(ctx, sys)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	ri, err := resolveManifest(ctx, src, sys)
	if err != nil {
		return nil, err
	}
	si := &storedImage{manifestDigest: ri.digest, manifestJSON: ri.manifest, manifest: ri.parsed}
	if si.container() {
		// Fail before fetching what could not be used.
		if err := checkImageAlgorithm(repo); err != nil {
			return nil, err
		}
	}
	res := &PullResult{
		ManifestDigest: ri.digest,
		ConfigDigest:   ri.parsed.Config.Digest,
		Tag:            opts.Tag,
		Artifact:       !si.container(),
		Layers:         len(ri.parsed.Layers),
	}

	configChanged := false
	si.config, si.configStream, err = storedConfig(repo, si.manifest)
	if err != nil {
		return nil, err
	}
	if si.config == nil {
		data, err := readConfig(ctx, src, ri.parsed.Config)
		if err != nil {
			return nil, err
		}
		c := &configData{json: data, layers: map[digest.Digest][]byte{}, images: map[string][]byte{}}
		if c.diffIDs, err = layerIDs(data, ri.parsed); err != nil {
			return nil, err
		}
		si.config, configChanged = c, true
	}

	threads := opts.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	p := &puller{repo: repo, src: src, res: res, prog: newProgress(ctx, opts.Progress)}
	fetched, err := p.fetchLayers(ctx, si, threads)
	p.prog.wait()
	if err != nil {
		return nil, err
	}
	configChanged = configChanged || fetched

	if si.container() {
		set, made, err := makeImages(repo, si, opts.Bootable)
		if err != nil {
			return nil, err
		}
		res.Image, res.BootImage = set.Image, set.BootImage
		configChanged = configChanged || made
	}
	if configChanged {
		if si.configStream, err = writeConfigStream(repo, si.manifest.Config.Digest, si.config); err != nil {
			return nil, err
		}
	}
	res.ConfigStream = si.configStream
	if res.ManifestStream, err = ensureManifestStream(repo, si, configChanged, opts.Tag); err != nil {
		return nil, err
	}
	return res, nil
}

// storedConfig returns the configuration stream of an earlier pull of the
// same configuration, with its digest, or nil if there is none or it cannot
// be read (the pull then replaces it). Layers whose streams have gone are
// dropped from it, so that they are fetched again.
func storedConfig(repo *store.Repository, m *manifest.OCI1) (*configData, []byte, error) {
	d, ok, err := repo.HasStream(ConfigStreamID(m.Config.Digest))
	if err != nil || !ok {
		return nil, nil, err
	}
	rd, err := openStreamDigest(repo, d)
	if err != nil {
		return nil, nil, nil
	}
	c, err := readConfigStream(repo, rd, m.Config.Digest, m)
	if err != nil {
		return nil, nil, nil
	}
	for id, ld := range c.layers {
		ok, err := repo.HasObject(ld)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			delete(c.layers, id)
		}
	}
	return c, d, nil
}

// puller fetches the layers of one image.
type puller struct {
	repo *store.Repository
	src  types.ImageSource
	prog *progress

	mu  sync.Mutex // guards res
	res *PullResult
}

// fetchLayers stores the layers the configuration lacks streams for,
// several at once, biggest first. It reports whether it changed the
// configuration's layer references.
func (p *puller) fetchLayers(ctx context.Context, si *storedImage, threads int) (bool, error) {
	type job struct {
		id   digest.Digest
		desc v1.Descriptor
	}
	var jobs []job
	changed := false
	queued := map[digest.Digest]bool{}
	for i, id := range si.config.diffIDs {
		if si.config.layers[id] != nil || queued[id] {
			continue
		}
		d, ok, err := p.repo.HasStream(LayerStreamID(id))
		if err != nil {
			return false, err
		}
		if ok {
			si.config.layers[id] = d
			changed = true
			continue
		}
		queued[id] = true
		jobs = append(jobs, job{id, si.manifest.Layers[i]})
	}
	if len(jobs) == 0 {
		return changed, nil
	}
	sort.SliceStable(jobs, func(i, j int) bool { return jobs[i].desc.Size > jobs[j].desc.Size })
	fetchers := threads
	if !p.src.HasThreadSafeGetBlob() {
		fetchers = 1
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ing := newIngester(ctx, p.repo, threads)
	slots := make(chan struct{}, fetchers)
	var wg sync.WaitGroup
	container := si.container()
	for _, j := range jobs {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			d, st, err := p.fetchLayer(ctx, ing, j.id, j.desc, container)
			if err != nil {
				cancel(fmt.Errorf("layer %s: %w", j.desc.Digest, err))
				return
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			si.config.layers[j.id] = d
			p.res.LayersFetched++
			p.res.BytesFetched += j.desc.Size
			p.res.Objects += st.Objects
			p.res.ObjectBytes += st.ObjectBytes
			p.res.InlineBytes += st.InlineBytes
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// fetchLayer stores one layer as a stream named by its id and returns the
// stream's digest.
func (p *puller) fetchLayer(ctx context.Context, ing *ingester, id digest.Digest, desc v1.Descriptor, container bool) ([]byte, splitStats, error) {
	comp := layerCompression(desc.MediaType)
	if container && comp == notArchive {
		return nil, splitStats{}, fmt.Errorf("unsupported layer media type %q", desc.MediaType)
	}
	b, err := openBlob(ctx, p.src, desc)
	if err != nil {
		return nil, splitStats{}, err
	}
	defer b.Close()
	bar := p.prog.add(shortDigest(desc.Digest), desc.Size)
	var d []byte
	var st splitStats
	if comp == notArchive {
		d, st, err = p.storeBlob(id, bar.reader(b), b)
	} else {
		d, st, err = p.storeLayer(ing, id, container, bar.reader(b), b, comp)
	}
	bar.done(err)
	return d, st, err
}

func shortDigest(d digest.Digest) string {
	e := d.Encoded()
	if len(e) > 12 {
		e = e[:12]
	}
	return e
}

// storeLayer splits a layer's archive into a stream. Nothing refers to the
// stream's objects until the blob's digest and, for a container image, the
// archive's diff_id (id) are checked and the stream is stored. An
// artifact's archive layers are named by their blob digest, which
// the blob check covers.
func (p *puller) storeLayer(ing *ingester, id digest.Digest, isDiffID bool, r io.Reader, b *blob, comp compression) ([]byte, splitStats, error) {
	ar, closeAr, err := decompressor(r, comp)
	if err != nil {
		return nil, splitStats{}, blobError(b, err)
	}
	var h hash.Hash
	if isDiffID {
		h = id.Algorithm().Hash()
		ar = io.TeeReader(ar, h)
	}
	sw := splitstream.NewWriter(p.repo.Algorithm(), splitstream.ContentTypeOCILayer)
	st, err := splitTar(ar, sw, ing)
	closeAr()
	if err != nil {
		return nil, st, blobError(b, err)
	}
	if err := b.finish(); err != nil {
		return nil, st, err
	}
	if h != nil {
		if got := digest.NewDigest(id.Algorithm(), h); got != id {
			return nil, st, fmt.Errorf("the uncompressed layer has digest %s, not the diff_id %s of the config", got, id)
		}
	}
	d, err := p.repo.WriteStream(LayerStreamID(id), sw, "")
	return d, st, err
}

// blobError prefers, to an error met while decompressing or parsing a
// blob, the news that the blob is not the one its digest names.
func blobError(b *blob, err error) error {
	if ferr := b.finish(); ferr != nil && errors.Is(ferr, errBlobDigest) {
		return ferr
	}
	return err
}

// storeBlob stores an artifact's layer as one object, in a stream of its
// own, as composefs-rs does.
func (p *puller) storeBlob(id digest.Digest, r io.Reader, b *blob) ([]byte, splitStats, error) {
	od, err := p.repo.EnsureObject(r)
	if err != nil {
		return nil, splitStats{}, err
	}
	if err := b.finish(); err != nil {
		return nil, splitStats{}, err
	}
	sw := splitstream.NewWriter(p.repo.Algorithm(), splitstream.ContentTypeOCIBlob)
	sw.WriteExternal(od, b.n)
	d, err := p.repo.WriteStream(LayerStreamID(id), sw, "")
	return d, splitStats{Objects: 1, ObjectBytes: b.n}, err
}

// ensureManifestStream stores the manifest stream unless the repository
// has it with the same configuration stream, then tags the image.
func ensureManifestStream(repo *store.Repository, si *storedImage, configChanged bool, tag string) ([]byte, error) {
	if !configChanged {
		d, ok, err := repo.HasStream(ManifestStreamID(si.manifestDigest))
		if err != nil {
			return nil, err
		}
		if ok {
			rd, err := openStreamDigest(repo, d)
			if err == nil && bytes.Equal(rd.NamedRef(configRefPrefix+si.manifest.Config.Digest.String()), si.configStream) {
				if tag != "" {
					if err := setTag(repo, si.manifestDigest, tag); err != nil {
						return nil, err
					}
				}
				return d, nil
			}
		}
	}
	return writeManifestStream(repo, si, tag)
}
