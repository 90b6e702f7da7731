package vm

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/ostreecompat"
	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/store/oci"
	"github.com/gocfs/gocfs/tests/ocibuild"
	"github.com/gocfs/gocfs/tests/registry"
	"github.com/gocfs/gocfs/verity"
)

// The stock ostree boot pieces, from Debian's ostree-boot package.
const (
	stockPrepareRoot  = "/usr/lib/ostree/ostree-prepare-root"
	stockDracutModule = "/usr/lib/dracut/modules.d/98ostree"
)

// ostreeStateroot is the stateroot the test image is deployed as.
const ostreeStateroot = "gocfs-vm"

// ostreeFixture is a physical root holding an ostree sysroot into which
// the test image was deployed by ostreecompat.Deploy, from a composefs
// repository (composefs/, beside ostree/) into which it was pulled.
type ostreeFixture struct {
	prepareRoot string
	guestinit   string
	staging     string
	deploy      *ostreecompat.Deployment
	// options are the kernel arguments of the deployment's boot entry,
	// ostree= among them.
	options []string
	// dangling is a bootlink beside the deployment's that leads to no
	// deployment.
	dangling string
}

// TestBootOSTree boots an ostree deployment of the test image, written by
// ostreecompat.Deploy (what `cfsctl ostree deploy` runs) into an ostree
// sysroot on the guest disk, with the kernel arguments of the boot entry
// the deployment got:
//
//   - composefs-prepare-root (the minimal initramfs, init mode), on every
//     cached kernel: the deployment's .ostree.cfs is the root, an overlay
//     over its EROFS with ostree/repo/objects as data, /etc the
//     deployment's etc and /var the stateroot's; once as the entry says,
//     once with the image's digest pinned (composefs.digest=?). On the
//     newest kernel, a bootlink leading nowhere fails prepare-root with a
//     message naming it.
//   - Debian's stock ostree-prepare-root (ostree-boot 2022.7, no composefs
//     support) in a dracut initramfs, on the newest kernel: it boots the
//     deployment's hardlink checkout, bound as the root, with the physical
//     root on /sysroot.
func TestBootOSTree(t *testing.T) {
	f := newOSTreeFixture(t)
	t.Run("composefs-prepare-root", func(t *testing.T) {
		for i, name := range Kernels {
			t.Run(name, func(t *testing.T) {
				k := kernel(t, name)
				r := f.newRun(t, k, filepath.Join(t.TempDir(), "initrd.cpio"))
				initramfs(t, k, f.prepareRoot, r.initrd, nil)
				booted := t.Run("deployment", func(t *testing.T) {
					r.expectComposefs(t, r.boot(t, "deployment"), false)
				})
				if !booted {
					t.Fatal("the boot of the deployment failed: the other boots would fail the same way")
				}
				t.Run("pinned", func(t *testing.T) {
					c := r.boot(t, "pinned", "composefs.digest=?v1-sha256-12:"+f.deploy.ComposefsDigest, "gocfs.vm.digest="+f.deploy.ComposefsDigest)
					r.expectComposefs(t, c, true)
				})
				if i == len(Kernels)-1 {
					t.Run("dangling-bootlink", func(t *testing.T) {
						c := r.boot(t, "dangling-bootlink", "ostree="+f.dangling)
						expectRefused(t, c, "ostree="+f.dangling+": ")
						if l := c.Line("composefs-prepare-root: error: "); !strings.Contains(l, "no such file or directory") {
							t.Errorf("prepare-root's error %q does not say the deployment is missing", l)
						}
					})
				}
			})
		}
	})
	t.Run("ostree-prepare-root", func(t *testing.T) {
		requireStockOSTree(t)
		name := Kernels[len(Kernels)-1]
		t.Run(name, func(t *testing.T) {
			k := kernel(t, name)
			r := f.newRun(t, k, filepath.Join(t.TempDir(), "dracut-ostree.cpio"))
			r.extra = []string{"rd.shell=0", "rd.emergency=poweroff"}
			cmd := exec.Command("bash", "mkdracut.sh", k.Release, k.Root, "-", r.initrd)
			cmd.Env = append(os.Environ(), "GOCFS_DRACUT_MODULES=ostree")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("mkdracut.sh with the ostree module: %v\n%s", err, out)
			}
			r.expectStock(t, r.boot(t, "deployment"))
		})
	})
}

// requireStockOSTree skips unless a dracut initramfs with Debian's ostree
// module can be built.
func requireStockOSTree(t *testing.T) {
	t.Helper()
	for _, p := range []string{stockPrepareRoot, filepath.Join(stockDracutModule, "module-setup.sh")} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("SKIP: %v (Debian package ostree-boot)", err)
		}
	}
	for _, tool := range []string{"bash", "apt-get", "dpkg", "cpio", "gzip", "flock", "systemctl", "udevadm", "modprobe", "findmnt"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s not found: mkdracut.sh needs it (Debian packages systemd, udev, kmod, cpio)", tool)
		}
	}
}

func newOSTreeFixture(t *testing.T) *ostreeFixture {
	t.Helper()
	requireHost(t)
	work := t.TempDir()
	f := &ostreeFixture{staging: filepath.Join(work, "staging")}
	bin := filepath.Join(work, "bin")
	build(t, bin, "../../cmd/composefs-prepare-root", "./guestinit")
	f.prepareRoot = filepath.Join(bin, "composefs-prepare-root")
	f.guestinit = filepath.Join(bin, "guestinit")
	init, err := os.ReadFile(f.guestinit)
	if err != nil {
		t.Fatal(err)
	}
	img, err := withKernel(Image(init))
	if err != nil {
		t.Skipf("SKIP: %v", err)
	}

	reg := registry.Start(t)
	built, err := ocibuild.Build(img)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	ref := reg.Ref("gocfs/vm-ostree", "latest")
	if err := built.Push(ctx, ref, reg.SystemContext()); err != nil {
		t.Fatalf("%v\nregistry log:\n%s", err, reg.Log())
	}
	repo, err := store.Init(filepath.Join(f.staging, "composefs"), store.InitOptions{Algorithm: verity.SHA256, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	if _, err := oci.Pull(ctx, repo, ref, oci.PullOptions{Tag: "vm", SystemContext: reg.SystemContext()}); err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	// ext4 has no reflinks: the ostree repository gets copies.
	f.deploy, err = ostreecompat.Deploy(ctx, repo, "vm", f.staging, ostreecompat.DeployOptions{
		Stateroot: ostreeStateroot, Policy: ostreecompat.PolicyEnabledWithCopy, Kargs: []string{"root=/dev/vda", "rw"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Deploy makes the deployment immutable, as ostree does; the
	// temporary directory could not be removed.
	t.Cleanup(func() {
		if err := clearImmutable(filepath.Join(f.staging, f.deploy.Path)); err != nil {
			t.Error(err)
		}
	})
	if f.options, err = entryOptions(filepath.Join(f.staging, f.deploy.Entry)); err != nil {
		t.Fatal(err)
	}
	if !containsArg(f.options, "ostree="+f.deploy.Bootlink) {
		t.Fatalf("boot entry %s: options %q lack ostree=%s", f.deploy.Entry, f.options, f.deploy.Bootlink)
	}
	t.Logf("deployed %s (commit %s, .ostree.cfs %s); boot entry options: %s",
		f.deploy.Path, f.deploy.Commit, f.deploy.ComposefsDigest, strings.Join(f.options, " "))
	if f.dangling, err = danglingBootlink(f.staging, f.deploy); err != nil {
		t.Fatal(err)
	}
	return f
}

// withKernel adds a layer with the newest cached kernel as
// /usr/lib/modules/RELEASE/vmlinuz: a deployment needs a kernel for its
// boot entry. The tests boot the cached kernels directly, so which one
// the entry names does not matter.
func withKernel(img *ocibuild.Image) (*ocibuild.Image, error) {
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	var k *Kernel
	for i := len(Kernels) - 1; i >= 0 && k == nil; i-- {
		k, _ = OpenKernel(cache, Kernels[i])
	}
	if k == nil {
		return nil, fmt.Errorf("no kernel in %s: %w", cache, ErrNoKernel)
	}
	vmlinuz, err := os.ReadFile(k.Image)
	if err != nil {
		return nil, err
	}
	const mtime = 1700000000
	dir := "/usr/lib/modules/" + k.Release
	img.Layers = append(img.Layers, ocibuild.Layer{Compression: ocibuild.Gzip, Entries: []ocibuild.Entry{
		{Path: "/usr/lib/modules", Type: ocibuild.Dir, Mode: 0o755, Mtime: mtime},
		{Path: dir, Type: ocibuild.Dir, Mode: 0o755, Mtime: mtime},
		{Path: dir + "/vmlinuz", Type: ocibuild.File, Mode: 0o644, Mtime: mtime, Content: vmlinuz},
	}})
	return img, nil
}

// immutableFlag is FS_IMMUTABLE_FL of the FS_IOC_GETFLAGS flags.
const immutableFlag = 0x10

// clearImmutable takes the immutable flag off the directory dir.
func clearImmutable(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return fmt.Errorf("%s: file flags: %w", dir, err)
	}
	if flags&immutableFlag == 0 {
		return nil
	}
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags&^immutableFlag)); err != nil {
		return fmt.Errorf("%s: set file flags: %w", dir, err)
	}
	return nil
}

// entryOptions returns the kernel arguments of a BLS entry's options line.
func entryOptions(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if key, val, _ := strings.Cut(strings.TrimSpace(sc.Text()), " "); key == "options" {
			return strings.Fields(val), nil
		}
	}
	return nil, fmt.Errorf("boot entry %s has no options line:\n%s", path, b)
}

func containsArg(args []string, arg string) bool {
	for _, a := range args {
		if a == arg {
			return true
		}
	}
	return false
}

// danglingBootlink makes a bootlink beside d's that leads to a deployment
// directory that does not exist (d's with another serial), and returns
// its ostree= value.
func danglingBootlink(sysroot string, d *ostreecompat.Deployment) (string, error) {
	link := filepath.Join(sysroot, d.Bootlink)
	target, err := os.Readlink(link)
	if err != nil {
		return "", err
	}
	if filepath.Base(target) != fmt.Sprintf("%s.%d", d.Commit, d.Serial) {
		return "", fmt.Errorf("bootlink %s leads to %s, not to deployment %s.%d", d.Bootlink, target, d.Commit, d.Serial)
	}
	// The bootlink's directory is reached through the boot.N symbolic
	// link; the new link goes in the directory itself.
	dir, err := filepath.EvalSymlinks(filepath.Dir(link))
	if err != nil {
		return "", err
	}
	const serial = "7"
	if err := os.Symlink(filepath.Join(filepath.Dir(target), d.Commit+".99"), filepath.Join(dir, serial)); err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(d.Bootlink), serial), nil
}

// newRun makes a guest disk of the sysroot for one kernel.
func (f *ostreeFixture) newRun(t *testing.T, k *Kernel, initrd string) *ostreeRun {
	r := &ostreeRun{f: f, k: k, logs: artifacts(t), disk: filepath.Join(t.TempDir(), "disk.img"), initrd: initrd}
	mkdisk(t, f.staging, r.disk)
	t.Logf("Linux %s, console logs in %s", k.Release, r.logs)
	return r
}

// ostreeRun is the boots of one kernel and initramfs on one disk.
type ostreeRun struct {
	f      *ostreeFixture
	k      *Kernel
	logs   string
	disk   string
	initrd string
	// extra are kernel arguments for every boot.
	extra []string
}

// boot boots the disk with the boot entry's arguments, then extra's, then
// args (a later ostree= wins, as prepare-root reads the last).
func (r *ostreeRun) boot(t *testing.T, name string, args ...string) *Console {
	t.Helper()
	all := append(append(append([]string{}, r.f.options...), r.extra...), args...)
	m := &Machine{Kernel: r.k, Initrd: r.initrd, Disk: r.disk, Args: all, Timeout: bootTimeout, Log: filepath.Join(r.logs, name+".log")}
	c, err := m.Boot(t.Context())
	if c == nil {
		t.Fatal(err)
	}
	t.Logf("%s: %.1f s wall; console log %s", name, c.Wall.Seconds(), m.Log)
	if err != nil {
		t.Fatalf("%v\n%s", err, tail(c))
	}
	return c
}

// rootCheck matches guestinit's root check: PASS "overlay SOURCE
// OPTIONS", or FAIL "/ is FSTYPE from "SOURCE", want ...".
var rootCheck = regexp.MustCompile(`^(?:(overlay) (\S+) |/ is (\S+) from "([^"]*)")`)

// rootMount returns the file system type and source of the guest's root,
// as guestinit's root check saw it. That check expects a repository image
// (source composefs:DIGEST); its verdict is not what counts here, only what
// it read.
func rootMount(results map[string]Result) (fstype, source string, err error) {
	res, ok := results["root"]
	if !ok {
		return "", "", fmt.Errorf("the root check did not run")
	}
	m := rootCheck.FindStringSubmatch(res.Detail)
	switch {
	case m == nil:
		return "", "", fmt.Errorf("root check %s %q: no file system type in it", res.Status, res.Detail)
	case m[1] != "":
		return m[1], m[2], nil
	}
	return m[3], m[4], nil
}

// results returns the guest's checks by name, failing t if the image's
// init did not start or did not finish, or if one of the checks pass
// names did not pass.
func (r *ostreeRun) results(t *testing.T, c *Console, pass ...string) map[string]Result {
	t.Helper()
	if !c.Booted() {
		t.Fatalf("the image's init did not start\n%s", tail(c))
	}
	results := map[string]Result{}
	for _, res := range c.Results() {
		results[res.Name] = res
	}
	for _, name := range pass {
		res, ok := results[name]
		switch {
		case !ok:
			t.Errorf("check %s did not run", name)
		case res.Status != "PASS":
			t.Errorf("check %s: %s %s", name, res.Status, res.Detail)
		}
	}
	if !c.Has(Done) {
		t.Errorf("the guest did not finish its checks\n%s", tail(c))
	}
	return results
}

// expectComposefs checks a boot through composefs-prepare-root: it
// mounted the deployment's .ostree.cfs as this kernel must, the root is
// that overlay, and the image's checks that apply to an ostree deployment
// passed. /etc is the deployment's etc, bound, where guestinit's etc check
// wants a repository image's overlay; the record names the image only
// when a digest pins it.
func (r *ostreeRun) expectComposefs(t *testing.T, c *Console, pinned bool) {
	t.Helper()
	pass := []string{"read-only", "content", "exec", "tamper", "substitute", "var", "sysroot"}
	if pinned {
		pass = append(pass, "record")
	}
	results := r.results(t, c, pass...)
	desc, tier, loop := mountLine(r.k, false)
	deploy := filepath.Join("/sysroot", r.f.deploy.Path)
	want := fmt.Sprintf("composefs-prepare-root: mounted ostree deployment %s (%s)", deploy, desc)
	if !c.Has(want) {
		t.Errorf("prepare-root did not log %q:\n%s", want, strings.Join(c.Lines("composefs-prepare-root:"), "\n"))
	}
	if fstype, source, err := rootMount(results); err != nil {
		t.Error(err)
	} else if fstype != "overlay" || source != "composefs" {
		t.Errorf("/ is %s from %q, want the composefs overlay", fstype, source)
	}
	// The etc check prints the mount it found at /etc when it is not an
	// overlay: here the deployment's etc, bound from the disk.
	if d := results["etc"].Detail; !strings.Contains(d, "source:/dev/vda") {
		t.Errorf("/etc is not bound from the disk: etc check %s %q", results["etc"].Status, d)
	}
	if pinned {
		rec := fmt.Sprintf("digest=?v1-sha256-12:%s tier=%s loop=%v verity=false", r.f.deploy.ComposefsDigest, tier, loop)
		if d := results["record"].Detail; d != rec {
			t.Errorf("record %q, want %q", d, rec)
		}
	}
	if up, ok := c.Uptime(Marker, "uptime"); ok {
		t.Logf("root reached %.2f s after the kernel started (%s)", up, desc)
	}
}

// expectStock checks a boot through the stock ostree-prepare-root: the
// image's init ran from the deployment (only it has /sbin/init and the
// data files), the root is the deployment's directory on the disk, bound,
// not composefs, and the physical root is /sysroot.
func (r *ostreeRun) expectStock(t *testing.T, c *Console) {
	t.Helper()
	results := r.results(t, c, "read-only", "content", "exec", "tamper", "substitute", "sysroot")
	if fstype, source, err := rootMount(results); err != nil {
		t.Error(err)
	} else if fstype != "ext4" || source != "/dev/vda" {
		t.Errorf("/ is %s from %q, want the deployment's directory on the ext4 disk /dev/vda", fstype, source)
	}
	if c.Has("composefs-prepare-root") {
		t.Errorf("composefs-prepare-root ran in the stock ostree initramfs")
	}
	if up, ok := c.Uptime(Marker, "uptime"); ok {
		t.Logf("root reached %.2f s after the kernel started", up)
	}
}
