package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/gocfs/gocfs/initramfs/extension"
	"github.com/gocfs/gocfs/initramfs/minimal"
)

// initramfsBuildCommand is "initramfs build": a whole minimal initramfs
// around composefs-prepare-root, for systems (and tests) without an
// initramfs generator.
func initramfsBuildCommand() *cli.Command {
	return &cli.Command{Name: "build", Usage: "write a minimal initramfs whose init is composefs-prepare-root", Flags: []cli.Flag{
		&cli.StringFlag{Name: "kernel-release", Required: true, Usage: "kernel `RELEASE` (uname -r) the modules are for"},
		&cli.StringFlag{Name: "modules-dir", Value: minimal.DefaultModulesDir, Usage: "`DIR` holding RELEASE/modules.dep and the module files"},
		&cli.StringFlag{Name: "prepare-root", Required: true, Usage: "composefs-prepare-root `PROGRAM` to install as /init (statically linked)"},
		&cli.StringSliceFlag{Name: "module", Usage: "`NAME` of a module to load at boot besides the defaults (" + strings.Join(minimal.DefaultModules, ", ") + "); repeatable"},
		&cli.BoolFlag{Name: "no-default-modules", Usage: "load only the --module modules"},
		&cli.StringFlag{Name: "config", Usage: "prepare-root configuration `FILE`, installed as the distribution's"},
		&cli.StringFlag{Name: "extension", Usage: "initramfs extension `FILE` (cfsctl initramfs extension) whose digest and configuration to include"},
		&cli.StringFlag{Name: "digest", Usage: "image `DIGEST` to pin, as in the extension"},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Required: true, Usage: "archive `FILE` to write"},
	}, Action: cmdInitramfsBuild}
}

func cmdInitramfsBuild(c *cli.Context) error {
	if c.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", c.Args().Slice())
	}
	opts := minimal.Options{
		KernelRelease: c.String("kernel-release"),
		ModulesDir:    c.String("modules-dir"),
		Init:          c.String("prepare-root"),
	}
	// An empty, not nil, list: a kernel with everything built in needs
	// no module.
	opts.Modules = []string{}
	if !c.Bool("no-default-modules") {
		opts.Modules = append(opts.Modules, minimal.DefaultModules...)
	}
	opts.Modules = append(opts.Modules, c.StringSlice("module")...)
	var err error
	if p := c.String("config"); p != "" {
		if opts.Config, err = os.ReadFile(p); err != nil {
			return err
		}
	}
	switch ext, dig := c.String("extension"), c.String("digest"); {
	case ext != "" && dig != "":
		return fmt.Errorf("--extension and --digest: give one")
	case ext != "":
		f, err := os.Open(ext)
		if err != nil {
			return err
		}
		opts.Extension, err = extension.Read(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("--extension %s: %w", ext, err)
		}
	case dig != "":
		d, err := parseDigestFlag(dig)
		if err != nil {
			return fmt.Errorf("--digest: %w", err)
		}
		opts.Extension = &extension.Extension{Digest: d}
	}
	var buf bytes.Buffer
	res, err := minimal.Write(&buf, opts)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(c.String("output"), func(w io.Writer) error {
		_, err := w.Write(buf.Bytes())
		return err
	}); err != nil {
		return err
	}
	if len(res.Builtin) > 0 {
		fmt.Fprintf(os.Stderr, "built into the kernel, not included: %s\n", strings.Join(res.Builtin, " "))
	}
	fmt.Fprintf(os.Stderr, "%s: %d bytes, %d modules\n", c.String("output"), buf.Len(), len(res.Modules))
	return nil
}
