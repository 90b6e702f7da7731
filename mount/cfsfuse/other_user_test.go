package cfsfuse

import (
	"encoding/json"
	"github.com/gocfs/gocfs/tests/treecheck"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/scan"
	"github.com/gocfs/gocfs/store/objects"
)

// snapshotEnv makes the test binary print the snapshot of a directory as
// JSON and exit, so that a test can look at a mount as another user.
const snapshotEnv = "CFSFUSE_TEST_SNAPSHOT"

// snapshotChild runs in the child process started by snapshotAs.
func snapshotChild(dir string) int {
	if err := json.NewEncoder(os.Stdout).Encode(takeSnapshot(dir)); err != nil {
		return 1
	}
	return 0
}

// nobody is the unprivileged user the tests run as.
const nobody = 65534

// snapshotAs takes the snapshot of dir as user uid, through a copy of the
// test binary that the user can run.
func snapshotAs(t *testing.T, uid uint32, dir string) snapshot {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(publicTempDir(t), "snapshot")
	copyFile(t, self, bin, 0o755)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), snapshotEnv+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("snapshot of %s as uid %d: %v", dir, uid, err)
	}
	var s snapshot
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("snapshot of %s as uid %d: %v", dir, uid, err)
	}
	return s
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOtherUser compares what a user other than root sees of a mount made
// by root with what the kernel's mount shows the same user: permissions
// and POSIX ACLs enforced alike, and trusted.* xattrs hidden.
func TestOtherUser(t *testing.T) {
	requireRoot(t)
	treecheck.RequireFUSE(t)
	work := publicTempDir(t)
	dir := filepath.Join(work, "src")
	treecheck.MakeHandmadeTree(t, dir)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	long := strings.Repeat("data beyond the inline limit ", 4)
	must(os.WriteFile(filepath.Join(dir, "private"), []byte(long), 0o600))
	must(os.WriteFile(filepath.Join(dir, "acl-only"), []byte(long), 0o640))
	// user::rw- user:65534:r-- group::r-- mask::r-- other::---
	acl := []byte{2, 0, 0, 0,
		1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff,
		2, 0, 4, 0, 0xfe, 0xff, 0, 0,
		4, 0, 4, 0, 0xff, 0xff, 0xff, 0xff,
		0x10, 0, 4, 0, 0xff, 0xff, 0xff, 0xff,
		0x20, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
	}
	must(syscall.Setxattr(filepath.Join(dir, "acl-only"), "system.posix_acl_access", acl, 0))
	must(os.Mkdir(filepath.Join(dir, "closed"), 0o700))
	must(os.WriteFile(filepath.Join(dir, "closed/inside"), []byte(long), 0o644))

	store := fastTempDir(t)
	st, err := objects.OpenDir(store, true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	root, err := scan.Dir(dir, scan.Options{Threads: 2, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	imgPath := writeImage(t, work, root, erofs.WriteOptions{})

	got := snapshotAs(t, nobody, mountFUSE(t, imgPath, Options{ObjectDirs: []string{store}}))
	want := snapshotAs(t, nobody, mountKernel(t, imgPath, store))
	compareExact(t, "cfsmount vs kernel as nobody", got, want)

	for p, fi := range got {
		for _, x := range fi.Xattrs {
			if strings.HasPrefix(x, "trusted.") {
				t.Errorf("%s: nobody sees %s", p, x)
			}
		}
	}
	for p, want := range map[string]string{"/acl-only": "", "/private": "error: permission denied"} {
		switch fi := got[p]; {
		case fi == nil:
			t.Errorf("%s: missing", p)
		case want == "" && strings.HasPrefix(fi.Data, "error"):
			t.Errorf("%s: nobody reads %s", p, fi.Data)
		case want != "" && fi.Data != want:
			t.Errorf("%s: nobody reads %q, want %q", p, fi.Data, want)
		}
	}
	if fi := got["/closed"]; fi == nil || len(fi.Dirents) != 1 || fi.Dirents[0] != "error: permission denied" {
		t.Errorf("/closed: nobody lists it: %+v", fi)
	}
}
