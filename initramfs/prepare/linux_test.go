package prepare

import (
	"bufio"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/scan"
	"github.com/gocfs/gocfs/initramfs/cmdline"
	"github.com/gocfs/gocfs/initramfs/config"
	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/tests/treecheck"
)

// realSysroot makes, in a new directory base (symlinks resolved, as the
// mount table shows it), a sysroot with a repository holding an image of a
// small tree, and returns base, the sysroot and the image digest, insecure
// unless the filesystem has fs-verity.
func realSysroot(t *testing.T) (base, sysroot string, d cmdline.Digest) {
	t.Helper()
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(base, "src")
	files := map[string]string{
		"etc/hostname":  "image-host\n",
		"usr/bin/hello": strings.Repeat("hello from the image\n", 10), // external: longer than scan.InlineMax
		"var/lib/keep":  "image var\n",
	}
	for _, d := range []string{"sysroot", "etc", "var/lib", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sysroot = filepath.Join(base, "sysroot")
	repoPath := filepath.Join(sysroot, "composefs")
	if err := os.MkdirAll(sysroot, 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := store.Init(repoPath, store.InitOptions{})
	if err != nil {
		t.Logf("secure repository impossible here (%v): testing an insecure one", err)
		os.RemoveAll(repoPath)
		if r, err = store.Init(repoPath, store.InitOptions{Insecure: true}); err != nil {
			t.Fatal(err)
		}
	}
	defer r.Close()
	root, err := scan.Dir(src, scan.Options{Store: r.Objects()})
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := erofs.Write(pw, root, erofs.WriteOptions{})
		pw.CloseWithError(err)
	}()
	id, err := r.WriteImage(pr, "")
	if err != nil {
		t.Fatal(err)
	}
	return base, sysroot, cmdline.Digest{Algorithm: r.Algorithm(), Hex: hex.EncodeToString(id), Insecure: !r.Secure()}
}

// mountsUnder counts the mount table's mounts at or under dir.
func mountsUnder(t *testing.T, dir string) int {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			n++
		}
	}
	return n
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLinuxRun(t *testing.T) {
	treecheck.RequireRoot(t)
	treecheck.RequireFilesystems(t, "erofs", "overlay", "tmpfs")
	tests := []struct {
		name string
		cfg  config.Config
	}{
		{"persistent", config.Config{}},
		{"transient", config.Config{RootTransient: true, Etc: config.EtcTransient, Var: config.VarTransient}},
		{"etc bind", config.Config{Etc: config.EtcBind}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, sysroot, d := realSysroot(t)
			target := filepath.Join(base, "target")
			if err := os.Mkdir(target, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				unix.Unmount(target, unix.MNT_DETACH)
				if n := mountsUnder(t, base); n != 0 {
					t.Errorf("%d mounts left under %s", n, base)
				}
			})
			res, err := Run(Linux{}, Params{
				Sysroot: sysroot, Target: target, RunDir: filepath.Join(base, "run"),
				Args: &cmdline.Args{Digests: []cmdline.Digest{d}}, Config: tt.cfg, Log: t.Logf,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("booted %s: %+v", res.Digest.Arg(), res.Info)
			if n := mountsUnder(t, filepath.Join(base, "run")); n != 0 {
				t.Errorf("%d temporary mounts left under the run directory", n)
			}
			if got := readFile(t, filepath.Join(target, "usr/bin/hello")); got != strings.Repeat("hello from the image\n", 10) {
				t.Errorf("usr/bin/hello = %q", got)
			}
			if _, err := os.Stat(filepath.Join(target, "sysroot/composefs/meta.json")); err != nil {
				t.Errorf("physical root not reachable under the new root: %v", err)
			}
			state := filepath.Join(sysroot, "state/deploy", d.Hex)
			err = os.WriteFile(filepath.Join(target, "etc/written"), []byte("x"), 0o644)
			switch tt.cfg.Etc {
			case config.EtcDefault:
				if err != nil {
					t.Fatal(err)
				}
				if readFile(t, filepath.Join(target, "etc/hostname")) != "image-host\n" {
					t.Error("/etc overlay does not show the image's /etc")
				}
				readFile(t, filepath.Join(state, "etc/upper/written"))
			case config.EtcBind:
				if err != nil {
					t.Fatal(err)
				}
				readFile(t, filepath.Join(state, "etc/written"))
			case config.EtcTransient:
				if err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(filepath.Join(state, "etc")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("transient /etc wrote to the state directory: %v", err)
				}
			}
			err = os.WriteFile(filepath.Join(target, "var/written"), []byte("x"), 0o644)
			if err != nil {
				t.Fatal(err)
			}
			if tt.cfg.Var == config.VarTransient {
				readFile(t, filepath.Join(target, "var/lib/keep"))
			} else {
				readFile(t, filepath.Join(state, "var/written"))
			}
			err = os.WriteFile(filepath.Join(target, "written"), []byte("x"), 0o644)
			if tt.cfg.RootTransient && err != nil {
				t.Errorf("transient root not writable: %v", err)
			}
			if !tt.cfg.RootTransient && !errors.Is(err, unix.EROFS) {
				t.Errorf("writing to the read-only root: %v, want EROFS", err)
			}
		})
	}
}

func TestLinuxRefusals(t *testing.T) {
	treecheck.RequireRoot(t)
	treecheck.RequireFilesystems(t, "erofs", "overlay", "tmpfs")
	base, sysroot, d := realSysroot(t)
	target := filepath.Join(base, "target")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(digests ...cmdline.Digest) error {
		t.Helper()
		_, err := Run(Linux{}, Params{Sysroot: sysroot, Target: target, RunDir: filepath.Join(base, "run"),
			Args: &cmdline.Args{Digests: digests}})
		if n := mountsUnder(t, base); n != 0 {
			unix.Unmount(target, unix.MNT_DETACH)
			t.Fatalf("%d mounts left under %s after a refusal", n, base)
		}
		return err
	}
	missing := d
	missing.Hex = strings.Repeat("0", len(d.Hex))
	if err := run(missing); !errors.Is(err, ErrNoImage) {
		t.Errorf("missing image: error = %v", err)
	}
	if d.Insecure {
		secure := d
		secure.Insecure = false
		err := run(secure)
		if !errors.Is(err, ErrInsecure) {
			t.Errorf("secure boot from a repository without fs-verity: error = %v", err)
		}
		t.Logf("refusal: %v", err)
	}
}

// TestLinuxOntoSysroot runs the boot case: the physical root is a mount on
// the sysroot, which the new root replaces.
func TestLinuxOntoSysroot(t *testing.T) {
	treecheck.RequireRoot(t)
	treecheck.RequireFilesystems(t, "erofs", "overlay", "tmpfs")
	base, sysroot, d := realSysroot(t)
	if err := unix.Mount(sysroot, sysroot, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for mountsUnder(t, sysroot) > 0 {
			if err := unix.Unmount(sysroot, unix.MNT_DETACH); err != nil {
				t.Fatal(err)
			}
		}
	})
	if _, err := Run(Linux{}, Params{Sysroot: sysroot, RunDir: filepath.Join(base, "run"),
		Args: &cmdline.Args{Digests: []cmdline.Digest{d}}, Log: t.Logf}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(sysroot, "etc/hostname")); got != "image-host\n" {
		t.Errorf("sysroot shows %q as etc/hostname, want the image's", got)
	}
	if _, err := os.Stat(filepath.Join(sysroot, "sysroot/composefs/meta.json")); err != nil {
		t.Errorf("physical root not reachable: %v", err)
	}
	if n := mountsUnder(t, filepath.Join(base, "run")); n != 0 {
		t.Errorf("%d temporary mounts left", n)
	}
}
