package ostreecompat

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/ostreecompat/ostree"
	"github.com/gocfs/gocfs/verity"
)

// composefsRootDirs are the top-level directories libostree adds to its
// composefs images when the commit lacks them (0755, owned by root), so that
// they can serve as mount points.
var composefsRootDirs = []string{"usr", "etc", "boot", "var", "sysroot"}

// WriteComposefsImage writes ostree's composefs image of a commit to w, the
// image libostree writes as a deployment's .ostree.cfs and whose fs-verity
// digest `ostree commit --generate-composefs-metadata` records as
// ostree.composefs.digest.v0, and returns that digest (sha256).
//
// The image is libostree's, byte for byte: the commit's tree with every
// name its own inode and every mtime 0; regular files that are not empty
// name their object by its path under objects/ (XX/<rest>.file) and carry
// its sha256 fs-verity digest (the kernel's measurement where the object
// has fs-verity, else computed from its content); the directories usr, etc,
// boot, var and sysroot added at the top where missing; format version 0.
// On error, some of the image may have been written.
func WriteComposefsImage(r *ostree.Repo, commit string, w io.Writer) (digest []byte, err error) {
	c, err := r.ReadCommit(commit)
	if err != nil {
		return nil, err
	}
	root := ostree.Root{Tree: c.RootTree, Meta: c.RootMeta}
	t, err := composefsTree(r, root, nil)
	if err != nil {
		return nil, fmt.Errorf("composefs image of %s: %w", commit, err)
	}
	d, err := writeImage(t, w)
	if err != nil {
		return nil, fmt.Errorf("composefs image of %s: %w", commit, err)
	}
	return d, nil
}

// composefsDigest returns the fs-verity digest of ostree's composefs image
// of a tree, taking file digests from known (content checksum to digest)
// where it has them.
func composefsDigest(r *ostree.Repo, root ostree.Root, known map[string][]byte) ([]byte, error) {
	t, err := composefsTree(r, root, known)
	if err != nil {
		return nil, fmt.Errorf("composefs image: %w", err)
	}
	d, err := writeImage(t, io.Discard)
	if err != nil {
		return nil, fmt.Errorf("composefs image: %w", err)
	}
	return d, nil
}

func writeImage(t *tree.Inode, w io.Writer) ([]byte, error) {
	h := verity.New(verity.SHA256)
	if _, err := erofs.Write(io.MultiWriter(w, h), t, erofs.WriteOptions{}); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// composefsTree builds the tree libostree builds for the image of a
// commit's tree. Digests missing from known are measured or computed, in
// parallel.
func composefsTree(r *ostree.Repo, root ostree.Root, known map[string][]byte) (*tree.Inode, error) {
	t, err := r.ReadTree(root)
	if err != nil {
		return nil, err
	}
	// Files by the checksum of their object, for those whose digest is
	// not known.
	need := map[string][]*tree.Inode{}
	err = tree.Walk(t, func(p string, d *tree.Dirent) error {
		n := d.Inode
		if !n.IsReg() || n.Payload == "" {
			return nil
		}
		c := payloadChecksum(n.Payload)
		if v, ok := known[c]; ok {
			n.Digest = v
		} else {
			need[c] = append(need[c], n)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := objectDigests(r, need); err != nil {
		return nil, err
	}
	for _, name := range composefsRootDirs {
		if t.Lookup(name) == nil {
			if err := t.Insert(&tree.Dirent{Name: name, Inode: &tree.Inode{Mode: tree.TypeDir | 0o755, Nlink: 2}}); err != nil {
				return nil, err
			}
		}
	}
	return t, nil
}

// payloadChecksum returns the content checksum in an object path
// "XX/<rest>.file".
func payloadChecksum(p string) string {
	return strings.Replace(strings.TrimSuffix(p, ".file"), "/", "", 1)
}

// objectDigests sets the sha256 fs-verity digest of the objects the files
// name (by checksum): the kernel's measurement, or computed from the
// content, in parallel.
func objectDigests(r *ostree.Repo, files map[string][]*tree.Inode) error {
	ch := make(chan string)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for c := range ch {
				d, err := objectDigest(r, c)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				for _, n := range files[c] {
					n.Digest = d
				}
				mu.Unlock()
			}
		})
	}
	for c := range files {
		ch <- c
	}
	close(ch)
	wg.Wait()
	return errors.Join(errs...)
}

func objectDigest(r *ostree.Repo, checksum string) ([]byte, error) {
	_, f, err := r.OpenFile(checksum)
	if err != nil {
		return nil, err
	}
	if f == nil {
		return nil, fmt.Errorf("file object %s is a symlink", checksum)
	}
	defer f.Close()
	if alg, d, err := verity.Measure(f); err == nil && alg == verity.SHA256 {
		return d, nil
	}
	h := verity.New(verity.SHA256)
	if _, err := h.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return h.Sum(nil), nil
}
