package dumpfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/gocfs/gocfs/erofs/tree"
)

// WriteOptions controls Write. It has no fields yet; it keeps the
// signature stable as options are added.
type WriteOptions struct{}

// Write prints the tree below root in the format of composefs-info dump:
// depth first, entries in name order, the root first.
//
// An inode reached through several entries is printed in full once, at its
// primary entry (the one without Hardlink); the others are printed as
// hardlinks ('@' before MODE, the primary's path as PAYLOAD), with the
// inode's fields repeated as composefs-info does. An inode with no primary
// entry (a tree pruned after its hardlinks were marked) is printed in full
// at its first entry, as composefs-info reading an image would. Xattrs are printed in the order of
// Inode.Xattrs: composefs-info prints them in the order the image stores
// them, which an image reader keeps.
func Write(w io.Writer, root *tree.Inode, opts WriteOptions) error {
	if root == nil || !root.IsDir() {
		return errors.New("dumpfile: root is not a directory")
	}
	wr := &writer{bw: bufio.NewWriterSize(w, 1<<16)}
	if err := wr.findLinks(root); err != nil {
		return err
	}
	if err := wr.line(root, nil); err != nil {
		return err
	}
	if err := wr.dir(root); err != nil {
		return err
	}
	if err := wr.bw.Flush(); err != nil {
		return fmt.Errorf("dumpfile: %w", err)
	}
	return nil
}

type writer struct {
	bw *bufio.Writer
	// path is the escaped path of the entry being visited, empty for the
	// root.
	path []byte
	// links holds the inodes that hardlink entries point at.
	links map[*tree.Inode]*linkInfo
}

type linkInfo struct {
	// primary is the entry printed in full; path is its escaped path.
	primary *tree.Dirent
	path    string
	// first is the first entry printed, the primary if no entry is
	// without Hardlink.
	first     *tree.Dirent
	firstPath string
}

// findLinks finds the inodes of hardlink entries and picks the entry each
// of them is printed in full at.
func (wr *writer) findLinks(root *tree.Inode) error {
	var collect func(dir *tree.Inode) error
	collect = func(dir *tree.Inode) error {
		for _, d := range dir.Entries {
			if err := checkEntry(d); err != nil {
				return err
			}
			if d.Hardlink {
				if d.Inode.IsDir() {
					return fmt.Errorf("dumpfile: %s: hardlink to a directory", d.Name)
				}
				if wr.links == nil {
					wr.links = make(map[*tree.Inode]*linkInfo)
				}
				if wr.links[d.Inode] == nil {
					wr.links[d.Inode] = &linkInfo{}
				}
			} else if d.Inode.IsDir() {
				if err := collect(d.Inode); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := collect(root); err != nil {
		return err
	}
	if wr.links == nil {
		return nil
	}
	var place func(dir *tree.Inode)
	place = func(dir *tree.Inode) {
		n := len(wr.path)
		for _, d := range dir.Entries {
			wr.path = appendEscaped(append(wr.path[:n], '/'), d.Name, 0)
			if l := wr.links[d.Inode]; l != nil {
				if l.first == nil {
					l.first, l.firstPath = d, string(wr.path)
				}
				if !d.Hardlink && l.primary == nil {
					l.primary, l.path = d, string(wr.path)
				}
			}
			if !d.Hardlink && d.Inode.IsDir() {
				place(d.Inode)
			}
		}
		wr.path = wr.path[:n]
	}
	place(root)
	for _, l := range wr.links {
		if l.primary == nil {
			l.primary, l.path = l.first, l.firstPath
		}
	}
	return nil
}

// checkEntry refuses entries that no dumpfile could describe.
func checkEntry(d *tree.Dirent) error {
	switch {
	case d == nil:
		return errors.New("dumpfile: nil directory entry")
	case d.Inode == nil:
		return fmt.Errorf("dumpfile: %q: entry without inode", d.Name)
	case d.Name == "" || d.Name == "." || d.Name == ".." || strings.ContainsAny(d.Name, "/\x00"):
		return fmt.Errorf("dumpfile: invalid name %q", d.Name)
	}
	return nil
}

func (wr *writer) dir(dir *tree.Inode) error {
	n := len(wr.path)
	for _, d := range dir.Entries {
		wr.path = appendEscaped(append(wr.path[:n], '/'), d.Name, 0)
		var l *linkInfo
		if wr.links != nil {
			if l = wr.links[d.Inode]; l != nil && l.primary == d {
				l = nil
			}
		}
		if err := wr.line(d.Inode, l); err != nil {
			return err
		}
		if l == nil && d.Inode.IsDir() {
			if err := wr.dir(d.Inode); err != nil {
				return err
			}
		}
	}
	wr.path = wr.path[:n]
	return nil
}

// line prints one entry: n's fields at wr.path, as a hardlink to l's
// primary entry if l is not nil.
func (wr *writer) line(n *tree.Inode, l *linkInfo) error {
	b := wr.bw.AvailableBuffer()
	if len(wr.path) == 0 {
		b = append(b, '/')
	} else {
		b = append(b, wr.path...)
	}
	b = append(b, ' ')
	b = strconv.AppendUint(b, n.Size, 10)
	b = append(b, ' ')
	if l != nil {
		b = append(b, '@')
	}
	b = strconv.AppendUint(b, uint64(n.Mode), 8)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(n.Nlink), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(n.UID), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(n.GID), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, n.Rdev, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, n.Mtime.Sec, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(n.Mtime.Nsec), 10)
	b = append(b, ' ')
	switch {
	case l != nil:
		b = append(b, l.path...)
	case n.Payload != "":
		b = appendEscaped(b, n.Payload, escLoneDash)
	default:
		b = append(b, '-')
	}
	b = append(b, ' ')
	if len(n.Content) > 0 {
		b = appendEscaped(b, n.Content, escLoneDash)
	} else {
		b = append(b, '-')
	}
	b = append(b, ' ')
	switch len(n.Digest) {
	case 0:
		b = append(b, '-')
	case tree.DigestSize, tree.DigestSizeSHA512:
		for _, c := range n.Digest {
			b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
		}
	default:
		return fmt.Errorf("dumpfile: %s: digest of %d bytes", wr.displayPath(), len(n.Digest))
	}
	for _, x := range n.Xattrs {
		b = append(b, ' ')
		b = appendEscaped(b, x.Name, escEqual)
		b = append(b, '=')
		b = appendEscaped(b, x.Value, escEqual)
	}
	b = append(b, '\n')
	if _, err := wr.bw.Write(b); err != nil {
		return fmt.Errorf("dumpfile: %w", err)
	}
	return nil
}

func (wr *writer) displayPath() string {
	if len(wr.path) == 0 {
		return "/"
	}
	return string(wr.path)
}
