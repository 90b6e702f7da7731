package ocibuild

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/signature"
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

// Push copies the image to dest, a "docker://HOST/REPO:TAG" reference,
// with containers/image, keeping every blob and digest as built.
func (b *Built) Push(ctx context.Context, dest string, sys *types.SystemContext) error {
	name, ok := strings.CutPrefix(dest, "docker:")
	if !ok {
		return fmt.Errorf("push %s: only docker:// destinations are supported", dest)
	}
	destRef, err := docker.ParseReference(name)
	if err != nil {
		return fmt.Errorf("push %s: %w", dest, err)
	}
	dir, err := os.MkdirTemp("", "ocibuild-")
	if err != nil {
		return fmt.Errorf("push %s: %w", dest, err)
	}
	defer os.RemoveAll(dir)
	const tag = "push"
	if err := b.WriteLayout(dir, tag); err != nil {
		return fmt.Errorf("push %s: %w", dest, err)
	}
	srcRef, err := layout.NewReference(dir, tag)
	if err != nil {
		return fmt.Errorf("push %s: %w", dest, err)
	}
	policy, err := signature.NewPolicyContext(&signature.Policy{
		Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()},
	})
	if err != nil {
		return fmt.Errorf("push %s: %w", dest, err)
	}
	defer policy.Destroy()
	_, err = copy.Image(ctx, policy, destRef, srcRef, &copy.Options{
		SourceCtx:       sys,
		DestinationCtx:  sys,
		PreserveDigests: true,
	})
	if err != nil {
		return fmt.Errorf("push %s: %w", dest, err)
	}
	return nil
}
