package vm

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/initramfs/cmdline"
	"github.com/gocfs/gocfs/initramfs/extension"
	"github.com/gocfs/gocfs/initramfs/minimal"
	"github.com/gocfs/gocfs/verity"
)

// TestInitramfsBuildCLI checks that cfsctl initramfs build writes what
// package minimal writes for the same options, with the digest given
// directly or through an extension file, and refuses bad flag sets.
func TestInitramfsBuildCLI(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("SKIP: go not found")
	}
	dir := t.TempDir()
	build(t, dir, "../../cmd/cfsctl")
	cfsctl := filepath.Join(dir, "cfsctl")

	const rel = "6.99.0-test"
	mods := filepath.Join(dir, "modules")
	files := map[string]string{
		"modules.dep":                       "kernel/fs/erofs/erofs.ko.xz:\nkernel/fs/overlayfs/overlay.ko.xz:\nkernel/fs/ext4/ext4.ko.xz:\nkernel/fs/xfs/xfs.ko.xz:\n",
		"modules.builtin":                   "kernel/drivers/block/loop.ko\nkernel/drivers/block/virtio_blk.ko\nkernel/drivers/virtio/virtio_pci.ko\n",
		"kernel/fs/erofs/erofs.ko.xz":       "erofs",
		"kernel/fs/overlayfs/overlay.ko.xz": "overlay",
		"kernel/fs/ext4/ext4.ko.xz":         "ext4",
		"kernel/fs/xfs/xfs.ko.xz":           "xfs",
	}
	for name, content := range files {
		p := filepath.Join(mods, rel, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	prog := filepath.Join(dir, "prepare-root")
	if err := os.WriteFile(prog, []byte("init program"), 0o755); err != nil {
		t.Fatal(err)
	}
	d := cmdline.Digest{Algorithm: verity.SHA256, Hex: strings.Repeat("5a", 32), Insecure: true}
	ext := filepath.Join(dir, "ext.cpio")
	var eb bytes.Buffer
	if err := extension.Write(&eb, &extension.Extension{Digest: d, Config: []byte("[etc]\nmount = bind\n")}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ext, eb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	base := []string{"initramfs", "build", "--kernel-release", rel, "--modules-dir", mods, "--prepare-root", prog}
	for _, c := range []struct {
		name  string
		flags []string
		opts  minimal.Options
	}{
		{"defaults and a digest", []string{"--module", "xfs", "--digest", d.String()},
			minimal.Options{Modules: append(append([]string{}, minimal.DefaultModules...), "xfs"), Extension: &extension.Extension{Digest: d}}},
		{"an extension file", []string{"--no-default-modules", "--module", "erofs", "--extension", ext},
			minimal.Options{Modules: []string{"erofs"}, Extension: &extension.Extension{Digest: d, Config: []byte("[etc]\nmount = bind\n")}}},
		{"no module at all", []string{"--no-default-modules"}, minimal.Options{Modules: []string{}}},
	} {
		out := filepath.Join(dir, "out.cpio")
		if b, err := exec.Command(cfsctl, append(append(base, c.flags...), "-o", out)...).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", c.name, err, b)
			continue
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		opts := c.opts
		opts.KernelRelease, opts.ModulesDir, opts.Init = rel, mods, prog
		var want bytes.Buffer
		if _, err := minimal.Write(&want, opts); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%s: cfsctl wrote %d bytes, package minimal %d, and they differ", c.name, len(got), want.Len())
		}
	}
	for _, c := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"digest and extension", []string{"--digest", d.String(), "--extension", ext}, "give one"},
		{"bad digest", []string{"--digest", "v1-sha256-12:xyz"}, "--digest"},
		{"unknown module", []string{"--module", "btrfs"}, "btrfs: no such module"},
		{"bad extension", []string{"--extension", prog}, "--extension"},
	} {
		b, err := exec.Command(cfsctl, append(append(base, c.flags...), "-o", filepath.Join(dir, "bad.cpio"))...).CombinedOutput()
		if err == nil || !strings.Contains(string(b), c.want) {
			t.Errorf("%s: %v, output %q, want an error with %q", c.name, err, b, c.want)
		}
		if _, err := os.Stat(filepath.Join(dir, "bad.cpio")); err == nil {
			t.Errorf("%s: an output file was left", c.name)
		}
	}
}
