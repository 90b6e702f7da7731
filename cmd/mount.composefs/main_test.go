package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/mount"
	"github.com/gocfs/gocfs/tests/treecheck"
	"github.com/gocfs/gocfs/verity"
)

// TestMain lets mount(8) run this test binary as its helper, through a
// symlink named mount.composefs.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == prog {
		os.Exit(run(os.Args[1:], os.Stderr))
	}
	os.Exit(m.Run())
}

func TestParseArgs(t *testing.T) {
	digest := strings.Repeat("0f", 32)
	tests := []struct {
		name string
		args []string
		want mount.Options // ImagePath is not set by parsing
		err  string        // substring of the error; "" for success
		help bool
	}{
		{name: "basic", args: []string{"-o", "basedir=/a", "img", "mnt"},
			want: mount.Options{ObjectDirs: []string{"/a"}}},
		{name: "options-after-operands", args: []string{"img", "mnt", "-o", `ro,basedir=/a\,b:/c\:d:/e\\f,verity`},
			want: mount.Options{ObjectDirs: []string{"/a,b", "/c:d", `/e\f`}, ReadOnly: true, Verity: mount.VerityRequire}},
		{name: "attached-value", args: []string{"-obasedir=/a", "-tcomposefs", "img", "mnt"},
			want: mount.Options{ObjectDirs: []string{"/a"}}},
		{name: "mount-flags", args: []string{"img", "mnt", "-n", "-v", "-o", "rw,basedir=/a"},
			want: mount.Options{ObjectDirs: []string{"/a"}}},
		{name: "clustered", args: []string{"-nvo", "basedir=/a", "img", "mnt"},
			want: mount.Options{ObjectDirs: []string{"/a"}}},
		{name: "sloppy", args: []string{"-s", "-o", "basedir=/a,x-systemd.automount,nofail", "img", "mnt"},
			want: mount.Options{ObjectDirs: []string{"/a"}}},
		{name: "two-lists", args: []string{"-o", "basedir=/a", "-o", "ro", "img", "mnt"},
			want: mount.Options{ObjectDirs: []string{"/a"}, ReadOnly: true}},
		{name: "last-ro-rw-wins", args: []string{"-o", "basedir=/a,ro,rw", "img", "mnt"},
			want: mount.Options{ObjectDirs: []string{"/a"}}},
		{name: "digest", args: []string{"-o", "basedir=/a,digest=" + digest, "img", "mnt"},
			want: mount.Options{ObjectDirs: []string{"/a"}, Digest: bytes.Repeat([]byte{0x0f}, 32), Verity: mount.VerityRequire}},
		{name: "tryverity", args: []string{"-o", "basedir=/a,tryverity", "img", "mnt"},
			want: mount.Options{ObjectDirs: []string{"/a"}, Verity: mount.VerityTry}},
		{name: "tryverity-verity", args: []string{"-o", "tryverity,basedir=/a,verity", "img", "mnt"},
			want: mount.Options{ObjectDirs: []string{"/a"}, Verity: mount.VerityRequire}},
		{name: "upper", args: []string{"-o", `basedir=/a,upperdir=/u\,1,workdir=/w:2,idmap=/proc/1/ns/user`, "img", "mnt"},
			want: mount.Options{ObjectDirs: []string{"/a"}, UpperDir: "/u,1", WorkDir: "/w:2", IDMap: "/proc/1/ns/user"}},
		{name: "dash-operand", args: []string{"-o", "basedir=/a", "--", "-img", "mnt"},
			want: mount.Options{ObjectDirs: []string{"/a"}}},
		{name: "help", args: []string{"-h"}, help: true},
		{name: "long-help", args: []string{"--help", "x"}, help: true},

		{name: "no-operands", args: nil, err: "no source path specified"},
		{name: "one-operand", args: []string{"img"}, err: "no mount path specified"},
		{name: "three-operands", args: []string{"a", "b", "c"}, err: `unexpected argument "c"`},
		{name: "no-basedir", args: []string{"img", "mnt"}, err: "no object dirs specified"},
		{name: "other-type", args: []string{"-t", "erofs", "img", "mnt"}, err: "unsupported fs type 'erofs'"},
		{name: "missing-argument", args: []string{"img", "mnt", "-o"}, err: "option requires an argument -- 'o'"},
		{name: "bad-flag", args: []string{"-x", "img", "mnt"}, err: "invalid option -- 'x'"},
		{name: "namespace", args: []string{"-N", "/proc/1/ns/mnt", "img", "mnt"}, err: "-N"},
		{name: "unknown", args: []string{"-o", "basedir=/a,nosuid", "img", "mnt"}, err: "unsupported option nosuid"},
		{name: "escaped-key", args: []string{"-o", `basedir\=/a`, "img", "mnt"}, err: `unsupported option basedir\=/a`},
		{name: "basedir-no-value", args: []string{"-o", "basedir", "img", "mnt"}, err: "no value specified for basedir option"},
		{name: "digest-no-value", args: []string{"-o", "basedir=/a,digest", "img", "mnt"}, err: "no value specified for digest option"},
		{name: "bad-digest", args: []string{"-o", "basedir=/a,digest=abc", "img", "mnt"}, err: "invalid fs-verity digest"},
		{name: "flag-value", args: []string{"-o", "basedir=/a,verity=1", "img", "mnt"}, err: "verity takes no value"},
		{name: "empty-basedir", args: []string{"-o", "basedir=", "img", "mnt"}, err: "empty directory"},
		{name: "empty-basedir-part", args: []string{"-o", "basedir=/a::/b", "img", "mnt"}, err: "empty directory"},
		{name: "empty-option", args: []string{"-o", "basedir=/a,,ro", "img", "mnt"}, err: "empty option"},
		{name: "trailing-backslash", args: []string{"-o", `basedir=/a\`, "img", "mnt"}, err: "ends in a backslash"},
		{name: "upper-only", args: []string{"-o", "basedir=/a,upperdir=/u", "img", "mnt"}, err: "both workdir and upperdir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseArgs(tc.args)
			if err == nil && !c.help {
				err = c.parseOptions()
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.help != tc.help {
				t.Fatalf("help %v", c.help)
			}
			if tc.help {
				return
			}
			got := c.mount
			if !slices.Equal(got.ObjectDirs, tc.want.ObjectDirs) || got.ReadOnly != tc.want.ReadOnly ||
				got.Verity != tc.want.Verity || !bytes.Equal(got.Digest, tc.want.Digest) ||
				got.UpperDir != tc.want.UpperDir || got.WorkDir != tc.want.WorkDir || got.IDMap != tc.want.IDMap {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			if c.target != "mnt" || !strings.HasSuffix(c.image, "img") {
				t.Errorf("operands %q %q", c.image, c.target)
			}
		})
	}
}

// fixture builds an image of a small tree with its object directory in a
// directory whose name needs escaping in mount options.
func fixture(t *testing.T) (src, store, img string) {
	t.Helper()
	treecheck.RequireRoot(t)
	treecheck.RequireFilesystems(t, "erofs", "overlay")
	dir := t.TempDir()
	src = filepath.Join(dir, "src")
	store = filepath.Join(dir, `obj,ects:x\y`)
	img = filepath.Join(dir, "image.cfs")
	treecheck.MakeHandmadeTree(t, src)
	treecheck.BuildImage(t, src, store, img, false)
	return src, store, img
}

func escape(s string) string {
	return strings.NewReplacer(`\`, `\\`, ",", `\,`, ":", `\:`).Replace(s)
}

func mountpoint(t *testing.T) string {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	return mnt
}

func mounted(t *testing.T, mnt string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, []byte(" "+mnt+" "))
}

func TestRun(t *testing.T) {
	src, store, img := fixture(t)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	_, _, kerr := verity.Measure(f)
	imageVerity := kerr == nil
	digest, err := verity.Digest(f, verity.SHA256)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	objectVerity, err := verity.Supported(store)
	if err != nil {
		t.Fatal(err)
	}
	basedir := "basedir=" + escape(store)
	hexDigest := hex.EncodeToString(digest)

	tests := []struct {
		name    string
		options string
		status  int
		stderr  string // substring
	}{
		{"plain", basedir, 0, ""},
		{"verbose", basedir + ",ro", 0, "mounted " + img},
		{"tryverity", basedir + ",tryverity", 0, ""},
		{"missing-basedir", "basedir=" + escape(store) + ":/nonexistent", 1, "Failed to mount composefs " + img + ": object directory: open /nonexistent: no such file or directory"},
		{"wrong-digest", basedir + ",digest=" + strings.Repeat("ab", 32), 1, "Failed to mount composefs"},
		{"unknown-option", basedir + ",bogus", 1, "unsupported option bogus"},
		{"no-basedir", "ro", 1, "no object dirs specified"},
	}
	if !imageVerity {
		tests = append(tests, struct {
			name    string
			options string
			status  int
			stderr  string
		}{"digest-without-fs-verity", basedir + ",digest=" + hexDigest, 1, "image has no fs-verity"})
	}
	if !objectVerity {
		tests = append(tests, struct {
			name    string
			options string
			status  int
			stderr  string
		}{"verity-without-fs-verity", basedir + ",verity", 1, "object has no fs-verity"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mnt := mountpoint(t)
			args := []string{img, mnt, "-o", tc.options}
			if tc.name == "verbose" {
				args = append(args, "-v")
			}
			var stderr bytes.Buffer
			status := run(args, &stderr)
			t.Logf("status %d: %s", status, stderr.String())
			if status != tc.status || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("status %d, stderr %q; want %d, %q", status, stderr.String(), tc.status, tc.stderr)
			}
			if mounted(t, mnt) != (tc.status == 0) {
				t.Fatalf("mounted: %v", mounted(t, mnt))
			}
			if tc.status == 0 {
				treecheck.CompareTrees(t, src, mnt, treecheck.Compare{})
				if err := unix.Unmount(mnt, 0); err != nil {
					t.Fatal(err)
				}
			}
		})
	}

	t.Run("fake", func(t *testing.T) {
		mnt := mountpoint(t)
		if status := run([]string{"-f", "-o", basedir, img, mnt}, &bytes.Buffer{}); status != 0 || mounted(t, mnt) {
			t.Errorf("status %d, mounted %v", status, mounted(t, mnt))
		}
	})
	t.Run("help", func(t *testing.T) {
		var stderr bytes.Buffer
		if status := run([]string{"-h"}, &stderr); status != 0 || !strings.Contains(stderr.String(), "usage: mount.composefs") {
			t.Errorf("status %d, %q", status, stderr.String())
		}
	})
	t.Run("upperdir", func(t *testing.T) {
		mnt := mountpoint(t)
		dir := t.TempDir()
		upper, work := filepath.Join(dir, "up,per"), filepath.Join(dir, "work")
		for _, d := range []string{upper, work} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		var stderr bytes.Buffer
		opts := basedir + ",upperdir=" + escape(upper) + ",workdir=" + escape(work)
		if status := run([]string{"-o", opts, img, mnt}, &stderr); status != 0 {
			t.Fatalf("status %d: %s", status, stderr.String())
		}
		if err := os.WriteFile(filepath.Join(mnt, "new"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(upper, "new")); err != nil {
			t.Error(err)
		}
	})
}

// TestMountHelper mounts through mount(8), which runs helpers only from
// /sbin (util-linux's search path is /sbin:/sbin/fs.d:/sbin/fs): the test
// links /sbin/mount.composefs to this test binary for its duration, and
// only when no such helper is installed.
func TestMountHelper(t *testing.T) {
	src, store, img := fixture(t)
	mountCmd, err := exec.LookPath("mount")
	if err != nil {
		t.Skip("SKIP: no mount(8)")
	}
	const helper = "/sbin/mount.composefs"
	if _, err := os.Lstat(helper); !errors.Is(err, fs.ErrNotExist) {
		t.Skipf("SKIP: %s exists (%v); not replacing an installed helper", helper, err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, helper); err != nil {
		t.Skipf("SKIP: cannot install %s: %v", helper, err)
	}
	t.Cleanup(func() {
		if target, err := os.Readlink(helper); err == nil && target == exe {
			os.Remove(helper)
		}
	})

	mnt := mountpoint(t)
	out, err := exec.Command(mountCmd, "-t", "composefs", "-o", "ro,basedir="+escape(store), img, mnt).CombinedOutput()
	if err != nil {
		t.Fatalf("mount -t composefs: %v\n%s", err, out)
	}
	if !mounted(t, mnt) {
		t.Fatal("not mounted")
	}
	treecheck.CompareTrees(t, src, mnt, treecheck.Compare{})
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v\n%s", err, out)
	}

	out, err = exec.Command(mountCmd, "-t", "composefs", "-o", "ro", img, mnt).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no object dirs specified") {
		t.Errorf("mount without basedir: %v\n%s", err, out)
	}
	if mounted(t, mnt) {
		t.Error("mounted without basedir")
	}
}

// FuzzOptions checks that option lists never break the parser and that any
// two values escaped with backslashes come back intact.
func FuzzOptions(f *testing.F) {
	f.Add(`ro,basedir=/a\,b:/c\:d,digest=00`, "/x", `y\z`)
	f.Add(`a=b=c,\\,=`, ",", ":")
	f.Fuzz(func(t *testing.T, list, a, b string) {
		if opts, err := splitOptions(list); err == nil {
			for _, o := range opts {
				if o.key == "" {
					t.Fatalf("empty key from %q", list)
				}
				if o.hasValue {
					splitBasedir(o.value)
				}
			}
		}
		if a == "" || b == "" {
			return
		}
		opts, err := splitOptions("ro,basedir=" + escape(a) + ":" + escape(b) + ",rw")
		if err != nil || len(opts) != 3 || opts[1].key != "basedir" {
			t.Fatalf("%q %q: %+v, %v", a, b, opts, err)
		}
		dirs, err := splitBasedir(opts[1].value)
		if err != nil || !slices.Equal(dirs, []string{a, b}) {
			t.Fatalf("%q %q: %q, %v", a, b, dirs, err)
		}
	})
}
