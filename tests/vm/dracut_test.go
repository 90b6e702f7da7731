package vm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/gocfs/gocfs/initramfs/cmdline"
	"github.com/gocfs/gocfs/initramfs/config"
)

// The dracut module and what it installs.
const (
	dracutModuleDir  = "../../dracut/modules.d/37composefs"
	dracutUnitName   = "composefs-prepare-root.service"
	dracutBinaryPath = "usr/lib/composefs/composefs-prepare-root"
	dracutWantsDir   = "initrd-root-fs.target.wants"
)

// dracutUnit is a systemd unit file: every value of every key, per
// section, in file order.
type dracutUnit map[string]map[string][]string

func parseDracutUnit(b []byte) (dracutUnit, error) {
	u := dracutUnit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		case section == "":
			return nil, fmt.Errorf("line %d: %q outside a section", n, line)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fmt.Errorf("line %d: %q is not KEY=VALUE", n, line)
			}
			k = strings.TrimSpace(k)
			u[section][k] = append(u[section][k], strings.TrimSpace(v))
		}
	}
	return u, sc.Err()
}

// words splits every value of key into its space-separated words, as
// systemd reads list settings such as After=.
func (u dracutUnit) words(section, key string) []string {
	var w []string
	for _, v := range u[section][key] {
		w = append(w, strings.Fields(v)...)
	}
	return w
}

// TestDracutUnit checks the unit's conditions and ordering against what
// composefs-prepare-root acts on: it must run exactly when the kernel
// command line or the initramfs extension asks for a composefs root, and
// between the physical root's mount and the targets that use the root.
func TestDracutUnit(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(dracutModuleDir, dracutUnitName))
	if err != nil {
		t.Fatal(err)
	}
	u, err := parseDracutUnit(b)
	if err != nil {
		t.Fatalf("%s: %v", dracutUnitName, err)
	}
	// Each triggering condition ("|") alone is enough; the plain one
	// must always hold.
	wantCmdline := []string{"|" + cmdline.KeyDigest, "|" + cmdline.KeyLegacy, "|" + cmdline.KeyOSTree}
	wantPath := []string{"|/" + config.DigestPath, "/etc/initrd-release"}
	for _, tc := range []struct {
		section, key string
		want         []string
		words        bool // a list setting: compare as a set of words
	}{
		{"Unit", "DefaultDependencies", []string{"no"}, false},
		{"Unit", "ConditionKernelCommandLine", wantCmdline, false},
		{"Unit", "ConditionPathExists", wantPath, false},
		{"Unit", "Requires", []string{"sysroot.mount"}, true},
		{"Unit", "After", []string{"sysroot.mount"}, true},
		{"Unit", "Before", []string{"initrd-root-fs.target", "initrd-switch-root.target"}, true},
		{"Unit", "OnFailure", []string{"emergency.target"}, true},
		{"Unit", "OnFailureJobMode", []string{"isolate"}, false},
		{"Service", "Type", []string{"oneshot"}, false},
		{"Service", "RemainAfterExit", []string{"yes"}, false},
		{"Service", "ExecStart", []string{"/" + dracutBinaryPath}, false},
		{"Service", "StandardOutput", []string{"journal+console"}, false},
		{"Service", "StandardError", []string{"journal+console"}, false},
	} {
		got := u[tc.section][tc.key]
		want := tc.want
		if tc.words {
			got = slices.Sorted(slices.Values(u.words(tc.section, tc.key)))
			want = slices.Sorted(slices.Values(tc.want))
		}
		if !slices.Equal(got, want) {
			t.Errorf("[%s] %s = %q, want %q", tc.section, tc.key, got, want)
		}
	}

	setup, err := os.ReadFile(filepath.Join(dracutModuleDir, "module-setup.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(setup, []byte("composefs_dest=/"+dracutBinaryPath+"\n")) {
		t.Errorf("module-setup.sh does not install the binary at /%s, where the unit runs it", dracutBinaryPath)
	}
	if !bytes.Contains(setup, []byte("add-wants "+strings.TrimSuffix(dracutWantsDir, ".wants")+" "+dracutUnitName)) {
		t.Errorf("module-setup.sh does not make %s want %s", strings.TrimSuffix(dracutWantsDir, ".wants"), dracutUnitName)
	}
}

// TestDracutScripts checks the shell scripts' syntax.
func TestDracutScripts(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("SKIP: bash not found")
	}
	for _, f := range []string{filepath.Join(dracutModuleDir, "module-setup.sh"), "mkdracut.sh"} {
		if out, err := exec.Command(bash, "-n", f).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", f, err, out)
		}
	}
}

// dracutKernel is a kernel of the boot tests' cache (fetch-kernels.sh):
// CACHE/NAME/release holds its release, CACHE/NAME/lib/modules/RELEASE its
// modules with depmod's files.
type dracutKernel struct {
	name, release, root string
}

func (k dracutKernel) moduleDir() string {
	return filepath.Join(k.root, "lib", "modules", k.release)
}

// dracutKernels lists the kernels in $GOCFS_VM_KERNELS, or in the cache
// fetch-kernels.sh fills by default.
func dracutKernels() (string, []dracutKernel, error) {
	dir := os.Getenv("GOCFS_VM_KERNELS")
	if dir == "" {
		dir = "../../.cache/vm"
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return dir, nil, err
	}
	var ks []dracutKernel
	for _, e := range entries {
		root := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(filepath.Join(root, "release"))
		if err != nil {
			continue
		}
		k := dracutKernel{name: e.Name(), release: strings.TrimSpace(string(b)), root: root}
		if _, err := os.Stat(filepath.Join(k.moduleDir(), "modules.dep")); err == nil {
			ks = append(ks, k)
		}
	}
	return dir, ks, nil
}

// TestDracutInitramfs builds a dracut initramfs with mkdracut.sh for every
// cached kernel and checks, reading the archive itself, that it holds
// composefs-prepare-root, its unit wanted by initrd-root-fs.target, and
// the kernel modules composefs needs (with what they depend on).
func TestDracutInitramfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: dracut builds run as root")
	}
	dir, kernels, err := dracutKernels()
	if err != nil || len(kernels) == 0 {
		t.Skipf("SKIP: no kernel in %s (run tests/vm/fetch-kernels.sh, or set GOCFS_VM_KERNELS to its cache)", dir)
	}
	var missing []string
	for _, tool := range []string{"bash", "go", "apt-get", "dpkg", "cpio", "gzip", "systemctl", "udevadm", "modprobe", "findmnt"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		t.Skipf("SKIP: %s not found (Debian packages systemd, udev, kmod, cpio, util-linux)", strings.Join(missing, ", "))
	}

	work := t.TempDir()
	bin := filepath.Join(work, "composefs-prepare-root")
	build := exec.Command("go", "build", "-tags", "containers_image_openpgp", "-trimpath", "-o", bin, "../../cmd/composefs-prepare-root")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build composefs-prepare-root: %v\n%s", err, out)
	}
	binSum := dracutFileSum(t, bin)
	unit, err := os.ReadFile(filepath.Join(dracutModuleDir, dracutUnitName))
	if err != nil {
		t.Fatal(err)
	}

	for _, k := range kernels {
		t.Run(k.name, func(t *testing.T) {
			out := filepath.Join(work, "initramfs-"+k.name+".img")
			cmd := exec.Command("bash", "mkdracut.sh", k.release, k.root, bin, out)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("mkdracut.sh %s: %v\n%s", k.release, err, b)
			}
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			a, err := readDracutArchive(f)
			if err != nil {
				t.Fatalf("%s: %v", out, err)
			}

			if got, err := a.content(dracutBinaryPath); err != nil {
				t.Error(err)
			} else if sha256.Sum256(got) != binSum {
				t.Errorf("%s differs from the composefs-prepare-root built", dracutBinaryPath)
			}
			if r, err := a.resolve(dracutBinaryPath); err == nil && r.Mode&0o111 != 0o111 {
				t.Errorf("%s: mode %o, not executable", dracutBinaryPath, r.Mode&0o7777)
			}
			if got, err := a.content("usr/lib/systemd/system/" + dracutUnitName); err != nil {
				t.Error(err)
			} else if !bytes.Equal(got, unit) {
				t.Errorf("%s in the initramfs differs from the module's", dracutUnitName)
			}
			// Enabled: a wants link, in any unit directory, that leads to
			// the unit.
			enabled := false
			for _, d := range []string{"etc/systemd/system", "usr/lib/systemd/system"} {
				link := path.Join(d, dracutWantsDir, dracutUnitName)
				got, err := a.content(link)
				if err == nil && bytes.Equal(got, unit) {
					enabled = true
				}
			}
			if !enabled {
				t.Errorf("no %s/%s leading to the unit", dracutWantsDir, dracutUnitName)
			}
			// The unit's plain condition, which every dracut initramfs
			// must meet.
			if _, err := a.resolve("etc/initrd-release"); err != nil {
				t.Error(err)
			}
			if got, err := a.content("usr/lib/dracut/modules.txt"); err != nil {
				t.Error(err)
			} else if !slices.Contains(strings.Fields(string(got)), "composefs") {
				t.Errorf("usr/lib/dracut/modules.txt does not list composefs: %q", got)
			}
			if _, err := a.resolve("/" + config.DigestPath); err == nil {
				t.Errorf("the initramfs holds %s: only an extension may pin a digest", config.DigestPath)
			}

			// fs-verity's hashes are named by alias; where they are built
			// in, modules.alias does not name them.
			names := []string{"erofs", "overlay", "loop", "virtio_blk", "virtio_pci", "ext4"}
			for _, alias := range []string{"crypto-sha256", "crypto-sha512"} {
				n, err := dracutAliasModules(k.moduleDir(), alias)
				if err != nil {
					t.Fatal(err)
				}
				names = append(names, n...)
			}
			mods, err := dracutModuleClosure(k.moduleDir(), names...)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range mods {
				p := path.Join("usr/lib/modules", k.release, m)
				if _, err := a.resolve(p); err != nil {
					t.Errorf("kernel module missing: %v", err)
				}
			}
		})
	}
}

func dracutFileSum(t *testing.T, name string) [sha256.Size]byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// dracutModuleClosure returns the module files (paths relative to the
// module directory, as modules.dep gives them) of the named modules and of
// every module they depend on. Modules built into the kernel have no file
// and are left out.
func dracutModuleClosure(moddir string, names ...string) ([]string, error) {
	deps := map[string][]string{} // file -> files it depends on
	byName := map[string]string{} // module name -> file
	builtin := map[string]bool{}  // module names built in
	dep, err := os.ReadFile(filepath.Join(moddir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(dep), "\n") {
		file, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		deps[file] = strings.Fields(rest)
		byName[dracutModuleName(file)] = file
	}
	if b, err := os.ReadFile(filepath.Join(moddir, "modules.builtin")); err == nil {
		for _, f := range strings.Fields(string(b)) {
			builtin[dracutModuleName(f)] = true
		}
	}
	seen := map[string]bool{}
	var out []string
	var add func(string)
	add = func(f string) {
		if seen[f] {
			return
		}
		seen[f] = true
		out = append(out, f)
		for _, d := range deps[f] {
			add(d)
		}
	}
	for _, n := range names {
		f, ok := byName[n]
		switch {
		case ok:
			add(f)
		case !builtin[n]:
			return nil, fmt.Errorf("%s: module %s is neither in modules.dep nor built in", moddir, n)
		}
	}
	return out, nil
}

// dracutAliasModules returns the names of the modules modules.alias maps
// alias to.
func dracutAliasModules(moddir, alias string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(moddir, "modules.alias"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "alias" && f[1] == alias {
			names = append(names, f[2])
		}
	}
	return names, nil
}

// dracutModuleName is the name of a module file: its base name without
// .ko and a compression suffix, with "-" read as "_" as modprobe does.
func dracutModuleName(file string) string {
	n := path.Base(file)
	n, _, _ = strings.Cut(n, ".ko")
	return strings.ReplaceAll(n, "-", "_")
}

// dracutArchive is an initramfs read into memory: one or more
// concatenated uncompressed newc archives, later entries replacing earlier
// ones, as the kernel unpacks them.
type dracutArchive struct {
	recs map[string]cpio.Record
	data []byte
}

// The newc header (magic and 13 fields of 8 hex digits), and a trailer
// entry: the header, the name "TRAILER!!!" and its NUL, padded to 4 bytes.
const (
	newcHeaderLen  = 6 + 13*8
	newcTrailerLen = (newcHeaderLen + len(cpio.Trailer) + 1 + 3) &^ 3
)

// maxDracutLinks bounds symbolic link resolution, as the kernel's 40.
const maxDracutLinks = 40

func readDracutArchive(r io.Reader) (*dracutArchive, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	a := &dracutArchive{recs: map[string]cpio.Record{}, data: b}
	size := int64(len(b))
	for off := int64(0); off < size; {
		if size-off < 6 || string(b[off:off+6]) != "070701" {
			return nil, fmt.Errorf("offset %d: not an uncompressed newc archive", off)
		}
		// The reader returns io.EOF at the trailer, which then starts
		// where the last entry's content ends.
		rr := cpio.Newc.Reader(io.NewSectionReader(bytes.NewReader(b), off, size-off))
		trailer := off
		for {
			rec, err := rr.ReadRecord()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("archive at offset %d: %w", off, err)
			}
			rec.FilePos += off
			if rec.FilePos+int64(rec.FileSize) > size {
				return nil, fmt.Errorf("%s: content past the end of the initramfs", rec.Name)
			}
			a.recs[path.Clean("/"+rec.Name)] = rec
			trailer = (rec.FilePos + int64(rec.FileSize) + 3) &^ 3
		}
		// The reader also returns io.EOF for an archive cut short.
		end := trailer + int64(newcTrailerLen)
		name := trailer + newcHeaderLen
		if end > size || string(b[trailer:trailer+6]) != "070701" || string(b[name:name+int64(len(cpio.Trailer))]) != cpio.Trailer {
			return nil, fmt.Errorf("archive at offset %d: no trailer at offset %d", off, trailer)
		}
		off = end
		// The next archive, if any, starts after zero padding.
		for off < size && b[off] == 0 {
			off++
		}
	}
	return a, nil
}

// resolve returns the entry at name, following symbolic links in every
// component; absolute targets are taken from the archive's root.
func (a *dracutArchive) resolve(name string) (cpio.Record, error) {
	links := 0
	rest := strings.Split(strings.Trim(path.Clean("/"+name), "/"), "/")
	cur := "/"
	for len(rest) > 0 {
		next := path.Join(cur, rest[0])
		rest = rest[1:]
		rec, ok := a.recs[next]
		if !ok {
			return cpio.Record{}, fmt.Errorf("%s: no %s in the initramfs", name, next)
		}
		if rec.Mode&cpio.S_IFMT != cpio.S_IFLNK {
			cur = next
			continue
		}
		if links++; links > maxDracutLinks {
			return cpio.Record{}, fmt.Errorf("%s: too many symbolic links", name)
		}
		target := string(a.bytes(rec))
		if !strings.HasPrefix(target, "/") {
			target = path.Join(cur, target)
		}
		rest = append(strings.Split(strings.Trim(path.Clean(target), "/"), "/"), rest...)
		cur = "/"
	}
	rec, ok := a.recs[cur]
	if !ok {
		return cpio.Record{}, errors.New(name + ": not in the initramfs")
	}
	return rec, nil
}

// bytes returns rec's content; readDracutArchive checked its bounds.
func (a *dracutArchive) bytes(rec cpio.Record) []byte {
	return a.data[rec.FilePos : rec.FilePos+int64(rec.FileSize)]
}

// content returns the content of the regular file at name.
func (a *dracutArchive) content(name string) ([]byte, error) {
	rec, err := a.resolve(name)
	if err != nil {
		return nil, err
	}
	if rec.Mode&cpio.S_IFMT != cpio.S_IFREG {
		return nil, fmt.Errorf("%s: not a regular file (mode %o)", name, rec.Mode)
	}
	return a.bytes(rec), nil
}

// TestDracutArchive checks the initramfs reader on two concatenated
// archives, the second replacing an entry of the first, and symbolic links
// the way dracut lays them out.
func TestDracutArchive(t *testing.T) {
	archive := func(recs ...cpio.Record) []byte {
		var buf bytes.Buffer
		w := cpio.Newc.Writer(&buf)
		if err := cpio.WriteRecords(w, recs); err != nil {
			t.Fatal(err)
		}
		if err := cpio.WriteTrailer(w); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	first := archive(
		cpio.Directory("usr", 0o755),
		cpio.Directory("usr/lib", 0o755),
		cpio.Symlink("lib", "usr/lib"),
		cpio.StaticFile("usr/lib/unit", "first", 0o644),
		cpio.Directory("etc", 0o755),
		cpio.Symlink("etc/wants", "/lib/unit"),
		cpio.Symlink("etc/rel", "../lib/unit"),
		cpio.Symlink("etc/loop", "loop"),
		cpio.Symlink("etc/dangling", "/nowhere"),
	)
	second := archive(cpio.StaticFile("usr/lib/unit", "second", 0o644))
	// An initramfs pads each archive to 4 bytes; more padding is allowed.
	img := append(append(first, make([]byte, 512)...), second...)
	a, err := readDracutArchive(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string // want "" = an error
	}{
		{"usr/lib/unit", "second"},
		{"/lib/unit", "second"},
		{"etc/wants", "second"},
		{"etc/rel", "second"},
		{"etc/loop", ""},
		{"etc/dangling", ""},
		{"usr", ""}, // a directory
		{"missing", ""},
	} {
		got, err := a.content(tc.name)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: got %q, want an error", tc.name, got)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: got %q, %v, want %q", tc.name, got, err, tc.want)
		}
	}

	for _, bad := range [][]byte{
		[]byte("not a cpio archive"),
		first[:len(first)/2],                    // cut short
		append(append([]byte{}, first...), 'x'), // junk after the padding
	} {
		if _, err := readDracutArchive(bytes.NewReader(bad)); err == nil {
			t.Errorf("readDracutArchive(%.20q...) accepted a bad initramfs", bad)
		}
	}
}
