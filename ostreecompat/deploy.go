package ostreecompat

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/ostreecompat/ostree"
	"github.com/gocfs/gocfs/store"
)

// DeployOptions configure Deploy.
type DeployOptions struct {
	// Stateroot is the operating system's name in the sysroot, as
	// `ostree admin os-init` makes it: ostree/deploy/STATEROOT holds its
	// deployments and its /var. It is created when missing.
	Stateroot string
	// Branch, if set, is an ostree ref pointed at the commit and recorded
	// as the origin's refspec; otherwise the origin names the image's own
	// ref (ImageRef).
	Branch string
	// Policy says how the commit's files share the store's blocks
	// (see Commit).
	Policy Policy
	// Kargs are the kernel arguments of the boot entry besides ostree=
	// (root=, rw, console=, ...).
	Kargs []string
	// Retain keeps every earlier deployment in the boot list. Without it,
	// as `ostree admin deploy` does, the stateroot keeps only its previous
	// default deployment (the rollback); other stateroots keep theirs.
	Retain bool
}

// Deployment describes what Deploy wrote. Paths are relative to the
// sysroot.
type Deployment struct {
	Stateroot string `json:"stateroot"`
	// Image is the store image's digest (hex).
	Image string `json:"image"`
	// Commit is the ostree commit synthesized from the image.
	Commit string `json:"commit"`
	Serial int    `json:"deploySerial"`
	// Path is the deployment directory, ostree/deploy/STATEROOT/deploy/COMMIT.SERIAL.
	Path string `json:"path"`
	// ComposefsDigest is the sha256 fs-verity digest (hex) of the
	// deployment's .ostree.cfs.
	ComposefsDigest string `json:"composefsDigest"`
	Kernel          string `json:"kernel"`
	// Bootcsum is sha256(vmlinuz ‖ initramfs) in hex, as ostree names the
	// kernel's directory boot/ostree/STATEROOT-BOOTCSUM.
	Bootcsum string `json:"bootcsum"`
	// Bootlink is the ostree= kernel argument.
	Bootlink string `json:"bootlink"`
	// Entry is the boot entry, boot/loader.B/entries/ostree-N-STATEROOT.conf.
	Entry       string `json:"entry"`
	Bootversion int    `json:"bootversion"`
}

// cfsName is the composefs image of a deployment, where ostree-prepare-root
// looks for it.
const cfsName = ".ostree.cfs"

var stateRootRe = regexp.MustCompile(`^[A-Za-z0-9][-A-Za-z0-9._]*$`)

// Deploy deploys a store image (named as Synthesize takes it) into an
// ostree sysroot, as `ostree admin deploy` deploys a commit: the image's
// commit is synthesized (or the one ImageRef names reused) into the
// sysroot's repository with the policy given, and the deployment directory
// ostree/deploy/STATEROOT/deploy/COMMIT.SERIAL gets a hardlink checkout of
// it, etc/ (a copy of the commit's usr/etc, where the commit has the image's
// /etc) and .ostree.cfs, ostree's composefs image of the commit, whose
// payloads are ostree/repo/objects paths. Beside it go the .origin file,
// the kernel and initramfs in boot/ostree/STATEROOT-BOOTCSUM, the
// bootlinks, the deployment refs ostree/B/S/N and a boot entry for every
// deployment in the new list, made current by one rename of boot/loader:
// ostree-prepare-root (with or without composefs) and composefs-prepare-root
// with ostree= boot it. An empty sysroot is first laid out as `ostree admin
// init-fs` and `os-init` would. The sysroot is locked (ostree/lock) as
// libostree locks it.
//
// The new deployment's etc keeps the local changes of the stateroot's
// previous default deployment (mergeEtc), as ostree's merge does.
func Deploy(ctx context.Context, st *store.Repository, image, sysroot string, opts DeployOptions) (*Deployment, error) {
	if !stateRootRe.MatchString(opts.Stateroot) {
		return nil, fmt.Errorf("deploy: stateroot %q: want letters, digits, '-', '_' and '.', not first", opts.Stateroot)
	}
	for _, k := range opts.Kargs {
		if k == "" || strings.ContainsAny(k, " \t\n\r") || strings.HasPrefix(k, "ostree=") {
			return nil, fmt.Errorf("deploy: kernel argument %q: one argument without spaces, and not ostree= (Deploy sets it)", k)
		}
	}
	repo, err := initSysroot(sysroot, opts.Stateroot)
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	defer repo.Close()
	if repo.Mode() != ostree.ModeBare {
		return nil, fmt.Errorf("deploy: %s is a %v repository; a sysroot's is bare", repo.Path(), repo.Mode())
	}
	unlock, err := lockSysroot(sysroot)
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	defer unlock()
	deployDir := filepath.Join(sysroot, "ostree", "deploy", opts.Stateroot, "deploy")
	if err := removeLeftovers(deployDir, filepath.Join(sysroot, "boot", "ostree")); err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}

	res, err := Commit(ctx, st, repo, image, CommitOptions{Branch: opts.Branch, Policy: opts.Policy, Reuse: true})
	if err != nil {
		return nil, fmt.Errorf("deploy %s: %w", image, err)
	}
	c, err := repo.ReadCommit(res.Commit)
	if err != nil {
		return nil, fmt.Errorf("deploy %s: %w", image, err)
	}
	root, err := repo.ReadTree(ostree.Root{Tree: c.RootTree, Meta: c.RootMeta})
	if err != nil {
		return nil, fmt.Errorf("deploy %s: commit %s: %w", image, res.Commit, err)
	}
	kern, err := findKernel(root)
	if err != nil {
		return nil, fmt.Errorf("deploy %s: %w", image, err)
	}
	d := &deployment{stateroot: opts.Stateroot, csum: res.Commit}
	if d.serial, err = nextDeploySerial(deployDir, d.csum); err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	out := &Deployment{Stateroot: opts.Stateroot, Image: res.Image, Commit: d.csum, Serial: d.serial, Path: d.dir(), Kernel: kern.version}
	if d.bootcsum, err = installKernel(repo, sysroot, opts.Stateroot, kern); err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	out.Bootcsum = d.bootcsum
	bv, err := bootversion(sysroot)
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	old, err := listDeployments(sysroot, bv)
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	merge := ""
	for _, o := range old {
		if o.stateroot == opts.Stateroot {
			merge = filepath.Join(sysroot, o.dir())
			break
		}
	}
	cfsDigest, err := writeDeployDir(repo, filepath.Join(sysroot, d.dir()), d.csum, root, merge)
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	// Until the boot configuration names it, a failure takes the
	// deployment away again rather than leave it for no one to remove.
	booted := false
	defer func() {
		if !booted {
			removeDeployment(sysroot, d)
		}
	}()
	out.ComposefsDigest = hex.EncodeToString(cfsDigest)
	refspec := opts.Branch
	if refspec == "" {
		refspec = ImageRef(res.Image)
	}
	origin := fmt.Sprintf("[origin]\nrefspec=%s\n\n[composefs]\nimage=%s\n", refspec, res.Image)
	if err := replaceFile(filepath.Join(sysroot, d.dir()+".origin"), []byte(origin), 0o644); err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}

	d.entry = &blsEntry{
		title:   prettyName(repo, root, opts.Stateroot),
		options: strings.Join(opts.Kargs, " "),
		linux:   "/" + filepath.Join("ostree", opts.Stateroot+"-"+d.bootcsum, "vmlinuz-"+kern.version),
	}
	if kern.initramfs != nil {
		d.entry.initrds = []string{"/" + filepath.Join("ostree", opts.Stateroot+"-"+d.bootcsum, "initramfs-"+kern.version+".img")}
	}
	list, dropped := retained(d, old, opts.Retain)
	setRefs := func(bv, sbv int) error { return setDeploymentRefs(repo, list, bv, sbv) }
	if out.Bootversion, err = writeBootConfig(sysroot, list, setRefs); err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	booted = true
	out.Bootlink = d.bootlink(out.Bootversion)
	out.Entry = filepath.Join("boot", fmt.Sprintf("loader.%d", out.Bootversion), "entries", fmt.Sprintf("ostree-%d-%s.conf", len(list), d.stateroot))
	if err := cleanDeployments(sysroot, list, dropped); err != nil {
		return out, fmt.Errorf("deploy: the new deployment boots, but: %w", err)
	}
	return out, nil
}

// kernel is what a deployment boots, found in its commit as ostree finds
// it.
type kernel struct {
	version            string
	vmlinuz, initramfs *tree.Inode
}

// findKernel looks for usr/lib/modules/VERSION/vmlinuz (and initramfs.img
// beside it), the layout ostree and bootc images use; with several kernels,
// the first version in byte order.
func findKernel(root *tree.Inode) (*kernel, error) {
	mods, err := tree.Resolve(root, "usr/lib/modules")
	if err == nil && mods.IsDir() {
		for _, de := range mods.Entries {
			if !de.Inode.IsDir() {
				continue
			}
			v := de.Inode.Lookup("vmlinuz")
			if v == nil || !v.Inode.IsReg() {
				continue
			}
			k := &kernel{version: de.Name, vmlinuz: v.Inode}
			if i := de.Inode.Lookup("initramfs.img"); i != nil && i.Inode.IsReg() {
				k.initramfs = i.Inode
			}
			return k, nil
		}
	}
	return nil, errors.New("no kernel: the image has no usr/lib/modules/VERSION/vmlinuz")
}

// prettyName is the boot menu title: PRETTY_NAME of the commit's
// os-release, else the stateroot.
func prettyName(repo *ostree.Repo, root *tree.Inode, fallback string) string {
	for _, p := range []string{"usr/etc/os-release", "usr/lib/os-release"} {
		n, err := resolveFollow(root, p)
		if err != nil || !n.IsReg() || n.Size > 64<<10 {
			continue
		}
		r, err := openObject(repo, n)
		if err != nil {
			continue
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			v, ok := strings.CutPrefix(strings.TrimSpace(line), "PRETTY_NAME=")
			if !ok {
				continue
			}
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			} else {
				v = strings.Trim(v, `"'`)
			}
			if v = strings.TrimSpace(v); v != "" && !strings.ContainsAny(v, "\n\r") {
				return v
			}
		}
	}
	return fallback
}

// resolveFollow resolves p in the tree, following symbolic links within it
// (os-release is usually etc/os-release -> ../usr/lib/os-release).
func resolveFollow(root *tree.Inode, p string) (*tree.Inode, error) {
	for range 8 {
		n, err := tree.Resolve(root, p)
		if err != nil {
			return nil, err
		}
		if !n.IsSymlink() {
			return n, nil
		}
		if strings.HasPrefix(n.Payload, "/") {
			p = n.Payload
		} else {
			p = filepath.Join(filepath.Dir("/"+p), n.Payload)
		}
		// The commit's /etc is usr/etc.
		if rest, ok := strings.CutPrefix(p, "/etc/"); ok {
			p = "/usr/etc/" + rest
		}
	}
	return nil, fmt.Errorf("%s: too many symbolic links", p)
}

// openObject opens the content of a regular file of a commit's tree
// (ReadTree): its object, or nothing for an empty file.
func openObject(repo *ostree.Repo, n *tree.Inode) (io.ReadCloser, error) {
	if n.Payload == "" {
		return io.NopCloser(strings.NewReader("")), nil
	}
	return os.Open(filepath.Join(repo.Path(), "objects", n.Payload))
}

// initSysroot lays out an empty sysroot as `ostree admin init-fs` does and a
// stateroot as `ostree admin os-init` does, and opens the repository.
func initSysroot(sysroot, stateroot string) (*ostree.Repo, error) {
	repoDir := filepath.Join(sysroot, "ostree", "repo")
	_, err := os.Stat(filepath.Join(repoDir, "objects"))
	fresh := errors.Is(err, os.ErrNotExist)
	if err != nil && !fresh {
		return nil, fmt.Errorf("sysroot %s: %w", sysroot, err)
	}
	type dir struct {
		name string
		mode os.FileMode
	}
	dirs := []dir{{"boot", 0o755}, {"ostree", 0o755}, {"ostree/deploy", 0o755}}
	if fresh {
		dirs = append(dirs, dir{"dev", 0o755}, dir{"home", 0o755}, dir{"proc", 0o755}, dir{"root", 0o700},
			dir{"run", 0o755}, dir{"sys", 0o755}, dir{"tmp", 0o1777})
	}
	for _, d := range dirs {
		if err := mkdirMode(filepath.Join(sysroot, d.name), d.mode); err != nil {
			return nil, fmt.Errorf("init sysroot %s: %w", sysroot, err)
		}
	}
	// libostree's link for boot loaders that look for /boot/loader on a
	// root filesystem that holds /boot.
	boot := filepath.Join(sysroot, "boot")
	if sameDevice(sysroot, boot) {
		if err := os.Symlink(".", filepath.Join(boot, "boot")); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("sysroot %s: %w", sysroot, err)
		}
	}
	sr := filepath.Join(sysroot, "ostree", "deploy", stateroot)
	_, err = os.Stat(filepath.Join(sr, "var"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("stateroot %s: %w", stateroot, err)
	}
	if err != nil {
		for _, d := range []dir{{"", 0o755}, {"var", 0o755}, {"var/tmp", 0o1777}, {"var/lib", 0o755}, {"var/log", 0o755}} {
			if err := mkdirMode(filepath.Join(sr, d.name), d.mode); err != nil {
				return nil, fmt.Errorf("init stateroot %s: %w", stateroot, err)
			}
		}
		for name, target := range map[string]string{"var/lock": "../run/lock", "var/run": "../run"} {
			if err := os.Symlink(target, filepath.Join(sr, name)); err != nil && !errors.Is(err, os.ErrExist) {
				return nil, fmt.Errorf("init stateroot %s: %w", stateroot, err)
			}
		}
	}
	if err := mkdirMode(filepath.Join(sr, "deploy"), 0o755); err != nil {
		return nil, fmt.Errorf("stateroot %s: %w", stateroot, err)
	}
	if fresh {
		return ostree.Create(repoDir, ostree.ModeBare)
	}
	return ostree.Open(repoDir)
}

// mkdirMode makes a directory with exactly mode (the umask does not apply);
// an existing directory is left as it is.
func mkdirMode(p string, mode os.FileMode) error {
	err := os.Mkdir(p, mode)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

// lockSysroot takes libostree's sysroot lock, so that this and `ostree
// admin` never rewrite the boot configuration at the same time. The
// protocol is libostree's (libglnx lock files): the holder of the exclusive
// lock removes the file before releasing it, so a waiter that gets the lock
// on a file no longer linked starts again.
func lockSysroot(sysroot string) (func(), error) {
	p := filepath.Join(sysroot, "ostree", "lock")
	for {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock sysroot: %w", err)
		}
		for {
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		var st unix.Stat_t
		if err == nil {
			err = unix.Fstat(int(f.Fd()), &st)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock sysroot %s: %w", p, err)
		}
		if st.Nlink == 0 {
			f.Close()
			continue
		}
		return func() {
			os.Remove(p)
			f.Close()
		}, nil
	}
}

// removeLeftovers removes the temporary directories of deployments
// interrupted by a crash; the sysroot lock guarantees no other is running.
func removeLeftovers(dirs ...string) error {
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// nextDeploySerial returns one more than the highest serial of a
// deployment of csum in the stateroot's deploy directory.
func nextDeploySerial(deployDir, csum string) (int, error) {
	ents, err := os.ReadDir(deployDir)
	if err != nil {
		return 0, err
	}
	next := 0
	for _, e := range ents {
		name := strings.TrimSuffix(e.Name(), ".origin")
		m := deployNameRe.FindStringSubmatch(name)
		if m == nil || m[1] != csum {
			continue
		}
		if n, err := strconv.Atoi(m[2]); err == nil && n >= next {
			next = n + 1
		}
	}
	return next, nil
}

// installKernel copies the kernel and initramfs to
// boot/ostree/STATEROOT-BOOTCSUM, unless a deployment already put them
// there, and returns the bootcsum.
func installKernel(repo *ostree.Repo, sysroot, stateroot string, k *kernel) (string, error) {
	h := sha256.New()
	for _, n := range []*tree.Inode{k.vmlinuz, k.initramfs} {
		if n == nil {
			continue
		}
		if err := hashContent(repo, n, h); err != nil {
			return "", fmt.Errorf("kernel %s: %w", k.version, err)
		}
	}
	bootcsum := hex.EncodeToString(h.Sum(nil))
	dir := filepath.Join(sysroot, "boot", "ostree", stateroot+"-"+bootcsum)
	if _, err := os.Stat(dir); err == nil {
		return bootcsum, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-"+stateroot+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	files := map[string]*tree.Inode{"vmlinuz-" + k.version: k.vmlinuz}
	if k.initramfs != nil {
		files["initramfs-"+k.version+".img"] = k.initramfs
	}
	for name, n := range files {
		if err := copyContent(repo, n, filepath.Join(tmp, name), 0o644); err != nil {
			return "", fmt.Errorf("kernel %s: %w", k.version, err)
		}
	}
	if err := syncTree(tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("kernel %s: %w", k.version, err)
	}
	return bootcsum, syncPath(filepath.Dir(dir))
}

func hashContent(repo *ostree.Repo, n *tree.Inode, w io.Writer) error {
	r, err := openObject(repo, n)
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(w, r)
	return err
}

// copyContent writes a regular file of the commit to path (new). Copying
// from an object file lets the kernel share blocks (copy_file_range).
func copyContent(repo *ostree.Repo, n *tree.Inode, path string, mode os.FileMode) error {
	r, err := openObject(repo, n)
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeDeployDir makes the deployment directory under a temporary name and
// renames it into place: the checkout, etc (merged with the deployment
// merge, if any) and .ostree.cfs. It returns the image's fs-verity digest.
func writeDeployDir(repo *ostree.Repo, dir, commit string, root *tree.Inode, merge string) ([]byte, error) {
	tmp := filepath.Join(filepath.Dir(dir), ".tmp-"+filepath.Base(dir))
	if err := os.RemoveAll(tmp); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	if err := checkout(repo, root, tmp); err != nil {
		return nil, fmt.Errorf("check out %s: %w", commit, err)
	}
	if err := copyEtc(repo, root, tmp); err != nil {
		return nil, fmt.Errorf("etc: %w", err)
	}
	if merge != "" {
		if err := mergeEtc(merge, filepath.Join(tmp, "etc")); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(filepath.Join(tmp, cfsName), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	digest, err := WriteComposefsImage(repo, commit, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", cfsName, commit, err)
	}
	if err := syncTree(tmp); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	ok = true
	if err := syncPath(filepath.Dir(dir)); err != nil {
		return nil, err
	}
	// ostree makes deployments immutable so that nothing but ostree
	// changes them; filesystems without the flag go without.
	if err := setImmutable(dir, true); err != nil {
		return nil, err
	}
	return digest, nil
}

// checkout writes the commit's tree at dst as `ostree checkout` does in a
// bare repository: directories made with their dirmeta, files and symlinks
// hardlinks of their objects (a copy where an object has all the links
// its filesystem allows).
func checkout(repo *ostree.Repo, n *tree.Inode, dst string) error {
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	objs := filepath.Join(repo.Path(), "objects")
	for _, de := range n.Entries {
		p := filepath.Join(dst, de.Name)
		c := de.Inode
		switch {
		case c.IsDir():
			if err := checkout(repo, c, p); err != nil {
				return err
			}
			continue
		case c.IsSymlink() || c.Payload == "":
			// ReadTree names no object for symlinks and empty files.
			obj, err := metaOnlyObject(c)
			if err != nil {
				return err
			}
			if err := os.Link(filepath.Join(objs, obj), p); err != nil {
				return err
			}
			continue
		}
		err := os.Link(filepath.Join(objs, c.Payload), p)
		if errors.Is(err, unix.EMLINK) {
			if err = copyContent(repo, c, p, 0o600); err == nil {
				err = setMeta(p, c)
			}
		}
		if err != nil {
			return err
		}
	}
	return setMeta(dst, n)
}

// metaOnlyObject returns the object path (relative to objects/) of a
// symlink or an empty file, whose checksum covers only its metadata.
func metaOnlyObject(n *tree.Inode) (string, error) {
	sum, err := ostree.ContentChecksum(ostree.FileMetaOf(n), strings.NewReader(""))
	if err != nil {
		return "", err
	}
	return ostree.LoosePath(sum, ostree.ObjFile), nil
}

// copyEtc makes the deployment's etc: a copy of the commit's usr/etc, with
// owners, modes and xattrs (new inodes, so that changes stay out of the
// repository), or an empty directory for a commit without one.
func copyEtc(repo *ostree.Repo, root *tree.Inode, dst string) error {
	etc := filepath.Join(dst, "etc")
	if err := os.RemoveAll(etc); err != nil {
		return err
	}
	src, err := tree.Resolve(root, "usr/etc")
	if err != nil || !src.IsDir() {
		return mkdirMode(etc, 0o755)
	}
	return copyTree(repo, src, etc)
}

// copyTree writes the commit's directory n as a new directory at dst, with
// owners, modes and xattrs.
func copyTree(repo *ostree.Repo, n *tree.Inode, dst string) error {
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	for _, de := range n.Entries {
		p := filepath.Join(dst, de.Name)
		c := de.Inode
		var err error
		switch {
		case c.IsDir():
			err = copyTree(repo, c, p)
		case c.IsReg():
			err = copyContent(repo, c, p, 0o600)
		case c.IsSymlink():
			err = os.Symlink(c.Payload, p)
		default:
			err = fmt.Errorf("%s: file type %#o in a commit", p, c.Type())
		}
		if err != nil {
			return err
		}
		if !c.IsDir() {
			if err := setMeta(p, c); err != nil {
				return err
			}
		}
	}
	return setMeta(dst, n)
}

// setMeta gives a copied file the image's owner, mode, xattrs and mtime,
// in that order: chown clears file capabilities and set-id bits.
func setMeta(p string, n *tree.Inode) error {
	if err := unix.Lchown(p, int(n.UID), int(n.GID)); err != nil {
		return fmt.Errorf("%s: chown: %w", p, err)
	}
	if !n.IsSymlink() {
		if err := unix.Chmod(p, n.Mode&0o7777); err != nil {
			return fmt.Errorf("%s: chmod: %w", p, err)
		}
	}
	for _, x := range n.Xattrs {
		if err := unix.Lsetxattr(p, x.Name, []byte(x.Value), 0); err != nil {
			return fmt.Errorf("%s: xattr %s: %w", p, x.Name, err)
		}
	}
	ts := []unix.Timespec{{Sec: n.Mtime.Sec, Nsec: int64(n.Mtime.Nsec)}, {Sec: n.Mtime.Sec, Nsec: int64(n.Mtime.Nsec)}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("%s: mtime: %w", p, err)
	}
	return nil
}

// fsImmutable is FS_IMMUTABLE_FL of linux/fs.h, the flag chattr +i sets.
const fsImmutable = 0x10

// setImmutable sets or clears the immutable flag (chattr +i) of a
// directory, where the filesystem has it.
func setImmutable(p string, on bool) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: file flags: %w", p, err)
	}
	want := flags &^ fsImmutable
	if on {
		want |= fsImmutable
	}
	if want == flags {
		return nil
	}
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(want)); err != nil &&
		!errors.Is(err, unix.ENOTTY) && !errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("%s: set file flags: %w", p, err)
	}
	return nil
}

// retained is the new boot list: d first, then what stays of old; the
// rest is dropped.
func retained(d *deployment, old []*deployment, all bool) (list, dropped []*deployment) {
	list = []*deployment{d}
	kept := false
	for _, o := range old {
		if all || o.stateroot != d.stateroot || !kept {
			list = append(list, o)
			kept = kept || o.stateroot == d.stateroot
			continue
		}
		dropped = append(dropped, o)
	}
	return list, dropped
}

// setDeploymentRefs replaces the refs ostree/B/S/N, which keep the listed
// deployments' commits from pruning, as libostree writes them.
func setDeploymentRefs(repo *ostree.Repo, list []*deployment, bv, sbv int) error {
	refs, err := repo.Refs()
	if err != nil {
		return fmt.Errorf("deployment refs: %w", err)
	}
	for name := range refs {
		if strings.HasPrefix(name, "ostree/") {
			if err := repo.DeleteRef(name); err != nil {
				return fmt.Errorf("deployment refs: %w", err)
			}
		}
	}
	for i, d := range list {
		if err := repo.SetRef(fmt.Sprintf("ostree/%d/%d/%d", bv, sbv, i), d.csum); err != nil {
			return fmt.Errorf("deployment refs: %w", err)
		}
	}
	return nil
}

// removeDeployment removes a deployment directory and its origin file.
func removeDeployment(sysroot string, d *deployment) error {
	p := filepath.Join(sysroot, d.dir())
	if err := setImmutable(p, false); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("remove deployment: %w", err)
	}
	if err := os.Remove(p + ".origin"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove deployment: %w", err)
	}
	return nil
}

// cleanDeployments removes the dropped deployments and the kernels no
// deployment of the list boots.
func cleanDeployments(sysroot string, list, dropped []*deployment) error {
	keep := map[string]bool{}
	for _, d := range list {
		keep[d.dir()] = true
	}
	for _, d := range dropped {
		if keep[d.dir()] {
			continue
		}
		if err := removeDeployment(sysroot, d); err != nil {
			return err
		}
	}
	bootDir := filepath.Join(sysroot, "boot", "ostree")
	used := map[string]bool{}
	for _, d := range list {
		used[d.stateroot+"-"+d.bootcsum] = true
	}
	ents, err := os.ReadDir(bootDir)
	if err != nil {
		return fmt.Errorf("kernels: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		i := strings.LastIndexByte(name, '-')
		if !e.IsDir() || used[name] || i < 0 || len(name)-i-1 != 64 {
			continue
		}
		if _, err := hex.DecodeString(name[i+1:]); err != nil {
			continue
		}
		if err := os.RemoveAll(filepath.Join(bootDir, name)); err != nil {
			return fmt.Errorf("kernels: %w", err)
		}
	}
	return nil
}
