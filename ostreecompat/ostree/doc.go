// Package ostree reads and writes ostree repositories in the bare and
// bare-user modes, byte-compatible with libostree: the objects it writes have
// the checksums libostree gives the same content and metadata, pass
// `ostree fsck`, and check out with `ostree checkout`.
//
// A repository holds content-addressed objects under objects/XX/<rest>.<type>:
//
//	.file        a regular file or symlink, named by its content checksum:
//	             sha256 over a length-prefixed (uuuusa(ayay)) header (uid,
//	             gid, mode, rdev, symlink target, xattrs) and the content
//	.dirmeta     (uuua(ayay)): a directory's uid, gid, mode and xattrs
//	.dirtree     (a(say)a(sayay)): a directory's files and subdirectories
//	.commit      (a{sv}aya(say)sstayay): metadata, parent, subject, body,
//	             timestamp, root dirtree and dirmeta
//	.commitmeta  a{sv}: detached metadata, named after its commit
//
// Metadata objects are named by the sha256 of their GVariant serialisation,
// in normal form. All integers inside them are stored big-endian. Refs are
// files under refs/heads holding a checksum and a newline.
//
// How content objects hold their metadata depends on the mode. In bare mode a
// file object is the file itself: owner, mode and xattrs are on the inode
// (writing one needs root), symlinks are symlinks. In bare-user mode objects
// belong to the writer, with mode (mode & 0775) | 0400, and the real
// metadata is the user.ostreemeta xattr, a (uuua(ayay)); symlinks are regular
// files holding the target and a NUL. Either way mtime is 0.
//
// # Crash safety
//
// Nothing appears under a final name half-written: objects are written to
// temporary files in tmp/ and renamed into place complete (never over an
// object already there), refs and the config are renamed over. Objects
// are not synced one by one: WriteCommit syncs the filesystem before it writes
// a commit object, and SetRef before it writes a ref, so a commit that
// survives a crash has its whole tree, and a ref its commit.
//
// # Locking
//
// Open takes a shared lock on the repository's .lock file as libostree does
// (an open file description lock), held until Close, so that `ostree prune`,
// which locks exclusively, never removes objects a writer has written but
// not yet referenced.
package ostree
