// Package initramfs holds the boot side of gocfs: what runs in the
// initramfs to turn a composefs image into the root filesystem, and the
// tools that prepare the initramfs and the boot entry for it.
//
//   - cmdline parses the kernel command line (composefs.digest=,
//     composefs=, ostree=, root= and the other arguments init mode needs).
//   - config reads the prepare-root configuration file.
//   - extension writes and reads the initramfs extension, a small cpio
//     archive appended to an existing initramfs that carries the image
//     digest and configuration.
//   - bls writes Boot Loader Specification (Type 1) entries.
//   - prepare is the prepare-root sequence itself, with its system calls
//     behind an interface, and the init mode around it.
//   - kmod reads a kernel's module indexes, resolves module closures and
//     loads modules, for init mode.
//   - minimal writes the minimal initramfs whose init is prepare-root.
//
// # Trust model
//
// The image digest decides what the machine runs. It can come from the
// kernel command line or from the extension. When the extension carries a
// digest, that digest is authoritative: it is the only image that can be
// booted, and a command line naming any other image (or the same image
// with the insecure marker, when the extension does not have it) makes
// prepare-root refuse to boot rather than pick one of the two. Without an
// extension digest, the command line's digests are tried in order.
//
// A digest without the insecure marker "?" asks for a secure boot: the
// repository, the image and every object must have fs-verity, checked by
// the kernel. If the kernel or the filesystem cannot provide it, the boot
// is refused with a message saying so; it is never silently downgraded.
//
// The extension is only as trustworthy as the way it reaches the kernel:
// an appended cpio is not covered by a signature of the base initramfs or
// of a unified kernel image, so on a machine whose boot chain is measured
// or signed, the extension must be part of what is signed.
package initramfs
