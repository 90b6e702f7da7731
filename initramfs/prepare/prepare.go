// Package prepare is the prepare-root sequence: it mounts the composefs
// image a boot names as the new root filesystem, with its writable state,
// where the initramfs then switches to it.
//
// # Sources
//
// The image comes from one of two places:
//
//   - A composefs repository at SYSROOT/composefs, the image named by its
//     digest (composefs.digest=, composefs= or the initramfs extension; see
//     package cmdline for the order candidates are tried in). The state of
//     the deployment lives in SYSROOT/state/deploy/HEX/: etc/upper and
//     etc/work for the /etc overlay, etc for a bound /etc, var for /var.
//     Missing state directories are created.
//   - An ostree deployment (ostree=BOOTLINK): SYSROOT/BOOTLINK must be a
//     symbolic link, and leads within the sysroot to the deployment
//     directory, whose .ostree.cfs is mounted with SYSROOT/ostree/repo/objects
//     as the object directory. A digest, if given, pins the image. /etc is
//     the deployment's etc directory, bound (the default) or transient, and
//     /var is the stateroot's var, ../../var from the deployment.
//
// # Sequence
//
// Everything is assembled under a private bind mount of RunDir/stage, so
// that nothing propagates to other mounts until the end, and every
// temporary mount goes with it when it is detached, on success or failure:
//
//  1. The image is mounted through package mount (the best tier the kernel
//     has) on stage/root. With [root] transient it gets a tmpfs upper
//     directory, so the root is writable and its changes are lost at
//     reboot.
//  2. The physical root (SYSROOT) is bound on the new root's /sysroot, if
//     the image has that directory, to stay reachable after the switch.
//  3. /etc and /var are mounted as the configuration says (package
//     config). A transient /etc or /var is an overlay whose upper directory
//     is on a tmpfs.
//  4. If the target is SYSROOT and a mount point, the physical root mount
//     is detached from it (it stays reachable through the new root's
//     /sysroot), and the new root is moved onto the target, where the init
//     system switches root to it.
//
// # Security
//
// A digest without the insecure marker requires fs-verity: in a
// repository without it (the kernel or the filesystem does not support
// it), or for an image or object without it, the boot is refused with an
// error that says so and how to boot insecurely; it is never downgraded.
package prepare

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gocfs/gocfs/initramfs/cmdline"
	"github.com/gocfs/gocfs/initramfs/config"
	"github.com/gocfs/gocfs/mount"
	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/verity"
)

// System performs the mounts. Linux is the real one; tests record calls.
type System interface {
	// MountImage mounts a composefs image on target, as mount.Mount.
	MountImage(target string, opts mount.Options) (mount.Info, error)
	// Bind bind-mounts src (not its submounts) on target.
	Bind(src, target string) error
	// MakePrivate stops mount propagation to and from the mount at target.
	MakePrivate(target string) error
	// Overlay mounts a writable overlay of lower on target.
	Overlay(target, lower, upper, work string) error
	// Tmpfs mounts an empty tmpfs on target.
	Tmpfs(target string) error
	// Move moves the mount at src to target.
	Move(src, target string) error
	// Detach lazily unmounts the mount at target and everything under it.
	Detach(target string) error
	// IsMountPoint reports whether path is the root of a mount.
	IsMountPoint(path string) (bool, error)
	// MkdirAll creates a directory and its parents.
	MkdirAll(path string, perm os.FileMode) error
	// OpenRepository opens the composefs repository at path.
	OpenRepository(path string) (Repository, error)
}

// Repository is the part of a store.Repository prepare uses.
type Repository interface {
	// Secure reports whether the repository has fs-verity.
	Secure() bool
	Algorithm() verity.Algorithm
	// OpenImage opens the image with the given digest (hex); the error
	// wraps store.ErrNotFound if there is none.
	OpenImage(hex string) (*os.File, []byte, error)
	// ObjectDir is the object directory's path.
	ObjectDir() string
	Close() error
}

// Defaults for Params.
const (
	DefaultSysroot = "/sysroot"
	DefaultRunDir  = "/run/composefs"
)

// Params describe a boot.
type Params struct {
	// Sysroot is where the physical root filesystem is mounted.
	Sysroot string
	// Target is where the new root ends up; default Sysroot.
	Target string
	// RunDir is a directory for temporary mounts, on a filesystem
	// (normally the initramfs's /run) other than Sysroot.
	RunDir string
	// Args is the parsed kernel command line.
	Args *cmdline.Args
	// Pinned is the digest of the initramfs extension, if any.
	Pinned *cmdline.Digest
	Config config.Config
	// Log, if set, receives progress messages.
	Log func(format string, args ...any)
}

// Result describes the new root.
type Result struct {
	// Digest is the image booted; nil for an ostree deployment without
	// a digest.
	Digest *cmdline.Digest
	// Image is the image file's path.
	Image string
	// Deployment is the ostree deployment directory, or "".
	Deployment string
	Info       mount.Info
}

// ErrNoImage is wrapped when no candidate image is present.
var ErrNoImage = errors.New("no image to boot")

// ErrInsecure is wrapped when a secure boot is impossible.
var ErrInsecure = errors.New("secure boot impossible")

type run struct {
	sys   System
	p     Params
	stage string
	root  string
}

// Run performs the prepare-root sequence.
func Run(sys System, p Params) (*Result, error) {
	if p.Sysroot == "" {
		p.Sysroot = DefaultSysroot
	}
	if p.Target == "" {
		p.Target = p.Sysroot
	}
	if p.RunDir == "" {
		p.RunDir = DefaultRunDir
	}
	if p.Args == nil {
		p.Args = &cmdline.Args{}
	}
	if p.Log == nil {
		p.Log = func(string, ...any) {}
	}
	candidates, err := cmdline.Candidates(p.Args.Digests, p.Pinned)
	if err != nil {
		return nil, err
	}
	if p.Args.OSTree == "" && len(candidates) == 0 {
		return nil, fmt.Errorf("%w: no %s=, %s= or %s= kernel argument and no digest in the initramfs",
			ErrNoImage, cmdline.KeyDigest, cmdline.KeyLegacy, cmdline.KeyOSTree)
	}
	if p.Args.OSTree != "" && len(candidates) > 1 {
		return nil, fmt.Errorf("%s=%s with %d image digests: an ostree deployment has one image", cmdline.KeyOSTree, p.Args.OSTree, len(candidates))
	}
	r := &run{sys: sys, p: p, stage: filepath.Join(p.RunDir, "stage")}
	r.root = filepath.Join(r.stage, "root")
	if err := r.setUp(); err != nil {
		return nil, err
	}
	res, err := r.assemble(candidates)
	if derr := sys.Detach(r.stage); derr != nil && err == nil {
		err = fmt.Errorf("release %s: %w", r.stage, derr)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (r *run) setUp() error {
	if err := r.sys.MkdirAll(r.stage, 0o700); err != nil {
		return err
	}
	if err := r.sys.Bind(r.stage, r.stage); err != nil {
		return err
	}
	if err := r.sys.MakePrivate(r.stage); err != nil {
		if derr := r.sys.Detach(r.stage); derr != nil {
			err = errors.Join(err, derr)
		}
		return err
	}
	return nil
}

// layout is where the writable parts of a deployment are.
type layout struct {
	etcBind, etcUpper, etcWork, varBind string
	etcDefault                          config.EtcMode
}

func (r *run) assemble(candidates []cmdline.Digest) (*Result, error) {
	if err := r.sys.MkdirAll(r.root, 0o755); err != nil {
		return nil, err
	}
	var res *Result
	var lay layout
	var err error
	if r.p.Args.OSTree != "" {
		var pin *cmdline.Digest
		if len(candidates) == 1 {
			pin = &candidates[0]
		}
		res, lay, err = r.mountOSTree(pin)
	} else {
		res, lay, err = r.mountRepository(candidates)
	}
	if err != nil {
		return nil, err
	}
	if err := r.bindSysroot(); err != nil {
		return nil, err
	}
	if err := r.mountEtc(lay); err != nil {
		return nil, err
	}
	if err := r.mountVar(lay); err != nil {
		return nil, err
	}
	if err := r.finish(); err != nil {
		return nil, err
	}
	return res, nil
}

func (r *run) imageOptions(secure bool) (mount.Options, error) {
	opts := mount.Options{ReadOnly: true, TempDir: r.stage, Verity: mount.VerityOff}
	if secure {
		opts.Verity = mount.VerityRequire
	}
	if r.p.Config.RootTransient {
		upper, work, err := r.tmpfsDirs("root")
		if err != nil {
			return opts, err
		}
		opts.ReadOnly, opts.UpperDir, opts.WorkDir = false, upper, work
	}
	return opts, nil
}

func (r *run) mountRepository(candidates []cmdline.Digest) (*Result, layout, error) {
	repoPath := filepath.Join(r.p.Sysroot, "composefs")
	repo, err := r.sys.OpenRepository(repoPath)
	if err != nil {
		return nil, layout{}, fmt.Errorf("open repository: %w", err)
	}
	defer repo.Close()
	var tried []string
	for i := range candidates {
		d := &candidates[i]
		if !d.Insecure && !repo.Secure() {
			return nil, layout{}, fmt.Errorf("%w: %s asks for a verified image, but the repository %s has no fs-verity "+
				"(the kernel or the filesystem does not support it); boot with %s=?%s to allow an unverified image",
				ErrInsecure, d.Arg(), repoPath, cmdline.KeyDigest, strings.TrimPrefix(d.String(), "?"))
		}
		if d.Algorithm != repo.Algorithm() {
			r.p.Log("%s: the repository names images by %s, skipped", d.Arg(), repo.Algorithm())
			tried = append(tried, d.Arg())
			continue
		}
		f, id, err := repo.OpenImage(d.Hex)
		if errors.Is(err, store.ErrNotFound) {
			r.p.Log("%s: not in %s, skipped", d.Arg(), repoPath)
			tried = append(tried, d.Arg())
			continue
		}
		if err != nil {
			return nil, layout{}, fmt.Errorf("%s: %w", d.Arg(), err)
		}
		defer f.Close()
		opts, err := r.imageOptions(!d.Insecure)
		if err != nil {
			return nil, layout{}, err
		}
		opts.Image = f
		opts.ObjectDirs = []string{repo.ObjectDir()}
		opts.Digest = id
		opts.Source = store.MountSource(d.Hex)
		info, err := r.sys.MountImage(r.root, opts)
		if err != nil {
			return nil, layout{}, explain(d, err)
		}
		r.p.Log("mounted image %s (%s)", d.Hex, describe(info))
		state := filepath.Join(r.p.Sysroot, "state", "deploy", d.Hex)
		lay := layout{
			etcBind:    filepath.Join(state, "etc"),
			etcUpper:   filepath.Join(state, "etc", "upper"),
			etcWork:    filepath.Join(state, "etc", "work"),
			varBind:    filepath.Join(state, "var"),
			etcDefault: config.EtcOverlay,
		}
		return &Result{Digest: d, Image: f.Name(), Info: info}, lay, nil
	}
	return nil, layout{}, fmt.Errorf("%w: none of %s is in the repository %s", ErrNoImage, strings.Join(tried, ", "), repoPath)
}

// describe says how a mount was made, for the log.
func describe(info mount.Info) string {
	loop := ""
	if info.Loop {
		loop = " through a loop device"
	}
	return fmt.Sprintf("%s tier%s, verity %v", info.Tier, loop, info.Verity)
}

// explain adds to a mount error what a refused secure mount means.
func explain(d *cmdline.Digest, err error) error {
	if !d.Insecure && (errors.Is(err, mount.ErrImageNoVerity) || errors.Is(err, mount.ErrObjectNoVerity) ||
		errors.Is(err, mount.ErrUnsupported)) {
		return fmt.Errorf("%w: %s asks for a verified image and it cannot be verified: %w; boot with %s=?%s to allow an unverified image",
			ErrInsecure, d.Arg(), err, cmdline.KeyDigest, strings.TrimPrefix(d.String(), "?"))
	}
	return err
}

func (r *run) mountOSTree(pin *cmdline.Digest) (*Result, layout, error) {
	deploy, err := ResolveBootlink(r.p.Sysroot, r.p.Args.OSTree)
	if err != nil {
		return nil, layout{}, err
	}
	image := filepath.Join(deploy, ".ostree.cfs")
	if _, err := os.Stat(image); err != nil {
		return nil, layout{}, fmt.Errorf("ostree deployment %s: %w", deploy, err)
	}
	secure := pin != nil && !pin.Insecure
	opts, err := r.imageOptions(secure)
	if err != nil {
		return nil, layout{}, err
	}
	opts.ImagePath = image
	opts.ObjectDirs = []string{filepath.Join(r.p.Sysroot, "ostree", "repo", "objects")}
	if pin != nil {
		opts.Digest, err = mount.ParseDigest(pin.Hex)
		if err != nil {
			return nil, layout{}, fmt.Errorf("%s: %w", pin.Arg(), err)
		}
	} else {
		r.p.Log("ostree deployment %s: no digest pins its image", deploy)
	}
	info, err := r.sys.MountImage(r.root, opts)
	if err != nil {
		if pin != nil {
			err = explain(pin, err)
		}
		return nil, layout{}, err
	}
	r.p.Log("mounted ostree deployment %s (%s)", deploy, describe(info))
	lay := layout{
		etcBind:    filepath.Join(deploy, "etc"),
		varBind:    filepath.Join(filepath.Dir(filepath.Dir(deploy)), "var"),
		etcDefault: config.EtcBind,
	}
	return &Result{Digest: pin, Image: image, Deployment: deploy, Info: info}, lay, nil
}

// maxLinks bounds the symbolic links ResolveBootlink follows, as the
// kernel's limit does.
const maxLinks = 40

// ResolveBootlink returns the deployment directory the ostree= value link
// leads to. link must name a symbolic link; links are followed within
// sysroot: an absolute target is taken relative to sysroot, and ".." does
// not leave it.
func ResolveBootlink(sysroot, link string) (string, error) {
	clean := filepath.Clean("/" + link)
	if clean == "/" {
		return "", fmt.Errorf("%s=%s: not a bootlink", cmdline.KeyOSTree, link)
	}
	fi, err := os.Lstat(filepath.Join(sysroot, clean))
	if err != nil {
		return "", fmt.Errorf("%s=%s: %w", cmdline.KeyOSTree, link, err)
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		return "", fmt.Errorf("%s=%s: %s is not a symbolic link", cmdline.KeyOSTree, link, filepath.Join(sysroot, clean))
	}
	resolved, err := resolveIn(sysroot, clean)
	if err != nil {
		return "", fmt.Errorf("%s=%s: %w", cmdline.KeyOSTree, link, err)
	}
	full := filepath.Join(sysroot, resolved)
	fi, err = os.Stat(full)
	if err != nil {
		return "", fmt.Errorf("%s=%s: %w", cmdline.KeyOSTree, link, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s=%s: %s is not a directory", cmdline.KeyOSTree, link, full)
	}
	return full, nil
}

// resolveIn resolves p (absolute, within root) one component at a time,
// following symbolic links as if root were "/".
func resolveIn(root, p string) (string, error) {
	done := "/"
	rest := strings.Split(strings.TrimPrefix(p, "/"), "/")
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			done = filepath.Dir(done)
			continue
		}
		next := filepath.Join(done, c)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			done = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			done = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return done, nil
}

// tmpfsDirs mounts a new tmpfs under the stage and returns an upper and a
// work directory on it.
func (r *run) tmpfsDirs(name string) (upper, work string, err error) {
	dir := filepath.Join(r.stage, name+"-transient")
	if err := r.sys.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	if err := r.sys.Tmpfs(dir); err != nil {
		return "", "", err
	}
	upper, work = filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	if err := r.sys.MkdirAll(upper, 0o755); err != nil {
		return "", "", err
	}
	if err := r.sys.MkdirAll(work, 0o700); err != nil {
		return "", "", err
	}
	return upper, work, nil
}

func (r *run) bindSysroot() error {
	dst := filepath.Join(r.root, "sysroot")
	if fi, err := os.Stat(dst); err != nil || !fi.IsDir() {
		r.p.Log("the image has no /sysroot directory: the physical root will not be reachable from the new root")
		return nil
	}
	return r.sys.Bind(r.p.Sysroot, dst)
}

// imageDir checks that the new root has the directory a mount goes on.
func (r *run) imageDir(name string) (string, error) {
	dst := filepath.Join(r.root, name)
	fi, err := os.Stat(dst)
	if err != nil {
		return "", fmt.Errorf("/%s of the new root: %w", name, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("/%s of the new root is not a directory", name)
	}
	return dst, nil
}

func (r *run) mountEtc(lay layout) error {
	mode := r.p.Config.Etc
	if mode == config.EtcDefault {
		mode = lay.etcDefault
	}
	if mode == config.EtcNone {
		return nil
	}
	dst, err := r.imageDir("etc")
	if err != nil {
		return err
	}
	switch mode {
	case config.EtcOverlay:
		if lay.etcUpper == "" {
			return errors.New("[etc] mount = overlay: not available for an ostree deployment, whose etc is a full copy (use bind or transient)")
		}
		if err := r.sys.MkdirAll(lay.etcUpper, 0o755); err != nil {
			return err
		}
		if err := r.sys.MkdirAll(lay.etcWork, 0o700); err != nil {
			return err
		}
		return r.sys.Overlay(dst, dst, lay.etcUpper, lay.etcWork)
	case config.EtcBind:
		if err := r.sys.MkdirAll(lay.etcBind, 0o755); err != nil {
			return err
		}
		return r.sys.Bind(lay.etcBind, dst)
	case config.EtcTransient:
		upper, work, err := r.tmpfsDirs("etc")
		if err != nil {
			return err
		}
		return r.sys.Overlay(dst, dst, upper, work)
	}
	return fmt.Errorf("unknown /etc mode %v", mode)
}

func (r *run) mountVar(lay layout) error {
	dst, err := r.imageDir("var")
	if err != nil {
		return err
	}
	switch r.p.Config.Var {
	case config.VarDefault, config.VarBind:
		if err := r.sys.MkdirAll(lay.varBind, 0o755); err != nil {
			return err
		}
		return r.sys.Bind(lay.varBind, dst)
	case config.VarTransient:
		upper, work, err := r.tmpfsDirs("var")
		if err != nil {
			return err
		}
		return r.sys.Overlay(dst, dst, upper, work)
	}
	return fmt.Errorf("unknown /var mode %v", r.p.Config.Var)
}

func (r *run) finish() error {
	if filepath.Clean(r.p.Target) == filepath.Clean(r.p.Sysroot) {
		mp, err := r.sys.IsMountPoint(r.p.Target)
		if err != nil {
			return err
		}
		if mp {
			if err := r.sys.Detach(r.p.Target); err != nil {
				return err
			}
		}
	}
	return r.sys.Move(r.root, r.p.Target)
}

// RecordName is the file in the run directory where composefs-prepare-root
// records what it booted, for the booted system to find out which image
// its root is and how it was mounted.
const RecordName = "booted"

// Record returns res as the record file holds it: "key=value" lines, with
// the keys digest (the composefs.digest= value, absent for an ostree
// deployment no digest pins), image (its path before the switch to the
// new root), deployment (ostree only), tier, loop and verity.
func (res *Result) Record() []byte {
	var b strings.Builder
	if res.Digest != nil {
		fmt.Fprintf(&b, "digest=%s\n", res.Digest)
	}
	fmt.Fprintf(&b, "image=%s\n", res.Image)
	if res.Deployment != "" {
		fmt.Fprintf(&b, "deployment=%s\n", res.Deployment)
	}
	fmt.Fprintf(&b, "tier=%s\nloop=%v\nverity=%v\n", res.Info.Tier, res.Info.Loop, res.Info.Verity)
	return []byte(b.String())
}

// WriteRecord writes res's record to dir/RecordName, through a temporary
// file renamed into place.
func WriteRecord(dir string, res *Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	name := filepath.Join(dir, RecordName)
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, res.Record(), 0o644); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("record: %w", err)
	}
	return nil
}
