// Command cfsmount serves a composefs image read-only through FUSE, showing
// what the kernel's composefs mount of the image shows, without needing
// EROFS or overlayfs in the kernel, or root.
//
//	cfsmount [OPTIONS] IMAGE MOUNTPOINT --basedir DIR[:DIR...]
//	cfsmount [OPTIONS] NAME MOUNTPOINT --repo REPO
//
// It stays in the foreground until the image is unmounted (umount,
// fusermount3 -u) or it receives SIGINT or SIGTERM, on which it unmounts
// the image, lazily if files are still open in it, and exits once they are
// closed; a second signal makes it exit at once. The exit status is 0
// after a clean unmount, 1 on errors and 2 on usage errors.
package main

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/mount/cfsfuse"
	"github.com/gocfs/gocfs/store"
)

const usage = `Usage: cfsmount [OPTIONS] IMAGE|NAME MOUNTPOINT

Serve a composefs image read-only through FUSE until it is unmounted
(umount, fusermount3 -u, SIGINT or SIGTERM).

Options:
  --basedir DIR[:DIR...]  object directories holding the external files'
                          data, searched in order
  --repo REPO             the image is the ref NAME or the hex digest NAME in
                          the composefs repository REPO, which holds the data
  --verify                check each object's fs-verity digest when it is
                          opened; a mismatch makes the open fail with EIO
  --allow-other           let other users use the mount (always so for root)
  -f, --foreground        stay in the foreground (the default, and the only
                          mode)
  --debug                 log every FUSE request
`

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

// config is what the command line asks for.
type config struct {
	image, mountpoint string
	basedirs          []string
	repo              string
	verify            bool
	allowOther        bool
	debug             bool
}

func run(args []string, stderr io.Writer) int {
	cfg, err := parseArgs(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stderr, usage)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "cfsmount: %v\nTry 'cfsmount --help'.\n", err)
		return 2
	}
	if err := serve(cfg, stderr); err != nil {
		fmt.Fprintf(stderr, "cfsmount: %v\n", err)
		return 1
	}
	return 0
}

// parseArgs parses options given before, between or after the operands,
// up to a "--".
func parseArgs(args []string) (*config, error) {
	cfg := new(config)
	var basedir string
	fl := flag.NewFlagSet("cfsmount", flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	fl.StringVar(&basedir, "basedir", "", "")
	fl.StringVar(&cfg.repo, "repo", "", "")
	fl.BoolVar(&cfg.verify, "verify", false, "")
	fl.BoolVar(&cfg.allowOther, "allow-other", false, "")
	fl.BoolVar(&cfg.debug, "debug", false, "")
	// Accepted for the habits of FUSE tools: cfsmount always stays in
	// the foreground.
	var foreground bool
	fl.BoolVar(&foreground, "f", true, "")
	fl.BoolVar(&foreground, "foreground", true, "")
	var operands []string
	for {
		if err := fl.Parse(args); err != nil {
			return nil, err
		}
		rest := fl.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			operands = append(operands, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		operands = append(operands, rest[0])
		args = rest[1:]
	}
	switch {
	case len(operands) != 2:
		return nil, fmt.Errorf("expected IMAGE and MOUNTPOINT, got %d operands", len(operands))
	case basedir != "" && cfg.repo != "":
		return nil, errors.New("--basedir and --repo exclude each other")
	case basedir == "" && cfg.repo == "":
		return nil, errors.New("no object directories: give --basedir or --repo")
	}
	cfg.image, cfg.mountpoint = operands[0], operands[1]
	if basedir != "" {
		cfg.basedirs = strings.Split(basedir, ":")
	}
	return cfg, nil
}

func serve(cfg *config, stderr io.Writer) error {
	img, source, dirs, err := openImage(cfg)
	if err != nil {
		return err
	}
	// Signals are caught before mounting: killed while it mounts, the
	// process could be left waiting on its own mount for an answer it can
	// no longer give.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	srv, err := cfsfuse.Mount(cfg.mountpoint, img, cfsfuse.Options{
		ObjectDirs: dirs,
		Verify:     cfg.verify,
		AllowOther: cfg.allowOther,
		Source:     source,
		Logf:       func(format string, args ...any) { fmt.Fprintf(stderr, "cfsmount: "+format+"\n", args...) },
		Debug:      cfg.debug,
	})
	if err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		srv.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-sigs:
	}
	if err := srv.Unmount(); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case s := <-sigs:
		return fmt.Errorf("%v while files are still open in %s: exiting, the mount is detached", s, cfg.mountpoint)
	}
}

// openImage opens the image the command line names and returns it, the
// source to show in the mount table and the object directories.
func openImage(cfg *config) (*erofs.Image, string, []string, error) {
	if cfg.repo == "" {
		f, err := os.Open(cfg.image)
		if err != nil {
			return nil, "", nil, err
		}
		defer f.Close()
		img, err := cfsfuse.ReadImage(f)
		if err != nil {
			return nil, "", nil, err
		}
		source, err := filepath.Abs(cfg.image)
		if err != nil {
			source = cfg.image
		}
		return img, source, cfg.basedirs, nil
	}
	// The repository is closed again once the image is read: holding it
	// open would hold off its garbage collection for as long as the mount
	// lasts.
	repo, err := store.Open(cfg.repo)
	if err != nil {
		return nil, "", nil, err
	}
	defer repo.Close()
	f, digest, err := repo.OpenImage(cfg.image)
	if err != nil {
		return nil, "", nil, err
	}
	defer f.Close()
	img, err := cfsfuse.ReadImage(f)
	if err != nil {
		return nil, "", nil, err
	}
	root, err := filepath.Abs(repo.Path())
	if err != nil {
		root = repo.Path()
	}
	return img, filepath.Join(root, "images", hex.EncodeToString(digest)), []string{repo.Objects().Path()}, nil
}
