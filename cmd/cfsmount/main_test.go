package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/scan"
	"github.com/gocfs/gocfs/mount/cfsfuse"
	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/store/objects"
	"github.com/gocfs/gocfs/tests/treecheck"
)

// mainEnv makes the test binary run cfsmount's main with its arguments,
// so that the tests can run the command as a process (signals, other
// users) without building it.
const mainEnv = "CFSMOUNT_TEST_MAIN"

// checkEnv makes the test binary print, for each path below a directory,
// its size, content and xattrs, so that a test can look at a mount as the
// user who made it.
const checkEnv = "CFSMOUNT_TEST_CHECK"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) != "" {
		main()
	}
	if dir := os.Getenv(checkEnv); dir != "" {
		os.Exit(printTree(dir))
	}
	os.Exit(m.Run())
}

// fixture is an image of a small tree and the object directory its files
// were stored in, both readable by every user.
type fixture struct {
	dir, img, objs string
	files          map[string]string // path -> content
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: publicTempDir(t), files: map[string]string{
		"small":       "inline content",
		"large":       strings.Repeat("external content ", 5000),
		"sub/another": strings.Repeat("more external content ", 300),
	}}
	src := filepath.Join(f.dir, "src")
	for p, c := range f.files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Setxattr(filepath.Join(src, "small"), "user.note", []byte("visible"), 0); err != nil {
		t.Skipf("SKIP: no user xattrs in %s: %v", src, err)
	}
	f.objs = filepath.Join(f.dir, "objects")
	st, err := objects.OpenDir(f.objs, true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	root, err := scan.Dir(src, scan.Options{Threads: 1, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	f.img = filepath.Join(f.dir, "image.cfs")
	out, err := os.Create(f.img)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := erofs.Write(out, root, erofs.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return f
}

// publicTempDir returns a new temporary directory every user can reach.
func publicTempDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{filepath.Dir(d), d} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func (f *fixture) mountpoint(t *testing.T, uid int) string {
	t.Helper()
	mnt, err := os.MkdirTemp(f.dir, "mnt")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(mnt, uid, uid); err != nil && uid != os.Geteuid() {
		t.Fatal(err)
	}
	if err := os.Chmod(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	return mnt
}

func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--help"}, 0, "Usage: cfsmount"},
		{[]string{"-h"}, 0, "Usage: cfsmount"},
		{[]string{}, 2, "expected IMAGE and MOUNTPOINT, got 0"},
		{[]string{"img", "--basedir", "x"}, 2, "expected IMAGE and MOUNTPOINT, got 1"},
		{[]string{"img", "mnt"}, 2, "no object directories"},
		{[]string{"img", "mnt", "--basedir", "a", "--repo", "r"}, 2, "exclude each other"},
		{[]string{"img", "mnt", "--basedir"}, 2, "flag needs an argument"},
		{[]string{"--bogus", "img", "mnt"}, 2, "flag provided but not defined: -bogus"},
	} {
		var stderr bytes.Buffer
		code := run(c.args, &stderr)
		if code != c.code || !strings.Contains(stderr.String(), c.msg) {
			t.Errorf("cfsmount %q: status %d, stderr %q; want %d and %q", c.args, code, stderr.String(), c.code, c.msg)
		}
	}
}

func TestArguments(t *testing.T) {
	for _, c := range []struct {
		args        []string
		img, mnt    string
		dirs        string
		verify, all bool
	}{
		{[]string{"-f", "IMG", "--basedir=a:b", "--verify", "MNT", "--foreground", "--allow-other"}, "IMG", "MNT", "a,b", true, true},
		{[]string{"--basedir", "a", "IMG", "MNT"}, "IMG", "MNT", "a", false, false},
		{[]string{"-basedir", "a", "--", "-IMG", "--verify"}, "-IMG", "--verify", "a", false, false},
		{[]string{"IMG", "--basedir", "a", "--", "-MNT"}, "IMG", "-MNT", "a", false, false},
	} {
		cfg, err := parseArgs(c.args)
		if err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		if cfg.image != c.img || cfg.mountpoint != c.mnt || strings.Join(cfg.basedirs, ",") != c.dirs || cfg.verify != c.verify || cfg.allowOther != c.all {
			t.Errorf("%q: parsed %+v", c.args, cfg)
		}
	}
}

// TestErrors checks that cfsmount fails with status 1 and says why when
// the image, an object directory or the mount point is not usable.
func TestErrors(t *testing.T) {
	treecheck.RequireFUSE(t)
	f := newFixture(t)
	bad := filepath.Join(f.dir, "bad.cfs")
	if err := os.WriteFile(bad, bytes.Repeat([]byte("not an image"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	busy := f.mountpoint(t, os.Geteuid())
	img, err := os.Open(f.img)
	if err != nil {
		t.Fatal(err)
	}
	im, err := cfsfuse.ReadImage(img)
	img.Close()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := cfsfuse.Mount(busy, im, cfsfuse.Options{ObjectDirs: []string{f.objs}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		srv.Unmount()
		srv.Wait()
	}()
	mnt := f.mountpoint(t, os.Geteuid())
	for _, c := range []struct {
		name string
		args []string
		msg  string
	}{
		{"missing image", []string{filepath.Join(f.dir, "nothing.cfs"), mnt, "--basedir", f.objs}, "nothing.cfs: no such file or directory"},
		{"bad image", []string{bad, mnt, "--basedir", f.objs}, "bad.cfs: erofs: bad composefs magic"},
		{"directory as image", []string{f.dir, mnt, "--basedir", f.objs}, "not a regular file"},
		{"missing object directory", []string{f.img, mnt, "--basedir", f.objs + ":" + filepath.Join(f.dir, "none")}, "object directory " + filepath.Join(f.dir, "none") + ": no such file or directory"},
		{"missing mount point", []string{f.img, filepath.Join(f.dir, "none"), "--basedir", f.objs}, "mount point " + filepath.Join(f.dir, "none") + ": no such file or directory"},
		{"file as mount point", []string{f.img, f.img, "--basedir", f.objs}, "not a directory"},
		{"busy mount point", []string{f.img, busy, "--basedir", f.objs}, "mount point busy"},
		{"missing repository", []string{"name", mnt, "--repo", filepath.Join(f.dir, "none")}, "store: open"},
	} {
		var stderr bytes.Buffer
		if code := run(c.args, &stderr); code != 1 || !strings.Contains(stderr.String(), c.msg) {
			t.Errorf("%s: status %d, stderr %q; want 1 and %q", c.name, code, stderr.String(), c.msg)
		}
	}
}

// process is cfsmount running as a process.
type process struct {
	cmd    *exec.Cmd
	mnt    string
	stderr *syncBuffer
	done   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs cfsmount IMAGE MNT ARGS... as user uid and waits until the
// image is mounted. The process is killed if the test ends before it.
func start(t *testing.T, uid int, img, mnt string, args ...string) *process {
	t.Helper()
	p, err := startProcess(t, uid, img, mnt, args...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func startProcess(t *testing.T, uid int, img, mnt string, args ...string) (*process, error) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if uid != os.Geteuid() {
		// The user must be able to run the test binary.
		bin := filepath.Join(publicTempDir(t), "cfsmount")
		data, err := os.ReadFile(self)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			t.Fatal(err)
		}
		self = bin
	}
	p := &process{mnt: mnt, stderr: new(syncBuffer), done: make(chan error, 1)}
	p.cmd = exec.Command(self, append([]string{img, mnt}, args...)...)
	p.cmd.Env = append(os.Environ(), mainEnv+"=1")
	p.cmd.Stderr = p.stderr
	if uid != os.Geteuid() {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.done
		}
		if mounted(t, mnt) {
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !mounted(t, mnt) {
		select {
		case err := <-p.done:
			p.done <- err
			return nil, fmt.Errorf("cfsmount exited before mounting: %v\n%s", err, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("cfsmount did not mount %s in time\n%s", mnt, p.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p, nil
}

// wait waits for the process to exit and returns its status.
func (p *process) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(timeout):
		t.Fatalf("cfsmount did not exit in %v\n%s", timeout, p.stderr)
	}
	return -1
}

// mounted reports whether a cfsmount mount is on dir.
func mounted(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && fields[4] == dir && strings.Contains(sc.Text(), " - fuse.composefs ") {
			return true
		}
	}
	return false
}

// TestSignals checks that SIGTERM and SIGINT unmount the image and end
// cfsmount with status 0, lazily when a file is still open in the mount,
// and that an unmount from outside ends it too.
func TestSignals(t *testing.T) {
	treecheck.RequireFUSE(t)
	f := newFixture(t)
	uid := os.Geteuid()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		mnt := f.mountpoint(t, uid)
		p := start(t, uid, f.img, mnt, "--basedir", f.objs)
		if b, err := os.ReadFile(filepath.Join(mnt, "large")); err != nil || string(b) != f.files["large"] {
			t.Fatalf("read: %v", err)
		}
		p.cmd.Process.Signal(sig)
		if code := p.wait(t, 10*time.Second); code != 0 || mounted(t, mnt) {
			t.Errorf("%v: status %d, still mounted %v\n%s", sig, code, mounted(t, mnt), p.stderr)
		}
	}

	// Busy: the mount leaves the tree at once, the open file keeps
	// working, and cfsmount exits when it is closed.
	mnt := f.mountpoint(t, uid)
	p := start(t, uid, f.img, mnt, "--basedir", f.objs)
	open, err := os.Open(filepath.Join(mnt, "sub/another"))
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for mounted(t, mnt) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if mounted(t, mnt) {
		t.Fatalf("busy mount not detached\n%s", p.stderr)
	}
	select {
	case err := <-p.done:
		t.Fatalf("cfsmount exited with a file still open: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	b := make([]byte, len(f.files["sub/another"]))
	if n, err := open.ReadAt(b, 0); n != len(b) || string(b) != f.files["sub/another"] {
		t.Errorf("reading an open file after the detach: %d bytes, %v", n, err)
	}
	open.Close()
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Errorf("busy: status %d\n%s", code, p.stderr)
	}

	// Unmounted from outside.
	mnt = f.mountpoint(t, uid)
	p = start(t, uid, f.img, mnt, "--basedir", f.objs)
	if out, err := exec.Command("fusermount3", "-u", mnt).CombinedOutput(); err != nil {
		t.Fatalf("fusermount3 -u: %v: %s", err, out)
	}
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Errorf("external unmount: status %d\n%s", code, p.stderr)
	}
}

// printTree prints each path below dir with its size, content and xattrs
// as the caller sees them, one per line, sorted by path.
func printTree(dir string) int {
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		line := fmt.Sprintf("%s %v %d", rel, fi.Mode(), fi.Size())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %q", b)
		}
		buf := make([]byte, 4096)
		n, err := unix.Llistxattr(p, buf)
		if err != nil {
			return err
		}
		line += fmt.Sprintf(" xattrs=%q", buf[:n])
		fmt.Println(line)
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestUnprivileged mounts as a user other than root, through fusermount3
// (as user nobody when the test runs as root), and reads the mount as that
// user: trusted.* xattrs are hidden, user.* ones shown.
func TestUnprivileged(t *testing.T) {
	treecheck.RequireFUSE(t)
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("SKIP: no fusermount3")
	}
	uid := os.Geteuid()
	if uid == 0 {
		uid = 65534 // nobody
	}
	f := newFixture(t)
	mnt := f.mountpoint(t, uid)
	p := startOrSkip(t, uid, f.img, mnt, "--basedir", f.objs)

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if uid != os.Geteuid() {
		self = p.cmd.Path
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), checkEnv+"="+mnt)
	if uid != os.Geteuid() {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("reading the mount as uid %d: %v\n%s", uid, err, out)
	}
	for p, c := range f.files {
		if !strings.Contains(string(out), fmt.Sprintf("%s -rw-r--r-- %d %q", p, len(c), c)) {
			t.Errorf("%s: not shown with its content:\n%s", p, out)
		}
	}
	if !strings.Contains(string(out), `xattrs="user.note\x00"`) || strings.Contains(string(out), "trusted.") {
		t.Errorf("xattrs: want user.note and no trusted.*:\n%s", out)
	}
	if line := strings.SplitN(p.mountinfo(t), " - ", 2); len(line) != 2 || !strings.Contains(line[0], "nosuid,nodev") {
		t.Errorf("mount options: %q", line)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 0 || mounted(t, mnt) {
		t.Errorf("SIGTERM: status %d, still mounted %v\n%s", code, mounted(t, mnt), p.stderr)
	}
}

// startOrSkip is start, skipping the test when fusermount3 refuses to
// mount for the user (it may not open /dev/fuse, for example).
func startOrSkip(t *testing.T, uid int, img, mnt string, args ...string) *process {
	t.Helper()
	p, err := startProcess(t, uid, img, mnt, args...)
	if err != nil && strings.Contains(err.Error(), "fusermount3:") {
		t.Skipf("SKIP: fusermount3 does not mount for uid %d here: %v", uid, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// mountinfo returns the mount table line of the process's mount.
func (p *process) mountinfo(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if fields := strings.Fields(line); len(fields) > 4 && fields[4] == p.mnt {
			return line
		}
	}
	return ""
}

// TestRepository mounts images of a composefs repository by ref and by
// digest, with the repository's objects.
func TestRepository(t *testing.T) {
	treecheck.RequireFUSE(t)
	f := newFixture(t)
	repoDir := filepath.Join(f.dir, "repo")
	repo, err := store.Init(repoDir, store.InitOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	root, err := scan.Dir(filepath.Join(f.dir, "src"), scan.Options{Threads: 1, Store: repo.Objects()})
	if err != nil {
		t.Fatal(err)
	}
	var img bytes.Buffer
	if _, err := erofs.Write(&img, root, erofs.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	digest, err := repo.WriteImage(&img, "test-image")
	if err != nil {
		t.Fatal(err)
	}
	repo.Close()
	uid := os.Geteuid()
	for _, name := range []string{"test-image", "refs/test-image", hex.EncodeToString(digest)} {
		mnt := f.mountpoint(t, uid)
		p := start(t, uid, name, mnt, "--repo", repoDir, "--verify")
		for path, c := range f.files {
			if b, err := os.ReadFile(filepath.Join(mnt, path)); err != nil || string(b) != c {
				t.Errorf("%s: %s: read %d bytes, %v", name, path, len(b), err)
			}
		}
		if want := filepath.Join(repoDir, "images", hex.EncodeToString(digest)); !strings.Contains(p.mountinfo(t), " "+want+" ") {
			t.Errorf("%s: mount source is not %s: %q", name, want, p.mountinfo(t))
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(t, 10*time.Second); code != 0 {
			t.Errorf("%s: status %d\n%s", name, code, p.stderr)
		}
	}
	var stderr bytes.Buffer
	if code := run([]string{"no-such-image", f.mountpoint(t, uid), "--repo", repoDir}, &stderr); code != 1 || !strings.Contains(stderr.String(), "not found") {
		t.Errorf("missing image: status %d, %q", code, stderr.String())
	}
}
