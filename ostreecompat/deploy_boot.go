package ostreecompat

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// The sysroot's boot configuration, as libostree keeps it (ostree.md §4):
//
//	boot/loader -> loader.B                      the boot version B, 0 or 1
//	boot/loader.B/entries/ostree-N-STATEROOT.conf
//	ostree/boot.B -> boot.B.S                    the sub-boot version S
//	ostree/boot.B.S/STATEROOT/BOOTCSUM/SERIAL -> ../../../deploy/STATEROOT/deploy/CSUM.DEPLOYSERIAL
//
// A new deployment list is written under the other boot version and made
// current by replacing boot/loader, one rename: a crash before it leaves the
// old list booting, after it the new one.

var (
	bootlinkRe   = regexp.MustCompile(`^/ostree/boot\.([01])/([^/]+)/([^/]+)/([0-9]+)$`)
	deployNameRe = regexp.MustCompile(`^([0-9a-f]+)\.([0-9]+)$`)
)

// deployment is one entry of the boot list.
type deployment struct {
	stateroot  string
	csum       string // the commit
	serial     int    // deploy serial: CSUM.SERIAL
	bootcsum   string
	bootserial int
	entry      *blsEntry
}

func (d *deployment) dirName() string { return d.csum + "." + strconv.Itoa(d.serial) }

// dir is the deployment directory, relative to the sysroot.
func (d *deployment) dir() string {
	return filepath.Join("ostree", "deploy", d.stateroot, "deploy", d.dirName())
}

// bootlink is the ostree= value for a boot version.
func (d *deployment) bootlink(bootversion int) string {
	return fmt.Sprintf("/ostree/boot.%d/%s/%s/%d", bootversion, d.stateroot, d.bootcsum, d.bootserial)
}

// blsEntry is a Boot Loader Specification entry, kept in the order libostree
// writes the keys it knows; others are kept after them, in their order.
type blsEntry struct {
	title, version, options, linux string
	initrds                        []string
	devicetree                     string
	extra                          [][2]string
}

func parseBLS(name string, b []byte) (*blsEntry, error) {
	e := &blsEntry{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val := line, ""
		if j := strings.IndexAny(line, " \t"); j >= 0 {
			key, val = line[:j], strings.TrimSpace(line[j+1:])
		}
		switch key {
		case "title":
			e.title = val
		case "version":
			e.version = val
		case "options":
			e.options = val
		case "linux":
			e.linux = val
		case "initrd":
			e.initrds = append(e.initrds, val)
		case "devicetree":
			e.devicetree = val
		default:
			if val == "" {
				return nil, fmt.Errorf("%s:%d: key %q without a value", name, i+1, key)
			}
			e.extra = append(e.extra, [2]string{key, val})
		}
	}
	if e.linux == "" {
		return nil, fmt.Errorf("%s: no linux line", name)
	}
	return e, nil
}

func (e *blsEntry) bytes() ([]byte, error) {
	var b strings.Builder
	add := func(key, val string) error {
		if strings.ContainsAny(val, "\n\r") {
			return fmt.Errorf("boot entry %s %q has a line break", key, val)
		}
		if val != "" {
			fmt.Fprintf(&b, "%s %s\n", key, val)
		}
		return nil
	}
	kvs := [][2]string{{"title", e.title}, {"version", e.version}, {"options", e.options}, {"linux", e.linux}}
	for _, p := range e.initrds {
		kvs = append(kvs, [2]string{"initrd", p})
	}
	kvs = append(kvs, [2]string{"devicetree", e.devicetree})
	kvs = append(kvs, e.extra...)
	for _, kv := range kvs {
		if err := add(kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	return []byte(b.String()), nil
}

// ostreeArg returns the value of the ostree= argument of a command line.
func ostreeArg(options string) (string, bool) {
	for _, a := range strings.Fields(options) {
		if v, ok := strings.CutPrefix(a, "ostree="); ok {
			return v, true
		}
	}
	return "", false
}

// setOstreeArg replaces the ostree= argument, or appends one.
func setOstreeArg(options, bootlink string) string {
	var out []string
	placed := false
	for _, a := range strings.Fields(options) {
		if strings.HasPrefix(a, "ostree=") {
			if !placed {
				out = append(out, "ostree="+bootlink)
				placed = true
			}
			continue
		}
		out = append(out, a)
	}
	if !placed {
		out = append(out, "ostree="+bootlink)
	}
	return strings.Join(out, " ")
}

// readVersionLink reads a link named prefix+N whose target is prefix+N
// (boot/loader -> loader.N) or prefix+N.M (ostree/boot.N -> boot.N.M),
// returning the number after the link's own name; absent is 0, as
// libostree takes it.
func readVersionLink(link, targetPrefix string) (int, error) {
	t, err := os.Readlink(link)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("boot version: %w", err)
	}
	v, ok := strings.CutPrefix(t, targetPrefix)
	if !ok || (v != "0" && v != "1") {
		return 0, fmt.Errorf("boot version: %s points to %q, want %s0 or %s1", link, t, targetPrefix, targetPrefix)
	}
	return int(v[0] - '0'), nil
}

// bootversion returns the current boot version of a sysroot.
func bootversion(sysroot string) (int, error) {
	return readVersionLink(filepath.Join(sysroot, "boot", "loader"), "loader.")
}

// subbootversion returns the sub-boot version the bootlinks of boot
// version bv have now.
func subbootversion(sysroot string, bv int) (int, error) {
	return readVersionLink(filepath.Join(sysroot, "ostree", fmt.Sprintf("boot.%d", bv)), fmt.Sprintf("boot.%d.", bv))
}

// listDeployments reads the deployments the current boot entries name, in
// boot order (highest version first, as libostree sorts them). Entries
// without ostree= are not deployments and are left out.
func listDeployments(sysroot string, bv int) ([]*deployment, error) {
	dir := filepath.Join(sysroot, "boot", fmt.Sprintf("loader.%d", bv), "entries")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("boot entries: %w", err)
	}
	var out []*deployment
	for _, de := range ents {
		if !strings.HasSuffix(de.Name(), ".conf") || !de.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, de.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("boot entries: %w", err)
		}
		e, err := parseBLS(p, b)
		if err != nil {
			return nil, err
		}
		link, ok := ostreeArg(e.options)
		if !ok {
			continue
		}
		d, err := resolveDeployment(sysroot, link)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		d.entry = e
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool { return versionLess(out[j].entry.version, out[i].entry.version) })
	return out, nil
}

// resolveDeployment finds the deployment a bootlink leads to.
func resolveDeployment(sysroot, link string) (*deployment, error) {
	m := bootlinkRe.FindStringSubmatch(link)
	if m == nil {
		return nil, fmt.Errorf("ostree=%s: not a bootlink /ostree/boot.B/STATEROOT/BOOTCSUM/SERIAL", link)
	}
	bootserial, err := strconv.Atoi(m[4])
	if err != nil {
		return nil, fmt.Errorf("ostree=%s: serial: %w", link, err)
	}
	target, err := os.Readlink(filepath.Join(sysroot, link))
	if err != nil {
		return nil, fmt.Errorf("ostree=%s: %w", link, err)
	}
	want := filepath.Join("..", "..", "..", "deploy", m[2], "deploy")
	if filepath.Dir(target) != want {
		return nil, fmt.Errorf("ostree=%s: links to %q, not into %s", link, target, want)
	}
	dm := deployNameRe.FindStringSubmatch(filepath.Base(target))
	if dm == nil {
		return nil, fmt.Errorf("ostree=%s: links to %q, not to CHECKSUM.SERIAL", link, target)
	}
	serial, err := strconv.Atoi(dm[2])
	if err != nil {
		return nil, fmt.Errorf("ostree=%s: deploy serial: %w", link, err)
	}
	d := &deployment{stateroot: m[2], csum: dm[1], serial: serial, bootcsum: m[3], bootserial: bootserial}
	if fi, err := os.Stat(filepath.Join(sysroot, d.dir())); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("ostree=%s: deployment %s is missing", link, d.dir())
	}
	return d, nil
}

// versionLess compares BLS versions as numbers where both are, else as
// strings.
func versionLess(a, b string) bool {
	x, errX := strconv.ParseUint(a, 10, 64)
	y, errY := strconv.ParseUint(b, 10, 64)
	if errX == nil && errY == nil {
		return x < y
	}
	return a < b
}

// assignBootserials numbers the deployments sharing a kernel and
// initramfs, in list order, as libostree does.
func assignBootserials(ds []*deployment) {
	next := map[string]int{}
	for _, d := range ds {
		key := d.stateroot + "/" + d.bootcsum
		d.bootserial = next[key]
		next[key]++
	}
}

// writeBootConfig makes ds the boot list: deployment refs, bootlinks and
// entries under the other boot version, then the swap of boot/loader. It
// returns the new boot version.
func writeBootConfig(sysroot string, ds []*deployment, setRefs func(bv, sbv int) error) (int, error) {
	cur, err := bootversion(sysroot)
	if err != nil {
		return 0, err
	}
	bv := 1 - cur
	oldSub, err := subbootversion(sysroot, bv)
	if err != nil {
		return 0, err
	}
	sbv := 1 - oldSub
	assignBootserials(ds)
	if err := setRefs(bv, sbv); err != nil {
		return 0, err
	}
	if err := writeBootlinks(sysroot, ds, bv, sbv); err != nil {
		return 0, err
	}
	if err := writeEntries(sysroot, ds, bv); err != nil {
		return 0, err
	}
	if err := swapSymlink(filepath.Join(sysroot, "boot", "loader"), fmt.Sprintf("loader.%d", bv)); err != nil {
		return 0, err
	}
	// What the previous boot version used is unreachable now; leftovers
	// would only confuse the next swap.
	for _, p := range []string{
		filepath.Join("boot", fmt.Sprintf("loader.%d", cur)),
		filepath.Join("ostree", fmt.Sprintf("boot.%d", cur)),
		filepath.Join("ostree", fmt.Sprintf("boot.%d.0", cur)),
		filepath.Join("ostree", fmt.Sprintf("boot.%d.1", cur)),
		filepath.Join("ostree", fmt.Sprintf("boot.%d.%d", bv, oldSub)),
	} {
		if err := os.RemoveAll(filepath.Join(sysroot, p)); err != nil {
			return bv, fmt.Errorf("remove the old boot configuration: %w", err)
		}
	}
	return bv, nil
}

// writeBootlinks fills ostree/boot.BV.SBV and points ostree/boot.BV at it.
func writeBootlinks(sysroot string, ds []*deployment, bv, sbv int) error {
	name := fmt.Sprintf("boot.%d.%d", bv, sbv)
	dir := filepath.Join(sysroot, "ostree", name)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("bootlinks: %w", err)
	}
	for _, d := range ds {
		parent := filepath.Join(dir, d.stateroot, d.bootcsum)
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return fmt.Errorf("bootlinks: %w", err)
		}
		target := filepath.Join("..", "..", "..", "deploy", d.stateroot, "deploy", d.dirName())
		if err := os.Symlink(target, filepath.Join(parent, strconv.Itoa(d.bootserial))); err != nil {
			return fmt.Errorf("bootlinks: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bootlinks: %w", err)
	}
	if err := syncTree(dir); err != nil {
		return fmt.Errorf("bootlinks: %w", err)
	}
	return swapSymlink(filepath.Join(sysroot, "ostree", fmt.Sprintf("boot.%d", bv)), name)
}

// writeEntries writes boot/loader.BV/entries, one entry per deployment,
// named and numbered as libostree does: index 0 is the default and gets
// the highest version.
func writeEntries(sysroot string, ds []*deployment, bv int) error {
	loader := filepath.Join(sysroot, "boot", fmt.Sprintf("loader.%d", bv))
	if err := os.RemoveAll(loader); err != nil {
		return fmt.Errorf("boot entries: %w", err)
	}
	dir := filepath.Join(loader, "entries")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("boot entries: %w", err)
	}
	n := len(ds)
	for i, d := range ds {
		e := *d.entry
		e.version = strconv.Itoa(n - i)
		e.title = retitle(e.title, i)
		e.options = setOstreeArg(e.options, d.bootlink(bv))
		b, err := e.bytes()
		if err != nil {
			return err
		}
		name := fmt.Sprintf("ostree-%d-%s.conf", n-i, d.stateroot)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return fmt.Errorf("boot entries: %w", err)
		}
	}
	if err := syncTree(loader); err != nil {
		return fmt.Errorf("boot entries: %w", err)
	}
	return nil
}

// retitle puts the deployment's index in the title's "(ostree:N)" suffix.
func retitle(title string, index int) string {
	if i := strings.LastIndex(title, " (ostree:"); i >= 0 && strings.HasSuffix(title, ")") {
		title = title[:i]
	}
	return fmt.Sprintf("%s (ostree:%d)", title, index)
}

// swapSymlink points link at target through a temporary link renamed over
// it, and syncs the directory.
func swapSymlink(link, target string) error {
	tmp := link + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("replace %s: %w", link, err)
	}
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("replace %s: %w", link, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replace %s: %w", link, err)
	}
	return syncPath(filepath.Dir(link))
}

// syncTree fsyncs every directory and regular file under root, so that
// what a rename is about to publish is on disk first.
func syncTree(root string) error {
	return filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || d.Type().IsRegular() {
			return syncPath(p)
		}
		return nil
	})
}
