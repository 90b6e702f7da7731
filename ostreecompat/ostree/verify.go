package ostree

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
)

// VerifyCommit checks a commit and everything it reaches, as `ostree fsck`
// does: every metadata object has the checksum it is named by and is in
// normal form, and every content object's checksum, recomputed from its
// metadata (where the mode keeps it) and content, is its name. It returns
// the problems found, joined, or nil. The commit's parents are not checked.
func (r *Repo) VerifyCommit(checksum string) error {
	c, err := r.ReadCommit(checksum)
	if err != nil {
		return err
	}
	v := &verifier{r: r, seen: map[string]bool{}}
	files := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for f := range files {
				if err := r.VerifyFile(f); err != nil {
					mu.Lock()
					v.errs = append(v.errs, err)
					mu.Unlock()
				}
			}
		})
	}
	v.dir("", Root{Tree: c.RootTree, Meta: c.RootMeta}, files, &mu, 0)
	close(files)
	wg.Wait()
	if _, err := r.ReadCommitMeta(checksum); err != nil {
		v.errs = append(v.errs, err)
	}
	return errors.Join(v.errs...)
}

type verifier struct {
	r    *Repo
	seen map[string]bool // objects checked or queued, by type and checksum
	errs []error
}

func (v *verifier) dir(path string, root Root, files chan<- string, mu *sync.Mutex, depth int) {
	fail := func(err error) {
		mu.Lock()
		v.errs = append(v.errs, fmt.Errorf("%w (directory %q)", err, path+"/"))
		mu.Unlock()
	}
	if depth > maxTreeDepth {
		fail(fmt.Errorf("ostree: directories nested deeper than %d", maxTreeDepth))
		return
	}
	if !v.seen["m"+root.Meta] {
		v.seen["m"+root.Meta] = true
		if _, err := v.r.ReadDirMeta(root.Meta); err != nil {
			fail(err)
		}
	}
	if v.seen["t"+root.Tree] {
		return
	}
	v.seen["t"+root.Tree] = true
	dt, err := v.r.ReadDirTree(root.Tree)
	if err != nil {
		fail(err)
		return
	}
	for _, f := range dt.Files {
		if !v.seen["f"+f.Checksum] {
			v.seen["f"+f.Checksum] = true
			files <- f.Checksum
		}
	}
	for _, d := range dt.Dirs {
		v.dir(path+"/"+d.Name, Root{Tree: d.Tree, Meta: d.Meta}, files, mu, depth+1)
	}
}

// VerifyFile checks a content object: its checksum, recomputed from its
// metadata (where the mode keeps it) and content, must be its name.
func (r *Repo) VerifyFile(checksum string) error {
	m, f, err := r.OpenFile(checksum)
	if err != nil {
		return err
	}
	var content io.Reader
	if f != nil {
		defer f.Close()
		content = f
	}
	c, err := ContentChecksum(m, content)
	if err != nil {
		return fmt.Errorf("ostree: file object %s: %w", checksum, err)
	}
	if c != checksum {
		return fmt.Errorf("ostree: file object %s: metadata and content have checksum %s: %w", checksum, c, ErrInvalid)
	}
	return nil
}
