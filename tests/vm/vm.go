// Package vm boots Linux kernels in QEMU for the boot tests: it finds the
// Debian kernels fetch-kernels.sh keeps in its cache, runs QEMU (TCG, since
// Debian kernels do not run under every KVM; no display, the serial console
// on standard output, a time limit) and keeps each run's console output,
// from which the tests read what the guest's init (guestinit) printed.
//
// The kernel cache is $GOCFS_VM_CACHE, else .cache/vm at the module root;
// see fetch-kernels.sh for its layout. Console logs go under
// $GOCFS_VM_ARTIFACTS when it is set.
package vm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gocfs/gocfs/tests/vm/guest"
)

// Environment variables.
const (
	EnvCache     = "GOCFS_VM_CACHE"
	EnvArtifacts = "GOCFS_VM_ARTIFACTS"
)

// QEMU is the emulator looked up in PATH.
const QEMU = "qemu-system-x86_64"

// Kernels are the cache names of the kernels the tests boot, oldest first.
var Kernels = []string{"6.1", "6.12", "6.18"}

// The console lines and paths guestinit and the tests share.
const (
	Marker      = guest.Marker
	Done        = guest.Done
	Check       = guest.Check
	Setup       = guest.Setup
	Direct      = guest.Direct
	DataDir     = guest.DataDir
	BootCounter = guest.BootCounter
)

// Kernel is a kernel from the cache.
type Kernel struct {
	// Name is its cache name ("6.18"), Release its uname -r.
	Name, Release string
	// Image is the vmlinuz file.
	Image string
	// ModulesDir holds Release/ with the modules and depmod's files.
	ModulesDir string
	// Root holds lib/modules/Release (ModulesDir's grandparent).
	Root         string
	Major, Minor int
}

// ErrNoKernel is wrapped when a kernel is not in the cache.
var ErrNoKernel = errors.New("kernel not fetched (run tests/vm/fetch-kernels.sh, or make vm-kernels)")

// CacheDir returns the kernel cache directory.
func CacheDir() (string, error) {
	if d := os.Getenv(EnvCache); d != "" {
		return d, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache", "vm"), nil
}

// moduleRoot finds the directory holding go.mod above the working
// directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// OpenKernel returns the kernel cached as cache/name.
func OpenKernel(cache, name string) (*Kernel, error) {
	dir := filepath.Join(cache, name)
	b, err := os.ReadFile(filepath.Join(dir, "release"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s in %s: %w", name, cache, ErrNoKernel)
	}
	if err != nil {
		return nil, err
	}
	k := &Kernel{
		Name:    name,
		Release: strings.TrimSpace(string(b)),
		Image:   filepath.Join(dir, "vmlinuz"),
		Root:    dir,
	}
	k.ModulesDir = filepath.Join(dir, "lib", "modules")
	for _, p := range []string{k.Image, filepath.Join(k.ModulesDir, k.Release, "modules.dep")} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%s in %s: %w: %v", name, cache, ErrNoKernel, err)
		}
	}
	if k.Major, k.Minor, err = parseRelease(k.Release); err != nil {
		return nil, err
	}
	return k, nil
}

func parseRelease(rel string) (int, int, error) {
	f := strings.SplitN(rel, ".", 3)
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("kernel release %q: no major.minor", rel)
	}
	minor := f[1]
	if i := strings.IndexFunc(minor, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minor = minor[:i]
	}
	major, err1 := strconv.Atoi(f[0])
	min, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("kernel release %q: no major.minor", rel)
	}
	return major, min, nil
}

// AtLeast reports whether the kernel is version major.minor or later.
func (k *Kernel) AtLeast(major, minor int) bool {
	return k.Major > major || (k.Major == major && k.Minor >= minor)
}

// BaseArgs start every kernel command line: the console on the serial
// port, kernel messages below warnings only, and a panic (init failing)
// ends the run at once.
var BaseArgs = []string{"console=ttyS0", "panic=-1", "quiet"}

// Machine is one QEMU run.
type Machine struct {
	Kernel *Kernel
	Initrd string
	// Disk, if set, is a raw image attached as the virtio disk /dev/vda.
	Disk string
	// Args follow BaseArgs on the kernel command line.
	Args []string
	// Timeout bounds the run.
	Timeout time.Duration
	// Log receives the console output.
	Log string
}

// Console is what a run printed.
type Console struct {
	Text string
	Wall time.Duration
}

// ErrTimeout is wrapped when a run exceeds its time limit.
var ErrTimeout = errors.New("QEMU run timed out")

// Boot runs the machine until the guest powers off, panics or the time
// limit passes, and returns its console output (also on errors, when there
// is some).
func (m *Machine) Boot(ctx context.Context) (*Console, error) {
	ctx, cancel := context.WithTimeout(ctx, m.Timeout)
	defer cancel()
	args := []string{
		"-accel", "tcg", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
		"-no-reboot", "-m", "1024",
		"-kernel", m.Kernel.Image, "-initrd", m.Initrd,
		"-append", strings.Join(append(append([]string{}, BaseArgs...), m.Args...), " "),
	}
	if m.Disk != "" {
		args = append(args, "-drive", "file="+m.Disk+",format=raw,if=virtio")
	}
	log, err := os.Create(m.Log)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	fmt.Fprintf(log, "# %s %s\n", QEMU, strings.Join(args, " "))
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, QEMU, args...)
	w := io.MultiWriter(&out, log)
	cmd.Stdout, cmd.Stderr = w, w
	start := time.Now()
	err = cmd.Run()
	c := &Console{Text: out.String(), Wall: time.Since(start)}
	if ctx.Err() == context.DeadlineExceeded {
		return c, fmt.Errorf("%w after %v (log %s)", ErrTimeout, m.Timeout, m.Log)
	}
	if err != nil {
		return c, fmt.Errorf("%s: %w (log %s)", QEMU, err, m.Log)
	}
	return c, nil
}

// Lines returns the parts of console lines that start with prefix, from
// the prefix on. Kernel messages may share a line with the guest's output
// on the serial console, so the prefix is looked for anywhere in a line.
func (c *Console) Lines(prefix string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(c.Text))
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		if i := strings.Index(sc.Text(), prefix); i >= 0 {
			out = append(out, strings.TrimRight(sc.Text()[i:], "\r"))
		}
	}
	return out
}

// Line returns the first of Lines(prefix), or "".
func (c *Console) Line(prefix string) string {
	if l := c.Lines(prefix); len(l) > 0 {
		return l[0]
	}
	return ""
}

// Has reports whether the console shows s.
func (c *Console) Has(s string) bool { return strings.Contains(c.Text, s) }

// Booted reports whether the image's init started.
func (c *Console) Booted() bool { return c.Has(Marker) }

// Result is a check's outcome as guestinit printed it.
type Result struct {
	Name, Status, Detail string
}

// Results returns the checks guestinit printed, in order.
func (c *Console) Results() []Result {
	var rs []Result
	for _, l := range c.Lines(Check + " ") {
		f := strings.SplitN(strings.TrimPrefix(l, Check+" "), " ", 3)
		r := Result{Name: f[0]}
		if len(f) > 1 {
			r.Status = f[1]
		}
		if len(f) > 2 {
			r.Detail = f[2]
		}
		rs = append(rs, r)
	}
	return rs
}

// Uptime returns the number after "KEY=" in the first line starting with
// prefix (seconds since the kernel started), and whether there was one.
func (c *Console) Uptime(prefix, key string) (float64, bool) {
	for _, f := range strings.Fields(c.Line(prefix)) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			x, err := strconv.ParseFloat(v, 64)
			return x, err == nil
		}
	}
	return 0, false
}
