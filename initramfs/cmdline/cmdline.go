// Package cmdline parses the kernel command line arguments composefs
// prepare-root acts on.
//
// An image is named by its fs-verity digest in one of these forms:
//
//	composefs.digest=v1-sha256-12:HEX   (64 hex digits)
//	composefs.digest=v1-sha512-12:HEX   (128 hex digits)
//	composefs=HEX                       (legacy; the length gives the algorithm)
//
// "v1" is the version of the digest scheme and "12" the base-2 logarithm of
// the fs-verity block size. A "?" right after "=" marks the digest insecure:
// the image may be booted without fs-verity. Several such arguments may be
// given; they are candidates, tried in command line order, and the first
// image present in the repository is booted. A malformed digest is an
// error, not skipped: a typing error must not silently boot another image.
package cmdline

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/gocfs/gocfs/verity"
)

// The argument names.
const (
	KeyDigest = "composefs.digest"
	KeyLegacy = "composefs"
	KeyOSTree = "ostree"
)

// Digest is a composefs image digest from the command line or the
// initramfs extension.
type Digest struct {
	Algorithm verity.Algorithm
	// Hex is the digest in lower-case hexadecimal, as repositories name
	// images.
	Hex string
	// Insecure allows booting the image without fs-verity.
	Insecure bool
}

// String returns d in the composefs.digest= value form.
func (d Digest) String() string {
	var b strings.Builder
	if d.Insecure {
		b.WriteByte('?')
	}
	b.WriteString("v1-")
	b.WriteString(d.Algorithm.String())
	b.WriteString("-12:")
	b.WriteString(d.Hex)
	return b.String()
}

// Arg returns the command line argument that names d.
func (d Digest) Arg() string { return KeyDigest + "=" + d.String() }

// ErrBadDigest is wrapped by the errors of malformed digests.
var ErrBadDigest = errors.New("malformed composefs digest")

// ParseDigest parses the value of a composefs.digest= argument (also the
// content of the extension's digest file).
func ParseDigest(value string) (Digest, error) {
	insecure := strings.HasPrefix(value, "?")
	v := strings.TrimPrefix(value, "?")
	scheme, h, ok := strings.Cut(v, ":")
	if !ok {
		return Digest{}, fmt.Errorf("%w %q: want v1-sha256-12:HEX or v1-sha512-12:HEX", ErrBadDigest, value)
	}
	var alg verity.Algorithm
	switch scheme {
	case "v1-sha256-12":
		alg = verity.SHA256
	case "v1-sha512-12":
		alg = verity.SHA512
	default:
		return Digest{}, fmt.Errorf("%w %q: unknown scheme %q (want v1-sha256-12 or v1-sha512-12)", ErrBadDigest, value, scheme)
	}
	d, err := parseHex(value, h, alg)
	if err != nil {
		return Digest{}, err
	}
	d.Insecure = insecure
	return d, nil
}

// ParseLegacy parses the value of a composefs= argument.
func ParseLegacy(value string) (Digest, error) {
	insecure := strings.HasPrefix(value, "?")
	h := strings.TrimPrefix(value, "?")
	var alg verity.Algorithm
	switch len(h) {
	case 2 * verity.SHA256.Size():
		alg = verity.SHA256
	case 2 * verity.SHA512.Size():
		alg = verity.SHA512
	default:
		return Digest{}, fmt.Errorf("%w %q: %d hex digits, want 64 (sha256) or 128 (sha512)", ErrBadDigest, value, len(h))
	}
	d, err := parseHex(value, h, alg)
	if err != nil {
		return Digest{}, err
	}
	d.Insecure = insecure
	return d, nil
}

func parseHex(value, h string, alg verity.Algorithm) (Digest, error) {
	if len(h) != 2*alg.Size() {
		return Digest{}, fmt.Errorf("%w %q: %d hex digits, want %d for %s", ErrBadDigest, value, len(h), 2*alg.Size(), alg)
	}
	if _, err := hex.DecodeString(h); err != nil {
		return Digest{}, fmt.Errorf("%w %q: %v", ErrBadDigest, value, err)
	}
	return Digest{Algorithm: alg, Hex: strings.ToLower(h)}, nil
}

// Args are the arguments of a kernel command line prepare-root uses.
type Args struct {
	// Digests are the image candidates, in command line order.
	Digests []Digest
	// OSTree is the value of ostree=, the bootlink of an ostree
	// deployment ("" if absent).
	OSTree string

	// Root, RootFSType and RootFlags are root=, rootfstype= and
	// rootflags=, which init mode uses to mount the physical root.
	Root, RootFSType, RootFlags string
	// ReadOnly is set by "ro" and cleared by "rw"; the last one wins, as
	// in the kernel.
	ReadOnly bool
	// Init is init=, the program init mode executes in the new root
	// ("" for the default).
	Init string
}

// Parse parses a kernel command line (the content of /proc/cmdline).
// Arguments it does not know are ignored.
func Parse(cmdline string) (*Args, error) {
	a := &Args{}
	for _, arg := range Split(cmdline) {
		key, val, hasVal := strings.Cut(arg, "=")
		switch {
		case arg == "ro":
			a.ReadOnly = true
		case arg == "rw":
			a.ReadOnly = false
		case !hasVal:
		case key == KeyDigest:
			d, err := ParseDigest(val)
			if err != nil {
				return nil, fmt.Errorf("kernel argument %s: %w", arg, err)
			}
			a.Digests = append(a.Digests, d)
		case key == KeyLegacy:
			d, err := ParseLegacy(val)
			if err != nil {
				return nil, fmt.Errorf("kernel argument %s: %w", arg, err)
			}
			a.Digests = append(a.Digests, d)
		case key == KeyOSTree:
			a.OSTree = val
		case key == "root":
			a.Root = val
		case key == "rootfstype":
			a.RootFSType = val
		case key == "rootflags":
			a.RootFlags = val
		case key == "init":
			a.Init = val
		}
	}
	return a, nil
}

// Split splits a command line into arguments as the kernel does: on
// whitespace outside double quotes, with the quotes removed.
func Split(cmdline string) []string {
	var args []string
	var cur strings.Builder
	inArg, quoted := false, false
	for i := 0; i < len(cmdline); i++ {
		c := cmdline[i]
		switch {
		case c == '"':
			quoted = !quoted
			inArg = true
		case !quoted && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args
}

// ErrDisagree is wrapped when the command line names an image other than
// the one the initramfs extension pins.
var ErrDisagree = errors.New("kernel command line disagrees with the digest in the initramfs")

// Candidates returns the digests to try, in order. pinned, if not nil, is
// the digest of the initramfs extension: it is authoritative, so it is the
// only candidate, and any command line digest that differs from it (in
// value, algorithm or insecure marker) is refused.
func Candidates(fromCmdline []Digest, pinned *Digest) ([]Digest, error) {
	if pinned == nil {
		return fromCmdline, nil
	}
	for _, d := range fromCmdline {
		if d != *pinned {
			return nil, fmt.Errorf("%w: command line has %s, initramfs has %s", ErrDisagree, d.Arg(), pinned.Arg())
		}
	}
	return []Digest{*pinned}, nil
}
