package ocibuild

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"
)

// WriteLayout writes the image as an OCI image layout in dir, created if
// needed, with tag as its only reference name: "oci:DIR:TAG" then names it.
// An index.json already in dir is replaced.
func (b *Built) WriteLayout(dir, tag string) error {
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return fmt.Errorf("OCI layout: %w", err)
	}
	write := func(name string, data []byte) error {
		if err := os.WriteFile(name, data, 0o644); err != nil {
			return fmt.Errorf("OCI layout: %w", err)
		}
		return nil
	}
	blob := func(d digest.Digest, data []byte) error {
		return write(filepath.Join(blobs, d.Encoded()), data)
	}
	for _, l := range b.Layers {
		if err := blob(l.Digest, l.Blob); err != nil {
			return err
		}
	}
	if err := blob(b.ConfigDigest, b.Config); err != nil {
		return err
	}
	if err := blob(b.ManifestDigest, b.Manifest); err != nil {
		return err
	}
	index, err := json.Marshal(v1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType:   v1.MediaTypeImageManifest,
			Digest:      b.ManifestDigest,
			Size:        int64(len(b.Manifest)),
			Annotations: map[string]string{v1.AnnotationRefName: tag},
		}},
	})
	if err != nil {
		return err
	}
	if err := write(filepath.Join(dir, v1.ImageLayoutFile), []byte(`{"imageLayoutVersion":"`+v1.ImageLayoutVersion+`"}`)); err != nil {
		return err
	}
	return write(filepath.Join(dir, v1.ImageIndexFile), index)
}

// Push uploads the image to dest, a "docker://HOST/REPO:TAG" reference,
// blob by blob and then the manifest, so that every blob and digest stays
// as built. (It talks to the destination directly rather than through
// containers/image's copy, which would also pull in signature checking and
// with it a cgo dependency the rest of the module does not need.)
func (b *Built) Push(ctx context.Context, dest string, sys *types.SystemContext) error {
	if err := b.push(ctx, dest, sys); err != nil {
		return fmt.Errorf("push %s: %w", dest, err)
	}
	return nil
}

func (b *Built) push(ctx context.Context, dest string, sys *types.SystemContext) error {
	name, ok := strings.CutPrefix(dest, "docker:")
	if !ok {
		return errors.New("only docker:// destinations are supported")
	}
	ref, err := docker.ParseReference(name)
	if err != nil {
		return err
	}
	d, err := ref.NewImageDestination(ctx, sys)
	if err != nil {
		return err
	}
	defer d.Close()
	put := func(blob []byte, dg digest.Digest, isConfig bool) error {
		info := types.BlobInfo{Digest: dg, Size: int64(len(blob))}
		if _, err := d.PutBlob(ctx, bytes.NewReader(blob), info, none.NoCache, isConfig); err != nil {
			return fmt.Errorf("blob %s: %w", dg, err)
		}
		return nil
	}
	for _, l := range b.Layers {
		if err := put(l.Blob, l.Digest, false); err != nil {
			return err
		}
	}
	if err := put(b.Config, b.ConfigDigest, true); err != nil {
		return err
	}
	if err := d.PutManifest(ctx, b.Manifest, nil); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	// A registry destination keeps nothing back until Commit; it needs no
	// view of the source image.
	return d.Commit(ctx, nil)
}
