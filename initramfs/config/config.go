// Package config reads the configuration of composefs prepare-root.
//
// # Location
//
// The configuration is read from the initramfs, not from the image (the
// image is what it helps to mount): first /usr/lib/composefs/prepare-root.conf,
// the distribution's defaults, then /etc/composefs/prepare-root.conf, whose
// settings override those of the first file one key at a time. The
// initramfs extension puts its configuration at the /etc path. Missing files
// are not errors; with neither file every setting has its default.
//
// # Format
//
// Lines are "key = value" settings, "[section]" headers, blank lines and
// comments starting with "#" or ";". Keys and values have surrounding
// spaces removed. Unknown sections, unknown keys, bad values and settings
// outside a section are errors naming the file and line. The settings:
//
//	[root]
//	transient = false     # true: writes to / go to a tmpfs and are lost at reboot
//
//	[etc]
//	mount = overlay       # overlay | bind | transient | none
//
//	[var]
//	mount = bind          # bind | transient
//
// Booleans are true/false, yes/no, on/off or 1/0. For /etc, "overlay" puts
// a persistent upper directory from the state directory over the image's
// /etc; "bind" mounts the state directory's /etc instead of the image's;
// "transient" puts a tmpfs over the image's /etc; "none" leaves the image's
// read-only /etc. For /var, "bind" mounts the state directory's var and
// "transient" puts a tmpfs over the image's /var. The state directory is
// described in package prepare. The defaults are mode-dependent: see
// EtcDefault and VarDefault.
package config

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The configuration files, relative to the initramfs root, in the order
// they are read.
const (
	UsrPath = "usr/lib/composefs/prepare-root.conf"
	EtcPath = "etc/composefs/prepare-root.conf"
)

// EtcMode is how /etc is mounted.
type EtcMode int

// The /etc modes.
const (
	// EtcDefault is EtcOverlay for a composefs repository and EtcBind
	// for an ostree deployment, whose etc is a full copy.
	EtcDefault EtcMode = iota
	EtcOverlay
	EtcBind
	EtcTransient
	EtcNone
)

var etcNames = []string{"default", "overlay", "bind", "transient", "none"}

func (m EtcMode) String() string {
	if m >= 0 && int(m) < len(etcNames) {
		return etcNames[m]
	}
	return fmt.Sprintf("EtcMode(%d)", int(m))
}

// VarMode is how /var is mounted.
type VarMode int

// The /var modes.
const (
	// VarDefault is VarBind.
	VarDefault VarMode = iota
	VarBind
	VarTransient
)

var varNames = []string{"default", "bind", "transient"}

func (m VarMode) String() string {
	if m >= 0 && int(m) < len(varNames) {
		return varNames[m]
	}
	return fmt.Sprintf("VarMode(%d)", int(m))
}

// Config is the prepare-root configuration. The zero value is the default.
type Config struct {
	RootTransient bool
	Etc           EtcMode
	Var           VarMode
}

// Load reads the configuration files under root (the initramfs root, "/"
// at boot) in order.
func Load(root string) (Config, error) {
	var c Config
	for _, p := range []string{UsrPath, EtcPath} {
		name := filepath.Join(root, p)
		f, err := os.Open(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		err = Parse(name, f, &c)
		f.Close()
		if err != nil {
			return Config{}, err
		}
	}
	return c, nil
}

// Parse applies the settings of the file read from r to c; name is the
// file's name for errors.
func Parse(name string, r io.Reader, c *Config) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	section := ""
	for line := 1; sc.Scan(); line++ {
		if err := c.parseLine(&section, strings.TrimSpace(sc.Text())); err != nil {
			return fmt.Errorf("config: %s:%d: %w", name, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("config: %s: %w", name, err)
	}
	return nil
}

func (c *Config) parseLine(section *string, s string) error {
	if s == "" || s[0] == '#' || s[0] == ';' {
		return nil
	}
	if s[0] == '[' {
		if s[len(s)-1] != ']' {
			return fmt.Errorf("unterminated section header %q", s)
		}
		name := strings.TrimSpace(s[1 : len(s)-1])
		switch name {
		case "root", "etc", "var":
			*section = name
			return nil
		}
		return fmt.Errorf("unknown section [%s] (want [root], [etc] or [var])", name)
	}
	key, val, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("%q is not a setting (want key = value)", s)
	}
	key, val = strings.TrimSpace(key), strings.TrimSpace(val)
	switch {
	case *section == "":
		return fmt.Errorf("setting %q outside a section", key)
	case *section == "root" && key == "transient":
		b, err := parseBool(val)
		if err != nil {
			return fmt.Errorf("[root] transient: %w", err)
		}
		c.RootTransient = b
	case *section == "etc" && key == "mount":
		i := indexOf(etcNames[1:], val)
		if i < 0 {
			return fmt.Errorf("[etc] mount = %q: want overlay, bind, transient or none", val)
		}
		c.Etc = EtcMode(i + 1)
	case *section == "var" && key == "mount":
		i := indexOf(varNames[1:], val)
		if i < 0 {
			return fmt.Errorf("[var] mount = %q: want bind or transient", val)
		}
		c.Var = VarMode(i + 1)
	default:
		return fmt.Errorf("unknown setting %q in [%s]", key, *section)
	}
	return nil
}

func indexOf(names []string, s string) int {
	for i, n := range names {
		if n == s {
			return i
		}
	}
	return -1
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (want true or false)", s)
}
