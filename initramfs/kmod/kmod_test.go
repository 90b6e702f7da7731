package kmod

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// A module tree shaped like Debian's 6.1 and 6.18 kernels: ext4's chain,
// a soft dependency through an alias with two providers, virtio modules
// that are loadable in one and built in in the other.
const (
	fakeDep = `kernel/fs/ext4/ext4.ko.xz: kernel/lib/crc16.ko.xz kernel/fs/mbcache.ko.xz kernel/fs/jbd2/jbd2.ko.xz
kernel/fs/jbd2/jbd2.ko.xz:
kernel/fs/mbcache.ko.xz:
kernel/lib/crc16.ko.xz:
kernel/fs/erofs/erofs.ko.xz: kernel/lib/libcrc32c.ko.xz
kernel/lib/libcrc32c.ko.xz:
kernel/crypto/crc32c_generic.ko.xz:
kernel/arch/x86/crypto/crc32c-intel.ko.xz:
kernel/fs/overlayfs/overlay.ko.xz:
kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio_ring.ko.xz kernel/drivers/virtio/virtio.ko.xz
kernel/drivers/virtio/virtio_pci.ko.xz: kernel/drivers/virtio/virtio_pci_legacy_dev.ko.xz kernel/drivers/virtio/virtio_ring.ko.xz kernel/drivers/virtio/virtio.ko.xz
kernel/drivers/virtio/virtio_pci_legacy_dev.ko.xz:
kernel/drivers/virtio/virtio_ring.ko.xz:
kernel/drivers/virtio/virtio.ko.xz:
kernel/fs/a.ko: kernel/fs/b.ko
kernel/fs/b.ko: kernel/fs/a.ko
kernel/fs/needs-gone.ko: kernel/fs/b.ko
`
	fakeBuiltin = `kernel/drivers/block/loop.ko
kernel/fs/fuse/fuse.ko
`
	fakeSoftdep = `# Soft dependencies extracted from modules themselves.
softdep jbd2 pre: crypto-crc32c
softdep libcrc32c pre: crc32c
softdep overlay post: virtio-pci nonexistent
softdep erofs gcm
`
	fakeAlias = `# Aliases extracted from modules themselves.
alias crypto-crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
alias crc32c crc32c_generic
alias pci:v00001AF4d00001001sv*sd*bc*sc*i* virtio_blk
alias fs-ext4 ext4
`
)

func writeIndex(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func fakeIndex(t *testing.T) *Index {
	t.Helper()
	ix, err := Open(writeIndex(t, map[string]string{
		DepFile: fakeDep, BuiltinFile: fakeBuiltin, SoftdepFile: fakeSoftdep, AliasFile: fakeAlias,
	}))
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestName(t *testing.T) {
	for _, c := range []struct {
		path, name string
		ok         bool
	}{
		{"kernel/fs/ext4/ext4.ko", "ext4", true},
		{"kernel/fs/ext4/ext4.ko.xz", "ext4", true},
		{"kernel/crypto/crc32c-cryptoapi.ko.zst", "crc32c_cryptoapi", true},
		{"/usr/lib/modules/6.1/kernel/drivers/block/virtio_blk.ko.gz", "virtio_blk", true},
		{"kernel/fs/ext4/ext4.o", "", false},
		{"kernel/fs/.ko", "", false},
		{"ext4", "", false},
	} {
		name, ok := Name(c.path)
		if name != c.name || ok != c.ok {
			t.Errorf("Name(%q) = %q, %v; want %q, %v", c.path, name, ok, c.name, c.ok)
		}
	}
}

func TestClosure(t *testing.T) {
	ix := fakeIndex(t)
	for _, c := range []struct {
		names []string
		want  []string
	}{
		{[]string{"ext4"}, []string{
			// jbd2's soft dependency: both providers of the alias, in
			// alias order, before jbd2.
			"kernel/arch/x86/crypto/crc32c-intel.ko.xz",
			"kernel/crypto/crc32c_generic.ko.xz",
			"kernel/fs/jbd2/jbd2.ko.xz",
			"kernel/fs/mbcache.ko.xz",
			"kernel/lib/crc16.ko.xz",
			"kernel/fs/ext4/ext4.ko.xz",
		}},
		{[]string{"erofs"}, []string{
			"kernel/crypto/crc32c_generic.ko.xz",
			"kernel/lib/libcrc32c.ko.xz",
			"kernel/fs/erofs/erofs.ko.xz",
		}},
		// Built in: nothing to load.
		{[]string{"loop", "fuse"}, nil},
		// "-" and "_" are the same; shared dependencies come once.
		{[]string{"virtio-blk", "virtio_pci"}, []string{
			"kernel/drivers/virtio/virtio.ko.xz",
			"kernel/drivers/virtio/virtio_ring.ko.xz",
			"kernel/drivers/block/virtio_blk.ko.xz",
			"kernel/drivers/virtio/virtio_pci_legacy_dev.ko.xz",
			"kernel/drivers/virtio/virtio_pci.ko.xz",
		}},
		// A post soft dependency comes after; one naming nothing is
		// passed over.
		{[]string{"overlay"}, []string{
			"kernel/fs/overlayfs/overlay.ko.xz",
			"kernel/drivers/virtio/virtio.ko.xz",
			"kernel/drivers/virtio/virtio_ring.ko.xz",
			"kernel/drivers/virtio/virtio_pci_legacy_dev.ko.xz",
			"kernel/drivers/virtio/virtio_pci.ko.xz",
		}},
		// An alias as a name.
		{[]string{"fs-ext4", "ext4"}, []string{
			"kernel/arch/x86/crypto/crc32c-intel.ko.xz",
			"kernel/crypto/crc32c_generic.ko.xz",
			"kernel/fs/jbd2/jbd2.ko.xz",
			"kernel/fs/mbcache.ko.xz",
			"kernel/lib/crc16.ko.xz",
			"kernel/fs/ext4/ext4.ko.xz",
		}},
	} {
		got, err := ix.Closure(c.names...)
		if err != nil {
			t.Errorf("Closure(%q): %v", c.names, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Closure(%q) =\n%s\nwant\n%s", c.names, strings.Join(got, "\n"), strings.Join(c.want, "\n"))
		}
	}
	if !ix.Builtin("loop") || ix.Builtin("ext4") {
		t.Errorf("Builtin: loop %v ext4 %v", ix.Builtin("loop"), ix.Builtin("ext4"))
	}
}

func TestClosureErrors(t *testing.T) {
	ix := fakeIndex(t)
	for _, c := range []struct {
		name, want string
	}{
		{"xfs", "xfs: no such module"},
		{"a", "dependency cycle: a -> b -> a"},
	} {
		_, err := ix.Closure(c.name)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Closure(%q) error = %v, want %q", c.name, err, c.want)
		}
		if c.name == "xfs" && !errors.Is(err, ErrUnknown) {
			t.Errorf("Closure(xfs) error does not wrap ErrUnknown: %v", err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"no modules.dep", map[string]string{BuiltinFile: fakeBuiltin}, "modules.dep: no such file"},
		{"no colon", map[string]string{DepFile: "kernel/fs/ext4/ext4.ko\n"}, "line 1: no ':'"},
		{"absolute", map[string]string{DepFile: "/lib/ext4.ko:\n"}, "bad module path"},
		{"dotdot", map[string]string{DepFile: "../ext4.ko:\n"}, "bad module path"},
		{"unclean", map[string]string{DepFile: "kernel//ext4.ko:\n"}, "bad module path"},
		{"not a module", map[string]string{DepFile: "kernel/ext4.o:\n"}, "not a module file"},
		{"twice", map[string]string{DepFile: "a/ext4.ko:\nb/ext4.ko.xz:\n"}, "line 2: module ext4 listed twice"},
		{"dangling dependency", map[string]string{DepFile: "a/ext4.ko: a/jbd2.ko\n"}, "depends on a/jbd2.ko, which has no entry"},
		{"bad dependency", map[string]string{DepFile: "a/ext4.ko: ../x.ko\n"}, "bad module path"},
		{"bad builtin", map[string]string{DepFile: "", BuiltinFile: "kernel/x\n"}, "modules.builtin: line 1"},
		{"bad softdep", map[string]string{DepFile: "", SoftdepFile: "options x y\n"}, "modules.softdep: line 1"},
		{"bad alias", map[string]string{DepFile: "", AliasFile: "alias x\n"}, "modules.alias: line 1"},
		{"long line", map[string]string{DepFile: strings.Repeat("x", maxLine+1) + "\n"}, "too long"},
	} {
		_, err := Open(writeIndex(t, c.files))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error = %v, want %q", c.name, err, c.want)
		}
	}
}

func TestList(t *testing.T) {
	paths := []string{
		"/usr/lib/modules/6.18.15+deb13-amd64/kernel/fs/erofs/erofs.ko.xz",
		"/usr/lib/modules/6.18.15+deb13-amd64/kernel/drivers/block/virtio_blk.ko.xz",
	}
	var buf bytes.Buffer
	if err := WriteList(&buf, "6.18.15+deb13-amd64", paths); err != nil {
		t.Fatal(err)
	}
	got, err := ReadList(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, paths) {
		t.Errorf("round trip: %q", got)
	}
	for _, c := range []struct{ name, list, want string }{
		{"relative", "kernel/fs/erofs/erofs.ko\n", "line 1: \"kernel/fs/erofs/erofs.ko\" is not a clean absolute path"},
		{"unclean", "# c\n\n/lib/../x.ko\n", "line 3:"},
		{"not a module", "/lib/modules/x/erofs\n", "not a module file"},
		{"too large", strings.Repeat("#", maxList+1), "larger than"},
	} {
		_, err := ReadList(strings.NewReader(c.list))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error = %v, want %q", c.name, err, c.want)
		}
	}
	if err := WriteList(&buf, "x", []string{"rel.ko"}); err == nil {
		t.Error("WriteList took a relative path")
	}
}

func TestReleaseOf(t *testing.T) {
	for p, want := range map[string]string{
		"/usr/lib/modules/6.1.0-50-amd64/kernel/fs/ext4/ext4.ko": "6.1.0-50-amd64",
		"/lib/modules/6.12.95+deb12-amd64/x.ko":                  "6.12.95+deb12-amd64",
		"/modules/ext4.ko":                                       "",
		"/lib/modules/ext4.ko":                                   "",
	} {
		if got := releaseOf(p); got != want {
			t.Errorf("releaseOf(%q) = %q, want %q", p, got, want)
		}
	}
}

func TestLoadListAbsent(t *testing.T) {
	n, err := LoadList(t.TempDir(), t.Logf)
	if n != 0 || err != nil {
		t.Errorf("LoadList without a list = %d, %v", n, err)
	}
}

func TestLoadListOtherKernel(t *testing.T) {
	root := t.TempDir()
	list := filepath.Join(root, ListPath)
	if err := os.MkdirAll(filepath.Dir(list), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(list, []byte("/usr/lib/modules/0.0-not-this-kernel/kernel/x.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadList(root, t.Logf)
	if err == nil || !strings.Contains(err.Error(), "built for another kernel") {
		t.Errorf("error = %v", err)
	}
}

func TestLoadMissing(t *testing.T) {
	err := Load(filepath.Join(t.TempDir(), "absent.ko"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error = %v", err)
	}
}
