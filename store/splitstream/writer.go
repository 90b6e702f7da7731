package splitstream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"

	"github.com/gocfs/gocfs/verity"
)

// rawLimit is how much uncompressed stream a Writer collects before it
// switches to a streaming compressor: most streams (OCI manifests and
// configs, one external chunk each) stay below it and are compressed in one
// call by the shared encoder, without a compressor of their own.
const rawLimit = 1 << 20

// encoder compresses small sections in one call; EncodeAll is safe for
// concurrent use. Empty input still gives a frame, as libzstd does, so that
// every section holds a valid zstd stream.
var encoder = mustEncoder(nil, zstd.WithZeroFrames(true))

func mustEncoder(w io.Writer, opts ...zstd.EOption) *zstd.Encoder {
	e, err := zstd.NewWriter(w, opts...)
	if err != nil {
		panic(fmt.Sprintf("splitstream: zstd encoder: %v", err))
	}
	return e
}

// Writer builds a splitstream in memory. Its methods record the first error
// (a digest of the wrong size, an invalid name) and WriteTo returns it, as
// bufio.Writer does, so that callers check once. A Writer is not safe for
// concurrent use.
type Writer struct {
	alg         verity.Algorithm
	contentType uint64

	objects refList
	streams refList
	named   map[string]int // name -> index into streams

	// inline holds the pending inline bytes: adjacent inline writes form
	// one chunk, as composefs-rs's tar reader requires (a tar header may
	// not span chunks).
	inline []byte
	// raw is the uncompressed stream until it passes rawLimit; then enc
	// compresses into compressed.
	raw        []byte
	enc        *zstd.Encoder
	compressed bytes.Buffer

	size int64 // stream_size: inline plus external bytes
	err  error
	done bool
}

// refList is a list of distinct digests in first-appearance order.
type refList struct {
	list  [][]byte
	index map[string]int
}

func (l *refList) add(d []byte) int {
	if i, ok := l.index[string(d)]; ok {
		return i
	}
	if l.index == nil {
		l.index = make(map[string]int)
	}
	l.index[string(d)] = len(l.list)
	l.list = append(l.list, bytes.Clone(d))
	return len(l.list) - 1
}

// NewWriter returns a Writer for a stream of the given content type whose
// references are fs-verity digests made with alg.
func NewWriter(alg verity.Algorithm, contentType uint64) *Writer {
	w := &Writer{alg: alg, contentType: contentType}
	if !alg.Valid() {
		w.err = fmt.Errorf("splitstream: unknown fs-verity algorithm %d", uint8(alg))
	}
	return w
}

// Algorithm returns the algorithm of the stream's digests.
func (w *Writer) Algorithm() verity.Algorithm { return w.alg }

// StreamSize returns the size of the stream written so far, inline and
// external bytes together.
func (w *Writer) StreamSize() int64 { return w.size }

func (w *Writer) setErr(err error) {
	if w.err == nil {
		w.err = err
	}
}

// WriteInline appends bytes stored in the stream itself. Adjacent inline
// writes are coalesced into one chunk; empty writes are ignored.
func (w *Writer) WriteInline(p []byte) {
	if w.err != nil || len(p) == 0 {
		return
	}
	if w.done {
		w.setErr(errors.New("splitstream: write after WriteTo"))
		return
	}
	w.inline = append(w.inline, p...)
	w.size += int64(len(p))
}

// WriteExternal appends a chunk whose content is the object with the given
// digest, of size bytes, which the caller has already stored.
func (w *Writer) WriteExternal(digest []byte, size int64) {
	if w.err != nil {
		return
	}
	switch {
	case w.done:
		w.setErr(errors.New("splitstream: write after WriteTo"))
		return
	case len(digest) != w.alg.Size():
		w.setErr(fmt.Errorf("splitstream: external chunk digest has %d bytes, want %d for %s", len(digest), w.alg.Size(), w.alg))
		return
	case size < 0:
		w.setErr(fmt.Errorf("splitstream: external chunk %x has negative size %d", digest, size))
		return
	}
	w.flushInline()
	var tag [chunkTagSize]byte
	binary.LittleEndian.PutUint64(tag[:], uint64(w.objects.add(digest)))
	w.emit(tag[:])
	w.size += size
}

// AddNamedRef records that the stream refers, under name, to the stream (or
// image) with the given digest; the digest is added to the stream
// references. A later reference with the same name replaces the earlier one
// (whose digest stays among the stream references, as with composefs-rs).
// Names must be valid UTF-8 without NUL bytes.
func (w *Writer) AddNamedRef(name string, streamDigest []byte) {
	if w.err != nil {
		return
	}
	switch {
	case w.done:
		w.setErr(errors.New("splitstream: AddNamedRef after WriteTo"))
		return
	case len(streamDigest) != w.alg.Size():
		w.setErr(fmt.Errorf("splitstream: named reference %q: digest has %d bytes, want %d for %s", name, len(streamDigest), w.alg.Size(), w.alg))
		return
	case !utf8.ValidString(name) || bytes.IndexByte([]byte(name), 0) >= 0:
		w.setErr(fmt.Errorf("splitstream: named reference %q is not UTF-8 without NUL bytes", name))
		return
	}
	if w.named == nil {
		w.named = make(map[string]int)
	}
	w.named[name] = w.streams.add(streamDigest)
}

// flushInline emits the pending inline bytes as one chunk.
func (w *Writer) flushInline() {
	if len(w.inline) == 0 {
		return
	}
	var tag [chunkTagSize]byte
	binary.LittleEndian.PutUint64(tag[:], uint64(-int64(len(w.inline))))
	w.emit(tag[:])
	w.emit(w.inline)
	w.inline = w.inline[:0]
}

// emit adds uncompressed stream bytes.
func (w *Writer) emit(p []byte) {
	if w.enc == nil {
		w.raw = append(w.raw, p...)
		if len(w.raw) <= rawLimit {
			return
		}
		// Large streams (tar layers) are compressed as they come, so
		// that only their compressed form is held.
		w.enc = mustEncoder(&w.compressed, zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true))
		p, w.raw = w.raw, nil
	}
	if _, err := w.enc.Write(p); err != nil {
		w.setErr(fmt.Errorf("splitstream: compress: %w", err))
	}
}

// finishStream returns the compressed stream section.
func (w *Writer) finishStream() ([]byte, error) {
	w.flushInline()
	if w.enc == nil {
		return encoder.EncodeAll(w.raw, nil), nil
	}
	if err := w.enc.Close(); err != nil {
		return nil, fmt.Errorf("splitstream: compress: %w", err)
	}
	return w.compressed.Bytes(), nil
}

// namedRefsSection returns the compressed named_refs section: the records
// sorted by name.
func (w *Writer) namedRefsSection() []byte {
	names := make([]string, 0, len(w.named))
	for n := range w.named {
		names = append(names, n)
	}
	sort.Strings(names)
	var raw []byte
	for _, n := range names {
		raw = strconv.AppendInt(raw, int64(w.named[n]), 10)
		raw = append(raw, ':')
		raw = append(raw, n...)
		raw = append(raw, 0)
	}
	return encoder.EncodeAll(raw, nil)
}

// WriteTo writes the finished splitstream to out and returns the number of
// bytes written. It may be called once; the Writer accepts nothing more
// afterwards.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, errors.New("splitstream: WriteTo called twice")
	}
	w.done = true
	stream, err := w.finishStream()
	if err != nil {
		w.err = err
		return 0, err
	}
	named := w.namedRefsSection()
	dsize := uint64(w.alg.Size())

	var head [headerSize + infoSize]byte
	copy(head[currentLayout.magic:], magic)
	head[currentLayout.version] = formatVersion
	head[currentLayout.algorithm] = byte(w.alg)
	head[currentLayout.lgBlockSize] = lgBlockSize
	off := uint64(headerSize)
	putRange(head[currentLayout.info:], off, off+infoSize)
	off += infoSize
	info := head[headerSize:]
	for _, s := range []struct {
		at int
		n  uint64
	}{
		{infoStreamRefs, dsize * uint64(len(w.streams.list))},
		{infoObjectRefs, dsize * uint64(len(w.objects.list))},
		{infoNamedRefs, uint64(len(named))},
		{infoStream, uint64(len(stream))},
	} {
		putRange(info[s.at:], off, off+s.n)
		off += s.n
	}
	binary.LittleEndian.PutUint64(info[infoContentType:], w.contentType)
	binary.LittleEndian.PutUint64(info[infoStreamSize:], uint64(w.size))

	cw := &countWriter{w: out}
	cw.write(head[:])
	for _, d := range w.streams.list {
		cw.write(d)
	}
	for _, d := range w.objects.list {
		cw.write(d)
	}
	cw.write(named)
	cw.write(stream)
	if cw.err != nil {
		w.err = fmt.Errorf("splitstream: write: %w", cw.err)
	}
	return cw.n, w.err
}

func putRange(b []byte, start, end uint64) {
	binary.LittleEndian.PutUint64(b, start)
	binary.LittleEndian.PutUint64(b[8:], end)
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) write(p []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
}
