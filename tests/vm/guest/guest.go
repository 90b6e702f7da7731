// Package guest is what the boot tests' guest init (guestinit) and the
// tests agree on: the lines it prints on the console and the paths of the
// test image it reads. It is kept apart so that guestinit, which goes into
// every test image and initramfs, links nothing else of the tests.
package guest

// Console lines guestinit prints.
const (
	// Marker starts the output of the image's init: the new root was
	// reached. It is followed by " uptime=SECONDS".
	Marker = "GOCFS-VM-BOOTED"
	// Done follows the last check.
	Done = "GOCFS-VM-DONE"
	// Check starts a check's line: "NAME PASS|FAIL DETAIL".
	Check = "GOCFS-VM-CHECK"
	// Setup reports the setup boot: "sealed=N secure=BOOL".
	Setup = "GOCFS-VM-SETUP"
	// Direct starts the plain initramfs's timing line: "uptime:
	// init=S modules=S sysroot=S".
	Direct = "GOCFS-VM-DIRECT"
)

// Paths in the test image.
const (
	// DataDir holds NAME.bin files and their sha256 sums, NAME.sha256.
	DataDir = "/usr/share/gocfs-vm"
	// BootCounter counts the boots that reached the image's init; it
	// lives in /etc, so that it tests /etc's persistence.
	BootCounter = "/etc/gocfs-vm/boots"
)
