package store

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/store/objects"
	"github.com/gocfs/gocfs/verity"
)

// EnableVerity makes the repository secure. It is for repositories filled
// where fs-verity was not available, typically on a build machine that
// writes a disk image with mkfs -d: once on a filesystem with fs-verity,
// EnableVerity enables it on every object (images included, they are
// objects), checks that each measurement equals the object's name, and
// only then enables it on meta.json, which is what marks the repository
// secure. Any failure leaves meta.json as it was, so the repository never
// claims a security it does not have. Running it on a secure repository
// seals objects that lack fs-verity (as fsck --repair does) and changes
// nothing else.
//
// It holds the repository exclusively, like GC, and returns the number of
// objects it sealed. Objects whose content does not match their name are
// reported, not removed: fsck --repair removes them.
func (r *Repository) EnableVerity() (int, error) {
	if err := r.writable(); err != nil {
		return 0, err
	}
	end, err := r.beginExclusive()
	if err != nil {
		return 0, err
	}
	defer end()
	n, err := r.sealObjects()
	if err != nil {
		return n, fmt.Errorf("store: enable fs-verity in %s: %w", r.path, err)
	}
	if r.secure {
		return n, nil
	}
	f, err := openFile(r.fd, metaName)
	if err != nil {
		return n, fmt.Errorf("store: enable fs-verity in %s: open %s: %w", r.path, metaName, err)
	}
	err = r.kernel.Enable(f, r.alg)
	f.Close()
	if err != nil {
		return n, fmt.Errorf("store: enable fs-verity in %s: %s: %w", r.path, metaName, err)
	}
	// From now on objects must be stored with fs-verity, as in a
	// repository opened secure.
	objs, err := objects.OpenDirOptions(r.path+"/"+objectsDir, true, objects.Options{
		Algorithm: r.alg, RequireVerity: true, NoSync: true, Kernel: r.kernel,
	})
	if err != nil {
		return n, fmt.Errorf("store: enable fs-verity in %s: %w", r.path, err)
	}
	r.objs.Close()
	r.objs, r.secure = objs, true
	return n, nil
}

// sealObjects enables fs-verity on every object lacking it, the fan-out
// directories in parallel, and checks every measurement.
func (r *Repository) sealObjects() (int, error) {
	top, err := r.readDir(objectsDir)
	if err != nil {
		return 0, err
	}
	var dirs []string
	for _, e := range top {
		if e.typ == unix.S_IFDIR && isFanout(e.name) {
			dirs = append(dirs, e.name)
		}
	}
	var (
		mu     sync.Mutex
		sealed int
		errs   []error
	)
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), max(len(dirs), 1)) {
		wg.Go(func() {
			for fan := range work {
				n, err := r.sealObjectDir(fan)
				mu.Lock()
				sealed += n
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		})
	}
	for _, d := range dirs {
		work <- d
	}
	close(work)
	wg.Wait()
	if len(errs) > 0 {
		// A filesystem without fs-verity fails every object alike: say
		// it once.
		for _, err := range errs {
			if errors.Is(err, verity.ErrNotSupported) {
				return sealed, fmt.Errorf("this filesystem has no fs-verity: %w", err)
			}
		}
		if len(errs) > 10 {
			errs = append(errs[:10], fmt.Errorf("and %d more", len(errs)-10))
		}
		return sealed, errors.Join(errs...)
	}
	return sealed, nil
}

func (r *Repository) sealObjectDir(fan string) (int, error) {
	dir := objectsDir + "/" + fan
	ents, err := r.readDir(dir)
	if err != nil {
		return 0, err
	}
	sealed := 0
	var errs []error
	for _, e := range ents {
		if e.typ != unix.S_IFREG || strings.HasPrefix(e.name, tempPrefix) {
			continue
		}
		name := dir + "/" + e.name
		d, ok := objects.ParsePath(fan+"/"+e.name, r.alg.Size())
		if !ok {
			continue // fsck reports these; they name nothing
		}
		didSeal, err := r.sealObject(name, d)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			if errors.Is(err, verity.ErrNotSupported) {
				break
			}
			continue
		}
		if didSeal {
			sealed++
		}
	}
	return sealed, errors.Join(errs...)
}

// sealObject enables fs-verity on one object if it lacks it and checks the
// measurement against the name.
func (r *Repository) sealObject(name string, want []byte) (bool, error) {
	f, err := openFile(r.fd, name)
	if err != nil {
		return false, err
	}
	defer f.Close()
	sealed := false
	alg, got, err := r.kernel.Measure(f)
	if errors.Is(err, verity.ErrNoVerity) {
		if err := r.kernel.Enable(f, r.alg); err != nil {
			return false, err
		}
		sealed = true
		alg, got, err = r.kernel.Measure(f)
	}
	if err != nil {
		return sealed, err
	}
	if alg != r.alg || !bytes.Equal(got, want) {
		return sealed, fmt.Errorf("content has fs-verity digest %s:%x, not its name (fsck --repair removes it)", alg, got)
	}
	return sealed, nil
}
