// Command imagebench measures the image tools on a large tree: wall time and
// peak RSS of mkcomposefs from a directory and from a dumpfile, and of
// composefs-info dump, for gocfs and, when found on PATH, for the C tools,
// printing the ratio ours/C of each figure from the same run. It also
// measures fs-verity digest throughput against plain sha256 on one core.
package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/gocfs/gocfs/verity"
)

type figure struct {
	wall time.Duration
	cpu  time.Duration // user + system: steadier than wall on a busy machine
	rss  int64         // KiB
}

func main() {
	bin := flag.String("bin", "bin", "directory holding gocfs's mkcomposefs and composefs-info")
	src := flag.String("tree", "/usr", "directory to build images from")
	runs := flag.Int("runs", 3, "runs per figure; the fastest is kept")
	flag.Parse()
	if err := run(*bin, *src, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "imagebench:", err)
		os.Exit(1)
	}
}

func run(bin, src string, runs int) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "imagebench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	type impl struct{ name, mk, info string }
	impls := []impl{{"gocfs", filepath.Join(bin, "mkcomposefs"), filepath.Join(bin, "composefs-info")}}
	cmk, err1 := exec.LookPath("mkcomposefs")
	cinfo, err2 := exec.LookPath("composefs-info")
	if err1 == nil && err2 == nil && filepath.Dir(cmk) != bin {
		impls = append(impls, impl{"C", cmk, cinfo})
	} else {
		fmt.Println("C tools not on PATH: printing gocfs figures only")
	}

	names := []string{"mkcomposefs DIR", "mkcomposefs --from-file", "composefs-info dump"}
	results := map[string][]figure{}
	images := map[string][]byte{}
	for _, im := range impls {
		img := filepath.Join(tmp, im.name+".cfs")
		dump := filepath.Join(tmp, im.name+".dump")
		img2 := filepath.Join(tmp, im.name+"2.cfs")
		// In the order of names; the dump step needs the first image and
		// the from-file step the dump, so run them dir, dump, from-file.
		steps := []struct {
			fig  int
			args []string
			out  string
		}{
			{0, []string{im.mk, src, img}, ""},
			{2, []string{im.info, "dump", img}, dump},
			{1, []string{im.mk, "--from-file", dump, img2}, ""},
		}
		figs := make([]figure, len(names))
		for _, st := range steps {
			best := figure{}
			for r := 0; r < runs; r++ {
				f, err := measure(st.args, st.out)
				if err != nil {
					return fmt.Errorf("%s: %w", im.name, err)
				}
				if r == 0 || f.wall < best.wall {
					best.wall = f.wall
				}
				if r == 0 || f.cpu < best.cpu {
					best.cpu = f.cpu
				}
				best.rss = max(best.rss, f.rss)
			}
			figs[st.fig] = best
		}
		results[im.name] = figs
		b, err := os.ReadFile(img)
		if err != nil {
			return err
		}
		images[im.name] = b
	}

	fmt.Printf("tree %s, best of %d runs\n", src, runs)
	fmt.Printf("%-24s %8s %8s %8s", "figure", "wall s", "cpu s", "rss MiB")
	if len(impls) > 1 {
		fmt.Printf(" | %8s %8s %8s | %7s %7s %7s", "C wall", "C cpu", "C rss", "wall x", "cpu x", "rss x")
	}
	fmt.Println()
	for i, n := range names {
		g := results["gocfs"][i]
		fmt.Printf("%-24s %8.3f %8.3f %8.1f", n, g.wall.Seconds(), g.cpu.Seconds(), float64(g.rss)/1024)
		if c, ok := results["C"]; ok {
			fmt.Printf(" | %8.3f %8.3f %8.1f | %7.2f %7.2f %7.2f", c[i].wall.Seconds(), c[i].cpu.Seconds(), float64(c[i].rss)/1024,
				g.wall.Seconds()/c[i].wall.Seconds(), g.cpu.Seconds()/c[i].cpu.Seconds(), float64(g.rss)/float64(c[i].rss))
		}
		fmt.Println()
	}
	fmt.Println("goals: wall x <= 0.5 (directory), <= 0.7 (from-file), <= 1.0 (dump); rss x <= 1.0")
	if c, ok := images["C"]; ok {
		fmt.Printf("images byte-identical to C: %v\n", bytes.Equal(c, images["gocfs"]))
	}
	veritySpeed()
	return nil
}

func measure(args []string, stdout string) (figure, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	if stdout != "" {
		f, err := os.Create(stdout)
		if err != nil {
			return figure{}, err
		}
		defer f.Close()
		cmd.Stdout = f
	}
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return figure{}, fmt.Errorf("%v: %w", args, err)
	}
	wall := time.Since(start)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return figure{wall: wall, cpu: cpu, rss: ru.Maxrss}, nil
}

// veritySpeed compares digest throughput with the plain hash over the same
// bytes, on one core.
func veritySpeed() {
	runtime.GOMAXPROCS(1)
	data := make([]byte, 256<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	timeIt := func(f func()) float64 {
		best := time.Duration(1 << 62)
		for r := 0; r < 3; r++ {
			start := time.Now()
			f()
			best = min(best, time.Since(start))
		}
		return float64(len(data)) / best.Seconds() / (1 << 20)
	}
	for _, alg := range []verity.Algorithm{verity.SHA256, verity.SHA512} {
		raw := timeIt(func() {
			if alg == verity.SHA256 {
				sha256.Sum256(data)
			} else {
				sha512.Sum512(data)
			}
		})
		v := timeIt(func() { verity.DigestBytes(data, alg) })
		fmt.Printf("fs-verity %s: %.0f MiB/s, plain %s %.0f MiB/s, ratio %.2f (goal >= 0.90)\n", alg, v, alg, raw, v/raw)
	}
}
