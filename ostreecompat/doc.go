// Package ostreecompat makes ostree commits of composefs store images, so
// that systems booting ostree deployments keep one copy of each file.
//
// Synthesize writes the commit of a store image into an ostree repository:
// every regular file's content object is cloned (FICLONE) from the store
// object holding its bytes, so both share their data blocks on reflink
// filesystems (XFS, btrfs), and is given the owner, mode and xattrs the
// repository's mode wants; small files kept inline in the image, symlinks,
// directories and the commit are written as usual. Where the filesystem
// refuses to clone, the bytes are copied if SynthOptions.Copy allows it, and
// the synthesis fails with ErrNoReflink otherwise.
//
// The tree is laid out as ostree deployments expect, as bootc's synthesis
// lays it out: /etc moves to /usr/etc (merged into an existing /usr/etc, the
// entries of /etc winning), and of /run, /tmp, /proc, /sys and /dev, which
// are mounted over at boot, only the directories themselves are kept.
//
// The commit's metadata, in this order:
//
//	ostree.manifest-digest        s   the OCI manifest digest, "sha256:..."  (1)
//	ostree.manifest               s   the OCI manifest as stored             (1)
//	ostree.container.image-config s   the OCI image configuration as stored  (1)
//	gocfs.oci.config-digest       s   the configuration's digest             (1)
//	ostree-ext.composefs-synthesized b true                                 (1)
//	ostree.bootable               b   true when /usr/lib/modules/*/vmlinuz   (2)
//	ostree.linux                  s   that kernel's version                  (2)
//	gocfs.synthesized-from        s   the store image's fs-verity digest, hex
//	ostree.composefs.digest.v0    ay  the fs-verity digest of ostree's own
//	                                  composefs image of the commit
//
// (1) only when the image came from an OCI image of the store, under bootc's
// keys so that bootc and rpm-ostree recognise the commit; (2) only when the
// tree has a kernel. gocfs.synthesized-from marks a commit synthesized by this
// package and names its source; VerifySynthesized checks a commit against it.
//
// ostree.composefs.digest.v0 is what `ostree commit
// --generate-composefs-metadata` records: WriteComposefsImage writes that
// image (the .ostree.cfs of a deployment), byte for byte what libostree
// writes for the commit, so that ostree-prepare-root can check the image it
// mounts against the commit.
//
// # Crash safety
//
// A synthesis killed at any moment leaves no half-written object under its
// final name and no ref to an incomplete commit: objects are linked into
// place complete, the commit object is written after its whole tree (and a
// syncfs), the branch ref last.
package ostreecompat
