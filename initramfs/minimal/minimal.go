// Package minimal writes a minimal initramfs for composefs: a newc cpio
// archive whose /init is composefs-prepare-root, which in its init mode
// loads the kernel modules the archive lists, mounts the root= device,
// mounts the composefs image on it as the new root and switches to it.
// There is no shell, no udev and no init system: the archive holds
//
//	init                                 composefs-prepare-root, 0755
//	dev/console                          character device 5:1, for the init's output
//	dev/ proc/ sys/ run/ sysroot/        mount points
//	usr/lib/modules/RELEASE/...          the module files, at their paths in modules.dep
//	usr/lib/composefs/modules.load       the load order (package kmod)
//	usr/lib/composefs/prepare-root.conf  optional configuration
//	etc/composefs/digest                 optional, the image to boot (package extension)
//	etc/composefs/prepare-root.conf      optional, from an extension
//
// The modules are the closure (package kmod) of the requested names, those
// built into the kernel left out. The archive depends only on its inputs:
// entries are sorted by name, owned by root, dated 0 and numbered in
// order, so building twice gives the same bytes.
package minimal

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/gocfs/gocfs/initramfs/config"
	"github.com/gocfs/gocfs/initramfs/extension"
	"github.com/gocfs/gocfs/initramfs/kmod"
)

// DefaultModules are what booting a composefs root from a virtio disk
// needs: the image and overlay filesystems, loop devices (for images the
// kernel cannot mount from a file), ext4 for the physical root and the
// virtio block driver with its PCI transport. Built-in ones are skipped.
var DefaultModules = []string{"erofs", "overlay", "loop", "ext4", "virtio_blk", "virtio_pci"}

// DefaultModulesDir is where a system keeps its kernels' modules.
const DefaultModulesDir = "/lib/modules"

// modulesRoot is where the archive keeps module files.
const modulesRoot = "usr/lib/modules"

// Options describe an initramfs.
type Options struct {
	// KernelRelease is the kernel's release (uname -r).
	KernelRelease string
	// ModulesDir holds a directory per release with depmod's index;
	// default DefaultModulesDir.
	ModulesDir string
	// Init is the composefs-prepare-root program, installed as /init.
	Init string
	// Modules are the modules to load; nil means DefaultModules.
	Modules []string
	// Config, if not nil, is installed as the distribution
	// configuration (config.UsrPath).
	Config []byte
	// Extension, if not nil, is included: its digest pins the image
	// and its configuration overrides Config.
	Extension *extension.Extension
}

// Result tells what went into an archive.
type Result struct {
	// Modules are the module files, as modules.dep names them, in
	// load order.
	Modules []string
	// Builtin are the requested modules the kernel has built in.
	Builtin []string
}

// Write writes the initramfs opts describe to w.
func Write(w io.Writer, opts Options) (*Result, error) {
	if opts.KernelRelease == "" || strings.ContainsRune(opts.KernelRelease, '/') || opts.KernelRelease == "." || opts.KernelRelease == ".." {
		return nil, fmt.Errorf("initramfs: bad kernel release %q", opts.KernelRelease)
	}
	if opts.Init == "" {
		return nil, fmt.Errorf("initramfs: no init program")
	}
	modDir := opts.ModulesDir
	if modDir == "" {
		modDir = DefaultModulesDir
	}
	names := opts.Modules
	if names == nil {
		names = DefaultModules
	}
	ix, err := kmod.Open(filepath.Join(modDir, opts.KernelRelease))
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	res := &Result{}
	for _, n := range names {
		if ix.Builtin(n) {
			res.Builtin = append(res.Builtin, n)
		}
	}
	if res.Modules, err = ix.Closure(names...); err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}

	a := newArchive()
	for _, d := range []string{"dev", "proc", "sys", "run", "sysroot"} {
		a.dir(d)
	}
	a.add(cpio.CharDev("dev/console", 0o600, 5, 1))
	prog, err := os.ReadFile(opts.Init)
	if err != nil {
		return nil, fmt.Errorf("initramfs: init program: %w", err)
	}
	a.file("init", 0o755, prog)

	inArchive := make([]string, len(res.Modules))
	for i, m := range res.Modules {
		b, err := os.ReadFile(filepath.Join(ix.Dir(), m))
		if err != nil {
			return nil, fmt.Errorf("initramfs: module: %w", err)
		}
		name := path.Join(modulesRoot, opts.KernelRelease, m)
		a.file(name, 0o644, b)
		inArchive[i] = "/" + name
	}
	var list strings.Builder
	if err := kmod.WriteList(&list, opts.KernelRelease, inArchive); err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	a.file(kmod.ListPath, 0o644, []byte(list.String()))

	if opts.Config != nil {
		var c config.Config
		if err := config.Parse("configuration", strings.NewReader(string(opts.Config)), &c); err != nil {
			return nil, fmt.Errorf("initramfs: %w", err)
		}
		a.file(config.UsrPath, 0o644, opts.Config)
	}
	if e := opts.Extension; e != nil {
		// The extension's own writer checks the digest and configuration.
		if err := extension.Write(io.Discard, e); err != nil {
			return nil, fmt.Errorf("initramfs: %w", err)
		}
		a.file(config.DigestPath, 0o644, []byte(e.Digest.String()+"\n"))
		if e.Config != nil {
			a.file(config.EtcPath, 0o644, e.Config)
		}
	}
	if err := a.write(w); err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	return res, nil
}

// archive collects entries and writes them sorted, each directory before
// what it holds.
type archive struct {
	recs map[string]cpio.Record
}

func newArchive() *archive { return &archive{recs: map[string]cpio.Record{}} }

func (a *archive) add(r cpio.Record) {
	for d := path.Dir(r.Name); d != "."; d = path.Dir(d) {
		a.dir(d)
	}
	a.recs[r.Name] = r
}

func (a *archive) dir(name string) {
	if _, ok := a.recs[name]; !ok {
		a.add(cpio.Directory(name, 0o755))
	}
}

func (a *archive) file(name string, perm uint64, content []byte) {
	a.add(cpio.StaticRecord(content, cpio.Info{Name: name, Mode: cpio.S_IFREG | perm}))
}

func (a *archive) write(w io.Writer) error {
	names := make([]string, 0, len(a.recs))
	for n := range a.recs {
		names = append(names, n)
	}
	slices.Sort(names)
	cw := cpio.Newc.Writer(w)
	for i, n := range names {
		r := a.recs[n]
		r.Ino = uint64(i + 1)
		r.NLink = 1
		if r.Mode&cpio.S_IFMT == cpio.S_IFDIR {
			r.NLink = 2
		}
		r.UID, r.GID, r.MTime = 0, 0, 0
		if err := cw.WriteRecord(r); err != nil {
			return fmt.Errorf("write %s: %w", n, err)
		}
	}
	return cpio.WriteTrailer(cw)
}
