package vm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/initramfs/cmdline"
	"github.com/gocfs/gocfs/initramfs/extension"
	"github.com/gocfs/gocfs/verity"
)

// TestBoot boots each kernel of the cache through the minimal initramfs
// (package initramfs/minimal), whose init is composefs-prepare-root, into
// the test image pulled into a repository on the guest disk. In order, on
// one disk per kernel:
//
//   - insecure: composefs.digest=? on the repository as pulled (no
//     fs-verity): the image is the root, with the tier this kernel must
//     take, and /etc persists from boot to boot (the guest counts its
//     boots in /etc);
//   - legacy-argument: the same through composefs=?HEX;
//   - wrong-digest, no-digest: prepare-root fails, nothing boots;
//   - unsealed-secure: a digest without "?" on the repository without
//     fs-verity is refused, not downgraded;
//   - extension: the digest pinned in the initramfs, none on the command
//     line;
//   - setup: a boot that makes the repository secure (EnableVerity);
//   - secure: the image verified by the kernel (overlay verity=require),
//     or, on kernels whose overlayfs has no verity option (before 6.6), a
//     refusal saying so;
//   - tamper: one object's bytes corrupted on the disk and another object
//     replaced by a file without fs-verity: both read EIO, the rest of the
//     image reads right.
func TestBoot(t *testing.T) {
	requireHost(t)
	cache, err := CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(Kernels, func(n string) bool { _, err := OpenKernel(cache, n); return err == nil }) {
		t.Skipf("SKIP: no kernel of %q in %s: %v", Kernels, cache, ErrNoKernel)
	}
	f := newFixture(t)
	for _, name := range Kernels {
		t.Run(name, func(t *testing.T) {
			k := kernel(t, name)
			r := f.newKernelRun(t, k, filepath.Join(t.TempDir(), "initrd.cpio"))
			initramfs(t, k, f.prepareRoot, r.initrd, nil)
			r.sequence(t, true)
		})
	}
}

// TestBootDracut boots the newest kernel of the cache through a dracut
// (systemd) initramfs holding the 37composefs module, built by
// mkdracut.sh: the boots of TestBoot but legacy-argument and no-digest
// (without a composefs argument the unit does not run, by design), the
// extension appended to the dracut initramfs.
func TestBootDracut(t *testing.T) {
	requireHost(t)
	script, err := filepath.Abs("mkdracut.sh")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(script); err != nil {
		t.Skipf("SKIP: no dracut initramfs builder: %v", err)
	}
	for _, tool := range []string{"apt-get", "dpkg", "cpio", "gzip", "systemctl", "udevadm", "modprobe", "findmnt"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s not found: mkdracut.sh needs it (Debian packages systemd, udev, kmod, cpio)", tool)
		}
	}
	name := Kernels[len(Kernels)-1]
	kernel(t, name)
	f := newFixture(t)
	t.Run(name, func(t *testing.T) {
		k := kernel(t, name)
		r := f.newKernelRun(t, k, filepath.Join(t.TempDir(), "dracut.cpio"))
		// A failed boot powers off rather than waiting in a shell.
		r.extra = []string{"rd.shell=0", "rd.emergency=poweroff"}
		out, err := exec.Command("bash", script, k.Release, k.Root, f.prepareRoot, r.initrd).CombinedOutput()
		if err != nil {
			t.Fatalf("mkdracut.sh: %v\n%s", err, out)
		}
		r.sequence(t, false)
	})
}

// extensionInitramfs returns an initramfs like r.initrd with an extension
// pinning digest: a minimal initramfs made with it, or the dracut one with
// it appended.
func (r *kernelRun) extensionInitramfs(t *testing.T, minimalInit bool, pinned *extension.Extension) string {
	out := filepath.Join(t.TempDir(), "initrd-ext.cpio")
	if minimalInit {
		initramfs(t, r.k, r.f.prepareRoot, out, pinned)
		return out
	}
	var ext bytes.Buffer
	if err := extension.Write(&ext, pinned); err != nil {
		t.Fatal(err)
	}
	base, err := os.Open(r.initrd)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	var buf bytes.Buffer
	if _, err := extension.Append(&buf, base, &ext); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// kernelRun is the boots of one kernel on one disk.
type kernelRun struct {
	f      *fixture
	k      *Kernel
	logs   string
	disk   string
	initrd string
	// setup is the initramfs of the setup boot.
	setup string
	// boots counts the boots that reached the image.
	boots int
	// extra are kernel arguments for every boot.
	extra []string
}

func (f *fixture) newKernelRun(t testing.TB, k *Kernel, initrd string) *kernelRun {
	dir := t.TempDir()
	r := &kernelRun{f: f, k: k, logs: artifacts(t), disk: filepath.Join(dir, "disk.img"),
		initrd: initrd, setup: filepath.Join(dir, "setup.cpio")}
	initramfs(t, k, f.guestinit, r.setup, nil)
	mkdisk(t, f.staging, r.disk)
	t.Logf("Linux %s, console logs in %s", k.Release, r.logs)
	return r
}

// sequence runs the boots TestBoot describes; minimalInit is false for
// the dracut variant, which skips the boots whose meaning differs there.
func (r *kernelRun) sequence(t *testing.T, minimalInit bool) {
	d := "v1-sha256-12:" + r.f.digest
	booted := t.Run("insecure", func(t *testing.T) {
		r.expectBooted(t, r.boot(t, "insecure", r.initrd, "composefs.digest=?"+d), false)
	})
	if !booted {
		t.Fatal("the first boot failed: the other boots would fail the same way")
	}
	if minimalInit {
		t.Run("legacy-argument", func(t *testing.T) {
			r.expectBooted(t, r.boot(t, "legacy-argument", r.initrd, "composefs=?"+r.f.digest), false)
		})
	}
	other := strings.Repeat("0f", 32)
	t.Run("wrong-digest", func(t *testing.T) {
		c := r.boot(t, "wrong-digest", r.initrd, "composefs.digest=?v1-sha256-12:"+other)
		expectRefused(t, c, "no image to boot: none of composefs.digest=?v1-sha256-12:"+other)
	})
	if minimalInit {
		t.Run("no-digest", func(t *testing.T) {
			expectRefused(t, r.boot(t, "no-digest", r.initrd), "no image to boot: no composefs.digest=")
		})
	}
	t.Run("unsealed-secure", func(t *testing.T) {
		c := r.boot(t, "unsealed-secure", r.initrd, "composefs.digest="+d)
		expectRefused(t, c, "secure boot impossible: composefs.digest="+d+" asks for a verified image, but the repository /sysroot/composefs has no fs-verity")
	})
	t.Run("extension", func(t *testing.T) {
		pinned := &extension.Extension{Digest: cmdline.Digest{Algorithm: verity.SHA256, Hex: r.f.digest, Insecure: true}}
		r.expectBooted(t, r.boot(t, "extension", r.extensionInitramfs(t, minimalInit, pinned)), false)
	})
	sealed := t.Run("setup", func(t *testing.T) {
		c := r.boot(t, "setup", r.setup, "gocfs.vm=setup")
		if l := c.Line(Setup); !strings.HasSuffix(l, "secure=true") {
			t.Fatalf("setup boot: %q, want secure=true\n%s", l, tail(c))
		}
	})
	t.Run("secure", func(t *testing.T) {
		if !sealed {
			t.Skip("SKIP: the setup boot failed")
		}
		c := r.boot(t, "secure", r.initrd, "composefs.digest="+d)
		if !r.k.AtLeast(6, 6) {
			expectRefused(t, c, "secure boot impossible: composefs.digest="+d+" asks for a verified image and it cannot be verified")
			return
		}
		r.expectBooted(t, c, true)
	})
	t.Run("tamper", func(t *testing.T) {
		switch {
		case !sealed:
			t.Skip("SKIP: the setup boot failed")
		case !r.k.AtLeast(6, 6):
			t.Skipf("SKIP: Linux %s's overlayfs has no verity option (6.6): secure boots are refused, so the kernel never verifies objects", r.k.Release)
		}
		corrupt(t, r.disk, r.f.objects["tamper"])
		// prepare-root's mount checks the first object the image
		// walk meets (data.bin's) for fs-verity, not all of them: the
		// substituted one is caught by the kernel when it is read.
		substitute(t, r.disk, r.f.objects["subst"])
		c := r.boot(t, "tamper", r.initrd, "composefs.digest="+d, "gocfs.vm.tampered=1", "gocfs.vm.substituted=1")
		r.expectBooted(t, c, true)
	})
}

// boot runs one boot of the disk; name names its console log.
func (r *kernelRun) boot(t testing.TB, name, initrd string, args ...string) *Console {
	t.Helper()
	args = append(append([]string{"root=/dev/vda", "rw", "gocfs.vm.digest=" + r.f.digest, fmt.Sprintf("gocfs.vm.boots=%d", r.boots)}, r.extra...), args...)
	m := &Machine{Kernel: r.k, Initrd: initrd, Disk: r.disk, Args: args, Timeout: bootTimeout, Log: filepath.Join(r.logs, name+".log")}
	c, err := m.Boot(t.Context())
	if c == nil {
		t.Fatal(err)
	}
	t.Logf("%s: %.1f s wall; console log %s", name, c.Wall.Seconds(), m.Log)
	if err != nil {
		t.Fatalf("%v\n%s", err, tail(c))
	}
	if c.Booted() {
		r.boots++
	}
	return c
}

// The checks every boot of the image runs.
var checks = []string{"root", "record", "read-only", "content", "exec", "tamper", "substitute", "etc", "var", "sysroot"}

// mountLine is how prepare-root describes the mount this kernel must
// make, as in its log, and the tier and loop the record must hold.
func mountLine(k *Kernel, secure bool) (desc, tier string, loop bool) {
	switch {
	case k.AtLeast(6, 15):
		tier = "fd"
	case k.AtLeast(6, 12):
		tier = "string"
	case k.AtLeast(6, 5):
		tier, loop = "string", true
	default:
		tier, loop = "legacy", true
	}
	desc = tier + " tier"
	if loop {
		desc += " through a loop device"
	}
	return fmt.Sprintf("%s, verity %v", desc, secure), tier, loop
}

// expectBooted checks that the image is the root, mounted as this kernel
// must mount it, and that every check of the guest passed.
func (r *kernelRun) expectBooted(t testing.TB, c *Console, secure bool) {
	t.Helper()
	if !c.Booted() {
		t.Fatalf("the image's init did not start\n%s", tail(c))
	}
	desc, tier, loop := mountLine(r.k, secure)
	want := fmt.Sprintf("composefs-prepare-root: mounted image %s (%s)", r.f.digest, desc)
	if !c.Has(want) {
		t.Errorf("prepare-root did not log %q:\n%s", want, strings.Join(c.Lines("composefs-prepare-root:"), "\n"))
	}
	results := map[string]Result{}
	for _, res := range c.Results() {
		results[res.Name] = res
		if res.Status != "PASS" {
			t.Errorf("check %s: %s %s", res.Name, res.Status, res.Detail)
		}
	}
	for _, name := range checks {
		if _, ok := results[name]; !ok {
			t.Errorf("check %s did not run", name)
		}
	}
	rec := fmt.Sprintf("tier=%s loop=%v verity=%v", tier, loop, secure)
	if d := results["record"].Detail; !strings.Contains(d, rec) {
		t.Errorf("record %q, want %q", d, rec)
	}
	if !c.Has(Done) {
		t.Errorf("the guest did not finish its checks\n%s", tail(c))
	}
	if up, ok := c.Uptime(Marker, "uptime"); ok {
		t.Logf("root reached %.2f s after the kernel started (%s)", up, desc)
	}
}

// expectRefused checks that prepare-root failed with an error holding want
// and that nothing booted.
func expectRefused(t *testing.T, c *Console, want string) {
	t.Helper()
	if c.Booted() {
		t.Errorf("the image booted; want prepare-root to refuse it")
	}
	l := c.Line("composefs-prepare-root: error: ")
	if !strings.Contains(l, want) {
		t.Errorf("prepare-root's error %q, want %q\n%s", l, want, tail(c))
		return
	}
	t.Logf("refused: %s", strings.TrimPrefix(l, "composefs-prepare-root: error: "))
}

// tail returns the last lines of a console, for failure messages.
func tail(c *Console) string {
	lines := strings.Split(strings.TrimRight(c.Text, "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return "console (end):\n" + strings.Join(lines, "\n")
}
