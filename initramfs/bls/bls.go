// Package bls writes Boot Loader Specification Type 1 entries
// (loader/entries/*.conf), which systemd-boot and GRUB's blscfg read.
package bls

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/gocfs/gocfs/initramfs/cmdline"
)

// Entry is a Type 1 boot entry. Paths are relative to the root of the
// partition the entry is on, and start with "/".
type Entry struct {
	Title     string
	Version   string
	MachineID string
	SortKey   string
	Linux     string
	// Initrds are loaded in order and concatenated by the boot loader:
	// the base initramfs first, then extensions.
	Initrds []string
	// Options is the kernel command line.
	Options string
}

// WriteTo writes the entry's text.
func (e *Entry) WriteTo(w io.Writer) (int64, error) {
	if e.Linux == "" {
		return 0, errors.New("bls: entry has no linux")
	}
	var b strings.Builder
	add := func(key, val string) error {
		if strings.ContainsAny(val, "\n\r") {
			return fmt.Errorf("bls: %s %q has a line break", key, val)
		}
		if val != "" {
			b.WriteString(key)
			b.WriteByte(' ')
			b.WriteString(val)
			b.WriteByte('\n')
		}
		return nil
	}
	for _, kv := range [][2]string{
		{"title", e.Title}, {"version", e.Version}, {"machine-id", e.MachineID},
		{"sort-key", e.SortKey}, {"linux", e.Linux},
	} {
		if err := add(kv[0], kv[1]); err != nil {
			return 0, err
		}
	}
	for _, p := range e.Initrds {
		if p == "" {
			return 0, errors.New("bls: empty initrd path")
		}
		if err := add("initrd", p); err != nil {
			return 0, err
		}
	}
	if err := add("options", e.Options); err != nil {
		return 0, err
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

// SetDigest returns the command line options with every composefs image
// argument (composefs= and composefs.digest=) replaced by one naming d,
// placed where the first of them was, or at the end.
func SetDigest(options string, d cmdline.Digest) string {
	var out []string
	placed := false
	for _, arg := range strings.Fields(options) {
		key, _, _ := strings.Cut(arg, "=")
		if key == cmdline.KeyDigest || key == cmdline.KeyLegacy {
			if !placed {
				out = append(out, d.Arg())
				placed = true
			}
			continue
		}
		out = append(out, arg)
	}
	if !placed {
		out = append(out, d.Arg())
	}
	return strings.Join(out, " ")
}
