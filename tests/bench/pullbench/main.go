// Command pullbench measures pulling a container image into a composefs
// repository: wall time, CPU time and peak RSS of `cfsctl oci pull` from a
// local registry into an empty repository, and, when the tools are found,
// of what one does with the C composefs tools instead: `skopeo copy` to an
// OCI layout, unpacking the layers (umoci, or tar), and `mkcomposefs
// --digest-store`, printing the ratio ours/theirs.
//
// The image is made here, deterministically, to look like a distribution:
// about 10k files and 300 MiB over four gzip layers, mostly small files
// and a few large ones, text that compresses and data that does not, with
// symlinks, hardlinks, and an update layer that replaces, deletes and
// hides files. The registry is Debian's docker-registry; without it the
// benchmark prints SKIP and exits successfully.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/gocfs/gocfs/tests/registry"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding gocfs's cfsctl")
	runs := flag.Int("runs", 3, "runs per figure, each into fresh directories; the fastest is kept")
	files := flag.Int("files", 10000, "regular files in the image's layers")
	mib := flag.Int64("mib", 300, "MiB of file data in the image's layers")
	cmk := flag.String("c-mkcomposefs", "", "C mkcomposefs to compare with (default: mkcomposefs on PATH, unless it is the one in -bin)")
	untar := flag.String("untar", "", "internal: apply the layer blobs named by the arguments to this directory with tar, and exit")
	push := flag.String("push", "", "internal: build the image, push it to this docker:// reference, print its description, and exit")
	client := flag.String("client", "", "internal: with -push, the registry's client configuration directory")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	switch {
	case *untar != "":
		err = untarLayers(ctx, *untar, flag.Args())
	case *push != "":
		var p *pushed
		if p, err = pushImage(ctx, *push, *client, *files, *mib<<20); err == nil {
			err = json.NewEncoder(os.Stdout).Encode(p)
		}
	case flag.NArg() > 0 || *runs < 1:
		flag.Usage()
		stop()
		os.Exit(2)
	default:
		err = run(ctx, config{bin: *bin, runs: *runs, files: *files, bytes: *mib << 20, cmk: *cmk})
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pullbench:", err)
		os.Exit(1)
	}
}

type config struct {
	bin   string
	runs  int
	files int
	bytes int64
	cmk   string
}

func run(ctx context.Context, cfg config) (err error) {
	if cfg.bin, err = filepath.Abs(cfg.bin); err != nil {
		return err
	}
	cfsctl := filepath.Join(cfg.bin, "cfsctl")
	if _, err := os.Stat(cfsctl); err != nil {
		return fmt.Errorf("cfsctl: %w (build it first: make build)", err)
	}
	theirs, missing := findTheirs(cfg.bin, cfg.cmk)

	tmp, err := os.MkdirTemp("", "pullbench")
	if err != nil {
		return err
	}
	defer func() {
		if rerr := os.RemoveAll(tmp); err == nil && rerr != nil {
			err = rerr
		}
	}()
	regDir := filepath.Join(tmp, "registry")
	if err := os.Mkdir(regDir, 0o755); err != nil {
		return err
	}
	reg, err := registry.Launch(regDir)
	if errors.Is(err, registry.ErrNotInstalled) {
		fmt.Printf("SKIP pull benchmark: %v\n", err)
		return nil
	}
	if err != nil {
		return err
	}
	defer reg.Stop()

	img, err := pushInChild(ctx, reg, cfg.files, cfg.bytes)
	if err != nil {
		return err
	}
	fmt.Printf("image: %d layers (gzip), %d regular files, %.1f MiB of file data, %.1f MiB of tar, %.1f MiB of blobs; built in %.1f s, pushed in %.1f s\n",
		img.Layers, img.Files, mib(img.Data), mib(img.Tar), mib(img.Blobs), img.BuildTime.Seconds(), img.PushTime.Seconds())

	ours, digest, err := pullOurs(ctx, cfsctl, reg, img.Ref, tmp, cfg.runs)
	if err != nil {
		return err
	}
	var steps []step
	if theirs != nil {
		if steps, err = theirs.run(ctx, reg, img.Ref, tmp, cfg.runs); err != nil {
			return err
		}
	}
	report(img, cfg.runs, ours, digest, steps, missing)
	return nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// report prints the figures of both pipelines, each step's and the total
// of theirs, with throughput in MiB of blobs fetched and of file data
// written per second of wall time.
func report(img *pushed, runs int, ours figure, digest string, theirs []step, missing []string) {
	fmt.Printf("best of %d runs, fresh repository and directories each run; image %s\n", runs, digest)
	fmt.Printf("%-34s %8s %8s %8s %10s %10s\n", "step", "wall s", "cpu s", "rss MiB", "blob MiB/s", "data MiB/s")
	line := func(name string, f figure) {
		fmt.Printf("%-34s %8.3f %8.3f %8.1f %10.1f %10.1f\n", name, f.wall.Seconds(), f.cpu.Seconds(), float64(f.rss)/1024,
			mib(img.Blobs)/f.wall.Seconds(), mib(img.Data)/f.wall.Seconds())
	}
	line("gocfs: cfsctl oci pull", ours)
	if len(theirs) == 0 {
		fmt.Printf("theirs not measured, missing: %s\n", strings.Join(missing, ", "))
		return
	}
	for _, s := range theirs[:len(theirs)-1] {
		line("theirs: "+s.name, s.fig)
	}
	total := theirs[len(theirs)-1].fig
	line("theirs: total", total)
	fmt.Printf("ours/theirs: wall %.2f, cpu %.2f, rss %.2f (goal: wall <= 0.5)\n",
		ours.wall.Seconds()/total.wall.Seconds(), ours.cpu.Seconds()/total.cpu.Seconds(), float64(ours.rss)/float64(total.rss))
}
