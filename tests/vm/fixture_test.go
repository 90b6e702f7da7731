package vm

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gocfs/gocfs/initramfs/extension"
	"github.com/gocfs/gocfs/initramfs/minimal"
	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/store/objects"
	"github.com/gocfs/gocfs/store/oci"
	"github.com/gocfs/gocfs/tests/ocibuild"
	"github.com/gocfs/gocfs/tests/registry"
	"github.com/gocfs/gocfs/verity"
)

// bootTimeout bounds one QEMU run. A boot takes 5 to 15 s under TCG; the
// margin is for a machine busy with other work.
const bootTimeout = 3 * time.Minute

// diskSize is the size of the guest disks (sparse files).
const diskSize = 256 << 20

// fixture is what every boot test shares: the programs, and a physical
// root holding a composefs repository into which the test image was pulled
// from a registry.
type fixture struct {
	work        string
	prepareRoot string
	guestinit   string
	// staging is the physical root's tree, holding composefs/.
	staging string
	// plain is the image's tree as ordinary files, for direct boots.
	plain  string
	digest string
	// objects are the paths, on the disk, of the objects of DataFiles.
	objects map[string]string
}

// requireHost skips unless the host can run the boot tests.
func requireHost(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("SKIP: the boot tests need root (the guest disk's tree and repository are owned by root)")
	}
	for _, tool := range []string{QEMU, "mkfs.ext4", "debugfs", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Skipf("SKIP: %s not found (Debian packages qemu-system-x86, e2fsprogs; Go)", tool)
		}
	}
}

// kernel returns the cached kernel name, skipping when it is absent.
func kernel(tb testing.TB, name string) *Kernel {
	tb.Helper()
	cache, err := CacheDir()
	if err != nil {
		tb.Fatal(err)
	}
	k, err := OpenKernel(cache, name)
	if errors.Is(err, ErrNoKernel) {
		tb.Skipf("SKIP: %v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	requireHost(tb)
	f := &fixture{work: tb.TempDir(), objects: map[string]string{}}
	bin := filepath.Join(f.work, "bin")
	build(tb, bin, "../../cmd/composefs-prepare-root", "./guestinit")
	f.prepareRoot = filepath.Join(bin, "composefs-prepare-root")
	f.guestinit = filepath.Join(bin, "guestinit")
	prog, err := os.ReadFile(f.guestinit)
	if err != nil {
		tb.Fatal(err)
	}
	img := Image(prog)

	reg := registry.Start(tb)
	built, err := ocibuild.Build(img)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ref := reg.Ref("gocfs/vm", "latest")
	if err := built.Push(ctx, ref, reg.SystemContext()); err != nil {
		tb.Fatalf("%v\nregistry log:\n%s", err, reg.Log())
	}
	f.staging = filepath.Join(f.work, "staging")
	// The host has no fs-verity: the repository starts insecure, and a
	// setup boot makes it secure.
	repo, err := store.Init(filepath.Join(f.staging, "composefs"), store.InitOptions{Algorithm: verity.SHA256, Insecure: true})
	if err != nil {
		tb.Fatal(err)
	}
	res, err := oci.Pull(ctx, repo, ref, oci.PullOptions{Tag: "vm", SystemContext: reg.SystemContext()})
	repo.Close()
	if err != nil {
		tb.Fatalf("pull %s: %v", ref, err)
	}
	f.digest = hex.EncodeToString(res.Image)

	f.plain = filepath.Join(f.work, "plain")
	for _, l := range img.Layers {
		for i := range l.Entries {
			e := &l.Entries[i]
			if err := materialize(f.plain, e); err != nil {
				tb.Fatal(err)
			}
			if name, ok := strings.CutSuffix(path.Base(e.Path), ".bin"); ok {
				f.objects[name] = "/composefs/objects/" + objects.Path(verity.DigestBytes(e.Data(), verity.SHA256))
			}
		}
	}
	return f
}

// build compiles packages, statically, into dir.
func build(tb testing.TB, dir string, pkgs ...string) {
	tb.Helper()
	args := append([]string{"build", "-trimpath", "-tags", "containers_image_openpgp", "-ldflags", "-s -w", "-o", dir + "/"}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", strings.Join(pkgs, " "), err, out)
	}
}

// materialize writes a directory or regular file entry under root.
func materialize(root string, e *ocibuild.Entry) error {
	p := filepath.Join(root, e.Path)
	switch e.Type {
	case ocibuild.Dir:
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
	case ocibuild.File:
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, e.Data(), 0o644); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%s: %v entries are not written to the plain tree", e.Path, e.Type)
	}
	return os.Chmod(p, os.FileMode(e.Mode&0o7777))
}

// mkdisk makes an ext4 disk image with fs-verity support holding the tree
// at src.
func mkdisk(tb testing.TB, src, disk string) {
	tb.Helper()
	f, err := os.Create(disk)
	if err != nil {
		tb.Fatal(err)
	}
	err = f.Truncate(diskSize)
	f.Close()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096", "-O", "verity", "-E", "root_owner=0:0", "-d", src, disk).CombinedOutput()
	if err != nil {
		tb.Fatalf("mkfs.ext4 -d %s: %v\n%s", src, err, out)
	}
}

// initramfs writes a minimal initramfs for k with prog as /init.
func initramfs(tb testing.TB, k *Kernel, prog, out string, ext *extension.Extension) {
	tb.Helper()
	var buf bytes.Buffer
	if _, err := minimal.Write(&buf, minimal.Options{
		KernelRelease: k.Release, ModulesDir: k.ModulesDir, Init: prog, Extension: ext,
	}); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// debugfs runs debugfs commands on a disk image; write opens it
// read-write.
func debugfs(tb testing.TB, disk string, write bool, cmds ...string) string {
	tb.Helper()
	args := []string{"-f", "-", disk}
	if write {
		args = append([]string{"-w"}, args...)
	}
	cmd := exec.Command("debugfs", args...)
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("debugfs %s: %v\n%s", strings.Join(cmds, "; "), err, stderr.String())
	}
	return stdout.String()
}

// corrupt overwrites bytes of the first data block of the file at p on the
// disk image, found with debugfs, leaving its fs-verity metadata alone.
func corrupt(tb testing.TB, disk, p string) {
	tb.Helper()
	out := debugfs(tb, disk, false, "bmap "+p+" 0")
	var block int64
	for _, l := range strings.Split(out, "\n") {
		if n, err := strconv.ParseInt(strings.TrimSpace(l), 10, 64); err == nil && n > 0 {
			block = n
		}
	}
	if block == 0 {
		tb.Fatalf("debugfs bmap %s: no block in %q", p, out)
	}
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("tampered by the boot test"), block*4096+100); err != nil {
		tb.Fatal(err)
	}
}

// substitute replaces the file at p on the disk image by a new file with
// other content and no fs-verity, as someone with write access to the
// disk could.
func substitute(tb testing.TB, disk, p string) {
	tb.Helper()
	other := filepath.Join(tb.TempDir(), "other")
	if err := os.WriteFile(other, ocibuild.Generate(99, 200_000), 0o644); err != nil {
		tb.Fatal(err)
	}
	out := debugfs(tb, disk, true, "cd "+path.Dir(p), "rm "+path.Base(p), "write "+other+" "+path.Base(p), "stat "+path.Base(p))
	if !strings.Contains(out, "Size: 200000") {
		tb.Fatalf("debugfs did not replace %s:\n%s", p, out)
	}
}

// artifacts returns the directory a test's console logs go to:
// $GOCFS_VM_ARTIFACTS/TEST when set, else the test's artifact directory.
func artifacts(tb testing.TB) string {
	dir := os.Getenv(EnvArtifacts)
	if dir == "" {
		return tb.ArtifactDir()
	}
	dir = filepath.Join(dir, strings.ReplaceAll(tb.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	return dir
}
