// Command cfsctl manages a composefs repository: OCI pulls, images, tags,
// garbage collection and checks.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/scan"
	"github.com/gocfs/gocfs/mount"
	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/store/oci"
	"github.com/gocfs/gocfs/verity"
)

// defaultRepo is where a system keeps its repository (the boot path mounts
// images from it); users without root get a repository of their own.
func defaultRepo() string {
	if os.Geteuid() == 0 {
		return "/sysroot/composefs"
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".var/lib/composefs")
	}
	return ""
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := &cli.App{
		Name:  "cfsctl",
		Usage: "manage a composefs repository",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repo", Value: defaultRepo(), Usage: "repository `DIR`"},
			&cli.BoolFlag{Name: "json", Usage: "print results as JSON"},
		},
		Commands: []*cli.Command{
			{Name: "init", Usage: "create a repository", Flags: []cli.Flag{
				&cli.BoolFlag{Name: "insecure", Usage: "do not require fs-verity"},
				&cli.StringFlag{Name: "algorithm", Value: "sha256", Usage: "object digest: sha256 or sha512 (also fsverity-sha256-12 / fsverity-sha512-12)"},
				&cli.IntFlag{Name: "erofs-format", Value: 1, Usage: "EROFS format of the images made: 1 (mkcomposefs --min-version=1, composefs-rs's default) or 0 (mkcomposefs's default)"},
			}, Action: cmdInit},
			{Name: "status", Usage: "show the repository's settings and contents", Action: withRepo(cmdStatus)},
			{Name: "images", Usage: "list the EROFS images and their refs", Action: withRepo(cmdImages)},
			{Name: "create-image", Usage: "build an image from a directory", ArgsUsage: "DIR [NAME]", Action: withRepo(cmdCreateImage)},
			{Name: "import-tar", Usage: "store a tar stream (stdin or FILE) as a layer splitstream", ArgsUsage: "ID [FILE]", Action: withRepo(cmdImportTar)},
			{Name: "gc", Usage: "remove what no ref, boot argument or mount reaches", Flags: []cli.Flag{
				&cli.BoolFlag{Name: "dry-run", Usage: "count, remove nothing"},
			}, Action: withRepo(cmdGC)},
			{Name: "fsck", Usage: "check the repository", Flags: []cli.Flag{
				&cli.BoolFlag{Name: "repair", Usage: "fix what can be fixed"},
				&cli.BoolFlag{Name: "metadata-only", Usage: "skip hashing every object"},
			}, Action: withRepo(cmdFsck)},
			{Name: "enable-verity", Usage: "enable fs-verity on every object, then mark the repository secure (for repositories filled where fs-verity was missing)", Action: withRepo(cmdEnableVerity)},
			{Name: "mount", Usage: "mount a repository image", ArgsUsage: "NAME|DIGEST DIR", Flags: []cli.Flag{
				&cli.StringFlag{Name: "upperdir", Usage: "writable upper `DIR` (with --workdir)"},
				&cli.StringFlag{Name: "workdir", Usage: "overlay work `DIR`"},
			}, Action: withRepo(cmdMount)},
			{Name: "umount", Usage: "unmount a composefs mount", ArgsUsage: "DIR", Action: cmdUmount},
			{Name: "oci", Usage: "OCI images", Subcommands: []*cli.Command{
				{Name: "pull", Usage: "pull an image into the repository", ArgsUsage: "TRANSPORT:REF [TAG]", Flags: []cli.Flag{
					&cli.BoolFlag{Name: "tls-verify", Value: true, Usage: "verify registry TLS certificates"},
					&cli.BoolFlag{Name: "bootable", Usage: "also make the boot image (/boot and /sysroot emptied)"},
				}, Action: withRepo(func(c *cli.Context, r *store.Repository) error { return cmdPull(ctx, c, r) })},
				{Name: "images", Usage: "list pulled images", Action: withRepo(cmdOCIImages)},
				{Name: "tag", Usage: "tag an image", ArgsUsage: "IMAGE TAG", Action: withRepo(cmdTag)},
				{Name: "untag", Usage: "remove a tag", ArgsUsage: "TAG", Action: withRepo(cmdUntag)},
				{Name: "inspect", Usage: "show an image's manifest and config", ArgsUsage: "IMAGE", Action: withRepo(cmdInspect)},
				{Name: "compute-id", Usage: "print the fs-verity digest of an image's EROFS", ArgsUsage: "IMAGE", Flags: []cli.Flag{
					&cli.BoolFlag{Name: "bootable", Usage: "the boot image"},
				}, Action: withRepo(cmdComputeID)},
			}},
			initramfsCommand(),
			bootCommand(),
			ostreeCommand(ctx),
		},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "cfsctl:", err)
		os.Exit(1)
	}
}

func withRepo(fn func(*cli.Context, *store.Repository) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		path := c.String("repo")
		if path == "" {
			return errors.New("no repository: use --repo")
		}
		r, err := store.Open(path)
		if err != nil {
			return err
		}
		defer r.Close()
		return fn(c, r)
	}
}

// output prints v as JSON with --json, else calls text.
func output(c *cli.Context, v any, text func(w io.Writer)) error {
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(os.Stdout)
	return nil
}

func cmdInit(c *cli.Context) error {
	alg, err := verity.ParseAlgorithm(trimAlgorithm(c.String("algorithm")))
	if err != nil {
		return err
	}
	format := c.Int("erofs-format")
	if format != 0 && format != 1 {
		return fmt.Errorf("--erofs-format %d: want 0 or 1", format)
	}
	r, err := store.Init(c.String("repo"), store.InitOptions{Algorithm: alg, Insecure: c.Bool("insecure"), ErofsV0: format == 0})
	if err != nil {
		return err
	}
	defer r.Close()
	return output(c, map[string]any{"path": r.Path(), "algorithm": r.Algorithm().String(), "secure": r.Secure()}, func(w io.Writer) {
		fmt.Fprintf(w, "initialized %s (fsverity-%s-12, secure %v)\n", r.Path(), r.Algorithm(), r.Secure())
	})
}

// trimAlgorithm accepts composefs-rs's algorithm names as well.
func trimAlgorithm(s string) string {
	switch s {
	case "fsverity-sha256-12":
		return "sha256"
	case "fsverity-sha512-12":
		return "sha512"
	}
	return s
}

func cmdStatus(c *cli.Context, r *store.Repository) error {
	images, err := r.Refs(store.Images)
	if err != nil {
		return err
	}
	streams, err := r.Refs(store.Streams)
	if err != nil {
		return err
	}
	ro, why := r.ReadOnly()
	st := map[string]any{
		"path": r.Path(), "algorithm": "fsverity-" + r.Algorithm().String() + "-12", "secure": r.Secure(),
		"readOnly": ro, "readOnlyReason": why, "erofsVersion": r.ErofsVersion(),
		"imageRefs": images, "streamRefs": streams,
	}
	return output(c, st, func(w io.Writer) {
		fmt.Fprintf(w, "repository  %s\nalgorithm   fsverity-%s-12\nsecure      %v\nerofs       format %d\n", r.Path(), r.Algorithm(), r.Secure(), r.ErofsVersion())
		if ro {
			fmt.Fprintf(w, "read-only   %s\n", why)
		}
		fmt.Fprintf(w, "image refs  %d\nstream refs %d\n", len(images), len(streams))
	})
}

func cmdImages(c *cli.Context, r *store.Repository) error {
	refs, err := r.Refs(store.Images)
	if err != nil {
		return err
	}
	return output(c, refs, func(w io.Writer) {
		for _, name := range sortedKeys(refs) {
			fmt.Fprintf(w, "%s\t%s\n", refs[name], name)
		}
	})
}

func cmdCreateImage(c *cli.Context, r *store.Repository) error {
	if c.NArg() < 1 || c.NArg() > 2 {
		return errors.New("usage: cfsctl create-image DIR [NAME]")
	}
	root, err := scan.Dir(c.Args().Get(0), scan.Options{Store: r.Objects()})
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := erofs.Write(pw, root, erofs.WriteOptions{Versions: &erofs.VersionRange{Min: r.ErofsVersion(), Max: erofs.MaxFormatVersion}})
		pw.CloseWithError(err)
	}()
	id, err := r.WriteImage(pr, c.Args().Get(1))
	if err != nil {
		return err
	}
	return output(c, map[string]string{"image": hex.EncodeToString(id)}, func(w io.Writer) {
		fmt.Fprintln(w, hex.EncodeToString(id))
	})
}

func cmdImportTar(c *cli.Context, r *store.Repository) error {
	if c.NArg() < 1 || c.NArg() > 2 {
		return errors.New("usage: cfsctl import-tar ID [FILE]")
	}
	in := io.Reader(os.Stdin)
	if c.NArg() == 2 {
		f, err := os.Open(c.Args().Get(1))
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	id, err := oci.ImportTar(r, in, c.Args().Get(0))
	if err != nil {
		return err
	}
	return output(c, map[string]string{"stream": hex.EncodeToString(id)}, func(w io.Writer) {
		fmt.Fprintln(w, hex.EncodeToString(id))
	})
}

func cmdGC(c *cli.Context, r *store.Repository) error {
	live, err := r.LiveImages()
	if err != nil {
		return err
	}
	res, err := r.GC(store.GCOptions{DryRun: c.Bool("dry-run"), ExtraRoots: live})
	if err != nil {
		return err
	}
	return output(c, res, func(w io.Writer) {
		verb := "removed"
		if c.Bool("dry-run") {
			verb = "would remove"
		}
		fmt.Fprintf(w, "%s %d objects (%d bytes), %d images, %d streams, %d temporary files\n",
			verb, res.ObjectsRemoved, res.ObjectsBytes, res.ImagesPruned, res.StreamsPruned, res.TempRemoved)
	})
}

func cmdFsck(c *cli.Context, r *store.Repository) error {
	opts := store.FsckOptions{Repair: c.Bool("repair"), MetadataOnly: c.Bool("metadata-only")}
	if opts.Repair {
		opts.Repairer = oci.Repair
	}
	rep, err := r.Fsck(opts)
	if err != nil {
		return err
	}
	if err := output(c, rep, func(w io.Writer) {
		fmt.Fprintf(w, "%d objects, %d streams, %d images checked\n", rep.ObjectsChecked, rep.StreamsChecked, rep.ImagesChecked)
		for _, p := range rep.Errors {
			fmt.Fprintln(w, p)
		}
	}); err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("%d problems found", countUnrepaired(rep))
	}
	return nil
}

func cmdEnableVerity(c *cli.Context, r *store.Repository) error {
	n, err := r.EnableVerity()
	if err != nil {
		return err
	}
	return output(c, map[string]any{"sealed": n, "secure": true}, func(w io.Writer) {
		fmt.Fprintf(w, "fs-verity enabled on %d objects; the repository is secure\n", n)
	})
}

func countUnrepaired(rep *store.FsckReport) int {
	n := 0
	for _, p := range rep.Errors {
		if !p.Repaired {
			n++
		}
	}
	return n
}

func cmdPull(ctx context.Context, c *cli.Context, r *store.Repository) error {
	if c.NArg() < 1 || c.NArg() > 2 {
		return errors.New("usage: cfsctl oci pull TRANSPORT:REF [TAG]")
	}
	opts := oci.PullOptions{Tag: c.Args().Get(1), Bootable: c.Bool("bootable")}
	if c.IsSet("tls-verify") {
		v := c.Bool("tls-verify")
		opts.TLSVerify = &v
	}
	if !c.Bool("json") && isTerminal(os.Stderr) {
		opts.Progress = os.Stderr
	}
	res, err := oci.Pull(ctx, r, c.Args().Get(0), opts)
	if err != nil {
		return err
	}
	return output(c, res, func(w io.Writer) {
		fmt.Fprintf(w, "manifest %s\nconfig   %s\nimage    %s\n", res.ManifestDigest, res.ConfigDigest, res.Image)
		if len(res.BootImage) > 0 {
			fmt.Fprintf(w, "boot     %s\n", res.BootImage)
		}
	})
}

func cmdOCIImages(c *cli.Context, r *store.Repository) error {
	list, err := oci.Images(r)
	if err != nil {
		return err
	}
	return output(c, list, func(w io.Writer) {
		for _, im := range list {
			fmt.Fprintln(w, im)
		}
	})
}

func cmdTag(c *cli.Context, r *store.Repository) error {
	if c.NArg() != 2 {
		return errors.New("usage: cfsctl oci tag IMAGE TAG")
	}
	return oci.Tag(r, c.Args().Get(0), c.Args().Get(1))
}

func cmdUntag(c *cli.Context, r *store.Repository) error {
	if c.NArg() != 1 {
		return errors.New("usage: cfsctl oci untag TAG")
	}
	return oci.Untag(r, c.Args().Get(0))
}

func cmdInspect(c *cli.Context, r *store.Repository) error {
	if c.NArg() != 1 {
		return errors.New("usage: cfsctl oci inspect IMAGE")
	}
	ins, err := oci.Inspect(r, c.Args().Get(0))
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(ins)
}

func cmdComputeID(c *cli.Context, r *store.Repository) error {
	if c.NArg() != 1 {
		return errors.New("usage: cfsctl oci compute-id IMAGE")
	}
	id, err := oci.ComputeID(r, c.Args().Get(0), c.Bool("bootable"))
	if err != nil {
		return err
	}
	return output(c, map[string]string{"image": hex.EncodeToString(id)}, func(w io.Writer) {
		fmt.Fprintln(w, hex.EncodeToString(id))
	})
}

// cmdMount mounts an image of the repository: by digest it is measured
// first; objects must have fs-verity in a secure repository.
func cmdMount(c *cli.Context, r *store.Repository) error {
	if c.NArg() != 2 {
		return errors.New("usage: cfsctl mount NAME|DIGEST DIR")
	}
	img, id, err := r.OpenImage(c.Args().Get(0))
	if err != nil {
		return err
	}
	defer img.Close()
	opts := mount.Options{
		Image:      img,
		ObjectDirs: []string{r.Objects().Path()},
		ReadOnly:   c.String("upperdir") == "",
		UpperDir:   c.String("upperdir"),
		WorkDir:    c.String("workdir"),
		Digest:     id,
		Verity:     mount.VerityTry,
		Source:     store.MountSource(hex.EncodeToString(id)),
	}
	if r.Secure() {
		opts.Verity = mount.VerityRequire
	}
	info, err := mount.Mount(c.Args().Get(1), opts)
	if err != nil {
		return err
	}
	return output(c, info, func(w io.Writer) {
		fmt.Fprintf(w, "mounted %x on %s (%s tier, verity %v)\n", id, c.Args().Get(1), info.Tier, info.Verity)
	})
}

func cmdUmount(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("usage: cfsctl umount DIR")
	}
	return mount.Unmount(c.Args().Get(0))
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
