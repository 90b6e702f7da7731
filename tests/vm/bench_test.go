package vm

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// EnvBenchKernel names the cached kernel BenchmarkBoot boots (default the
// newest).
const EnvBenchKernel = "GOCFS_VM_BENCH_KERNEL"

// prepareGoal is the share of the time from the kernel's start to the
// switch to the new root that prepare-root may take.
const prepareGoal = 0.05

// BenchmarkBoot compares, on the guest's boot clock, two boots of the same
// tree per iteration: through the minimal initramfs and composefs-prepare-root
// into the composefs image (secure where the kernel can verify it), and
// directly, through a plain initramfs that mounts an ext4 disk holding the
// tree as ordinary files and switches to it. It reports the time from the
// kernel's start to the image's init (the switch to the new root) for both,
// prepare-root's own time (its prepare-root sequence, as it logs it) and
// that time's share of the composefs boot's time to switch_root (the goal is
// at most 5%). TCG makes every figure several times a real machine's; the
// shares are what compare.
func BenchmarkBoot(b *testing.B) {
	f := newFixture(b)
	name := os.Getenv(EnvBenchKernel)
	if name == "" {
		name = Kernels[len(Kernels)-1]
	}
	k := kernel(b, name)
	dir := b.TempDir()
	r := f.newKernelRun(b, k, filepath.Join(dir, "initrd.cpio"))
	initramfs(b, k, f.prepareRoot, r.initrd, nil)
	d := "v1-sha256-12:" + f.digest
	secure := k.AtLeast(6, 6)
	if secure {
		if c := r.boot(b, "setup", r.setup, "gocfs.vm=setup"); !strings.HasSuffix(c.Line(Setup), "secure=true") {
			b.Fatalf("setup boot failed\n%s", tail(c))
		}
	} else {
		d = "?" + d
	}
	direct := &kernelRun{f: f, k: k, logs: r.logs, disk: filepath.Join(dir, "plain.img"), initrd: filepath.Join(dir, "direct.cpio")}
	mkdisk(b, f.plain, direct.disk)
	initramfs(b, k, f.guestinit, direct.initrd, nil)

	// Milestones on the boot clock, summed over the boots: /init
	// started, modules loaded, physical root mounted, new root ready
	// (composefs only), the image's init started.
	const pr = "composefs-prepare-root: uptime:"
	var cfs, plain [5]float64
	var prepare float64
	i := 0
	for ; b.Loop(); i++ {
		c := r.boot(b, "cfs-"+strconv.Itoa(i), r.initrd, "composefs.digest="+d)
		r.expectBooted(b, c, secure)
		for j, key := range []string{"init", "modules", "sysroot", "prepared"} {
			cfs[j] += uptime(b, c, pr, key)
		}
		cfs[4] += uptime(b, c, Marker, "uptime")
		prepare += preparedIn(b, c)

		c = direct.boot(b, "direct-"+strconv.Itoa(i), direct.initrd, "gocfs.vm=direct")
		for _, res := range c.Results() {
			if res.Status != "PASS" {
				b.Errorf("direct boot: check %s: %s %s", res.Name, res.Status, res.Detail)
			}
		}
		if !c.Has(Done) {
			b.Fatalf("direct boot did not finish\n%s", tail(c))
		}
		for j, key := range []string{"init", "modules", "sysroot"} {
			plain[j] += uptime(b, c, Direct, key)
		}
		plain[4] += uptime(b, c, Marker, "uptime")
	}
	n := float64(i)
	for j := range cfs {
		cfs[j] /= n
		plain[j] /= n
	}
	prepare /= n
	share := prepare / cfs[4]
	b.ReportMetric(cfs[4], "cfs-switch-s")
	b.ReportMetric(plain[4], "direct-switch-s")
	b.ReportMetric(prepare*1000, "prepare-ms")
	b.ReportMetric(share*100, "prepare-%")
	b.Logf("Linux %s, %d boots each; seconds since the kernel started, averaged:", k.Release, i)
	b.Logf("  %-34s %8s %8s %8s %8s %8s", "", "/init", "modules", "sysroot", "prepared", "new init")
	b.Logf("  %-34s %8.3f %8.3f %8.3f %8.3f %8.3f", "composefs-prepare-root, verity "+strconv.FormatBool(secure), cfs[0], cfs[1], cfs[2], cfs[3], cfs[4])
	b.Logf("  %-34s %8.3f %8.3f %8.3f %8s %8.3f", "plain initramfs, same tree on ext4", plain[0], plain[1], plain[2], "-", plain[4])
	verdict := "met"
	if share > prepareGoal {
		verdict = "NOT met"
	}
	b.Logf("  prepare-root's own time %.1f ms = %.1f%% of the time to switch_root (goal <= %.0f%%: %s); composefs boot / plain boot: %.3f",
		prepare*1000, share*100, prepareGoal*100, verdict, cfs[4]/plain[4])
}

// uptime reads a boot clock figure from the console.
func uptime(tb testing.TB, c *Console, prefix, key string) float64 {
	tb.Helper()
	v, ok := c.Uptime(prefix, key)
	if !ok {
		tb.Fatalf("no %s= on a %q line\n%s", key, prefix, tail(c))
	}
	return v
}

// preparedIn reads prepare-root's own time, in seconds, from its "prepared
// in N ms" message.
func preparedIn(tb testing.TB, c *Console) float64 {
	tb.Helper()
	l := c.Line("composefs-prepare-root: new root:")
	_, after, ok := strings.Cut(l, "prepared in ")
	ms, unit, _ := strings.Cut(after, " ")
	v, err := strconv.ParseFloat(ms, 64)
	if !ok || err != nil || unit != "ms" {
		tb.Fatalf("no prepare time in %q\n%s", l, tail(c))
	}
	return v / 1000
}
