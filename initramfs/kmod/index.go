// Package kmod finds and loads Linux kernel modules the way an initramfs
// without modprobe needs to: it reads the index depmod writes for a kernel
// release, resolves the modules a set of names needs in the order they
// must be loaded, and loads module files with finit_module(2).
//
// # Index
//
// Open reads these files of a release's module directory
// (/lib/modules/RELEASE):
//
//	modules.dep       "PATH: DEP..." for every loadable module (required)
//	modules.builtin   PATH of every module built into the kernel
//	modules.softdep   "softdep NAME pre: NAME... post: NAME..."
//	modules.alias     "alias ALIAS NAME"
//
// Paths are relative to the module directory. A module's name is its file
// name without the .ko (and compression) suffix, with "-" read as "_", as
// the kernel does.
//
// # Order
//
// Closure puts every module after the modules it depends on. Soft
// dependencies are followed too, "pre:" ones before the module and
// "post:" ones after it, because modprobe would: jbd2, for one, needs a
// crc32c implementation it only names through the alias crypto-crc32c.
// A soft dependency that names nothing loadable (a built-in module, an
// alias with no module) is passed over; a hard one is an error.
package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// The index files Open reads.
const (
	DepFile     = "modules.dep"
	BuiltinFile = "modules.builtin"
	SoftdepFile = "modules.softdep"
	AliasFile   = "modules.alias"
)

// suffixes are the module file suffixes, longest first.
var suffixes = []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"}

// maxLine bounds an index line; the longest real ones (modules.alias
// entries of drivers with many devices) are a few hundred bytes.
const maxLine = 64 << 10

// Index is depmod's index of one kernel release's modules.
type Index struct {
	dir      string
	modules  map[string]*module
	builtin  map[string]bool
	softdeps map[string]*softdep
	aliases  map[string][]string
}

type module struct {
	name string
	path string
	deps []string // paths, as modules.dep lists them
}

type softdep struct {
	pre, post []string
}

// Name returns the module name of a module file path.
func Name(p string) (string, bool) {
	base := path.Base(p)
	for _, s := range suffixes {
		if n, ok := strings.CutSuffix(base, s); ok && n != "" {
			return normalize(n), true
		}
	}
	return "", false
}

func normalize(name string) string { return strings.ReplaceAll(name, "-", "_") }

// Open reads the index of the module directory dir (/lib/modules/RELEASE).
// modules.dep must exist; the other files are optional.
func Open(dir string) (*Index, error) {
	ix := &Index{
		dir:      dir,
		modules:  map[string]*module{},
		builtin:  map[string]bool{},
		softdeps: map[string]*softdep{},
		aliases:  map[string][]string{},
	}
	for _, f := range []struct {
		name     string
		required bool
		parse    func(file string, n int, line string) error
	}{
		{DepFile, true, ix.parseDep},
		{BuiltinFile, false, ix.parseBuiltin},
		{SoftdepFile, false, ix.parseSoftdep},
		{AliasFile, false, ix.parseAlias},
	} {
		err := readLines(filepath.Join(dir, f.name), f.parse)
		if errors.Is(err, fs.ErrNotExist) && !f.required {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("kmod: %w", err)
		}
	}
	for _, m := range ix.modules {
		for _, d := range m.deps {
			dn, _ := Name(d)
			if dm := ix.modules[dn]; dm == nil || dm.path != d {
				return nil, fmt.Errorf("kmod: %s: %s depends on %s, which has no entry", filepath.Join(dir, DepFile), m.path, d)
			}
		}
	}
	return ix, nil
}

// Dir returns the module directory the index describes.
func (ix *Index) Dir() string { return ix.dir }

func readLines(name string, parse func(file string, n int, line string) error) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), maxLine)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := parse(name, n, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: line %d: %w", name, n+1, err)
	}
	return nil
}

// checkPath refuses module paths that could leave the module directory or
// that do not name a module file.
func checkPath(p string) (string, error) {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("bad module path %q", p)
	}
	name, ok := Name(p)
	if !ok {
		return "", fmt.Errorf("%q is not a module file (.ko, .ko.xz, .ko.zst or .ko.gz)", p)
	}
	return name, nil
}

func (ix *Index) parseDep(file string, n int, line string) error {
	p, rest, ok := strings.Cut(line, ":")
	if !ok {
		return fmt.Errorf("%s: line %d: no ':' after the module path", file, n)
	}
	name, err := checkPath(p)
	if err != nil {
		return fmt.Errorf("%s: line %d: %w", file, n, err)
	}
	if old := ix.modules[name]; old != nil {
		return fmt.Errorf("%s: line %d: module %s listed twice (%s and %s)", file, n, name, old.path, p)
	}
	m := &module{name: name, path: p}
	for _, d := range strings.Fields(rest) {
		if _, err := checkPath(d); err != nil {
			return fmt.Errorf("%s: line %d: %w", file, n, err)
		}
		m.deps = append(m.deps, d)
	}
	ix.modules[name] = m
	return nil
}

func (ix *Index) parseBuiltin(file string, n int, line string) error {
	name, err := checkPath(line)
	if err != nil {
		return fmt.Errorf("%s: line %d: %w", file, n, err)
	}
	ix.builtin[name] = true
	return nil
}

func (ix *Index) parseSoftdep(file string, n int, line string) error {
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != "softdep" {
		return fmt.Errorf("%s: line %d: want \"softdep NAME pre: ... post: ...\"", file, n)
	}
	sd := ix.softdeps[normalize(f[1])]
	if sd == nil {
		sd = &softdep{}
		ix.softdeps[normalize(f[1])] = sd
	}
	// Names before any "pre:" or "post:" have no place in the order;
	// modprobe ignores them too.
	var list *[]string
	for _, w := range f[2:] {
		switch w {
		case "pre:":
			list = &sd.pre
		case "post:":
			list = &sd.post
		default:
			if list != nil {
				*list = append(*list, w)
			}
		}
	}
	return nil
}

func (ix *Index) parseAlias(file string, n int, line string) error {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "alias" {
		return fmt.Errorf("%s: line %d: want \"alias ALIAS NAME\"", file, n)
	}
	// Device aliases are patterns matched against what a device reports;
	// only names are looked up here.
	if strings.ContainsAny(f[1], "*?[") {
		return nil
	}
	a := normalize(f[1])
	ix.aliases[a] = append(ix.aliases[a], normalize(f[2]))
	return nil
}

// Builtin reports whether the named module is built into the kernel.
func (ix *Index) Builtin(name string) bool { return ix.builtin[normalize(name)] }

// ErrUnknown is wrapped when a module is neither loadable nor built in.
var ErrUnknown = errors.New("no such module")

// Closure returns the module files (paths relative to the module
// directory) that loading the named modules takes, each after everything
// it depends on, each once. Built-in modules need no file and are left
// out. Names may also be aliases.
func (ix *Index) Closure(names ...string) ([]string, error) {
	c := &closure{ix: ix, state: map[string]int{}}
	for _, n := range names {
		if err := c.add(normalize(n), nil); err != nil {
			return nil, err
		}
	}
	return c.order, nil
}

const (
	visiting = 1
	done     = 2
)

type closure struct {
	ix    *Index
	state map[string]int
	order []string
}

// add appends name and what it needs. chain is the path of hard
// dependencies that led here, for the error messages.
func (c *closure) add(name string, chain []string) error {
	ix := c.ix
	m := ix.modules[name]
	if m == nil {
		if ix.builtin[name] {
			return nil
		}
		targets := ix.aliases[name]
		if len(targets) == 0 {
			if len(chain) > 0 {
				return fmt.Errorf("kmod: %s needs %s: %w in %s", strings.Join(chain, " -> "), name, ErrUnknown, ix.dir)
			}
			return fmt.Errorf("kmod: %s: %w in %s (not in %s or %s)", name, ErrUnknown, ix.dir, DepFile, BuiltinFile)
		}
		for _, t := range targets {
			if err := c.add(t, append(chain, name)); err != nil {
				return err
			}
		}
		return nil
	}
	switch c.state[name] {
	case done:
		return nil
	case visiting:
		return fmt.Errorf("kmod: dependency cycle: %s -> %s", strings.Join(chain, " -> "), name)
	}
	c.state[name] = visiting
	chain = append(chain, name)
	sd := ix.softdeps[name]
	if sd != nil {
		c.soft(sd.pre)
	}
	// modprobe loads the dependencies modules.dep lists last first.
	for i := len(m.deps) - 1; i >= 0; i-- {
		dn, _ := Name(m.deps[i])
		if err := c.add(dn, chain); err != nil {
			return err
		}
	}
	c.order = append(c.order, m.path)
	c.state[name] = done
	if sd != nil {
		c.soft(sd.post)
	}
	return nil
}

// soft adds soft dependencies: those that resolve to loadable modules,
// with their own dependencies; the others, and any that would close a
// cycle, are passed over, since a soft dependency is a hint.
func (c *closure) soft(names []string) {
	for _, n := range names {
		n = normalize(n)
		targets := []string{n}
		if c.ix.modules[n] == nil {
			targets = c.ix.aliases[n]
		}
		for _, t := range targets {
			if c.state[t] != 0 {
				continue
			}
			saved, savedState := len(c.order), maps.Clone(c.state)
			if err := c.add(t, nil); err != nil {
				c.order, c.state = c.order[:saved], savedState
			}
		}
	}
}
