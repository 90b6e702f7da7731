//go:build !linux

package verity

import (
	"fmt"
	"os"
)

// Enable turns on fs-verity for f. fs-verity exists only on Linux, so here it
// always fails with ErrNotSupported.
func Enable(f *os.File, alg Algorithm) error {
	return fmt.Errorf("enable fs-verity on %s: %w", f.Name(), ErrNotSupported)
}

// Measure returns the kernel's fs-verity digest of f. fs-verity exists only on
// Linux, so here it always fails with ErrNotSupported.
func Measure(f *os.File) (Algorithm, []byte, error) {
	return 0, nil, fmt.Errorf("measure fs-verity of %s: %w", f.Name(), ErrNotSupported)
}

// Supported reports whether files in dir can have fs-verity: never, off Linux.
func Supported(dir string) (bool, error) {
	return false, nil
}
