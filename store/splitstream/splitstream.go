// Package splitstream reads and writes splitstreams, the composefs-rs format
// (version 0) that stores a file such as a tar layer with its large pieces
// split out into objects of a content-addressed store, so that the file can
// be reassembled bit for bit while the object store deduplicates its contents.
//
// A splitstream is laid out as follows, all integers little-endian:
//
//	header (32 bytes at offset 0)
//	    magic "SplitStream" (11 bytes), version u8 (0), flags u16 (0),
//	    algorithm u8 (fs-verity algorithm: 1 sha256, 2 sha512),
//	    lg_blocksize u8 (12), info FileRange
//	info (80 bytes)
//	    stream_refs, object_refs, stream, named_refs FileRange,
//	    content_type u64, stream_size u64
//	stream_refs: digests of other splitstreams (or images) it names
//	object_refs: digests of the objects its external chunks are
//	named_refs: zstd of "<index into stream_refs>:<name>\0" records
//	stream: zstd of chunks, each an i64 n followed, when n is negative,
//	    by -n inline bytes; n >= 0 is an external chunk whose content is
//	    object_refs[n]
//
// A FileRange is {start, end u64}, byte offsets in the file. The writer
// places the sections in the order above, each right after the other. The
// reference arrays are uncompressed so that a garbage collector finds them
// without decompressing anything; GC follows object_refs and, recursively,
// the named references.
//
// Splitstreams written by bootc 1.15 and older have the header fields in
// another order (info at 0, flags at 16, magic at 18, version at 29,
// algorithm at 30, lg_blocksize at 31); NewReader accepts both.
//
// The zstd frames this package writes differ from those of composefs-rs's
// libzstd, so a stream written here has another fs-verity digest than the
// same stream written by composefs-rs, but each reads the other's.
package splitstream

import "errors"

// Content types, the free-form tag of the info section that says what a
// stream holds. The OCI ones are eight ASCII characters read as a
// little-endian integer, as composefs-rs defines them.
const (
	ContentTypeOCILayer    uint64 = 0x72_65_79_61_6c_69_63_6f // "ocilayer"
	ContentTypeOCIConfig   uint64 = 0x67_66_6e_6f_63_69_63_6f // "ociconfg"
	ContentTypeOCIManifest uint64 = 0x66_69_6e_61_6d_69_63_6f // "ocimanif"
	ContentTypeOCIBlob     uint64 = 0x62_6f_6c_62_5f_69_63_6f // "oci_blob"
	// ContentTypeOSTreeCommit marks the splitstream of an OSTree commit
	// imported by composefs-rs.
	ContentTypeOSTreeCommit uint64 = 0xAFE138C18C463EF1
)

// On-disk layout.
const (
	magic          = "SplitStream"
	formatVersion  = 0
	lgBlockSize    = 12
	headerSize     = 32
	fileRangeSize  = 16
	infoSize       = 4*fileRangeSize + 8 + 8
	chunkTagSize   = 8
	maxNamedRefLen = 64 << 20 // decompressed named_refs section
	// maxWindow bounds the zstd window a reader accepts, as libzstd's
	// default decoder limit (window log 27) does.
	maxWindow = 1 << 27
)

// headerLayout gives the offsets of the header fields.
type headerLayout struct {
	magic, version, flags, algorithm, lgBlockSize, info int
}

var (
	// currentLayout is the C layout of the header struct.
	currentLayout = headerLayout{magic: 0, version: 11, flags: 12, algorithm: 14, lgBlockSize: 15, info: 16}
	// oldLayout is where the Rust compiler placed the fields before the
	// struct was made repr(C) (bootc 1.15 and older).
	oldLayout = headerLayout{info: 0, flags: 16, magic: 18, version: 29, algorithm: 30, lgBlockSize: 31}
)

// Info field offsets.
const (
	infoStreamRefs  = 0
	infoObjectRefs  = 16
	infoStream      = 32
	infoNamedRefs   = 48
	infoContentType = 64
	infoStreamSize  = 72
)

// ErrFormat is wrapped by every error about a malformed splitstream.
var ErrFormat = errors.New("malformed splitstream")

// NamedRef names one of the streams (or images) a splitstream refers to.
type NamedRef struct {
	Name   string
	Digest []byte
}

// Chunk is one piece of a stream: inline bytes or an external object.
type Chunk struct {
	// Object is the digest of an external chunk's object; nil for an
	// inline chunk.
	Object []byte
	// Size is the length of an inline chunk. It is 0 for an external
	// chunk: a splitstream does not record object sizes.
	Size int64
	// Inline holds an inline chunk's bytes when Reader.Chunks delivers
	// it, valid only during the callback. ChunkReader.Next leaves it nil:
	// the bytes are read with ChunkReader.Read.
	Inline []byte
}

// IsExternal reports whether the chunk is an object reference.
func (c *Chunk) IsExternal() bool { return c.Object != nil }
