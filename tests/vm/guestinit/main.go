// Command guestinit is the init program of the boot tests' guest. It runs
// in one of three places, and finds out which from its name and the kernel
// command line:
//
//   - As /sbin/init of the booted root (the composefs image, or the same
//     tree on a plain disk): it prints guest.Marker, runs the checks, printing
//     a guest.Check line each (PASS or FAIL), then guest.Done, and powers the
//     machine off. Whether a check applies to a kernel is the host's call.
//   - As /init of an initramfs with gocfs.vm=setup: it mounts the root=
//     disk and makes the composefs repository on it secure
//     (store.Repository.EnableVerity), then powers off.
//   - As /init with gocfs.vm=direct: a plain initramfs, the reference for
//     the boot time benchmark: it mounts the root= disk and switches to
//     it, without composefs.
//
// The checks' expectations come from the command line:
//
//	gocfs.vm.digest=HEX     the image the root must be (composefs boots)
//	gocfs.vm.boots=N        how many earlier boots must have counted themselves in /etc
//	gocfs.vm.tampered=0|1   whether tamper.bin's object was corrupted (then it must read EIO)
//	gocfs.vm.substituted=0|1  whether subst.bin's object was replaced (then it must read EIO)
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/initramfs/cmdline"
	"github.com/gocfs/gocfs/initramfs/kmod"
	"github.com/gocfs/gocfs/initramfs/prepare"
	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/tests/vm/guest"
)

// Version is what --version prints; the exec check runs it.
const Version = "gocfs-vm guestinit 1"

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Println(Version)
		return
	}
	args := readCmdline()
	if os.Args[0] == "/init" {
		initramfs(args)
		return
	}
	booted(args)
}

func readCmdline() map[string]string {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		// /proc is not mounted yet in the initramfs.
		if err := prepare.MountAPIFilesystems(); err != nil {
			fatal(err)
		}
		if b, err = os.ReadFile("/proc/cmdline"); err != nil {
			fatal(err)
		}
	}
	m := map[string]string{}
	for _, a := range cmdline.Split(string(b)) {
		k, v, _ := strings.Cut(a, "=")
		m[k] = v
	}
	return m
}

func initramfs(args map[string]string) {
	start := prepare.Uptime()
	if err := prepare.MountAPIFilesystems(); err != nil {
		fatal(err)
	}
	if _, err := kmod.LoadList("/", logf); err != nil {
		fatal(err)
	}
	loaded := prepare.Uptime()
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		fatal(err)
	}
	a, err := cmdline.Parse(string(b))
	if err != nil {
		fatal(err)
	}
	if err := prepare.MountPhysicalRoot(a, "/sysroot", 30*time.Second); err != nil {
		fatal(err)
	}
	switch args["gocfs.vm"] {
	case "setup":
		setup()
	case "direct":
		fmt.Printf("%s uptime: init=%.3f modules=%.3f sysroot=%.3f\n", guest.Direct, start.Seconds(), loaded.Seconds(), prepare.Uptime().Seconds())
		fatal(prepare.SwitchRoot("/sysroot", "/sbin/init"))
	default:
		fatal(fmt.Errorf("gocfs.vm=%q: want setup or direct", args["gocfs.vm"]))
	}
}

func setup() {
	repo, err := store.Open("/sysroot/composefs")
	if err != nil {
		fatal(err)
	}
	n, err := repo.EnableVerity()
	if err != nil {
		fatal(err)
	}
	repo.Close()
	repo, err = store.Open("/sysroot/composefs")
	if err != nil {
		fatal(err)
	}
	secure := repo.Secure()
	repo.Close()
	if err := unix.Unmount("/sysroot", 0); err != nil {
		fatal(err)
	}
	fmt.Printf("%s sealed=%d secure=%v\n", guest.Setup, n, secure)
	powerOff()
}

func booted(args map[string]string) {
	fmt.Printf("%s uptime=%.3f\n", guest.Marker, prepare.Uptime().Seconds())
	mounts, err := readMountinfo()
	if err != nil {
		fatal(err)
	}
	c := &checker{args: args, mounts: mounts}
	if args["gocfs.vm"] == "direct" {
		c.check("root", c.directRoot)
		c.check("content", c.content("data"))
	} else {
		c.check("root", c.root)
		c.check("record", c.record)
		c.check("read-only", c.readOnly)
		c.check("content", c.content("data"))
		c.check("exec", c.exec)
		c.check("tamper", c.damaged("tamper", "gocfs.vm.tampered"))
		c.check("substitute", c.damaged("subst", "gocfs.vm.substituted"))
		c.check("etc", c.etc)
		c.check("var", c.mountedAt("/var"))
		c.check("sysroot", c.sysroot)
	}
	fmt.Println(guest.Done)
	powerOff()
}

type checker struct {
	args   map[string]string
	mounts []mountEntry
}

func (c *checker) check(name string, fn func() (string, error)) {
	detail, err := fn()
	if err != nil {
		fmt.Printf("%s %s FAIL %v\n", guest.Check, name, err)
		return
	}
	fmt.Printf("%s %s PASS %s\n", guest.Check, name, detail)
}

type mountEntry struct {
	point, fstype, source, options string
}

// readMountinfo reads /proc/self/mountinfo: "ID PARENT MAJ:MIN ROOT POINT
// OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS".
func readMountinfo() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ms []mountEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		a, b := strings.Fields(pre), strings.Fields(post)
		if !ok || len(a) < 5 || len(b) < 3 {
			return nil, fmt.Errorf("mountinfo: bad line %q", sc.Text())
		}
		ms = append(ms, mountEntry{point: unescape(a[4]), fstype: b[0], source: unescape(b[1]), options: b[2]})
	}
	return ms, sc.Err()
}

func unescape(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// top returns the last mount at point, the one visible.
func (c *checker) top(point string) (mountEntry, bool) {
	for i := len(c.mounts) - 1; i >= 0; i-- {
		if c.mounts[i].point == point {
			return c.mounts[i], true
		}
	}
	return mountEntry{}, false
}

func (c *checker) root() (string, error) {
	m, ok := c.top("/")
	if !ok {
		return "", errors.New("no mount at / in mountinfo")
	}
	want := "composefs:" + c.args["gocfs.vm.digest"]
	if m.fstype != "overlay" || m.source != want {
		return "", fmt.Errorf("/ is %s from %q, want overlay from %q", m.fstype, m.source, want)
	}
	return fmt.Sprintf("overlay %s %s", m.source, m.options), nil
}

func (c *checker) directRoot() (string, error) {
	m, ok := c.top("/")
	if !ok {
		return "", errors.New("no mount at / in mountinfo")
	}
	if m.fstype != "ext4" {
		return "", fmt.Errorf("/ is %s from %q, want the ext4 disk", m.fstype, m.source)
	}
	return m.fstype + " " + m.source, nil
}

func (c *checker) record() (string, error) {
	b, err := os.ReadFile(filepath.Join(prepare.DefaultRunDir, prepare.RecordName))
	if err != nil {
		return "", err
	}
	rec := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		rec[k] = v
	}
	d, err := cmdline.ParseDigest(rec["digest"])
	if err != nil {
		return "", fmt.Errorf("record %q: %w", b, err)
	}
	if d.Hex != c.args["gocfs.vm.digest"] {
		return "", fmt.Errorf("record names image %s, want %s", d.Hex, c.args["gocfs.vm.digest"])
	}
	return fmt.Sprintf("digest=%s tier=%s loop=%s verity=%s", d, rec["tier"], rec["loop"], rec["verity"]), nil
}

func (c *checker) readOnly() (string, error) {
	err := os.WriteFile(filepath.Join(guest.DataDir, "new"), nil, 0o644)
	if !errors.Is(err, unix.EROFS) {
		return "", fmt.Errorf("creating a file in %s: %v, want EROFS", guest.DataDir, err)
	}
	return "EROFS", nil
}

// content checks that guest.DataDir/NAME.bin has the sha256 NAME.sha256 holds.
func (c *checker) content(name string) func() (string, error) {
	return func() (string, error) {
		want, err := os.ReadFile(filepath.Join(guest.DataDir, name+".sha256"))
		if err != nil {
			return "", err
		}
		b, err := os.ReadFile(filepath.Join(guest.DataDir, name+".bin"))
		if err != nil {
			return "", err
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != strings.TrimSpace(string(want)) {
			return "", fmt.Errorf("%s.bin has sha256 %s, want %s", name, got, want)
		}
		return fmt.Sprintf("%s.bin: %d bytes, sha256 matches", name, len(b)), nil
	}
}

// damaged checks guest.DataDir/NAME.bin: it must read EIO when the command line
// says its object was damaged, and read right otherwise.
func (c *checker) damaged(name, arg string) func() (string, error) {
	return func() (string, error) {
		if c.args[arg] != "1" {
			return c.content(name)()
		}
		b, err := os.ReadFile(filepath.Join(guest.DataDir, name+".bin"))
		if errors.Is(err, unix.EIO) {
			return name + ".bin: EIO", nil
		}
		if err != nil {
			return "", fmt.Errorf("%s.bin: %w, want EIO", name, err)
		}
		sum := sha256.Sum256(b)
		return "", fmt.Errorf("%s.bin read %d bytes (sha256 %x) from a damaged object, want EIO", name, len(b), sum)
	}
}

func (c *checker) exec() (string, error) {
	out, err := exec.Command("/sbin/init", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("run /sbin/init from the image: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// etc counts the boots in /etc/gocfs-vm/boots: the number there must be
// what the host expects, and the new one must be on disk at power-off.
func (c *checker) etc() (string, error) {
	m, ok := c.top("/etc")
	if !ok || m.fstype != "overlay" {
		return "", fmt.Errorf("/etc is not an overlay (%+v)", m)
	}
	const counter = guest.BootCounter
	b, err := os.ReadFile(counter)
	if err != nil {
		return "", err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("%s: %w", counter, err)
	}
	want, _ := strconv.Atoi(c.args["gocfs.vm.boots"])
	if err := writeSynced(counter, []byte(strconv.Itoa(n+1)+"\n")); err != nil {
		return "", err
	}
	if n != want {
		return "", fmt.Errorf("%s holds %d, want %d", counter, n, want)
	}
	return fmt.Sprintf("%s: %d earlier boots, now %d", counter, n, n+1), nil
}

func writeSynced(name string, b []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (c *checker) mountedAt(point string) func() (string, error) {
	return func() (string, error) {
		m, ok := c.top(point)
		if !ok {
			return "", fmt.Errorf("nothing mounted at %s", point)
		}
		return fmt.Sprintf("%s: %s %s", point, m.fstype, m.source), nil
	}
}

func (c *checker) sysroot() (string, error) {
	if _, err := os.Stat("/sysroot/composefs/meta.json"); err != nil {
		return "", fmt.Errorf("the physical root is not reachable: %w", err)
	}
	return "/sysroot/composefs/meta.json", nil
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "guestinit: "+format+"\n", a...)
}

func powerOff() {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fatal(fmt.Errorf("power off: %w", err))
	}
}

// fatal reports err; as process 1, exiting makes the kernel panic, which
// with panic=-1 and QEMU's -no-reboot ends the run.
func fatal(err error) {
	fmt.Fprintf(os.Stderr, "guestinit: error: %v\n", err)
	unix.Sync()
	os.Exit(1)
}
