// Package tests holds the cross-package tests of gocfs: drop-in CLI checks
// against the C project's golden vectors, images mounted by the host kernel
// and compared with their source, and (in subdirectories) helpers shared by
// those tests.
package tests
