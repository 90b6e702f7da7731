// Package outfile writes a command's output file so that an error never
// leaves a half-written file under the requested name: regular files are
// written to a temporary name in the same directory and renamed into place
// on Commit.
package outfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// File is an output file being written.
type File struct {
	*os.File
	final string // final name; empty when writing in place
	done  bool
}

// Create starts writing path. When path names something other than a
// regular file (a device, a fifo), it is opened and written in place.
func Create(path string) (*File, error) {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return nil, err
		}
		return &File{File: f}, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("failed to open output file: %w", err)
	}
	// A new file gets 0666 less the umask, as a plain creat() would.
	if err := f.Chmod(fs.FileMode(0o666 &^ umask())); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &File{File: f, final: path}, nil
}

// Commit flushes the file and moves it into place.
func (f *File) Commit() error {
	f.done = true
	if f.final == "" {
		return f.File.Close()
	}
	if err := f.File.Sync(); err != nil {
		f.discard()
		return err
	}
	if err := f.File.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), f.final); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

// Abort discards what was written; it does nothing after Commit.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	if f.final == "" {
		f.File.Close()
		return
	}
	f.discard()
}

func (f *File) discard() {
	f.File.Close()
	os.Remove(f.Name())
}

var (
	umaskOnce  sync.Once
	umaskValue uint32
)

// umask reads the process umask. Setting it is the only way to read it, so
// it is done once and restored at once.
func umask() uint32 {
	umaskOnce.Do(func() {
		old := unix.Umask(0o022)
		unix.Umask(old)
		umaskValue = uint32(old)
	})
	return umaskValue
}
