// Command mountbench measures mounting and serving composefs images, as
// root: the latency of a mount and its unmount for each tier the kernel
// can do (through the mount package, and through the mount.composefs
// programs, ours against the C one when it is on PATH), and cfsmount
// against the kernel mount of the same image: sequential read throughput
// of one large external file, and a full-tree walk (lstat every entry,
// list and read every xattr) of a large image. It prints the figures and
// the ratios the goals are stated in.
package main

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/mount"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding gocfs's mkcomposefs, mount.composefs and cfsmount")
	cycles := flag.Int("cycles", 200, "mount/unmount cycles per latency figure")
	readMiB := flag.Int("read-mib", 256, "size of the file read for throughput, MiB")
	walkDump := flag.String("walk-dump", "", "composefs dump (optionally gzipped) of the tree walked; default: a generated 60,000-entry tree")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Println("SKIP mountbench: mounting needs root")
		return
	}
	if err := run(*bin, *cycles, *readMiB, *walkDump); err != nil {
		fmt.Fprintln(os.Stderr, "mountbench:", err)
		os.Exit(1)
	}
}

type bench struct {
	bin, tmp string
}

func run(bin string, cycles, readMiB int, walkDump string) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "mountbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	b := &bench{bin: bin, tmp: tmp}
	if err := b.latency(cycles); err != nil {
		return err
	}
	return b.cfsmount(readMiB, walkDump)
}

// latency prints the time of one mount plus unmount of a small image.
func (b *bench) latency(cycles int) error {
	src := filepath.Join(b.tmp, "small")
	for i := range 20 {
		dir := filepath.Join(src, fmt.Sprintf("d%d", i%4))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), bytes.Repeat([]byte{byte(i)}, 1000+i*300), 0o644); err != nil {
			return err
		}
	}
	img, objs := filepath.Join(b.tmp, "small.cfs"), filepath.Join(b.tmp, "small-objects")
	if err := b.mkcomposefs("--digest-store="+objs, src, img); err != nil {
		return err
	}
	mnt := filepath.Join(b.tmp, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return err
	}

	fmt.Printf("\nmount + unmount latency of a %d-file image, mean of %d cycles\n", 20, cycles)
	caps := mount.Probe()
	if caps.Err != nil {
		return fmt.Errorf("probe the kernel: %w", caps.Err)
	}
	tiers := []struct {
		tier   mount.Tier
		usable bool
	}{
		{mount.TierAuto, true},
		{mount.TierFD, caps.LayerFDs},
		{mount.TierString, caps.LayerAppend},
		{mount.TierLoop, caps.Loop},
		{mount.TierLegacy, true},
	}
	for _, t := range tiers {
		name := "library, " + t.tier.String()
		if t.tier == mount.TierAuto {
			name = fmt.Sprintf("library, auto (%s)", caps.Tier())
		}
		if !t.usable {
			fmt.Printf("  %-28s SKIP: this kernel cannot do it\n", name)
			continue
		}
		opts := mount.Options{ImagePath: img, ObjectDirs: []string{objs}, Tier: t.tier}
		d, err := timeCycles(cycles, func() error {
			if _, err := mount.Mount(mnt, opts); err != nil {
				return err
			}
			return mount.Unmount(mnt)
		})
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Printf("  %-28s %8.0f µs\n", name, us(d))
	}

	// The programs, as mount(8) runs them: process start included.
	helper := func(prog string) func() error {
		return func() error {
			out, err := exec.Command(prog, img, mnt, "-o", "basedir="+objs).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s: %v: %s", prog, err, out)
			}
			return unix.Unmount(mnt, 0)
		}
	}
	ours, err := timeCycles(cycles, helper(filepath.Join(b.bin, "mount.composefs")))
	if err != nil {
		return err
	}
	fmt.Printf("  %-28s %8.0f µs\n", "gocfs mount.composefs", us(ours))
	c, err := exec.LookPath("mount.composefs")
	if err != nil || filepath.Dir(c) == b.bin {
		fmt.Println("  C mount.composefs not on PATH: no ratio")
		return nil
	}
	theirs, err := timeCycles(cycles, helper(c))
	if err != nil {
		return err
	}
	fmt.Printf("  %-28s %8.0f µs\n", "C mount.composefs", us(theirs))
	fmt.Printf("  ratio gocfs/C: %.2fx (goal <= 1.0x)\n", float64(ours)/float64(theirs))
	return nil
}

// timeCycles runs fn once to warm up, then n times, and returns the mean.
func timeCycles(n int, fn func() error) (time.Duration, error) {
	if err := fn(); err != nil {
		return 0, err
	}
	start := time.Now()
	for range n {
		if err := fn(); err != nil {
			return 0, err
		}
	}
	return time.Since(start) / time.Duration(n), nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// cfsmount compares cfsmount with the kernel mount of the same images.
func (b *bench) cfsmount(readMiB int, walkDump string) error {
	// One large file of random content.
	src := filepath.Join(b.tmp, "large")
	if err := os.Mkdir(src, 0o755); err != nil {
		return err
	}
	if err := writeRandom(filepath.Join(src, "large"), int64(readMiB)<<20); err != nil {
		return err
	}
	readImg, readObjs := filepath.Join(b.tmp, "read.cfs"), filepath.Join(b.tmp, "read-objects")
	if err := b.mkcomposefs("--digest-store="+readObjs, src, readImg); err != nil {
		return err
	}
	walkImg, walkObjs := filepath.Join(b.tmp, "walk.cfs"), filepath.Join(b.tmp, "walk-objects")
	if err := os.Mkdir(walkObjs, 0o755); err != nil {
		return err
	}
	entries, err := b.walkImage(walkDump, walkImg)
	if err != nil {
		return err
	}

	type result struct{ read, walk time.Duration }
	measure := func(mountIt mounter) (result, error) {
		var r result
		var err error
		r.read, err = b.timeMounted(mountIt, readImg, readObjs, func(mnt string) error {
			return readAll(filepath.Join(mnt, "large"))
		})
		if err != nil {
			return r, err
		}
		r.walk, err = b.timeMounted(mountIt, walkImg, walkObjs, walk)
		return r, err
	}
	kernel, err := measure(kernelMount)
	if err != nil {
		return fmt.Errorf("kernel mount: %w", err)
	}
	fuse, err := measure(b.startCfsmount)
	if err != nil {
		return fmt.Errorf("cfsmount: %w", err)
	}
	mibs := func(d time.Duration) float64 { return float64(readMiB) / d.Seconds() }
	fmt.Printf("\ncfsmount against the kernel mount of the same image (warm caches, best of 3)\n")
	fmt.Printf("  sequential read of %d MiB:  kernel %7.0f MiB/s   cfsmount %7.0f MiB/s   ratio %.2f (goal >= 0.5)\n",
		readMiB, mibs(kernel.read), mibs(fuse.read), mibs(fuse.read)/mibs(kernel.read))
	fmt.Printf("  walk of %d entries:        kernel %7.0f ms       cfsmount %7.0f ms       ratio %.2fx (goal <= 3x)\n",
		entries, ms(kernel.walk), ms(fuse.walk), float64(fuse.walk)/float64(kernel.walk))
	return b.walkCause(walkImg, walkObjs)
}

// walkCause measures the walk again with the walker and both servers on
// one CPU. Every listxattr on a FUSE mount is a round trip to the server
// (the kernel caches no xattrs), so the walk pays at least one wake-up of
// the server and one of the walker per entry. Where waking a task on
// another CPU is slow (a virtual machine whose idle vCPUs halt), those
// wake-ups dominate the default figure; on one CPU they are plain context
// switches, and what is left is the cost of FUSE and cfsmount.
func (b *bench) walkCause(img, objs string) error {
	var kernel, fuse time.Duration
	err := onOneCPU(func() error {
		var err error
		if kernel, err = b.timeMounted(kernelMount, img, objs, walk); err != nil {
			return fmt.Errorf("kernel mount: %w", err)
		}
		// cfsmount inherits the CPU.
		if fuse, err = b.timeMounted(b.startCfsmount, img, objs, walk); err != nil {
			return fmt.Errorf("cfsmount: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("  walk, all on one CPU:          kernel %7.0f ms       cfsmount %7.0f ms       ratio %.2fx\n",
		ms(kernel), ms(fuse), float64(fuse)/float64(kernel))
	return nil
}

// mounter mounts an image with its objects on mnt and returns the unmount.
type mounter func(img, objs, mnt string) (func() error, error)

func kernelMount(img, objs, mnt string) (func() error, error) {
	if _, err := mount.Mount(mnt, mount.Options{ImagePath: img, ObjectDirs: []string{objs}}); err != nil {
		return nil, err
	}
	return func() error { return mount.Unmount(mnt) }, nil
}

// timeMounted mounts the image and returns the best time of fn on the
// mount.
func (b *bench) timeMounted(mountIt mounter, img, objs string, fn func(mnt string) error) (time.Duration, error) {
	mnt := filepath.Join(b.tmp, "served")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return 0, err
	}
	umount, err := mountIt(img, objs, mnt)
	if err != nil {
		return 0, err
	}
	d, err := best(3, func() error { return fn(mnt) })
	if err2 := umount(); err == nil {
		err = err2
	}
	return d, err
}

// onOneCPU runs fn on one OS thread restricted to one CPU; processes fn
// starts inherit the restriction.
func onOneCPU(fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return fmt.Errorf("sched_getaffinity: %w", err)
	}
	cpu := 0
	for !all.IsSet(cpu) {
		cpu++
	}
	var one unix.CPUSet
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return fmt.Errorf("sched_setaffinity: %w", err)
	}
	defer unix.SchedSetaffinity(0, &all)
	return fn()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// best runs fn once to warm the caches, then n times, and returns the
// fastest run: the figure least disturbed by the rest of the machine.
func best(n int, fn func() error) (time.Duration, error) {
	if err := fn(); err != nil {
		return 0, err
	}
	var fastest time.Duration
	for i := range n {
		start := time.Now()
		if err := fn(); err != nil {
			return 0, err
		}
		if d := time.Since(start); i == 0 || d < fastest {
			fastest = d
		}
	}
	return fastest, nil
}

// startCfsmount runs cfsmount on mnt and waits until the mount is there.
func (b *bench) startCfsmount(img, objs, mnt string) (func() error, error) {
	cmd := exec.Command(filepath.Join(b.bin, "cfsmount"), "--basedir", objs, img, mnt)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for !isFUSEMount(mnt) {
		select {
		case err := <-done:
			return nil, fmt.Errorf("cfsmount exited: %v: %s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return nil, errors.New("cfsmount did not mount within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return func() error {
		if err := unix.Unmount(mnt, 0); err != nil {
			cmd.Process.Kill()
			<-done
			return err
		}
		return <-done
	}, nil
}

func isFUSEMount(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.FUSE_SUPER_MAGIC
}

func (b *bench) mkcomposefs(args ...string) error {
	out, err := exec.Command(filepath.Join(b.bin, "mkcomposefs"), args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkcomposefs %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// walkImage builds the image walked, from the dump or from a generated
// dump, and returns its number of entries.
func (b *bench) walkImage(dump, img string) (int, error) {
	var data []byte
	if dump != "" {
		raw, err := os.ReadFile(dump)
		if err != nil {
			return 0, err
		}
		data = raw
		if bytes.HasPrefix(raw, []byte{0x1f, 0x8b}) {
			zr, err := gzip.NewReader(bytes.NewReader(raw))
			if err != nil {
				return 0, fmt.Errorf("%s: %w", dump, err)
			}
			if data, err = io.ReadAll(zr); err != nil {
				return 0, fmt.Errorf("%s: %w", dump, err)
			}
		}
	} else {
		data = generatedDump(60000)
	}
	p := filepath.Join(b.tmp, "walk.dump")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return 0, err
	}
	if err := b.mkcomposefs("--from-file", p, img); err != nil {
		return 0, err
	}
	return bytes.Count(data, []byte{'\n'}) - 1, nil // the root is not walked
}

// generatedDump is a dump of n entries in directories of 100, each file
// with a user xattr, all inline so that no object is needed.
func generatedDump(n int) []byte {
	var buf bytes.Buffer
	buf.WriteString("/ 0 40755 2 0 0 0 1700000000.0 - - -\n")
	dirs := (n + 100) / 101
	for d := range dirs {
		fmt.Fprintf(&buf, "/d%04d 0 40755 2 0 0 0 1700000000.0 - - -\n", d)
		for f := range 100 {
			fmt.Fprintf(&buf, "/d%04d/f%03d 5 100644 1 0 0 0 1700000000.0 - hello - user.bench=%d\n", d, f, f)
		}
	}
	return buf.Bytes()
}

func writeRandom(p string, size int64) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readAll(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, 1<<20))
	return err
}

// walk lstats every entry below dir and reads all its xattrs, as a backup
// or security scanner would.
func walk(dir string) error {
	names := make([]byte, 64<<10)
	value := make([]byte, 64<<10)
	var visit func(dir string) error
	visit = func(dir string) error {
		f, err := os.Open(dir)
		if err != nil {
			return err
		}
		ents, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return err
		}
		slices.Sort(ents)
		for _, e := range ents {
			p := dir + "/" + e
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			n, err := unix.Llistxattr(p, names)
			if err != nil {
				return fmt.Errorf("listxattr %s: %w", p, err)
			}
			for rest := names[:n]; len(rest) > 0; {
				i := bytes.IndexByte(rest, 0)
				if i < 0 {
					break
				}
				// Some fail by design (user.* of a symlink): still a round trip.
				unix.Lgetxattr(p, string(rest[:i]), value)
				rest = rest[i+1:]
			}
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				if err := visit(p); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return visit(dir)
}
