package oci

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/gocfs/gocfs/store"
)

// Repair is a store.FsckOptions Repairer for what only this package can
// rebuild: it makes again, from the layer streams, the EROFS images
// (composefs.image.v1, composefs.image.boot.v1) that a configuration stream
// names but the repository lacks. Images are deterministic, so the image
// made again normally has the missing digest; if it does not (an image
// made by another tool or format), the configuration stream is rewritten
// to name the new one, and so are the manifest streams of the tags that
// refer to it. Other problems are left alone: lost layer content can only
// be fetched again, by pulling the image.
func Repair(repo *store.Repository, p *store.FsckProblem) (bool, error) {
	if p.Kind != store.FsckMissingNamedRef || (p.RefName != ImageRef && p.RefName != BootImageRef) {
		return false, nil
	}
	id, ok := strings.CutPrefix(p.Path, "streams/")
	if !ok {
		return false, nil
	}
	s, ok := strings.CutPrefix(id, configPrefix)
	if !ok {
		return false, nil
	}
	cd, err := digest.Parse(s)
	if err != nil {
		return false, nil
	}
	missing, err := hex.DecodeString(p.ObjectID)
	if err != nil {
		return false, nil
	}
	if err := checkImageAlgorithm(repo); err != nil {
		return false, err
	}
	rd, oldStream, err := repo.OpenStream(id)
	if err != nil {
		return false, err
	}
	c, err := readConfigStream(repo, rd, cd, nil)
	if err != nil {
		return false, fmt.Errorf("%s: %w", id, err)
	}
	streams := make([][]byte, len(c.diffIDs))
	for i, d := range c.diffIDs {
		streams[i] = c.layers[d]
	}
	root, err := TreeFromLayers(repo, streams)
	if err != nil {
		return false, fmt.Errorf("%s: %w", id, err)
	}
	if p.RefName == BootImageRef {
		if err := BootTransform(root); err != nil {
			return false, fmt.Errorf("%s: %w", id, err)
		}
	}
	made, err := writeImage(repo, root)
	if err != nil {
		return false, fmt.Errorf("%s: %w", id, err)
	}
	if bytes.Equal(made, missing) {
		return true, nil
	}
	c.images[p.RefName] = made
	newStream, err := writeConfigStream(repo, cd, c)
	if err != nil {
		return false, err
	}
	return true, relinkManifests(repo, cd, oldStream, newStream, c)
}

// relinkManifests rewrites the manifest streams of the tagged images whose
// configuration stream was replaced; tags name manifest streams, so they
// follow.
func relinkManifests(repo *store.Repository, cd digest.Digest, oldStream, newStream []byte, c *configData) error {
	refs, err := repo.Refs(store.Streams)
	if err != nil {
		return err
	}
	done := map[digest.Digest]bool{}
	for ref, entry := range refs {
		if !strings.HasPrefix(ref, tagRefPrefix) {
			continue
		}
		md, err := manifestOfEntry(entry, ref)
		if err != nil || done[md] {
			continue
		}
		done[md] = true
		rd, _, err := repo.OpenStream(entry)
		if err != nil || !bytes.Equal(rd.NamedRef(configRefPrefix+cd.String()), oldStream) {
			continue
		}
		si, err := openStoredImage(repo, md)
		if err != nil {
			return err
		}
		si.configStream, si.config = newStream, c
		if _, err := writeManifestStream(repo, si, ""); err != nil {
			return err
		}
	}
	return nil
}
