// Package extension writes and reads the initramfs extension: a small newc
// cpio archive, appended to an existing initramfs, that tells composefs
// prepare-root which image to boot and how.
//
// The kernel unpacks every archive of a concatenated initramfs in order
// into the same root, so the extension's files land beside (or over) those
// of the base initramfs. The archive holds:
//
//	etc/                              directory, 0755
//	etc/composefs/                    directory, 0755
//	etc/composefs/digest              the image digest, 0644
//	etc/composefs/prepare-root.conf   optional configuration, 0644
//
// digest holds one line, the image digest in the form of the value of the
// composefs.digest= kernel argument ("v1-sha256-12:HEX", with a leading
// "?" for an insecure boot). prepare-root.conf is read as the /etc
// configuration file (see package config), so it overrides the base
// initramfs's settings key by key.
//
// Every entry is owned by root with modification time 0, so the archive
// depends on nothing but its content. The directories have mode 0755 and
// the archive has no "." entry: when the kernel unpacks a directory that
// already exists it still applies the archive's mode and owner to it, so
// the extension must not change /etc or / of the base initramfs.
package extension

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/gocfs/gocfs/initramfs/cmdline"
	"github.com/gocfs/gocfs/initramfs/config"
)

// The paths in the archive.
const (
	DigestPath = config.DigestPath
	ConfigPath = config.EtcPath
)

// maxFile bounds the files Read accepts.
const maxFile = 64 << 10

// Extension is the content of an extension archive.
type Extension struct {
	Digest cmdline.Digest
	// Config is the configuration file's content; nil for none.
	Config []byte
}

// Write writes e as a newc cpio archive. The configuration is checked
// first, so that a bad one is found now rather than at boot.
func Write(w io.Writer, e *Extension) error {
	if !e.Digest.Algorithm.Valid() {
		return errors.New("extension: no image digest")
	}
	if _, err := cmdline.ParseDigest(e.Digest.String()); err != nil {
		return fmt.Errorf("extension: %w", err)
	}
	if e.Config != nil {
		var c config.Config
		if err := config.Parse("configuration", bytes.NewReader(e.Config), &c); err != nil {
			return fmt.Errorf("extension: %w", err)
		}
	}
	recs := []cpio.Record{
		dir("etc", 1),
		dir("etc/composefs", 2),
		file(DigestPath, 3, []byte(e.Digest.String()+"\n")),
	}
	if e.Config != nil {
		recs = append(recs, file(ConfigPath, 4, e.Config))
	}
	cw := cpio.Newc.Writer(w)
	for _, r := range recs {
		if err := cw.WriteRecord(r); err != nil {
			return fmt.Errorf("extension: write %s: %w", r.Name, err)
		}
	}
	if err := cpio.WriteTrailer(cw); err != nil {
		return fmt.Errorf("extension: write trailer: %w", err)
	}
	return nil
}

func dir(name string, ino uint64) cpio.Record {
	r := cpio.Directory(name, 0o755)
	r.Ino, r.NLink = ino, 2
	return r
}

func file(name string, ino uint64, content []byte) cpio.Record {
	return cpio.StaticRecord(content, cpio.Info{Name: name, Ino: ino, NLink: 1, Mode: cpio.S_IFREG | 0o644})
}

// maxArchive bounds the archives Read accepts; an extension is far smaller.
const maxArchive = 1 << 20

// Read reads an extension archive. Entries other than those an extension
// has are refused.
func Read(r io.Reader) (*Extension, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxArchive+1))
	if err != nil {
		return nil, fmt.Errorf("extension: %w", err)
	}
	if len(b) > maxArchive {
		return nil, fmt.Errorf("extension: archive larger than %d bytes", maxArchive)
	}
	rr := cpio.Newc.Reader(bytes.NewReader(b))
	var e Extension
	var haveDigest bool
	var pos int64
	for {
		if err := checkNameLength(b, pos); err != nil {
			return nil, err
		}
		rec, err := rr.ReadRecord()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("extension: %w", err)
		}
		pos = (rec.FilePos + int64(rec.FileSize) + 3) &^ 3
		switch rec.Name {
		case "etc", "etc/composefs":
			if rec.Mode&cpio.S_IFMT != cpio.S_IFDIR {
				return nil, fmt.Errorf("extension: %s is not a directory", rec.Name)
			}
		case DigestPath, ConfigPath:
			b, err := content(rec)
			if err != nil {
				return nil, err
			}
			if rec.Name == ConfigPath {
				e.Config = b
				continue
			}
			if e.Digest, err = parseDigestFile(rec.Name, b); err != nil {
				return nil, err
			}
			haveDigest = true
		default:
			return nil, fmt.Errorf("extension: unexpected entry %q", rec.Name)
		}
	}
	if !haveDigest {
		return nil, fmt.Errorf("extension: no %s", DigestPath)
	}
	return &e, nil
}

// The newc header: a 6-byte magic number and 13 fields of 8 hex digits,
// the 12th of which is the length of the name that follows.
const (
	headerSize       = 6 + 13*8
	nameLengthOffset = 6 + 11*8
)

// checkNameLength refuses a header at pos whose name would run past the
// end of the archive, before the cpio reader allocates a buffer that
// large. Other defects are left to the reader to report.
func checkNameLength(b []byte, pos int64) error {
	if pos < 0 || pos+headerSize > int64(len(b)) {
		return nil
	}
	n, err := strconv.ParseUint(string(b[pos+nameLengthOffset:pos+nameLengthOffset+8]), 16, 32)
	if err != nil {
		return nil
	}
	if n > uint64(int64(len(b))-pos-headerSize) {
		return fmt.Errorf("extension: entry at offset %d has a %d-byte name, past the end of the archive", pos, n)
	}
	return nil
}

func content(rec cpio.Record) ([]byte, error) {
	if rec.Mode&cpio.S_IFMT != cpio.S_IFREG {
		return nil, fmt.Errorf("extension: %s is not a regular file", rec.Name)
	}
	if rec.FileSize > maxFile {
		return nil, fmt.Errorf("extension: %s is %d bytes, more than %d", rec.Name, rec.FileSize, maxFile)
	}
	b := make([]byte, rec.FileSize)
	if _, err := rec.ReadAt(b, 0); err != nil && !(err == io.EOF && len(b) == 0) {
		return nil, fmt.Errorf("extension: read %s: %w", rec.Name, err)
	}
	return b, nil
}

func parseDigestFile(name string, b []byte) (cmdline.Digest, error) {
	d, err := config.ParseDigestFile(b)
	if err != nil {
		return cmdline.Digest{}, fmt.Errorf("extension: %s: %w", name, err)
	}
	return d, nil
}

// Align is the alignment the kernel needs for each archive of a
// concatenated initramfs.
const Align = 4

// Append writes base followed by zero bytes up to the next multiple of
// Align, then ext: an initramfs the kernel unpacks as base and then ext.
// base may be compressed; ext is best left uncompressed. It returns the
// number of bytes written.
func Append(w io.Writer, base, ext io.Reader) (int64, error) {
	n, err := io.Copy(w, base)
	if err != nil {
		return n, fmt.Errorf("extension: copy base initramfs: %w", err)
	}
	if pad := (Align - n%Align) % Align; pad != 0 {
		m, err := w.Write(make([]byte, pad))
		n += int64(m)
		if err != nil {
			return n, fmt.Errorf("extension: pad base initramfs: %w", err)
		}
	}
	m, err := io.Copy(w, ext)
	n += m
	if err != nil {
		return n, fmt.Errorf("extension: copy extension: %w", err)
	}
	return n, nil
}
