package ostreecompat

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/initramfs/prepare"
)

func TestParseBLS(t *testing.T) {
	const text = "title Test OS 1 (ostree:0)\nversion 1\noptions root=UUID=abcd rw ostree=/ostree/boot.1/testos/d7/0\n" +
		"linux /ostree/testos-d7/vmlinuz-6.1.0-test\ninitrd /ostree/testos-d7/initramfs-6.1.0-test.img\n"
	e, err := parseBLS("e.conf", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	want := &blsEntry{title: "Test OS 1 (ostree:0)", version: "1", options: "root=UUID=abcd rw ostree=/ostree/boot.1/testos/d7/0",
		linux: "/ostree/testos-d7/vmlinuz-6.1.0-test", initrds: []string{"/ostree/testos-d7/initramfs-6.1.0-test.img"}}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("parsed %+v\nwant %+v", e, want)
	}
	b, err := e.bytes()
	if err != nil || string(b) != text {
		t.Errorf("round trip:\n%s\nwant:\n%s (%v)", b, text, err)
	}
	for _, bad := range []string{"title x\n", "linux /a\nmachine-id\n"} {
		if _, err := parseBLS("bad.conf", []byte(bad)); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
	if _, err := (&blsEntry{linux: "/a", options: "x\ny"}).bytes(); err == nil {
		t.Error("an option with a line break was written")
	}
}

func TestOstreeArgs(t *testing.T) {
	for _, tc := range []struct{ in, link, want string }{
		{"root=UUID=abcd rw", "/ostree/boot.0/os/c/0", "root=UUID=abcd rw ostree=/ostree/boot.0/os/c/0"},
		{"ostree=/old quiet ostree=/older", "/ostree/boot.1/os/c/1", "ostree=/ostree/boot.1/os/c/1 quiet"},
		{"", "/l", "ostree=/l"},
	} {
		if got := setOstreeArg(tc.in, tc.link); got != tc.want {
			t.Errorf("setOstreeArg(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if v, ok := ostreeArg(tc.want); !ok || v != tc.link {
			t.Errorf("ostreeArg(%q) = %q, %v", tc.want, v, ok)
		}
	}
	if _, ok := ostreeArg("root=/dev/sda ostreex=1"); ok {
		t.Error("ostreeArg matched another key")
	}
	if got := retitle("Debian (ostree:3)", 0); got != "Debian (ostree:0)" {
		t.Errorf("retitle = %q", got)
	}
	if got := retitle("Debian", 2); got != "Debian (ostree:2)" {
		t.Errorf("retitle = %q", got)
	}
}

// fakeDeployment makes a deployment directory in a sysroot and returns
// its boot-list record.
func fakeDeployment(t *testing.T, sysroot, stateroot, csum string, serial int, bootcsum string) *deployment {
	t.Helper()
	d := &deployment{stateroot: stateroot, csum: csum, serial: serial, bootcsum: bootcsum,
		entry: &blsEntry{title: "Test OS", options: "root=UUID=abcd rw", linux: "/ostree/" + stateroot + "-" + bootcsum + "/vmlinuz-6.1.0-test",
			initrds: []string{"/ostree/" + stateroot + "-" + bootcsum + "/initramfs-6.1.0-test.img"}}}
	if err := os.MkdirAll(filepath.Join(sysroot, d.dir(), "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestWriteBootConfig(t *testing.T) {
	sysroot := t.TempDir()
	for _, d := range []string{"boot", "ostree/deploy"} {
		if err := os.MkdirAll(filepath.Join(sysroot, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	csumA := strings.Repeat("a", 64)
	csumB := strings.Repeat("b", 64)
	boot1 := strings.Repeat("1", 64)
	a := fakeDeployment(t, sysroot, "testos", csumA, 0, boot1)
	var refs [][2]int
	setRefs := func(bv, sbv int) error { refs = append(refs, [2]int{bv, sbv}); return nil }

	bv, err := writeBootConfig(sysroot, []*deployment{a}, setRefs)
	if err != nil {
		t.Fatal(err)
	}
	// The first deployment of an empty sysroot: as ostree admin deploy
	// leaves it (golden sysroot-deploy-layout.txt).
	if bv != 1 || !reflect.DeepEqual(refs, [][2]int{{1, 1}}) {
		t.Errorf("boot version %d, refs %v; want 1, [[1 1]]", bv, refs)
	}
	wantLinks := map[string]string{
		"boot/loader":                            "loader.1",
		"ostree/boot.1":                          "boot.1.1",
		"ostree/boot.1.1/testos/" + boot1 + "/0": "../../../deploy/testos/deploy/" + csumA + ".0",
	}
	checkLinks(t, sysroot, wantLinks)
	entry := readFile(t, filepath.Join(sysroot, "boot/loader.1/entries/ostree-1-testos.conf"))
	wantEntry := "title Test OS (ostree:0)\nversion 1\noptions root=UUID=abcd rw ostree=/ostree/boot.1/testos/" + boot1 + "/0\n" +
		"linux /ostree/testos-" + boot1 + "/vmlinuz-6.1.0-test\ninitrd /ostree/testos-" + boot1 + "/initramfs-6.1.0-test.img\n"
	if entry != wantEntry {
		t.Errorf("entry:\n%s\nwant:\n%s", entry, wantEntry)
	}
	got, err := prepare.ResolveBootlink(sysroot, "/ostree/boot.1/testos/"+boot1+"/0")
	if err != nil || got != filepath.Join(sysroot, a.dir()) {
		t.Errorf("ResolveBootlink = %q, %v; want %s", got, err, a.dir())
	}

	// A second deployment with the same kernel goes first; the boot
	// version flips and the old configuration goes.
	list, err := listDeployments(sysroot, 1)
	if err != nil || len(list) != 1 || list[0].csum != csumA || list[0].bootserial != 0 {
		t.Fatalf("listDeployments = %+v, %v", list, err)
	}
	b := fakeDeployment(t, sysroot, "testos", csumB, 0, boot1)
	if bv, err = writeBootConfig(sysroot, append([]*deployment{b}, list...), setRefs); err != nil {
		t.Fatal(err)
	}
	if bv != 0 || refs[1] != [2]int{0, 1} {
		t.Errorf("boot version %d, refs %v", bv, refs)
	}
	checkLinks(t, sysroot, map[string]string{
		"boot/loader":                            "loader.0",
		"ostree/boot.0":                          "boot.0.1",
		"ostree/boot.0.1/testos/" + boot1 + "/0": "../../../deploy/testos/deploy/" + csumB + ".0",
		"ostree/boot.0.1/testos/" + boot1 + "/1": "../../../deploy/testos/deploy/" + csumA + ".0",
	})
	for _, gone := range []string{"boot/loader.1", "ostree/boot.1", "ostree/boot.1.1"} {
		if _, err := os.Lstat(filepath.Join(sysroot, gone)); !os.IsNotExist(err) {
			t.Errorf("%s is still there: %v", gone, err)
		}
	}
	second := readFile(t, filepath.Join(sysroot, "boot/loader.0/entries/ostree-1-testos.conf"))
	if !strings.Contains(second, "title Test OS (ostree:1)\nversion 1\n") || !strings.Contains(second, "ostree=/ostree/boot.0/testos/"+boot1+"/1\n") {
		t.Errorf("rollback entry:\n%s", second)
	}
	list, err = listDeployments(sysroot, 0)
	if err != nil || len(list) != 2 || list[0].csum != csumB || list[1].csum != csumA || list[1].bootserial != 1 {
		t.Fatalf("listDeployments after the second = %+v, %v", list, err)
	}
}

func TestResolveDeploymentErrors(t *testing.T) {
	sysroot := t.TempDir()
	csum := strings.Repeat("c", 64)
	link := filepath.Join(sysroot, "ostree/boot.0.1/os/bc")
	if err := os.MkdirAll(link, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("boot.0.1", filepath.Join(sysroot, "ostree/boot.0")); err != nil {
		t.Fatal(err)
	}
	for target, bad := range map[string]string{
		"0": "../../../deploy/os/deploy/" + csum + ".0",    // missing directory
		"1": "../../../deploy/other/deploy/" + csum + ".0", // another stateroot
		"2": "../../../deploy/os/deploy/" + csum,           // no serial
		"3": "/etc",
	} {
		if err := os.Symlink(bad, filepath.Join(link, target)); err != nil {
			t.Fatal(err)
		}
		if d, err := resolveDeployment(sysroot, "/ostree/boot.0/os/bc/"+target); err == nil {
			t.Errorf("resolved %s: %+v", bad, d)
		}
	}
	for _, l := range []string{"/ostree/boot.2/os/bc/0", "/ostree/boot.0/os/bc", "ostree/boot.0/os/bc/0", "/ostree/boot.0/os/bc/x"} {
		if _, err := resolveDeployment(sysroot, l); err == nil {
			t.Errorf("resolved %s", l)
		}
	}
}

func TestVersionLinks(t *testing.T) {
	sysroot := t.TempDir()
	if err := os.MkdirAll(filepath.Join(sysroot, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	if v, err := bootversion(sysroot); v != 0 || err != nil {
		t.Errorf("no loader: %d, %v", v, err)
	}
	for target, want := range map[string]int{"loader.1": 1, "loader.0": 0, "loader.2": -1, "entries": -1} {
		if err := swapSymlink(filepath.Join(sysroot, "boot/loader"), target); err != nil {
			t.Fatal(err)
		}
		v, err := bootversion(sysroot)
		if (want < 0) != (err != nil) || (want >= 0 && v != want) {
			t.Errorf("loader -> %s: %d, %v", target, v, err)
		}
	}
}

func checkLinks(t *testing.T, root string, want map[string]string) {
	t.Helper()
	for p, target := range want {
		got, err := os.Readlink(filepath.Join(root, p))
		if err != nil || got != target {
			t.Errorf("%s -> %q (%v), want %q", p, got, err, target)
		}
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
