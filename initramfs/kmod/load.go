package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ListPath is where an initramfs lists the modules to load before the root
// filesystem can be mounted, relative to the initramfs root. The list
// holds one absolute path (within the initramfs) per line, in load order;
// blank lines and lines starting with "#" are ignored.
const ListPath = "usr/lib/composefs/modules.load"

// maxList bounds the list file ReadList accepts.
const maxList = 1 << 20

// WriteList writes a module list for release.
func WriteList(w io.Writer, release string, paths []string) error {
	if _, err := fmt.Fprintf(w, "# Loaded in this order by composefs-prepare-root; Linux %s.\n", release); err != nil {
		return err
	}
	for _, p := range paths {
		if err := checkListPath(p); err != nil {
			return fmt.Errorf("kmod: %w", err)
		}
		if _, err := io.WriteString(w, p+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// ReadList reads a module list.
func ReadList(r io.Reader) ([]string, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxList+1))
	if err != nil {
		return nil, fmt.Errorf("kmod: read module list: %w", err)
	}
	if len(b) > maxList {
		return nil, fmt.Errorf("kmod: module list larger than %d bytes", maxList)
	}
	var paths []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := checkListPath(line); err != nil {
			return nil, fmt.Errorf("kmod: module list line %d: %w", n, err)
		}
		paths = append(paths, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kmod: module list: %w", err)
	}
	return paths, nil
}

func checkListPath(p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p {
		return fmt.Errorf("%q is not a clean absolute path", p)
	}
	if _, ok := Name(p); !ok {
		return fmt.Errorf("%q is not a module file", p)
	}
	return nil
}

// releaseOf returns the kernel release of a path below a lib/modules
// directory, or "".
func releaseOf(p string) string {
	_, rest, ok := strings.Cut(p, "/lib/modules/")
	if !ok {
		return ""
	}
	rel, _, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	return rel
}

// compressed reports whether a module file must be handed to the kernel
// for decompression.
func compressed(p string) bool {
	return strings.HasSuffix(p, ".ko.xz") || strings.HasSuffix(p, ".ko.zst") || strings.HasSuffix(p, ".ko.gz")
}

// Load loads the module file at p. A module that is already loaded is not
// an error. Compressed files need a kernel built with MODULE_DECOMPRESS.
func Load(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("kmod: %w", err)
	}
	defer f.Close()
	flags := 0
	if compressed(p) {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(int(f.Fd()), "", flags)
	switch {
	case err == nil, errors.Is(err, unix.EEXIST):
		return nil
	case compressed(p) && errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("kmod: load %s: the kernel cannot decompress modules (no MODULE_DECOMPRESS): %w", p, err)
	}
	return fmt.Errorf("kmod: load %s: %w", p, err)
}

// LoadList loads the modules the list at root/ListPath names, in order.
// Without a list it does nothing. A module whose initialisation reports
// ENODEV (the hardware it drives is absent, such as a checksum driver for
// an instruction set the CPU lacks) is logged and passed over, as an
// alternative implementation follows it in the list; any other failure
// stops the loading. It returns the number of modules loaded.
func LoadList(root string, logf func(format string, a ...any)) (int, error) {
	name := filepath.Join(root, ListPath)
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("kmod: %w", err)
	}
	paths, err := ReadList(f)
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return 0, fmt.Errorf("kmod: uname: %w", err)
	}
	running := unix.ByteSliceToString(uts.Release[:])
	n := 0
	for _, p := range paths {
		if rel := releaseOf(p); rel != "" && rel != running {
			return n, fmt.Errorf("kmod: %s lists modules of Linux %s, but this is Linux %s: the initramfs was built for another kernel", name, rel, running)
		}
		err := Load(filepath.Join(root, p))
		if errors.Is(err, unix.ENODEV) {
			logf("module %s: no device for it, skipped", p)
			continue
		}
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
