package minimal

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/gocfs/gocfs/initramfs/cmdline"
	"github.com/gocfs/gocfs/initramfs/extension"
	"github.com/gocfs/gocfs/initramfs/kmod"
	"github.com/gocfs/gocfs/verity"
)

const release = "6.18.15+deb13-amd64"

// fakeKernel makes a module directory in which ext4 needs jbd2 and loop
// and virtio_pci are built in, and an init program.
func fakeKernel(t *testing.T) (modDir, prog string) {
	t.Helper()
	modDir = t.TempDir()
	rel := filepath.Join(modDir, release)
	files := map[string]string{
		kmod.DepFile: "kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz\nkernel/fs/jbd2/jbd2.ko.xz:\n" +
			"kernel/fs/erofs/erofs.ko.xz:\nkernel/fs/overlayfs/overlay.ko.xz:\nkernel/drivers/block/virtio_blk.ko.xz:\n",
		kmod.BuiltinFile:                        "kernel/drivers/block/loop.ko\nkernel/drivers/virtio/virtio_pci.ko\n",
		"kernel/fs/ext4/ext4.ko.xz":             "ext4 module",
		"kernel/fs/jbd2/jbd2.ko.xz":             "jbd2 module",
		"kernel/fs/erofs/erofs.ko.xz":           "erofs module",
		"kernel/fs/overlayfs/overlay.ko.xz":     "overlay module",
		"kernel/drivers/block/virtio_blk.ko.xz": "virtio_blk module",
	}
	for name, content := range files {
		p := filepath.Join(rel, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	prog = filepath.Join(t.TempDir(), "composefs-prepare-root")
	if err := os.WriteFile(prog, []byte("\x7fELF init program"), 0o755); err != nil {
		t.Fatal(err)
	}
	return modDir, prog
}

type entry struct {
	mode    uint64
	content string
	info    cpio.Info
}

func readArchive(t *testing.T, b []byte) ([]string, map[string]entry) {
	t.Helper()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(b)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	m := map[string]entry{}
	for _, r := range recs {
		if r.Name == cpio.Trailer {
			continue
		}
		var content []byte
		if r.ReaderAt != nil {
			content, err = io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
			if err != nil {
				t.Fatal(err)
			}
		}
		names = append(names, r.Name)
		m[r.Name] = entry{r.Mode, string(content), r.Info}
	}
	return names, m
}

func TestWrite(t *testing.T) {
	modDir, prog := fakeKernel(t)
	d := cmdline.Digest{Algorithm: verity.SHA256, Hex: strings.Repeat("ab", 32), Insecure: true}
	opts := Options{
		KernelRelease: release, ModulesDir: modDir, Init: prog,
		Config:    []byte("[etc]\nmount = transient\n"),
		Extension: &extension.Extension{Digest: d, Config: []byte("[var]\nmount = transient\n")},
	}
	var buf bytes.Buffer
	res, err := Write(&buf, opts)
	if err != nil {
		t.Fatal(err)
	}
	wantModules := []string{
		"kernel/fs/erofs/erofs.ko.xz", "kernel/fs/overlayfs/overlay.ko.xz",
		"kernel/fs/jbd2/jbd2.ko.xz", "kernel/fs/ext4/ext4.ko.xz", "kernel/drivers/block/virtio_blk.ko.xz",
	}
	if strings.Join(res.Modules, " ") != strings.Join(wantModules, " ") {
		t.Errorf("modules %q, want %q", res.Modules, wantModules)
	}
	if strings.Join(res.Builtin, " ") != "loop virtio_pci" {
		t.Errorf("built in %q", res.Builtin)
	}

	names, got := readArchive(t, buf.Bytes())
	mp := "usr/lib/modules/" + release + "/"
	want := map[string]struct {
		mode    uint64
		content string
	}{
		"dev":                                 {cpio.S_IFDIR | 0o755, ""},
		"dev/console":                         {cpio.S_IFCHR | 0o600, ""},
		"etc":                                 {cpio.S_IFDIR | 0o755, ""},
		"etc/composefs":                       {cpio.S_IFDIR | 0o755, ""},
		"etc/composefs/digest":                {cpio.S_IFREG | 0o644, d.String() + "\n"},
		"etc/composefs/prepare-root.conf":     {cpio.S_IFREG | 0o644, "[var]\nmount = transient\n"},
		"init":                                {cpio.S_IFREG | 0o755, "\x7fELF init program"},
		"proc":                                {cpio.S_IFDIR | 0o755, ""},
		"run":                                 {cpio.S_IFDIR | 0o755, ""},
		"sys":                                 {cpio.S_IFDIR | 0o755, ""},
		"sysroot":                             {cpio.S_IFDIR | 0o755, ""},
		"usr":                                 {cpio.S_IFDIR | 0o755, ""},
		"usr/lib":                             {cpio.S_IFDIR | 0o755, ""},
		"usr/lib/composefs":                   {cpio.S_IFDIR | 0o755, ""},
		"usr/lib/composefs/modules.load":      {cpio.S_IFREG | 0o644, ""},
		"usr/lib/composefs/prepare-root.conf": {cpio.S_IFREG | 0o644, "[etc]\nmount = transient\n"},
		"usr/lib/modules":                     {cpio.S_IFDIR | 0o755, ""},
		"usr/lib/modules/" + release:          {cpio.S_IFDIR | 0o755, ""},
		mp + "kernel":                         {cpio.S_IFDIR | 0o755, ""},
		mp + "kernel/drivers":                 {cpio.S_IFDIR | 0o755, ""},
		mp + "kernel/drivers/block":           {cpio.S_IFDIR | 0o755, ""},
		mp + "kernel/drivers/block/virtio_blk.ko.xz": {cpio.S_IFREG | 0o644, "virtio_blk module"},
		mp + "kernel/fs":                         {cpio.S_IFDIR | 0o755, ""},
		mp + "kernel/fs/erofs":                   {cpio.S_IFDIR | 0o755, ""},
		mp + "kernel/fs/erofs/erofs.ko.xz":       {cpio.S_IFREG | 0o644, "erofs module"},
		mp + "kernel/fs/ext4":                    {cpio.S_IFDIR | 0o755, ""},
		mp + "kernel/fs/ext4/ext4.ko.xz":         {cpio.S_IFREG | 0o644, "ext4 module"},
		mp + "kernel/fs/jbd2":                    {cpio.S_IFDIR | 0o755, ""},
		mp + "kernel/fs/jbd2/jbd2.ko.xz":         {cpio.S_IFREG | 0o644, "jbd2 module"},
		mp + "kernel/fs/overlayfs":               {cpio.S_IFDIR | 0o755, ""},
		mp + "kernel/fs/overlayfs/overlay.ko.xz": {cpio.S_IFREG | 0o644, "overlay module"},
	}
	for i, n := range names {
		w, ok := want[n]
		if !ok {
			t.Errorf("unexpected entry %q", n)
			continue
		}
		e := got[n]
		if e.mode != w.mode || (w.content != "" && e.content != w.content) {
			t.Errorf("%s: mode %o content %q, want %o %q", n, e.mode, e.content, w.mode, w.content)
		}
		if e.info.UID != 0 || e.info.GID != 0 || e.info.MTime != 0 || e.info.Ino != uint64(i+1) {
			t.Errorf("%s: uid %d gid %d mtime %d ino %d", n, e.info.UID, e.info.GID, e.info.MTime, e.info.Ino)
		}
		if i > 0 && names[i-1] >= n {
			t.Errorf("%s after %s: not sorted", n, names[i-1])
		}
	}
	for n := range want {
		if _, ok := got[n]; !ok {
			t.Errorf("missing entry %q", n)
		}
	}
	if c := got["dev/console"].info; c.Rmajor != 5 || c.Rminor != 1 {
		t.Errorf("dev/console is %d:%d", c.Rmajor, c.Rminor)
	}
	list, err := kmod.ReadList(strings.NewReader(got[kmod.ListPath].content))
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range list {
		if p != "/"+mp+wantModules[i] {
			t.Errorf("load list entry %d is %q", i, p)
		}
	}
	if len(list) != len(wantModules) {
		t.Errorf("load list has %d entries", len(list))
	}

	var again bytes.Buffer
	if _, err := Write(&again, opts); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("two builds differ")
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive of %d bytes: an extension appended to it would not be aligned", buf.Len())
	}
}

func TestWriteMinimalOptions(t *testing.T) {
	modDir, prog := fakeKernel(t)
	var buf bytes.Buffer
	res, err := Write(&buf, Options{KernelRelease: release, ModulesDir: modDir, Init: prog, Modules: []string{"loop"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Modules) != 0 {
		t.Errorf("modules %q for a built-in module", res.Modules)
	}
	names, got := readArchive(t, buf.Bytes())
	for _, n := range names {
		if strings.HasPrefix(n, "etc") || strings.HasSuffix(n, "prepare-root.conf") {
			t.Errorf("unexpected entry %q", n)
		}
	}
	if _, ok := got[kmod.ListPath]; !ok {
		t.Error("no load list")
	}
}

func TestWriteErrors(t *testing.T) {
	modDir, prog := fakeKernel(t)
	base := Options{KernelRelease: release, ModulesDir: modDir, Init: prog}
	for _, c := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"no release", func(o *Options) { o.KernelRelease = "" }, "bad kernel release"},
		{"release with slash", func(o *Options) { o.KernelRelease = "../x" }, "bad kernel release"},
		{"unknown release", func(o *Options) { o.KernelRelease = "9.9" }, "modules.dep"},
		{"no init", func(o *Options) { o.Init = "" }, "no init program"},
		{"missing init", func(o *Options) { o.Init = filepath.Join(modDir, "absent") }, "init program"},
		{"unknown module", func(o *Options) { o.Modules = []string{"xfs"} }, "xfs: no such module"},
		{"bad config", func(o *Options) { o.Config = []byte("[etc]\nmount = sideways\n") }, "sideways"},
		{"bad extension", func(o *Options) { o.Extension = &extension.Extension{} }, "no image digest"},
		{"missing module file", func(o *Options) {
			os.Remove(filepath.Join(modDir, release, "kernel/fs/jbd2/jbd2.ko.xz"))
		}, "jbd2.ko.xz"},
	} {
		o := base
		c.edit(&o)
		_, err := Write(io.Discard, o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error = %v, want %q", c.name, err, c.want)
		}
	}
}
