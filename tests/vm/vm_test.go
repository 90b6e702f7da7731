package vm

import (
	"io"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/initramfs/minimal"
)

func TestParseRelease(t *testing.T) {
	for _, c := range []struct {
		rel          string
		major, minor int
		ok           bool
	}{
		{"6.1.0-50-amd64", 6, 1, true},
		{"6.12.95+deb12-amd64", 6, 12, true},
		{"6.18.15+deb13-amd64", 6, 18, true},
		{"7.3-rc2", 7, 3, true},
		{"6", 0, 0, false},
		{"x.1.0", 0, 0, false},
	} {
		major, minor, err := parseRelease(c.rel)
		if major != c.major || minor != c.minor || (err == nil) != c.ok {
			t.Errorf("parseRelease(%q) = %d, %d, %v", c.rel, major, minor, err)
		}
	}
	k := &Kernel{Major: 6, Minor: 12}
	if !k.AtLeast(6, 6) || !k.AtLeast(6, 12) || k.AtLeast(6, 15) || k.AtLeast(7, 0) || !k.AtLeast(5, 19) {
		t.Error("AtLeast is wrong for 6.12")
	}
}

func TestConsole(t *testing.T) {
	c := &Console{Text: "[    4.0] Run /init as init process\r\n" +
		"composefs-prepare-root: uptime: init=3.978 modules=5.157 sysroot=5.223 prepared=5.456\n" +
		Marker + " uptime=5.638\n" +
		Check + " root PASS overlay composefs:ab ro\n" +
		"[    6.4] fs-verity (vda, inode 26): FILE CORRUPTED!" + Check + " tamper PASS tamper.bin: EIO\n" +
		Check + " etc FAIL /etc/gocfs-vm/boots holds 2, want 1\n" +
		Check + " bare\n" +
		Done + "\n"}
	want := []Result{
		{"root", "PASS", "overlay composefs:ab ro"},
		{"tamper", "PASS", "tamper.bin: EIO"},
		{"etc", "FAIL", "/etc/gocfs-vm/boots holds 2, want 1"},
		{"bare", "", ""},
	}
	if got := c.Results(); !slices.Equal(got, want) {
		t.Errorf("Results() = %q", got)
	}
	if !c.Booted() || !c.Has(Done) {
		t.Error("Booted or Has(Done) is false")
	}
	if up, ok := c.Uptime(Marker, "uptime"); !ok || up != 5.638 {
		t.Errorf("marker uptime %v %v", up, ok)
	}
	if up, ok := c.Uptime("composefs-prepare-root: uptime:", "prepared"); !ok || up != 5.456 {
		t.Errorf("prepared uptime %v %v", up, ok)
	}
	if _, ok := c.Uptime(Direct, "init"); ok {
		t.Error("found a line that is not there")
	}
	if l := c.Line("Run /init"); l != "Run /init as init process" {
		t.Errorf("Line strips the carriage return badly: %q", l)
	}
}

// TestModuleClosure builds the minimal initramfs of each cached kernel and
// checks that it carries what booting needs: the modules of the default
// set that the kernel does not have built in, with their dependencies,
// and the crc32c implementation ext4 and jbd2 ask the crypto API for.
func TestModuleClosure(t *testing.T) {
	for _, c := range []struct {
		name string
		// want are module names the archive must hold, in this order.
		want []string
		// builtin are default modules this kernel has built in.
		builtin []string
	}{
		{"6.1", []string{"libcrc32c", "erofs", "overlay", "loop", "jbd2", "ext4", "virtio", "virtio_ring", "virtio_blk", "virtio_pci"}, nil},
		{"6.12", []string{"erofs", "overlay", "loop", "jbd2", "ext4", "virtio_blk"}, []string{"virtio_pci"}},
		{"6.18", []string{"crc32c_cryptoapi", "jbd2", "ext4", "virtio_blk"}, []string{"virtio_pci"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := kernel(t, c.name)
			res, err := minimal.Write(io.Discard, minimal.Options{KernelRelease: k.Release, ModulesDir: k.ModulesDir, Init: "vm_test.go"})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, m := range res.Modules {
				n := strings.ReplaceAll(strings.TrimSuffix(strings.TrimSuffix(path.Base(m), ".xz"), ".ko"), "-", "_")
				names = append(names, n)
			}
			at := -1
			for _, w := range c.want {
				i := slices.Index(names, w)
				if i < 0 {
					t.Errorf("%s is not in the initramfs (%q)", w, names)
					continue
				}
				if i < at {
					t.Errorf("%s comes too early in %q", w, names)
				}
				at = i
			}
			if !slices.Equal(res.Builtin, c.builtin) {
				t.Errorf("built in: %q, want %q", res.Builtin, c.builtin)
			}
			t.Logf("Linux %s: %s", k.Release, strings.Join(names, " "))
		})
	}
}
