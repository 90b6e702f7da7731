package ocibuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"path"
	"runtime"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Compression is how a layer blob is compressed.
type Compression uint8

// Layer compressions.
const (
	Gzip Compression = iota
	Zstd
	Uncompressed
)

// Layer is one layer of an image.
type Layer struct {
	// Entries in archive order. A directory's Opaque marker belongs
	// right after the directory's own entry, before its new children.
	Entries     []Entry
	Compression Compression
	// RecordPadding pads the archive with zero bytes after its end
	// blocks to a multiple of 10240 bytes, as GNU tar does; the padding
	// is part of the diff_id.
	RecordPadding bool
}

// Image describes an image.
type Image struct {
	Layers []Layer
	// Created is the creation time recorded in the configuration.
	Created int64
	Labels  map[string]string
	Cmd     []string
	// Annotations of the manifest.
	Annotations map[string]string
}

// Built is a built image: every blob and digest of it.
type Built struct {
	Image          *Image
	Layers         []BuiltLayer
	Config         []byte
	ConfigDigest   digest.Digest
	Manifest       []byte
	ManifestDigest digest.Digest
}

// BuiltLayer is a built layer.
type BuiltLayer struct {
	Tar       []byte        // the uncompressed archive
	DiffID    digest.Digest // sha256 of Tar
	Blob      []byte        // what the registry stores
	Digest    digest.Digest // sha256 of Blob
	MediaType string
}

// Build makes the blobs of img.
func Build(img *Image) (*Built, error) {
	b := &Built{Image: img}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	for i, l := range img.Layers {
		bl, err := buildLayer(&l, enc)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i+1, err)
		}
		b.Layers = append(b.Layers, bl)
	}
	created := time.Unix(img.Created, 0).UTC()
	cfg := v1.Image{
		Created:  &created,
		Platform: v1.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config:   v1.ImageConfig{Cmd: img.Cmd, Labels: img.Labels},
		RootFS:   v1.RootFS{Type: "layers"},
	}
	m := v1.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   v1.MediaTypeImageManifest,
		Annotations: img.Annotations,
	}
	for i, l := range b.Layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID)
		cfg.History = append(cfg.History, v1.History{Created: &created, CreatedBy: fmt.Sprintf("ocibuild layer %d", i+1)})
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: int64(len(l.Blob))})
	}
	if b.Config, err = json.Marshal(cfg); err != nil {
		return nil, err
	}
	b.ConfigDigest = digest.FromBytes(b.Config)
	m.Config = v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: b.ConfigDigest, Size: int64(len(b.Config))}
	if b.Manifest, err = json.Marshal(m); err != nil {
		return nil, err
	}
	b.ManifestDigest = digest.FromBytes(b.Manifest)
	return b, nil
}

// MustBuild is Build for images the program describes: it panics on error.
func MustBuild(img *Image) *Built {
	b, err := Build(img)
	if err != nil {
		panic(err)
	}
	return b
}

func buildLayer(l *Layer, enc *zstd.Encoder) (BuiltLayer, error) {
	tb, err := layerTar(l)
	if err != nil {
		return BuiltLayer{}, err
	}
	bl := BuiltLayer{Tar: tb, DiffID: digest.FromBytes(tb)}
	switch l.Compression {
	case Gzip:
		var buf bytes.Buffer
		// A zero header (no name, no time) keeps the blob reproducible.
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(tb); err != nil {
			return BuiltLayer{}, err
		}
		if err := zw.Close(); err != nil {
			return BuiltLayer{}, err
		}
		bl.Blob, bl.MediaType = buf.Bytes(), v1.MediaTypeImageLayerGzip
	case Zstd:
		bl.Blob, bl.MediaType = enc.EncodeAll(tb, nil), v1.MediaTypeImageLayerZstd
	case Uncompressed:
		bl.Blob, bl.MediaType = tb, v1.MediaTypeImageLayer
	default:
		return BuiltLayer{}, fmt.Errorf("unknown compression %d", l.Compression)
	}
	bl.Digest = digest.FromBytes(bl.Blob)
	return bl, nil
}

// recordSize is GNU tar's default record size.
const recordSize = 20 * 512

func layerTar(l *Layer) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := range l.Entries {
		e := &l.Entries[i]
		if err := e.validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Path, err)
		}
		hdr := header(e)
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Path, err)
		}
		if e.Type == File {
			if _, err := tw.Write(e.Data()); err != nil {
				return nil, fmt.Errorf("%s: %w", e.Path, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if l.RecordPadding && buf.Len()%recordSize != 0 {
		buf.Write(make([]byte, recordSize-buf.Len()%recordSize))
	}
	return buf.Bytes(), nil
}

// WhiteoutPrefix and OpaqueName are the overlay markers of OCI layers.
const (
	WhiteoutPrefix = ".wh."
	OpaqueName     = ".wh..wh..opq"
)

// header returns the tar header of e. Names are relative, as most image
// builders write them; the root is "./".
func header(e *Entry) *tar.Header {
	name := strings.TrimPrefix(e.Path, "/")
	h := &tar.Header{
		Name:    name,
		Mode:    int64(e.Mode),
		Uid:     e.UID,
		Gid:     e.GID,
		ModTime: time.Unix(e.Mtime, 0),
	}
	switch e.Type {
	case Dir:
		h.Typeflag = tar.TypeDir
		h.Name = strings.TrimPrefix(name+"/", "/")
		if h.Name == "" {
			h.Name = "./"
		}
	case File:
		h.Typeflag = tar.TypeReg
		h.Size = e.DataSize()
	case Symlink:
		h.Typeflag, h.Linkname = tar.TypeSymlink, e.Target
	case Hardlink:
		h.Typeflag, h.Linkname = tar.TypeLink, strings.TrimPrefix(e.Target, "/")
	case Char, Block:
		h.Typeflag = tar.TypeChar
		if e.Type == Block {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor, h.Devminor = int64(e.Major), int64(e.Minor)
	case Fifo:
		h.Typeflag = tar.TypeFifo
	case Whiteout:
		h.Typeflag = tar.TypeReg
		h.Name = strings.TrimPrefix(path.Join(path.Dir(e.Path), WhiteoutPrefix+path.Base(e.Path)), "/")
	case Opaque:
		h.Typeflag = tar.TypeReg
		h.Name = strings.TrimPrefix(path.Join(e.Path, OpaqueName), "/")
	}
	if len(e.Xattrs) > 0 {
		h.PAXRecords = make(map[string]string, len(e.Xattrs))
		for k, v := range e.Xattrs {
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
	}
	return h
}
