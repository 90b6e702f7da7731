package ostreecompat

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/initramfs/prepare"
	"github.com/gocfs/gocfs/mount"
	"github.com/gocfs/gocfs/ostreecompat/ostree"
	"github.com/gocfs/gocfs/ostreecompat/ostree/ostreetest"
	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/tests/treecheck"
)

// TestDeploy deploys a store image into an empty sysroot on XFS and checks
// what ostree and composefs-prepare-root see: the layout of a real `ostree
// admin deploy` (golden sysroot-deploy-layout.txt), its boot entry, origin
// and refs, `ostree admin status`, the bootlink as prepare-root resolves it,
// and the deployment's .ostree.cfs mounted by the kernel over
// ostree/repo/objects, which must show the image's tree. Two more
// deployments then keep one rollback and drop the oldest.
func TestDeploy(t *testing.T) {
	treecheck.RequireFilesystems(t, "erofs", "overlay")
	sysroot := xfsFS(t)
	st, err := store.Init(filepath.Join(sysroot, "composefs"), store.InitOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	src := filepath.Join(t.TempDir(), "src")
	makeOSTreeSource(t, src, 8)
	img := buildStoreImage(t, st, src, "test")
	ctx := context.Background()
	opts := DeployOptions{Stateroot: "testos", Branch: "testos/x86_64", Policy: PolicyEnabled, Kargs: []string{"root=UUID=abcd", "rw"}}

	d, err := Deploy(ctx, st, "test", sysroot, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("deployment %+v", d)
	if d.Image != img || d.Serial != 0 || d.Bootversion != 1 || d.Kernel != "6.1.0-test" {
		t.Errorf("deployment %+v", d)
	}
	compareGoldenLayout(t, sysroot, d)
	entry := readFile(t, filepath.Join(sysroot, d.Entry))
	wantEntry := fmt.Sprintf("title Test OS 1 (ostree:0)\nversion 1\noptions root=UUID=abcd rw ostree=/ostree/boot.1/testos/%[1]s/0\n"+
		"linux /ostree/testos-%[1]s/vmlinuz-6.1.0-test\ninitrd /ostree/testos-%[1]s/initramfs-6.1.0-test.img\n", d.Bootcsum)
	if entry != wantEntry {
		t.Errorf("boot entry:\n%s\nwant:\n%s", entry, wantEntry)
	}
	if o := readFile(t, filepath.Join(sysroot, d.Path+".origin")); !strings.HasPrefix(o, "[origin]\nrefspec=testos/x86_64\n") || !strings.Contains(o, "image="+img+"\n") {
		t.Errorf("origin:\n%s", o)
	}
	dir, err := prepare.ResolveBootlink(sysroot, d.Bootlink)
	if err != nil || dir != filepath.Join(sysroot, d.Path) {
		t.Errorf("ResolveBootlink(%s) = %q, %v; want %s", d.Bootlink, dir, err, d.Path)
	}
	status := ostreetest.Run(t, "admin", "status", "--sysroot="+sysroot)
	if !strings.Contains(status, "testos "+d.Commit+".0") || !strings.Contains(status, "refspec: testos/x86_64") {
		t.Errorf("ostree admin status:\n%s", status)
	}
	ostreetest.Fsck(t, filepath.Join(sysroot, "ostree", "repo"))

	// The deployment as the boot sees it: .ostree.cfs over the objects is
	// the image's tree with an empty etc to mount the deployment's etc on
	// (ostree moves the image's /etc to /usr/etc); its checkout shows the
	// same, and etc is a copy of usr/etc.
	want := filepath.Join(t.TempDir(), "want")
	run(t, "cp", "-a", src, want)
	if err := os.Mkdir(filepath.Join(want, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	if _, err := mount.Mount(mnt, mount.Options{ImagePath: filepath.Join(sysroot, d.Path, cfsName), ObjectDirs: []string{filepath.Join(sysroot, "ostree", "repo", "objects")}, ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mount.Unmount(mnt) })
	t.Logf(".ostree.cfs: compared %d entries", treecheck.CompareTrees(t, want, mnt, treecheck.Compare{Epoch: true}))
	co := filepath.Join(t.TempDir(), "co")
	run(t, "cp", "-a", filepath.Join(sysroot, d.Path), co)
	if err := os.Remove(filepath.Join(co, cfsName)); err != nil {
		t.Fatal(err)
	}
	run(t, "rm", "-r", filepath.Join(want, "etc"))
	run(t, "cp", "-a", filepath.Join(src, "usr", "etc"), filepath.Join(want, "etc"))
	compareCheckout(t, want, co)

	// Local changes to the first deployment's etc.
	etc := filepath.Join(sysroot, d.Path, "etc")
	if err := os.WriteFile(filepath.Join(etc, "hosts"), []byte("10.0.0.1 changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "added"), []byte("local\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(etc, "conf.d", "secret")); err != nil {
		t.Fatal(err)
	}

	// A second deployment of the same image goes first, with those
	// changes; the first stays as the rollback; a third drops the first.
	d2, err := Deploy(ctx, st, img, sysroot, opts)
	if err != nil {
		t.Fatal(err)
	}
	etc2 := filepath.Join(sysroot, d2.Path, "etc")
	if got := readFile(t, filepath.Join(etc2, "hosts")); got != "10.0.0.1 changed\n" {
		t.Errorf("merged hosts: %q", got)
	}
	if got := readFile(t, filepath.Join(etc2, "added")); got != "local\n" {
		t.Errorf("merged added file: %q", got)
	}
	if _, err := os.Lstat(filepath.Join(etc2, "conf.d", "secret")); !os.IsNotExist(err) {
		t.Errorf("a file deleted locally came back: %v", err)
	}
	if got, err := os.Readlink(filepath.Join(etc2, "os-release")); err != nil || got != "../usr/lib/os-release" {
		t.Errorf("unchanged os-release: %q, %v", got, err)
	}
	if d2.Commit != d.Commit || d2.Serial != 1 || d2.Bootversion != 0 || d2.Bootlink != "/ostree/boot.0/testos/"+d.Bootcsum+"/0" {
		t.Errorf("second deployment %+v", d2)
	}
	if dir, err := prepare.ResolveBootlink(sysroot, "/ostree/boot.0/testos/"+d.Bootcsum+"/1"); err != nil || dir != filepath.Join(sysroot, d.Path) {
		t.Errorf("rollback bootlink: %q, %v", dir, err)
	}
	status = ostreetest.Run(t, "admin", "status", "--sysroot="+sysroot)
	if i, j := strings.Index(status, d.Commit+".1"), strings.Index(status, d.Commit+".0"); i < 0 || j < i {
		t.Errorf("ostree admin status after the second deployment:\n%s", status)
	}
	d3, err := Deploy(ctx, st, img, sysroot, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(sysroot, d.Path)); !os.IsNotExist(err) {
		t.Errorf("the first deployment is still there: %v", err)
	}
	refs, err := os.ReadDir(filepath.Join(sysroot, "ostree/repo/refs/heads/ostree/1/1"))
	if err != nil || len(refs) != 2 {
		t.Errorf("deployment refs after the third deployment: %v, %v", refs, err)
	}
	if d3.Serial != 2 || d3.Bootversion != 1 {
		t.Errorf("third deployment %+v", d3)
	}
	repo, err := ostree.Open(filepath.Join(sysroot, "ostree", "repo"))
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	rep, err := Fsck(ctx, st, repo, FsckOptions{Deep: true})
	if err != nil || !rep.OK {
		t.Errorf("Fsck: %+v, %v", rep, err)
	}
}

func TestDeployBadInput(t *testing.T) {
	sysroot := t.TempDir()
	st, err := store.Init(filepath.Join(t.TempDir(), "composefs"), store.InitOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, opts := range []DeployOptions{
		{Stateroot: ""},
		{Stateroot: "a/b"},
		{Stateroot: ".."},
		{Stateroot: "os", Kargs: []string{"ostree=/x"}},
		{Stateroot: "os", Kargs: []string{"a b"}},
	} {
		if _, err := Deploy(context.Background(), st, "test", sysroot, opts); err == nil {
			t.Errorf("Deploy accepted %+v", opts)
		}
	}
	if _, err := Deploy(context.Background(), st, "missing", sysroot, DeployOptions{Stateroot: "os", Policy: PolicyEnabledWithCopy}); err == nil ||
		!strings.Contains(err.Error(), "missing") {
		t.Errorf("Deploy of a missing image: %v", err)
	}
}

// compareGoldenLayout compares the sysroot with the layout a real `ostree
// admin deploy` left (golden sysroot-deploy-layout.txt): the same
// directories, files and symlinks, checksums aside. The repository's
// insides, the deployment's content and the SELinux relabelling stamp are
// left out; the composefs repository is ours.
func compareGoldenLayout(t *testing.T, sysroot string, d *Deployment) {
	t.Helper()
	f, err := os.Open(filepath.Join(ostreetest.GoldenDir(t), "dumps", "sysroot-deploy-layout.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var golden []string
	commit, bootcsum := "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "refs/heads/testos/x86_64: ") {
			commit = strings.TrimPrefix(line, "refs/heads/testos/x86_64: ")
		}
		if b, ok := strings.CutPrefix(line, "d sysroot/boot/ostree/testos-"); ok {
			bootcsum = strings.TrimSpace(b)
		}
		if len(line) < 2 || line[1] != ' ' || !strings.Contains("dfl", line[:1]) {
			continue
		}
		golden = append(golden, strings.TrimSpace(strings.Replace(line, " sysroot", " .", 1)))
	}
	if commit == "" || bootcsum == "" {
		t.Fatal("golden layout: no commit or boot checksum")
	}
	normal := func(lines []string, commit, bootcsum string) []string {
		var out []string
		for _, l := range lines {
			l = strings.ReplaceAll(strings.ReplaceAll(l, commit, "COMMIT"), bootcsum, "BOOTCSUM")
			p := strings.Fields(l)[1]
			if strings.HasPrefix(p, "./ostree/repo/") || strings.HasPrefix(p, "./ostree/deploy/testos/deploy/COMMIT.0/") ||
				p == "./ostree/deploy/testos/var/.ostree-selabeled" || p == "./composefs" || strings.HasPrefix(p, "./composefs/") {
				continue
			}
			out = append(out, l)
		}
		slices.Sort(out)
		return out
	}
	var ours []string
	err = filepath.WalkDir(sysroot, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(sysroot, p)
		l := "./" + rel
		if rel == "." {
			l = "."
		}
		switch {
		case e.IsDir():
			l = "d " + l
		case e.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			l = "l " + l + " " + target
		default:
			l = "f " + l
		}
		ours = append(ours, l)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	g, o := normal(golden, commit, bootcsum), normal(ours, d.Commit, d.Bootcsum)
	if !slices.Equal(g, o) {
		t.Errorf("layout differs from ostree's:\n%s", lineDiff(o, g))
	}
}

// lineDiff lists the lines only one of two sorted lists has.
func lineDiff(got, want []string) string {
	var b strings.Builder
	for _, l := range got {
		if !slices.Contains(want, l) {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	for _, l := range want {
		if !slices.Contains(got, l) {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	return b.String()
}
