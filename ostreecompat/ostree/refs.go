package ostree

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ValidRef checks a ref name as ostree does: slash-separated components of
// letters, digits, "-", "." and "_" ("." and ".." refused).
func ValidRef(name string) error {
	if name == "" {
		return fmt.Errorf("empty ref name: %w", ErrInvalid)
	}
	for _, c := range strings.Split(name, "/") {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("ref %q: bad component %q: %w", name, c, ErrInvalid)
		}
		for i := range len(c) {
			b := c[i]
			if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '.' || b == '_') {
				return fmt.Errorf("ref %q: bad character %q: %w", name, b, ErrInvalid)
			}
		}
	}
	return nil
}

// refPath returns the file of a ref: refs/heads/NAME, or for "REMOTE:NAME"
// refs/remotes/REMOTE/NAME.
func refPath(name string) (string, error) {
	if remote, ref, ok := strings.Cut(name, ":"); ok {
		if err := ValidRef(remote); err != nil || strings.Contains(remote, "/") {
			return "", fmt.Errorf("ostree: remote of ref %q: %w", name, ErrInvalid)
		}
		if err := ValidRef(ref); err != nil {
			return "", fmt.Errorf("ostree: %w", err)
		}
		return "refs/remotes/" + remote + "/" + ref, nil
	}
	if err := ValidRef(name); err != nil {
		return "", fmt.Errorf("ostree: %w", err)
	}
	return "refs/heads/" + name, nil
}

// ResolveRef returns the commit checksum a ref names: refs/heads/NAME, or
// refs/remotes/REMOTE/NAME for "REMOTE:NAME". A checksum resolves to itself.
func (r *Repo) ResolveRef(name string) (string, error) {
	if ValidChecksum(name) {
		return name, nil
	}
	p, err := refPath(name)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(r.path, p))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("ostree: ref %s: %w", name, ErrNotFound)
		}
		return "", fmt.Errorf("ostree: ref %s: %w", name, err)
	}
	c := strings.TrimSuffix(string(b), "\n")
	if !ValidChecksum(c) {
		return "", fmt.Errorf("ostree: %s: %q is not a checksum: %w", filepath.Join(r.path, p), b, ErrInvalid)
	}
	return c, nil
}

// SetRef makes the ref name (refs/heads/NAME, or refs/remotes/REMOTE/NAME
// for "REMOTE:NAME") point to the commit checksum, which must exist. The
// filesystem is synced first, so the ref never outlives a crash without its
// commit, and the ref file is replaced atomically.
func (r *Repo) SetRef(name, checksum string) error {
	p, err := refPath(name)
	if err != nil {
		return err
	}
	ok, err := r.HasObject(ObjCommit, checksum)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("ostree: set ref %s: commit %s: %w", name, checksum, ErrNotFound)
	}
	if err := os.MkdirAll(filepath.Join(r.path, filepath.Dir(p)), 0o755); err != nil {
		return fmt.Errorf("ostree: set ref %s: %w", name, err)
	}
	if err := r.sync(); err != nil {
		return err
	}
	if err := r.replaceFile(p, []byte(checksum+"\n")); err != nil {
		return fmt.Errorf("ostree: set ref %s: %w", name, err)
	}
	if err := syncDir(filepath.Join(r.path, filepath.Dir(p))); err != nil {
		return fmt.Errorf("ostree: set ref %s: %w", name, err)
	}
	return nil
}

// DeleteRef removes a ref. What only it kept goes at the next prune.
func (r *Repo) DeleteRef(name string) error {
	p, err := refPath(name)
	if err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(r.path, p)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("ostree: ref %s: %w", name, ErrNotFound)
		}
		return fmt.Errorf("ostree: delete ref %s: %w", name, err)
	}
	return nil
}

// Refs returns the refs under refs/heads with the commits they name.
func (r *Repo) Refs() (map[string]string, error) {
	refs := map[string]string{}
	base := filepath.Join(r.path, "refs", "heads")
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		name, _ := filepath.Rel(base, p)
		name = filepath.ToSlash(name)
		if ValidRef(name) != nil {
			return nil
		}
		c, err := r.ResolveRef(name)
		if err != nil {
			return err
		}
		refs[name] = c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ostree: listing refs: %w", err)
	}
	return refs, nil
}
