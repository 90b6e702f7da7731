package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/tests/treecheck"
)

// cfsctlRun runs cfsctl and returns its output and whether it succeeded.
func cfsctlRun(t *testing.T, args ...string) (string, bool) {
	t.Helper()
	out, err := exec.Command(tool(t, "cfsctl"), args...).CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return string(out), err == nil
}

func cfsctlOK(t *testing.T, args ...string) string {
	t.Helper()
	out, ok := cfsctlRun(t, args...)
	if !ok {
		t.Fatalf("cfsctl %s failed:\n%s", strings.Join(args, " "), out)
	}
	return out
}

// TestCfsctlOSTree drives cfsctl ostree on the test's own filesystem:
// refusals with clear messages, a commit with each policy, set-unified,
// status, fsck and its repair, and a deployment.
func TestCfsctlOSTree(t *testing.T) {
	treecheck.RequireRoot(t)
	if _, err := exec.LookPath("ostree"); err != nil {
		t.Skip("SKIP: the ostree CLI is not installed (Debian package ostree)")
	}
	sysroot := t.TempDir()
	// Deployments are immutable (chattr +i), as ostree makes them.
	t.Cleanup(func() {
		dirs, _ := filepath.Glob(filepath.Join(sysroot, "ostree/deploy/*/deploy/*"))
		for _, d := range dirs {
			exec.Command("chattr", "-i", d).Run()
		}
	})
	repo := filepath.Join(sysroot, "composefs")
	ostreeRepo := filepath.Join(sysroot, "ostree", "repo")
	src := filepath.Join(t.TempDir(), "src")
	for p, data := range map[string]string{
		"usr/lib/modules/6.1.0-test/vmlinuz":       strings.Repeat("kernel", 2000),
		"usr/lib/modules/6.1.0-test/initramfs.img": strings.Repeat("initrd", 2000),
		"usr/lib/os-release":                       "PRETTY_NAME=\"CLI OS\"\n",
		"usr/bin/tool":                             strings.Repeat("tool", 5000),
		"etc/hostname":                             "test\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfsctlOK(t, "--repo", repo, "init", "--insecure")
	cfsctlOK(t, "--repo", repo, "create-image", src, "os")

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"ostree", "status"}, "no ostree repository at " + ostreeRepo},
		{[]string{"ostree", "commit"}, "usage"},
		{[]string{"ostree", "commit", "os"}, "required flag --branch"},
		{[]string{"ostree", "commit", "os", "--branch"}, "needs an argument"},
		{[]string{"ostree", "commit", "os", "--brunch", "b"}, "not defined: --brunch"},
		{[]string{"ostree", "commit", "os", "--branch", "b", "--policy", "always"}, "want disabled, enabled or enabled-with-copy"},
		{[]string{"ostree", "commit", "os", "--branch", "b", "--policy", "disabled"}, "policy disabled"},
		{[]string{"ostree", "commit", "missing", "--branch", "b", "--policy", "enabled-with-copy"}, "missing"},
		{[]string{"ostree", "set-unified", "everything"}, "want composefs or full"},
		{[]string{"ostree", "deploy", "os", "--sysroot", sysroot, "--stateroot", "a/b"}, "stateroot"},
	} {
		out, ok := cfsctlRun(t, append([]string{"--repo", repo}, bad.args...)...)
		if ok || !strings.Contains(out, bad.want) {
			t.Errorf("cfsctl %s: ok %v, output %q; want a failure saying %q", strings.Join(bad.args, " "), ok, out, bad.want)
		}
	}

	// The test's filesystem may or may not have reflinks; with copies
	// allowed the commit works either way.
	out := cfsctlOK(t, "--repo", repo, "ostree", "commit", "os", "--branch", "os/main", "--policy", "enabled-with-copy")
	commit := strings.Fields(out)[0]
	if got := strings.TrimSpace(run(t, "ostree", "rev-parse", "--repo="+ostreeRepo, "os/main")); got != commit {
		t.Errorf("os/main is %s, cfsctl said %s", got, commit)
	}
	var st struct{ State string }
	if err := json.Unmarshal([]byte(cfsctlOK(t, "--repo", repo, "--json", "ostree", "status")), &st); err != nil || st.State != "none" {
		t.Errorf("status before set-unified: %+v, %v", st, err)
	}
	cfsctlOK(t, "--repo", repo, "ostree", "set-unified", "composefs", "--policy", "enabled-with-copy")
	if out := cfsctlOK(t, "--repo", repo, "ostree", "status"); !strings.Contains(out, "storage     bound") {
		t.Errorf("status after set-unified composefs:\n%s", out)
	}
	var rep struct {
		OK     bool
		Images []struct{ Name, Image, Commit string }
	}
	if err := json.Unmarshal([]byte(cfsctlOK(t, "--repo", repo, "ostree", "fsck", "--json")), &rep); err != nil || !rep.OK || len(rep.Images) != 1 || rep.Images[0].Commit != commit {
		t.Errorf("fsck: %+v, %v", rep, err)
	}

	// A lost image ref: fsck fails, and its repair synthesizes the commit
	// again.
	run(t, "ostree", "refs", "--repo="+ostreeRepo, "--delete", "composefs/image/"+rep.Images[0].Image)
	if out, ok := cfsctlRun(t, "--repo", repo, "ostree", "fsck"); ok || !strings.Contains(out, "no commit") {
		t.Errorf("fsck without the image's commit: ok %v\n%s", ok, out)
	}
	cfsctlOK(t, "--repo", repo, "ostree", "fsck", "--repair")
	cfsctlOK(t, "--repo", repo, "ostree", "fsck")

	out = cfsctlOK(t, "--repo", repo, "ostree", "deploy", "os", "--sysroot", sysroot, "--stateroot", "cli", "--karg", "rw")
	if !strings.Contains(out, "ostree=/ostree/boot.1/cli/") {
		t.Errorf("deploy:\n%s", out)
	}
	if out := run(t, "ostree", "admin", "status", "--sysroot="+sysroot); !strings.Contains(out, "cli "+commit+".0") {
		t.Errorf("ostree admin status:\n%s", out)
	}
	cfsctlOK(t, "--repo", repo, "ostree", "set-unified", "composefs", "--policy", "disabled")
	if out := cfsctlOK(t, "--repo", repo, "ostree", "status"); !strings.Contains(out, "storage     none") {
		t.Errorf("status after disabling:\n%s", out)
	}
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
