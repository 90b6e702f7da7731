// Command mkcomposefs builds a composefs EROFS image from a directory or a
// composefs-dump(5) file. It accepts the options of the C tool of the same
// name and produces byte-identical images; any error exits with status 1.
package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/cmd/internal/getopt"
	"github.com/gocfs/gocfs/cmd/internal/outfile"
	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/dumpfile"
	"github.com/gocfs/gocfs/erofs/scan"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/store/objects"
	"github.com/gocfs/gocfs/verity"
)

const usage = `Usage: mkcomposefs [OPTIONS] SOURCE IMAGE
Options:
  --digest-store=PATH   Store content files in this directory
  --use-epoch           Make all mtimes zero
  --skip-devices        Don't store device nodes
  --skip-xattrs         Don't store file xattrs
  --user-xattrs         Only store user.* xattrs
  --print-digest        Print the digest of the image
  --print-digest-only   Print the digest of the image, don't write image
  --from-file           The source is a dump file, not a directory
  --min-version=N       Use this minimal format version (default=0)
  --max-version=N       Use this maximum format version (default=1)
  --threads=N           Threads used to compute digests and copy files (default=%d)
`

type config struct {
	digestStore     string
	scan            scan.Options
	printDigest     bool
	printDigestOnly bool
	fromFile        bool
	minVersion      int
	maxVersion      int
	versionSet      bool
	source, image   string
}

// usageError marks command-line errors, after which the usage text is shown.
type usageError struct{ error }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "mkcomposefs: %v\n", err)
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprintf(os.Stderr, usage, cpuCount())
		}
		os.Exit(1)
	}
}

func parseArgs(args []string) (*config, error) {
	c := &config{scan: scan.Options{Threads: cpuCount()}}
	version := func(dst *int, what string) func(string) error {
		return func(v string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("invalid %s version %s", what, v)
			}
			*dst, c.versionSet = n, true
			return nil
		}
	}
	opts := []getopt.Option{
		{Name: "skip-xattrs", Set: getopt.Flag(&c.scan.SkipXattrs)},
		{Name: "user-xattrs", Set: getopt.Flag(&c.scan.UserXattrs)},
		{Name: "skip-devices", Set: getopt.Flag(&c.scan.SkipDevices)},
		{Name: "use-epoch", Set: getopt.Flag(&c.scan.UseEpoch)},
		{Name: "digest-store", HasValue: true, Set: getopt.String(&c.digestStore)},
		{Name: "print-digest", Set: getopt.Flag(&c.printDigest)},
		{Name: "print-digest-only", Set: func(string) error {
			c.printDigest, c.printDigestOnly = true, true
			return nil
		}},
		{Name: "from-file", Set: getopt.Flag(&c.fromFile)},
		{Name: "min-version", HasValue: true, Set: version(&c.minVersion, "min")},
		{Name: "max-version", HasValue: true, Set: version(&c.maxVersion, "max")},
		{Name: "threads", HasValue: true, Set: func(v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return fmt.Errorf("invalid threads count %s", v)
			}
			c.scan.Threads = n
			return nil
		}},
	}
	operands, err := getopt.Parse(args, opts)
	if err != nil {
		return nil, usageError{err}
	}
	// As in the C tool: without either version option the range is 0..1;
	// with one of them the other defaults to 0.
	// As in C, a maximum below the minimum is raised to it.
	if !c.versionSet {
		c.minVersion, c.maxVersion = erofs.DefaultMinVersion, erofs.DefaultMaxVersion
	}
	c.maxVersion = max(c.maxVersion, c.minVersion)
	switch {
	case len(operands) < 1:
		return nil, usageError{errors.New("no source path specified")}
	case len(operands) > 2:
		return nil, usageError{errors.New("too many arguments")}
	case len(operands) == 1 && !c.printDigestOnly:
		return nil, usageError{errors.New("no destination path specified")}
	case len(operands) == 2 && c.printDigestOnly:
		return nil, usageError{errors.New("cannot specify destination path with --print-digest-only")}
	}
	if !c.fromFile && c.scan.SkipXattrs && c.scan.UserXattrs {
		return nil, usageError{errors.New("--user-xattrs conflicts with --skip-xattrs")}
	}
	c.source = operands[0]
	if c.source == "" {
		return nil, errors.New("empty source path specified")
	}
	if len(operands) == 2 {
		c.image = operands[1]
	}
	return c, nil
}

func run(args []string) error {
	c, err := parseArgs(args)
	if err != nil {
		return err
	}

	var out io.Writer = io.Discard
	var file *outfile.File
	switch {
	case c.printDigestOnly:
	case c.image == "-":
		if isTerminal(os.Stdout) {
			return errors.New("stdout is a tty.  Refusing to use it")
		}
		out = os.Stdout
	default:
		if file, err = outfile.Create(c.image); err != nil {
			return err
		}
		defer file.Abort()
		out = file
	}

	root, err := load(c)
	if err != nil {
		return err
	}

	digest := verity.New(verity.SHA256)
	w := io.Writer(digest)
	if !c.printDigestOnly {
		w = io.MultiWriter(out, digest)
	}
	if _, err := erofs.Write(w, root, erofs.WriteOptions{Versions: &erofs.VersionRange{Min: c.minVersion, Max: c.maxVersion}}); err != nil {
		return fmt.Errorf("cannot write file: %w", err)
	}
	if file != nil {
		if err := file.Commit(); err != nil {
			return fmt.Errorf("%s: %w", c.image, err)
		}
	}
	if c.printDigest {
		fmt.Println(hex.EncodeToString(digest.Sum(nil)))
	}
	return nil
}

// load builds the tree from the source. The directory-only options are
// ignored for dumpfiles, as the C tool ignores them.
func load(c *config) (*tree.Inode, error) {
	if c.fromFile {
		in := os.Stdin
		name := "<stdin>"
		if c.source != "-" {
			f, err := os.Open(c.source)
			if err != nil {
				return nil, err
			}
			defer f.Close()
			in, name = f, c.source
		}
		root, err := dumpfile.Parse(in, dumpfile.ParseOptions{Strict: os.Getenv("CFS_PARSE_STRICT") != ""})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return root, nil
	}
	opts := c.scan
	if c.digestStore != "" {
		store, err := objects.OpenDir(c.digestStore, true)
		if err != nil {
			return nil, fmt.Errorf("cannot fill store: %w", err)
		}
		opts.Store = store
	}
	return scan.Dir(c.source, opts)
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// cpuCount is the default thread count: the CPUs this process may run on.
func cpuCount() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err == nil && set.Count() > 0 {
		return set.Count()
	}
	return 1
}
