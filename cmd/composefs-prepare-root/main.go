// Command composefs-prepare-root runs in the initramfs: it mounts the
// composefs image the kernel command line (or the initramfs extension)
// names as the new root filesystem on /sysroot, with /etc, /var and the
// physical root set up as /usr/lib/composefs/prepare-root.conf and
// /etc/composefs/prepare-root.conf say. See package
// github.com/gocfs/gocfs/initramfs/prepare for the sequence.
//
// Under an init system (a systemd unit ordered after sysroot.mount) it only
// prepares the root. Run as process 1, or with -init, it is the whole
// initramfs init: it mounts /proc, /sys, /dev and /run, loads the kernel
// modules the initramfs lists in /usr/lib/composefs/modules.load (package
// github.com/gocfs/gocfs/initramfs/kmod), mounts the root= device on
// /sysroot, prepares the root and switches to the image's init. In init
// mode it prints the boot's timings, read on the kernel's boot clock.
//
// After a successful preparation it records what it booted in
// RUN-DIR/booted (package prepare, Result.Record); the tier line of its log
// says the same.
//
// Every failure is printed with its cause and makes the command exit with
// status 1 (in init mode, process 1 exiting makes the kernel panic with the
// message on the console).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gocfs/gocfs/initramfs/cmdline"
	"github.com/gocfs/gocfs/initramfs/config"
	"github.com/gocfs/gocfs/initramfs/kmod"
	"github.com/gocfs/gocfs/initramfs/prepare"
)

const name = "composefs-prepare-root"

func main() {
	sysroot := flag.String("sysroot", prepare.DefaultSysroot, "where the physical root is mounted")
	target := flag.String("target", "", "where the new root goes (default: the sysroot)")
	runDir := flag.String("run-dir", prepare.DefaultRunDir, "directory for temporary mounts")
	cmdlineFile := flag.String("cmdline", "/proc/cmdline", "file holding the kernel command line")
	initrd := flag.String("initramfs-root", "/", "root of the initramfs, holding the configuration and the extension")
	initMode := flag.Bool("init", os.Getpid() == 1, "be the initramfs init (default when run as process 1)")
	rootWait := flag.Duration("root-wait", 30*time.Second, "init mode: how long to wait for the root= device")
	flag.Parse()
	if flag.NArg() != 0 {
		fail(fmt.Errorf("unexpected arguments %q", flag.Args()))
	}
	var t timings
	if *initMode {
		t.start = prepare.Uptime()
		if err := prepare.MountAPIFilesystems(); err != nil {
			fail(err)
		}
		n, err := kmod.LoadList(*initrd, logf)
		if err != nil {
			fail(err)
		}
		t.modules = prepare.Uptime()
		if n > 0 {
			logf("loaded %d kernel modules in %s", n, ms(t.modules-t.start))
		}
	}
	b, err := os.ReadFile(*cmdlineFile)
	if err != nil {
		fail(fmt.Errorf("read the kernel command line: %w", err))
	}
	args, err := cmdline.Parse(string(b))
	if err != nil {
		fail(err)
	}
	pinned, err := config.LoadDigest(*initrd)
	if err != nil {
		fail(err)
	}
	cfg, err := config.Load(*initrd)
	if err != nil {
		fail(err)
	}
	if *initMode {
		if err := prepare.MountPhysicalRoot(args, *sysroot, *rootWait); err != nil {
			fail(err)
		}
		t.sysroot = prepare.Uptime()
	}
	begin := prepare.Uptime()
	res, err := prepare.Run(prepare.Linux{}, prepare.Params{
		Sysroot: *sysroot, Target: *target, RunDir: *runDir,
		Args: args, Pinned: pinned, Config: cfg, Log: logf,
	})
	if err != nil {
		fail(err)
	}
	// The record only informs the booted system: a root that is ready
	// is not abandoned for it.
	if err := prepare.WriteRecord(*runDir, res); err != nil {
		logf("warning: %v", err)
	}
	t.prepared = prepare.Uptime()
	if res.Deployment != "" {
		logf("new root: ostree deployment %s, prepared in %s", res.Deployment, ms(t.prepared-begin))
	} else {
		logf("new root: image %s, prepared in %s", res.Digest.Hex, ms(t.prepared-begin))
	}
	if *initMode {
		newroot := *target
		if newroot == "" {
			newroot = *sysroot
		}
		logf("uptime: init=%s modules=%s sysroot=%s prepared=%s", secs(t.start), secs(t.modules), secs(t.sysroot), secs(t.prepared))
		fail(prepare.SwitchRoot(filepath.Clean(newroot), args.Init))
	}
}

// timings are init mode's milestones on the boot clock: started, modules
// loaded, physical root mounted, new root prepared.
type timings struct {
	start, modules, sysroot, prepared time.Duration
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, name+": "+format+"\n", a...)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "%s: error: %v\n", name, err)
	os.Exit(1)
}
