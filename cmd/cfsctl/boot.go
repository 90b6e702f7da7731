package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/gocfs/gocfs/initramfs/bls"
	"github.com/gocfs/gocfs/initramfs/cmdline"
	"github.com/gocfs/gocfs/initramfs/extension"
)

// initramfsCommand is the "initramfs" command group: the minimal
// initramfs, the extension that carries the digest to prepare-root, and
// appending it to an initramfs.
func initramfsCommand() *cli.Command {
	return &cli.Command{Name: "initramfs", Usage: "make initramfs images and extensions for composefs-prepare-root", Subcommands: []*cli.Command{
		{Name: "extension", Usage: "write a cpio archive carrying the image digest (and configuration)", Flags: []cli.Flag{
			&cli.StringFlag{Name: "digest", Required: true, Usage: "image `DIGEST`: v1-sha256-12:HEX, v1-sha512-12:HEX or HEX, with a leading ? for an insecure boot"},
			&cli.StringFlag{Name: "config", Usage: "prepare-root configuration `FILE` to include"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Required: true, Usage: "archive `FILE` to write"},
		}, Action: cmdInitramfsExtension},
		{Name: "append", Usage: "append an extension to an initramfs", ArgsUsage: "BASE EXT OUT", Action: cmdInitramfsAppend},
		initramfsBuildCommand(),
	}}
}

// bootCommand is the "boot" command group.
func bootCommand() *cli.Command {
	return &cli.Command{Name: "boot", Usage: "boot loader configuration", Subcommands: []*cli.Command{
		{Name: "entry", Usage: "write a Boot Loader Specification (Type 1) entry booting an image", Flags: []cli.Flag{
			&cli.StringFlag{Name: "digest", Required: true, Usage: "image `DIGEST` put on the command line"},
			&cli.StringFlag{Name: "linux", Required: true, Usage: "kernel `PATH`, relative to the boot partition"},
			&cli.StringSliceFlag{Name: "initrd", Usage: "initramfs `PATH`, repeated in load order (base first, then extensions)"},
			&cli.StringFlag{Name: "options", Usage: "kernel command line; composefs arguments in it are replaced"},
			&cli.StringFlag{Name: "title", Usage: "menu title"},
			&cli.StringFlag{Name: "version", Usage: "version, for sorting"},
			&cli.StringFlag{Name: "machine-id", Usage: "machine ID"},
			&cli.StringFlag{Name: "sort-key", Usage: "sort key"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "entry `FILE` to write (default: standard output)"},
		}, Action: cmdBootEntry},
	}}
}

// parseDigestFlag accepts a composefs.digest= value or a bare hex digest.
func parseDigestFlag(s string) (cmdline.Digest, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, cmdline.KeyDigest+"="), cmdline.KeyLegacy+"=")
	if strings.Contains(s, ":") {
		return cmdline.ParseDigest(s)
	}
	return cmdline.ParseLegacy(s)
}

func cmdInitramfsExtension(c *cli.Context) error {
	d, err := parseDigestFlag(c.String("digest"))
	if err != nil {
		return fmt.Errorf("--digest: %w", err)
	}
	e := &extension.Extension{Digest: d}
	if p := c.String("config"); p != "" {
		if e.Config, err = os.ReadFile(p); err != nil {
			return err
		}
	}
	var buf bytes.Buffer
	if err := extension.Write(&buf, e); err != nil {
		return err
	}
	return writeFileAtomic(c.String("output"), func(w io.Writer) error {
		_, err := w.Write(buf.Bytes())
		return err
	})
}

func cmdInitramfsAppend(c *cli.Context) error {
	if c.NArg() != 3 {
		return errors.New("usage: cfsctl initramfs append BASE EXT OUT")
	}
	base, err := os.Open(c.Args().Get(0))
	if err != nil {
		return err
	}
	defer base.Close()
	ext, err := os.Open(c.Args().Get(1))
	if err != nil {
		return err
	}
	defer ext.Close()
	return writeFileAtomic(c.Args().Get(2), func(w io.Writer) error {
		_, err := extension.Append(w, base, ext)
		return err
	})
}

func cmdBootEntry(c *cli.Context) error {
	d, err := parseDigestFlag(c.String("digest"))
	if err != nil {
		return fmt.Errorf("--digest: %w", err)
	}
	e := &bls.Entry{
		Title: c.String("title"), Version: c.String("version"), MachineID: c.String("machine-id"),
		SortKey: c.String("sort-key"), Linux: c.String("linux"), Initrds: c.StringSlice("initrd"),
		Options: bls.SetDigest(c.String("options"), d),
	}
	var buf bytes.Buffer
	if _, err := e.WriteTo(&buf); err != nil {
		return err
	}
	if c.String("output") == "" {
		_, err := os.Stdout.Write(buf.Bytes())
		return err
	}
	return writeFileAtomic(c.String("output"), func(w io.Writer) error {
		_, err := w.Write(buf.Bytes())
		return err
	})
}

// writeFileAtomic writes a file through a temporary file renamed over it,
// so that a boot loader never sees a partial file.
func writeFileAtomic(path string, fill func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := fill(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	ok = true
	return nil
}
