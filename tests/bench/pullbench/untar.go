package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"strings"
)

// Overlay markers of OCI layers.
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// untarLayers applies layer blobs, in order, to the directory root with
// GNU tar, as one would without a container tool: tar extracts each layer
// over those below and lists what it wrote; then every whiteout in the
// list deletes what it names, and every opaque marker whatever the layer
// did not write in its directory. Member names holding a newline are not
// supported, as tar lists one name a line.
func untarLayers(ctx context.Context, root string, blobs []string) error {
	for i, blob := range blobs {
		var list bytes.Buffer
		cmd := exec.CommandContext(ctx, "tar", "-x", "-v", "--numeric-owner", "--quoting-style=literal", "-f", blob, "-C", root)
		cmd.Stdout = &list
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("layer %d (%s): tar: %w", i+1, blob, err)
		}
		if err := applyWhiteouts(root, list.String()); err != nil {
			return fmt.Errorf("layer %d (%s): %w", i+1, blob, err)
		}
	}
	return nil
}

// applyWhiteouts applies the overlay markers of a layer whose members tar
// listed, one a line, after extracting them to dir. The deletions stay in
// dir even where a layer's symlinks point out of it.
func applyWhiteouts(dir, listing string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	written := map[string]bool{}
	var markers []string
	for line := range strings.Lines(listing) {
		name, err := memberPath(strings.TrimSuffix(line, "\n"))
		if err != nil {
			return err
		}
		written[name] = true
		if strings.HasPrefix(path.Base(name), whiteoutPrefix) {
			markers = append(markers, name)
		}
	}
	for _, m := range markers {
		parent, base := path.Dir(m), path.Base(m)
		if base == opaqueMarker {
			if err := keepWritten(root, parent, written); err != nil {
				return fmt.Errorf("opaque directory %s: %w", parent, err)
			}
		} else if target := path.Join(parent, base[len(whiteoutPrefix):]); !written[target] {
			// A whiteout hides lower layers only, not a name the
			// same layer wrote.
			if err := root.RemoveAll(target); err != nil {
				return fmt.Errorf("whiteout %s: %w", m, err)
			}
		}
		if err := root.Remove(m); err != nil {
			return fmt.Errorf("overlay marker %s: %w", m, err)
		}
	}
	return nil
}

// memberPath returns the clean relative path of a member tar listed ("."
// for the root directory), refusing names that leave the directory.
func memberPath(name string) (string, error) {
	p := path.Clean(name)
	if name == "" || path.IsAbs(p) || p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("member name %q is not below the extraction directory", name)
	}
	return p, nil
}

// keepWritten deletes what lies in directory dir of root that the layer
// did not write, descending into the directories it wrote, which tar
// merged with the lower ones.
func keepWritten(root *os.Root, dir string, written map[string]bool) error {
	f, err := root.Open(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	ents, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := path.Join(dir, e.Name())
		switch {
		case !written[p]:
			if err := root.RemoveAll(p); err != nil {
				return err
			}
		case e.IsDir():
			if err := keepWritten(root, p, written); err != nil {
				return err
			}
		}
	}
	return nil
}
