// Command mount.composefs mounts a composefs image. It is a drop-in for the
// mount helper of the C composefs project, which mount(8) runs for
// "mount -t composefs IMAGE DIR -o OPTIONS":
//
//	mount.composefs [-t composefs] [-o OPTIONS] [-fnsv] IMAGE DIR
//
// OPTIONS are those of the C helper, separated by commas:
//
//	basedir=DIR[:DIR...]  object directories, searched in order (required)
//	digest=HEX            the image's fs-verity digest; implies verity
//	verity                every object must have fs-verity matching the image
//	tryverity             verify objects when the kernel and objects can
//	upperdir=DIR          writable upper directory (with workdir)
//	workdir=DIR           overlayfs work directory (with upperdir)
//	idmap=PATH            user namespace whose ID mapping to mount through
//	ro, rw                read-only or read-write
//
// A backslash makes the next character literal, so values can hold commas
// and (in basedir) colons. Unknown options are errors, unless -s (sloppy)
// is given. The flags mount(8) passes to helpers are accepted: -f (fake)
// checks the command line and mounts nothing, -v reports how the image was
// mounted, -n is ignored. Any failure exits with status 1, as the C helper
// does.
//
// Unlike the C helper, verity and digest= refuse to mount when the objects
// have no fs-verity, and tryverity then mounts without verification, where
// the C helper gives a mount whose every read fails.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/gocfs/gocfs/mount"
)

const usage = `usage: mount.composefs [-t type] [-o opt[,opts..]] IMAGE MOUNTPOINT
Example:
  mount.composefs -o basedir=/composefs/objects exampleimage.cfs /mnt/exampleimage
or, as a mount helper:
  mount -t composefs -o basedir=/composefs/objects exampleimage.cfs /mnt/exampleimage

Supported options:
  basedir=PATH[:PATH]    Specify location of basedir(s)
  digest=DIGEST          Specify required image digest
  idmap=PATH             Specify path to a user namespace whose ID mapping should be used
  verity                 Require all files to have specified and valid fs-verity digests
  tryverity              If supported by kernel, require fs-verity
  ro                     Read only
  rw                     Read/write
  upperdir               Overlayfs upperdir
  workdir                Overlayfs workdir
`

const prog = "mount.composefs"

// config is a parsed command line.
type config struct {
	help    bool
	fake    bool
	verbose bool
	sloppy  bool
	options []string // each -o argument
	image   string
	target  string
	mount   mount.Options
}

// usageError marks errors after which the usage text is shown.
type usageError struct{ error }

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run carries out one invocation and returns the exit status.
func run(args []string, stderr io.Writer) int {
	c, err := parseArgs(args)
	if err == nil && c.help {
		fmt.Fprint(stderr, usage)
		return 0
	}
	if err == nil {
		err = c.parseOptions()
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprint(stderr, usage)
		}
		return 1
	}
	if c.fake {
		return 0
	}
	c.mount.ImagePath = c.image
	info, err := mount.Mount(c.target, c.mount)
	if err != nil {
		var me *mount.Error
		if errors.As(err, &me) {
			err = me.Err
		}
		fmt.Fprintf(stderr, "%s: Failed to mount composefs %s: %v\n", prog, c.image, err)
		return 1
	}
	if c.verbose {
		var how []string
		if info.Loop {
			how = append(how, "loop device")
		}
		if info.Verity {
			how = append(how, "verity=require")
		}
		fmt.Fprintf(stderr, "%s: mounted %s on %s (tier %s%s)\n", prog, c.image, c.target, info.Tier,
			strings.Join(append([]string{""}, how...), ", "))
	}
	return 0
}

// parseArgs parses the command line as getopt(3) would with "ht:o:" plus
// the flags mount(8) passes: options may follow the operands.
func parseArgs(args []string) (*config, error) {
	c := &config{}
	var operands []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			operands = append(operands, args[i+1:]...)
			break
		}
		if a == "--help" {
			c.help = true
			continue
		}
		if len(a) < 2 || a[0] != '-' {
			operands = append(operands, a)
			continue
		}
		for j := 1; j < len(a); j++ {
			switch opt := a[j]; opt {
			case 'h':
				c.help = true
			case 'f':
				c.fake = true
			case 'v':
				c.verbose = true
			case 's':
				c.sloppy = true
			case 'n':
			case 't', 'o', 'N':
				value := a[j+1:]
				if value == "" {
					if i+1 >= len(args) {
						return nil, usageError{fmt.Errorf("option requires an argument -- '%c'", opt)}
					}
					i++
					value = args[i]
				}
				switch opt {
				case 't':
					if value != "composefs" {
						return nil, fmt.Errorf("unsupported fs type '%s'", value)
					}
				case 'o':
					c.options = append(c.options, value)
				case 'N':
					return nil, errors.New("mounting in another namespace (-N) is not supported")
				}
				j = len(a)
			default:
				return nil, usageError{fmt.Errorf("invalid option -- '%c'", opt)}
			}
		}
	}
	if c.help {
		return c, nil
	}
	switch len(operands) {
	case 0:
		return nil, usageError{errors.New("no source path specified")}
	case 1:
		return nil, usageError{errors.New("no mount path specified")}
	case 2:
	default:
		return nil, usageError{fmt.Errorf("unexpected argument %q", operands[2])}
	}
	c.image, c.target = operands[0], operands[1]
	return c, nil
}

// parseOptions interprets the -o options into c.mount.
func (c *config) parseOptions() error {
	var verity, tryverity, digest bool
	o := &c.mount
	for _, list := range c.options {
		opts, err := splitOptions(list)
		if err != nil {
			return err
		}
		for _, opt := range opts {
			needValue := func() (string, error) {
				if !opt.hasValue {
					return "", fmt.Errorf("no value specified for %s option", opt.key)
				}
				return unescape(opt.value), nil
			}
			var err error
			switch opt.key {
			case "basedir":
				if _, err = needValue(); err == nil {
					o.ObjectDirs, err = splitBasedir(opt.value)
				}
			case "digest":
				var v string
				if v, err = needValue(); err == nil {
					o.Digest, err = mount.ParseDigest(v)
					digest = true
				}
			case "upperdir":
				o.UpperDir, err = needValue()
			case "workdir":
				o.WorkDir, err = needValue()
			case "idmap":
				o.IDMap, err = needValue()
			case "verity", "tryverity", "ro", "rw":
				if opt.hasValue {
					return fmt.Errorf("option %s takes no value", opt.key)
				}
				switch opt.key {
				case "verity":
					verity = true
				case "tryverity":
					tryverity = true
				default:
					o.ReadOnly = opt.key == "ro"
				}
			default:
				if !c.sloppy {
					return fmt.Errorf("unsupported option %s", opt.key)
				}
			}
			if err != nil {
				return err
			}
		}
	}
	if len(o.ObjectDirs) == 0 {
		return usageError{errors.New("no object dirs specified")}
	}
	if (o.UpperDir == "") != (o.WorkDir == "") {
		return errors.New("both workdir and upperdir must be specified if used")
	}
	switch {
	case verity || digest:
		o.Verity = mount.VerityRequire
	case tryverity:
		o.Verity = mount.VerityTry
	}
	return nil
}

// option is one key[=value] of an option list; value is still escaped.
type option struct {
	key, value string
	hasValue   bool
}

// splitOptions splits an option list at commas not escaped by a backslash.
// The key ends at the first unescaped "=".
func splitOptions(s string) ([]option, error) {
	var opts []option
	start, eq := 0, -1
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			switch s[i] {
			case '\\':
				if i+1 == len(s) {
					return nil, fmt.Errorf("option %q ends in a backslash", s[start:])
				}
				i++
				continue
			case '=':
				if eq < 0 {
					eq = i
				}
				continue
			case ',':
			default:
				continue
			}
		}
		o := option{key: s[start:i]}
		if eq >= 0 {
			o.key, o.value, o.hasValue = s[start:eq], s[eq+1:i], true
		}
		if o.key == "" {
			return nil, fmt.Errorf("empty option in %q", s)
		}
		opts = append(opts, o)
		start, eq = i+1, -1
	}
	return opts, nil
}

// splitBasedir splits an escaped basedir value at colons not escaped by a
// backslash.
func splitBasedir(v string) ([]string, error) {
	var dirs []string
	start := 0
	for i := 0; i <= len(v); i++ {
		if i < len(v) && v[i] == '\\' {
			i++
			continue
		}
		if i < len(v) && v[i] != ':' {
			continue
		}
		d := unescape(v[start:i])
		if d == "" {
			return nil, fmt.Errorf("empty directory in basedir %q", unescape(v))
		}
		dirs = append(dirs, d)
		start = i + 1
	}
	return dirs, nil
}

// unescape drops each escaping backslash. A value never ends in a lone
// backslash: splitOptions refuses that.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
