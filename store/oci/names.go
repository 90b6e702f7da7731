package oci

import (
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Stream names. A repository names the splitstreams of an image by what they
// hold, as composefs-rs does, so that each tool finds what the other pulled:
// the layer by its diff_id, the configuration and the manifest by their
// content digests.
const (
	layerPrefix    = "oci-layer-"
	configPrefix   = "oci-config-"
	manifestPrefix = "oci-manifest-"
)

// LayerStreamID returns the stream name of the layer with the given diff_id
// (for an artifact, the layer's blob digest).
func LayerStreamID(diffID digest.Digest) string { return layerPrefix + diffID.String() }

// ConfigStreamID returns the stream name of an image configuration.
func ConfigStreamID(config digest.Digest) string { return configPrefix + config.String() }

// ManifestStreamID returns the stream name of an image manifest.
func ManifestStreamID(manifest digest.Digest) string { return manifestPrefix + manifest.String() }

// Named references a configuration stream carries besides one per layer
// diff_id: the EROFS images made from the image. composefs-rs keys images of
// the C-compatible layout (format versions 0 and 1) with ".v1" and its own
// legacy layout without; gocfs writes the former only.
const (
	ImageRef     = "composefs.image.v1"
	BootImageRef = "composefs.image.boot.v1"
	// LegacyImageRef and LegacyBootImageRef name composefs-rs's format 2
	// images. gocfs keeps them when it rewrites a configuration stream
	// but never makes such images.
	LegacyImageRef     = "composefs.image"
	LegacyBootImageRef = "composefs.image.boot"
)

// configRefPrefix prefixes the manifest stream's reference to its
// configuration stream, "config:<digest>".
const configRefPrefix = "config:"

// tagRefPrefix is the directory of streams/refs holding image tags.
const tagRefPrefix = "oci/"

// tagRef returns the stream reference name of a tag: "oci/" and the tag with
// "%" and "/" percent-encoded, so that every tag is one file name.
func tagRef(tag string) (string, error) {
	switch {
	case tag == "":
		return "", fmt.Errorf("empty tag")
	case tag[0] == '@':
		// As in composefs-rs: "@" marks a digest where names are expected.
		return "", fmt.Errorf("tag %q: a leading '@' is reserved for digests", tag)
	case tag[0] == '.':
		return "", fmt.Errorf("tag %q starts with a dot", tag)
	case strings.IndexByte(tag, 0) >= 0:
		return "", fmt.Errorf("tag %q contains a NUL byte", tag)
	}
	enc := strings.NewReplacer("%", "%25", "/", "%2F").Replace(tag)
	if len(enc) > 255 {
		return "", fmt.Errorf("tag %q is too long: %d bytes encoded, more than a file name's 255", tag, len(enc))
	}
	return tagRefPrefix + enc, nil
}

// decodeTag reverses the encoding of tagRef in one pass, so that "%252F"
// becomes "%2F", not "/". Unknown escapes stay as they are.
func decodeTag(name string) string {
	if strings.IndexByte(name, '%') < 0 {
		return name
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		if name[i] == '%' && i+3 <= len(name) {
			switch name[i+1 : i+3] {
			case "2F":
				b.WriteByte('/')
				i += 2
				continue
			case "25":
				b.WriteByte('%')
				i += 2
				continue
			}
		}
		b.WriteByte(name[i])
	}
	return b.String()
}
