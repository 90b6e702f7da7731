// Command composefs-info inspects composefs images: it lists their files,
// prints the objects they reference or the ones missing from a base
// directory, dumps them in composefs-dump(5) format, and measures files. It
// accepts the C tool's command line and prints the same output.
package main

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/gocfs/gocfs/cmd/internal/getopt"
	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/dumpfile"
	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/verity"
)

const usage = "usage: composefs-info [--basedir=path] [--filter=NAME] [ls|objects|dump|missing-objects|measure-file] IMAGES...\n"

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "composefs-info: %v\n", err)
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprint(os.Stderr, usage)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

func run(args []string, stdout io.Writer) error {
	var basedir string
	var filters []string
	opts := []getopt.Option{
		{Name: "basedir", HasValue: true, Set: getopt.String(&basedir)},
		{Name: "filter", HasValue: true, Set: func(v string) error {
			if strings.Contains(v, "/") {
				return fmt.Errorf("filter must be a single name: %s", v)
			}
			filters = append(filters, v)
			return nil
		}},
	}
	operands, err := getopt.Parse(args, opts)
	if err != nil {
		return usageError{err}
	}
	if len(operands) == 0 {
		return usageError{errors.New("no command specified")}
	}
	cmd, files := operands[0], operands[1:]

	out := bufio.NewWriterSize(stdout, 1<<16)
	defer out.Flush()

	var each func(root *tree.Inode) error
	var end func() error
	switch cmd {
	case "measure-file":
		if len(files) == 0 {
			return usageError{errors.New("no files specified")}
		}
		for _, f := range files {
			d, err := measure(f)
			if err != nil {
				return err
			}
			fmt.Fprintln(out, hex.EncodeToString(d))
		}
		return out.Flush()
	case "ls":
		each = func(root *tree.Inode) error { return list(out, root) }
	case "dump":
		each = func(root *tree.Inode) error { return dumpfile.Write(out, root, dumpfile.WriteOptions{}) }
	case "objects", "missing-objects":
		objs := make(map[string]bool)
		each = func(root *tree.Inode) error {
			collectObjects(root, objs)
			return nil
		}
		end = func() error {
			return printObjects(out, objs, basedir, cmd == "missing-objects")
		}
	default:
		return fmt.Errorf("unknown command '%s'", cmd)
	}
	if basedir != "" {
		if fi, err := os.Stat(basedir); err != nil || !fi.IsDir() {
			return fmt.Errorf("can't open basedir `%s`: %w", basedir, notDir(err))
		}
	}
	if len(files) == 0 {
		return usageError{errors.New("no image path specified")}
	}
	for _, img := range files {
		root, err := load(img, filters)
		if err != nil {
			return err
		}
		if err := each(root); err != nil {
			return err
		}
	}
	if end != nil {
		if err := end(); err != nil {
			return err
		}
	}
	return out.Flush()
}

func notDir(err error) error {
	if err != nil {
		return err
	}
	return errors.New("not a directory")
}

// load reads an image; with filters only the named top-level entries are
// kept, and hardlinks are re-marked so that each inode's first remaining
// name is its primary.
func load(p string, filters []string) (*tree.Inode, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("failed to open '%s': %w", p, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("failed to load '%s': %w", p, err)
	}
	root, _, err := erofs.ReadTree(f, fi.Size())
	if err != nil {
		return nil, fmt.Errorf("failed to load '%s': %w", p, err)
	}
	if len(filters) > 0 {
		root.Entries = slices.DeleteFunc(root.Entries, func(d *tree.Dirent) bool {
			return !slices.Contains(filters, d.Name)
		})
		tree.MarkHardlinks(root)
	}
	return root, nil
}

// measure returns a file's fs-verity digest: the kernel's when the file has
// verity enabled, else computed here.
func measure(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("failed to open '%s': %w", p, err)
	}
	defer f.Close()
	alg, d, err := verity.Measure(f)
	if err == nil && alg == verity.SHA256 {
		return d, nil
	}
	if err != nil && !errors.Is(err, verity.ErrNotSupported) && !errors.Is(err, verity.ErrNoVerity) {
		return nil, fmt.Errorf("failed to measure '%s': %w", p, err)
	}
	d, err = verity.Digest(f, verity.SHA256)
	if err != nil {
		return nil, fmt.Errorf("failed to measure '%s': %w", p, err)
	}
	return d, nil
}

// list prints one line per entry: directories with a trailing slash,
// symlinks with their target, external files with their object.
func list(w *bufio.Writer, root *tree.Inode) error {
	return tree.Walk(root, func(p string, d *tree.Dirent) error {
		n := d.Inode
		writeEscaped(w, "/"+p, true)
		switch {
		case n.IsDir():
			w.WriteString("/\t")
		case n.IsSymlink():
			w.WriteString("\t-> ")
			writeEscaped(w, n.Payload, false)
		case n.IsReg() && n.Payload != "":
			w.WriteString("\t@ ")
			writeEscaped(w, n.Payload, false)
		}
		return w.WriteByte('\n')
	})
}

// writeEscaped escapes as the C tool's ls does: backslash escapes for
// backslash and the usual controls, \xHH for other bytes that are not
// printable (spaces allowed when keepSpace) in the C locale.
func writeEscaped(w *bufio.Writer, s string, keepSpace bool) {
	const hexdig = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			w.WriteString(`\\`)
		case c == '\n':
			w.WriteString(`\n`)
		case c == '\r':
			w.WriteString(`\r`)
		case c == '\t':
			w.WriteString(`\t`)
		case c > ' ' && c < 0x7f, c == ' ' && keepSpace:
			w.WriteByte(c)
		default:
			w.Write([]byte{'\\', 'x', hexdig[c>>4], hexdig[c&15]})
		}
	}
}

func collectObjects(dir *tree.Inode, objs map[string]bool) {
	for _, d := range dir.Entries {
		n := d.Inode
		if n.IsReg() && n.Payload != "" {
			objs[n.Payload] = true
		}
		if n.IsDir() && !d.Hardlink {
			collectObjects(n, objs)
		}
	}
}

// printObjects prints the objects in byte order; for missing-objects only
// those absent from basedir (all of them without a basedir).
func printObjects(w *bufio.Writer, objs map[string]bool, basedir string, missingOnly bool) error {
	names := make([]string, 0, len(objs))
	for o := range objs {
		if missingOnly && basedir != "" {
			if _, err := os.Stat(path.Join(basedir, strings.TrimLeft(o, "/"))); err == nil {
				continue
			}
		}
		names = append(names, o)
	}
	slices.Sort(names)
	for _, o := range names {
		w.WriteString(o)
		w.WriteByte('\n')
	}
	return nil
}
