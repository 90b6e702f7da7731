package splitstream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"

	"github.com/gocfs/gocfs/verity"
)

// namedDecoder decompresses named_refs sections in one call (safe for
// concurrent use), refusing output beyond maxNamedRefLen.
var namedDecoder = func() *zstd.Decoder {
	d, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxNamedRefLen), zstd.WithDecoderMaxWindow(maxWindow))
	if err != nil {
		panic(fmt.Sprintf("splitstream: zstd decoder: %v", err))
	}
	return d
}()

// streamDecoders are synchronous streaming decoders for stream sections,
// kept because each holds sizeable buffers.
var streamDecoders sync.Pool

func getStreamDecoder(r io.Reader) (*zstd.Decoder, error) {
	if d, ok := streamDecoders.Get().(*zstd.Decoder); ok {
		if err := d.Reset(r); err != nil {
			return nil, err
		}
		return d, nil
	}
	return zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxWindow), zstd.WithDecoderMaxMemory(maxWindow))
}

func putStreamDecoder(d *zstd.Decoder) {
	if d.Reset(nil) == nil {
		streamDecoders.Put(d)
	}
}

// fileRange is a [start, end) range of the file, already checked to lie
// within it.
type fileRange struct{ start, end int64 }

func (f fileRange) len() int64 { return f.end - f.start }

// Reader reads a splitstream. NewReader parses and checks everything but
// the stream section, which ChunkReader, Chunks and Reassemble decode on
// demand. A Reader's methods may be called concurrently.
type Reader struct {
	r           io.ReaderAt
	alg         verity.Algorithm
	contentType uint64
	streamSize  int64
	oldHeader   bool
	objectRefs  [][]byte
	streamRefs  [][]byte
	named       []NamedRef
	stream      fileRange
}

// NewReader reads the header, the info section, the reference arrays and
// the named references of the size-byte splitstream r. Every range must lie
// within the file, the reference arrays must hold whole digests of the
// header's algorithm, and the named references must be well formed and name
// existing stream references. An info section longer than this version knows
// is accepted (its extra bytes are ignored, for forward compatibility), and
// so are nonzero header flags, as composefs-rs does.
func NewReader(r io.ReaderAt, size int64) (*Reader, error) {
	if size < headerSize {
		return nil, formatErr("file of %d bytes is shorter than the %d-byte header", size, headerSize)
	}
	var hdr [headerSize]byte
	if err := readFull(r, hdr[:], 0); err != nil {
		return nil, fmt.Errorf("splitstream: read header: %w", err)
	}
	rd := &Reader{r: r}
	l := currentLayout
	if string(hdr[l.magic:l.magic+len(magic)]) != magic {
		l = oldLayout
		if string(hdr[l.magic:l.magic+len(magic)]) != magic {
			return nil, formatErr("bad magic %q", hdr[:len(magic)])
		}
		rd.oldHeader = true
	}
	if v := hdr[l.version]; v != formatVersion {
		return nil, formatErr("unsupported version %d", v)
	}
	rd.alg = verity.Algorithm(hdr[l.algorithm])
	if !rd.alg.Valid() {
		return nil, formatErr("unknown fs-verity algorithm %d", hdr[l.algorithm])
	}
	if b := hdr[l.lgBlockSize]; b != lgBlockSize {
		return nil, formatErr("fs-verity block size 2^%d, only 2^%d is supported", b, lgBlockSize)
	}
	infoRange, err := checkRange(hdr[l.info:], size, "info")
	if err != nil {
		return nil, err
	}
	if infoRange.len() < infoSize {
		return nil, formatErr("info section of %d bytes, want at least %d", infoRange.len(), infoSize)
	}
	var info [infoSize]byte
	if err := readFull(r, info[:], infoRange.start); err != nil {
		return nil, fmt.Errorf("splitstream: read info section: %w", err)
	}
	rd.contentType = binary.LittleEndian.Uint64(info[infoContentType:])
	ss := binary.LittleEndian.Uint64(info[infoStreamSize:])
	if ss > math.MaxInt64 {
		return nil, formatErr("stream size %d is too large", ss)
	}
	rd.streamSize = int64(ss)

	var ranges [4]fileRange
	for i, f := range []struct {
		at   int
		name string
	}{{infoStreamRefs, "stream_refs"}, {infoObjectRefs, "object_refs"}, {infoStream, "stream"}, {infoNamedRefs, "named_refs"}} {
		if ranges[i], err = checkRange(info[f.at:], size, f.name); err != nil {
			return nil, err
		}
	}
	if rd.streamRefs, err = rd.readRefs(ranges[0], "stream_refs"); err != nil {
		return nil, err
	}
	if rd.objectRefs, err = rd.readRefs(ranges[1], "object_refs"); err != nil {
		return nil, err
	}
	rd.stream = ranges[2]
	if err := rd.readNamedRefs(ranges[3]); err != nil {
		return nil, err
	}
	return rd, nil
}

func formatErr(format string, args ...any) error {
	return fmt.Errorf("splitstream: %s: %w", fmt.Sprintf(format, args...), ErrFormat)
}

// checkRange decodes a FileRange and checks it lies within a file of size
// bytes.
func checkRange(b []byte, size int64, name string) (fileRange, error) {
	start := binary.LittleEndian.Uint64(b)
	end := binary.LittleEndian.Uint64(b[8:])
	if start > end || end > uint64(size) {
		return fileRange{}, formatErr("%s range [%d, %d) is not within the %d-byte file", name, start, end, size)
	}
	return fileRange{int64(start), int64(end)}, nil
}

// readSection reads a checked range. It reads in steps, so that a reader
// shorter than the size it was announced with fails before the whole range
// is allocated.
func (rd *Reader) readSection(f fileRange) ([]byte, error) {
	const step = 1 << 20
	buf := make([]byte, 0, min(f.len(), step))
	for int64(len(buf)) < f.len() {
		n := int(min(f.len()-int64(len(buf)), step))
		buf = append(buf, make([]byte, n)...)
		if err := readFull(rd.r, buf[len(buf)-n:], f.start+int64(len(buf)-n)); err != nil {
			return nil, err
		}
	}
	return buf, nil
}

func (rd *Reader) readRefs(f fileRange, name string) ([][]byte, error) {
	n := int64(rd.alg.Size())
	if f.len()%n != 0 {
		return nil, formatErr("%s section of %d bytes is not a whole number of %d-byte %s digests", name, f.len(), n, rd.alg)
	}
	b, err := rd.readSection(f)
	if err != nil {
		return nil, fmt.Errorf("splitstream: read %s: %w", name, err)
	}
	refs := make([][]byte, len(b)/int(n))
	for i := range refs {
		refs[i] = b[int64(i)*n : int64(i+1)*n : int64(i+1)*n]
	}
	return refs, nil
}

func (rd *Reader) readNamedRefs(f fileRange) error {
	comp, err := rd.readSection(f)
	if err != nil {
		return fmt.Errorf("splitstream: read named_refs: %w", err)
	}
	raw, err := namedDecoder.DecodeAll(comp, nil)
	if err != nil {
		return formatErr("named_refs section: %v", err)
	}
	seen := make(map[string]bool)
	for len(raw) > 0 {
		end := bytes.IndexByte(raw, 0)
		if end < 0 {
			return formatErr("named_refs section ends inside a record")
		}
		rec := raw[:end]
		raw = raw[end+1:]
		colon := bytes.IndexByte(rec, ':')
		if colon < 0 {
			return formatErr("named reference %q has no colon", rec)
		}
		idx, ok := parseIndex(rec[:colon])
		if !ok {
			return formatErr("named reference %q has a bad index", rec)
		}
		if idx >= len(rd.streamRefs) {
			return formatErr("named reference %q: index beyond the %d stream references", rec, len(rd.streamRefs))
		}
		name := string(rec[colon+1:])
		if !utf8.ValidString(name) {
			return formatErr("named reference %q is not UTF-8", rec)
		}
		if seen[name] {
			return formatErr("named reference %q appears twice", name)
		}
		seen[name] = true
		rd.named = append(rd.named, NamedRef{Name: name, Digest: rd.streamRefs[idx]})
	}
	return nil
}

// parseIndex parses a decimal index written without sign or leading zeros.
func parseIndex(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 || (b[0] == '0' && len(b) > 1) {
		return 0, false
	}
	n, err := strconv.Atoi(string(b))
	if err != nil || n < 0 || b[0] == '+' {
		return 0, false
	}
	return n, true
}

func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Algorithm returns the fs-verity algorithm of the stream's digests.
func (rd *Reader) Algorithm() verity.Algorithm { return rd.alg }

// ContentType returns the content type tag.
func (rd *Reader) ContentType() uint64 { return rd.contentType }

// StreamSize returns the size of the reassembled stream as recorded.
func (rd *Reader) StreamSize() int64 { return rd.streamSize }

// OldHeader reports whether the header has the pre-repr(C) field order of
// bootc 1.15 and older.
func (rd *Reader) OldHeader() bool { return rd.oldHeader }

// ObjectRefs returns the digests of the objects of the external chunks, in
// the order of the file. The slices must not be modified.
func (rd *Reader) ObjectRefs() [][]byte { return rd.objectRefs }

// StreamRefs returns the digests of the streams (or images) the stream
// refers to. The slices must not be modified.
func (rd *Reader) StreamRefs() [][]byte { return rd.streamRefs }

// NamedRefs returns the named references in the order of the file (sorted by
// name in streams this package or composefs-rs wrote).
func (rd *Reader) NamedRefs() []NamedRef { return rd.named }

// NamedRef returns the digest of the named reference, or nil.
func (rd *Reader) NamedRef(name string) []byte {
	for _, n := range rd.named {
		if n.Name == name {
			return n.Digest
		}
	}
	return nil
}

// ChunkReader reads the chunks of a stream in order, in the manner of
// archive/tar: Next advances to the next chunk and Read reads the bytes of
// an inline chunk, so that inline chunks of any size are read in constant
// memory. Close releases the decompressor.
type ChunkReader struct {
	rd        *Reader
	dec       *zstd.Decoder
	remaining int64 // unread bytes of the current inline chunk
	inline    int64 // inline bytes so far, bounded by the stream size
	err       error // sticky
}

// ChunkReader returns a reader of the stream's chunks.
func (rd *Reader) ChunkReader() (*ChunkReader, error) {
	dec, err := getStreamDecoder(io.NewSectionReader(rd.r, rd.stream.start, rd.stream.len()))
	if err != nil {
		return nil, fmt.Errorf("splitstream: stream section: %w", err)
	}
	return &ChunkReader{rd: rd, dec: dec}, nil
}

// Close releases the decompressor. The ChunkReader must not be used
// afterwards.
func (c *ChunkReader) Close() error {
	if c.dec != nil {
		putStreamDecoder(c.dec)
		c.dec = nil
	}
	if c.err == nil {
		c.err = errors.New("splitstream: ChunkReader used after Close")
	}
	return nil
}

func (c *ChunkReader) fail(err error) error {
	if c.err == nil {
		c.err = err
	}
	return err
}

// decodeErr turns a decompression error into a format error; a stream that
// ends early is io.ErrUnexpectedEOF.
func decodeErr(what string, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return formatErr("stream section ends inside %s", what)
	}
	return formatErr("stream section: %v", err)
}

// Next advances to the next chunk, skipping what is left of an inline chunk,
// and returns it without its bytes (Chunk.Inline is nil). It returns io.EOF
// after the last chunk.
func (c *ChunkReader) Next() (Chunk, error) {
	if c.err != nil {
		return Chunk{}, c.err
	}
	if c.remaining > 0 {
		if _, err := io.CopyN(io.Discard, c.dec, c.remaining); err != nil {
			return Chunk{}, c.fail(decodeErr("an inline chunk", err))
		}
		c.remaining = 0
	}
	var tag [chunkTagSize]byte
	n, err := io.ReadFull(c.dec, tag[:])
	switch {
	case n == 0 && err == io.EOF:
		return Chunk{}, c.fail(io.EOF)
	case err != nil:
		return Chunk{}, c.fail(decodeErr("a chunk tag", err))
	}
	v := int64(binary.LittleEndian.Uint64(tag[:]))
	if v >= 0 {
		if v >= int64(len(c.rd.objectRefs)) {
			return Chunk{}, c.fail(formatErr("external chunk names object %d of %d", v, len(c.rd.objectRefs)))
		}
		return Chunk{Object: c.rd.objectRefs[v]}, nil
	}
	if v == math.MinInt64 {
		return Chunk{}, c.fail(formatErr("inline chunk length %d", v))
	}
	size := -v
	if size > c.rd.streamSize-c.inline {
		return Chunk{}, c.fail(formatErr("inline chunks exceed the stream size %d", c.rd.streamSize))
	}
	c.inline += size
	c.remaining = size
	return Chunk{Size: size}, nil
}

// Read reads bytes of the current inline chunk; it returns io.EOF at the end
// of the chunk, and at once for an external chunk.
func (c *ChunkReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.remaining == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > c.remaining {
		p = p[:c.remaining]
	}
	n, err := c.dec.Read(p)
	c.remaining -= int64(n)
	if err == io.EOF && c.remaining > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err != nil && err != io.EOF {
		return n, c.fail(decodeErr("an inline chunk", err))
	}
	return n, nil
}

// Chunks calls fn for every chunk in order, inline chunks with their bytes
// in Chunk.Inline (valid only during the call). Use a ChunkReader for
// streams whose inline chunks may not fit in memory.
func (rd *Reader) Chunks(fn func(c Chunk) error) error {
	cr, err := rd.ChunkReader()
	if err != nil {
		return err
	}
	defer cr.Close()
	var buf []byte
	for {
		c, err := cr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if !c.IsExternal() {
			if buf, err = readChunk(cr, buf[:0], c.Size); err != nil {
				return err
			}
			c.Inline = buf
		}
		if err := fn(c); err != nil {
			return err
		}
	}
}

// readChunk reads an inline chunk of size bytes into buf, growing it only as
// bytes actually arrive.
func readChunk(cr *ChunkReader, buf []byte, size int64) ([]byte, error) {
	const step = 1 << 20
	for int64(len(buf)) < size {
		n := int(min(size-int64(len(buf)), step))
		buf = append(buf, make([]byte, n)...)
		if _, err := io.ReadFull(cr, buf[len(buf)-n:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return buf, nil
}

// Reassemble writes the original stream to w, taking each external chunk's
// content from open. It fails if the result does not have the recorded
// stream size.
func (rd *Reader) Reassemble(w io.Writer, open func(digest []byte) (io.ReadCloser, error)) error {
	cr, err := rd.ChunkReader()
	if err != nil {
		return err
	}
	defer cr.Close()
	var total int64
	for {
		c, err := cr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if !c.IsExternal() {
			n, err := io.Copy(w, cr)
			total += n
			if err != nil {
				return fmt.Errorf("splitstream: reassemble: %w", err)
			}
			continue
		}
		n, err := copyObject(w, c.Object, open)
		total += n
		if err != nil {
			return err
		}
	}
	if total != rd.streamSize {
		return formatErr("reassembled %d bytes, the stream records %d", total, rd.streamSize)
	}
	return nil
}

func copyObject(w io.Writer, digest []byte, open func([]byte) (io.ReadCloser, error)) (int64, error) {
	f, err := open(digest)
	if err != nil {
		return 0, fmt.Errorf("splitstream: reassemble: object %x: %w", digest, err)
	}
	n, err := io.Copy(w, f)
	cerr := f.Close()
	if err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("splitstream: reassemble: object %x: %w", digest, err)
	}
	return n, nil
}
