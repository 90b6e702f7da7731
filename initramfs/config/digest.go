package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/gocfs/gocfs/initramfs/cmdline"
)

// DigestPath is where the initramfs extension puts the digest of the image
// to boot, relative to the initramfs root. The file holds one line, in the
// form of a composefs.digest= value.
const DigestPath = "etc/composefs/digest"

// maxDigestFile bounds the digest file LoadDigest reads.
const maxDigestFile = 4096

// ParseDigestFile parses the content of a digest file.
func ParseDigestFile(b []byte) (cmdline.Digest, error) {
	return cmdline.ParseDigest(strings.TrimSuffix(string(b), "\n"))
}

// LoadDigest reads the digest file under root (the initramfs root, "/" at
// boot). It returns nil if there is none.
func LoadDigest(root string) (*cmdline.Digest, error) {
	name := filepath.Join(root, DigestPath)
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxDigestFile+1))
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", name, err)
	}
	if len(b) > maxDigestFile {
		return nil, fmt.Errorf("config: %s is more than %d bytes", name, maxDigestFile)
	}
	d, err := ParseDigestFile(b)
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", name, err)
	}
	return &d, nil
}
