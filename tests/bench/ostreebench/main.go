// Command ostreebench measures synthesizing an ostree commit from a
// composefs repository image (`cfsctl ostree commit`, file contents cloned
// from the repository's objects) against committing the same tree with
// ostree (`ostree commit` of a checkout of that commit, which reads, hashes
// and copies every file), both into a fresh bare repository on one XFS
// filesystem made with reflinks, so that only the way the contents are
// stored differs. It prints the best wall and CPU time of each and the
// ratio ours/ostree (the goal is 0.3 or less).
//
// The tree is made here, deterministically: about 10k files of incompressible
// data, most a few KiB and a few some MiB, over a few hundred directories,
// with symlinks. Without root, mkfs.xfs or the ostree CLI the benchmark
// prints SKIP and exits successfully.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding gocfs's cfsctl")
	runs := flag.Int("runs", 3, "runs per figure, each into a fresh repository; the fastest is kept")
	files := flag.Int("files", 10000, "regular files in the tree")
	mib := flag.Int64("mib", 300, "MiB of file data in the tree")
	flag.Parse()
	if flag.NArg() > 0 || *runs < 1 || *files < 1 || *mib < 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *bin, *runs, *files, *mib<<20)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ostreebench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin string, runs, files int, total int64) (err error) {
	if os.Geteuid() != 0 {
		fmt.Println("SKIP ostree benchmark: needs root (loop mount, bare repositories)")
		return nil
	}
	for _, tool := range []string{"mkfs.xfs", "ostree", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Printf("SKIP ostree benchmark: %s not installed\n", tool)
			return nil
		}
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	cfsctl := filepath.Join(bin, "cfsctl")
	if _, err := os.Stat(cfsctl); err != nil {
		return fmt.Errorf("cfsctl: %w (build it first: make build)", err)
	}
	tmp, err := os.MkdirTemp("", "ostreebench")
	if err != nil {
		return err
	}
	defer func() {
		if rerr := os.RemoveAll(tmp); err == nil && rerr != nil {
			err = rerr
		}
	}()
	mnt, unmount, err := xfsLoop(ctx, tmp, 4*total+(1<<30))
	if err != nil {
		return err
	}
	defer func() {
		if uerr := unmount(); err == nil {
			err = uerr
		}
	}()

	src := filepath.Join(mnt, "src")
	start := time.Now()
	data, err := makeTree(src, files, total)
	if err != nil {
		return err
	}
	store := filepath.Join(mnt, "composefs")
	if _, err := measure(ctx, cfsctl, "--repo", store, "init", "--insecure"); err != nil {
		return err
	}
	if _, err := measure(ctx, cfsctl, "--repo", store, "create-image", src, "bench"); err != nil {
		return err
	}
	fmt.Printf("tree: %d regular files, %.1f MiB of data, made and stored as an image in %.1f s, on %s (xfs, reflink=1)\n",
		files, float64(data)/(1<<20), time.Since(start).Seconds(), mnt)

	var ours, theirs []figure
	for i := range runs {
		repo := filepath.Join(mnt, fmt.Sprintf("ours%d", i))
		// Each step starts with nothing left to write back, and with
		// what it reads in the page cache (just written).
		syscall.Sync()
		f, err := measure(ctx, cfsctl, "--repo", store, "ostree", "commit", "bench", "--ostree-repo", repo, "--branch", "bench", "--policy", "enabled")
		if err != nil {
			return err
		}
		ours = append(ours, f)

		co := filepath.Join(mnt, fmt.Sprintf("checkout%d", i))
		if _, err := measure(ctx, "ostree", "checkout", "--repo="+repo, "--force-copy", "bench", co); err != nil {
			return err
		}
		repo2 := filepath.Join(mnt, fmt.Sprintf("theirs%d", i))
		if _, err := measure(ctx, "ostree", "init", "--repo="+repo2, "--mode=bare"); err != nil {
			return err
		}
		syscall.Sync()
		f, err = measure(ctx, "ostree", "commit", "--repo="+repo2, "--branch=bench", "--tree=dir="+co, "--subject=bench")
		if err != nil {
			return err
		}
		theirs = append(theirs, f)
		for _, d := range []string{repo, co, repo2} {
			if err := os.RemoveAll(d); err != nil {
				return err
			}
		}
	}
	o, t := best(ours), best(theirs)
	fmt.Printf("best of %d runs, each into a fresh bare repository on the same filesystem\n", runs)
	fmt.Printf("%-44s %8s %8s %10s\n", "step", "wall s", "cpu s", "data MiB/s")
	for _, l := range []struct {
		name string
		f    figure
	}{{"gocfs: cfsctl ostree commit (reflinks)", o}, {"ostree commit of a checkout", t}} {
		fmt.Printf("%-44s %8.3f %8.3f %10.1f\n", l.name, l.f.wall.Seconds(), l.f.cpu.Seconds(), float64(data)/(1<<20)/l.f.wall.Seconds())
	}
	ratio := o.wall.Seconds() / t.wall.Seconds()
	verdict := "met"
	if ratio > 0.3 {
		verdict = "NOT met"
	}
	fmt.Printf("ratio ours/ostree: wall %.2f, cpu %.2f (goal: wall <= 0.30, %s)\n", ratio, o.cpu.Seconds()/t.cpu.Seconds(), verdict)
	return nil
}

// xfsLoop makes a sparse file of size bytes in dir, formats it as XFS with
// reflinks and mounts it through a loop device (freed by umount).
func xfsLoop(ctx context.Context, dir string, size int64) (string, func() error, error) {
	img := filepath.Join(dir, "xfs.img")
	f, err := os.Create(img)
	if err != nil {
		return "", nil, err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", nil, err
	}
	if _, err := measure(ctx, "mkfs.xfs", "-q", "-m", "reflink=1", img); err != nil {
		return "", nil, err
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return "", nil, err
	}
	if _, err := measure(ctx, "mount", "-t", "xfs", "-o", "loop", img, mnt); err != nil {
		return "", nil, err
	}
	return mnt, func() error {
		_, err := measure(context.Background(), "umount", mnt)
		return err
	}, nil
}

// makeTree writes files regular files of total bytes under dir: sizes
// log-normal around 8 KiB, the last file taking what is left, in 300
// directories, with a symlink beside every twentieth file.
func makeTree(dir string, files int, total int64) (int64, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := make([]int64, files)
	var sum float64
	for i := range sizes {
		s := 8192 * math.Exp(1.5*rng.NormFloat64())
		sizes[i] = int64(s)
		sum += s
	}
	// Scale to the total wanted.
	var written int64
	for i := range sizes {
		sizes[i] = int64(float64(sizes[i]) * float64(total) / sum)
		written += sizes[i]
	}
	sizes[files-1] += total - written
	buf := make([]byte, 1<<20)
	var data int64
	for i, size := range sizes {
		d := filepath.Join(dir, fmt.Sprintf("usr/share/d%03d", i%300))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, err
		}
		p := filepath.Join(d, fmt.Sprintf("f%05d", i))
		if err := writeRandom(p, size, rng, buf); err != nil {
			return 0, err
		}
		if i%20 == 0 {
			if err := os.Symlink(filepath.Base(p), p+".link"); err != nil {
				return 0, err
			}
		}
		data += size
	}
	return data, nil
}

func writeRandom(p string, size int64, rng *rand.Rand, buf []byte) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		for i := 0; i < int(n); i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8 && i+j < int(n); j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		left -= n
	}
	return f.Close()
}

// figure is what one run of a command cost.
type figure struct {
	wall, cpu time.Duration
}

func best(fs []figure) figure {
	b := fs[0]
	for _, f := range fs[1:] {
		b.wall, b.cpu = min(b.wall, f.wall), min(b.cpu, f.cpu)
	}
	return b
}

// measure runs a command, its output going to stderr only on failure.
func measure(ctx context.Context, args ...string) (figure, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return figure{}, fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return figure{wall: time.Since(start), cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}, nil
}
