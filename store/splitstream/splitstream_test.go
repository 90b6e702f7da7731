package splitstream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/verity"
)

func TestContentTypes(t *testing.T) {
	for _, tt := range []struct {
		got  uint64
		text string
	}{
		{ContentTypeOCILayer, "ocilayer"},
		{ContentTypeOCIConfig, "ociconfg"},
		{ContentTypeOCIManifest, "ocimanif"},
		{ContentTypeOCIBlob, "oci_blob"},
	} {
		if want := binary.LittleEndian.Uint64([]byte(tt.text)); tt.got != want {
			t.Errorf("content type %q = %#x, want %#x", tt.text, tt.got, want)
		}
	}
}

// digest returns a recognisable fake digest.
func digest(alg verity.Algorithm, b byte) []byte { return bytes.Repeat([]byte{b}, alg.Size()) }

func tag(v int64) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(v)) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func u64(b []byte, off int) uint64 { return binary.LittleEndian.Uint64(b[off:]) }

func decompress(t *testing.T, b []byte) []byte {
	t.Helper()
	raw, err := namedDecoder.DecodeAll(b, nil)
	if err != nil {
		t.Fatalf("decompress: %v", err)
	}
	return raw
}

func finish(t *testing.T, w *Writer) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := w.WriteTo(&buf)
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

// TestLayout checks the bytes of a small stream field by field.
func TestLayout(t *testing.T) {
	alg := verity.SHA256
	d1, d2 := digest(alg, 0xd1), digest(alg, 0xd2)
	s1, s2 := digest(alg, 0x51), digest(alg, 0x52)
	w := NewWriter(alg, ContentTypeOCILayer)
	w.WriteInline([]byte("hello"))
	w.WriteInline(nil)
	w.WriteInline([]byte(" world"))
	w.WriteExternal(d1, 100)
	w.WriteExternal(d2, 50)
	w.WriteExternal(d1, 100)
	w.WriteInline([]byte("!"))
	w.AddNamedRef("b", s1)
	w.AddNamedRef("a", s2)
	w.AddNamedRef("c:with:colons", s1)
	if w.StreamSize() != 262 {
		t.Fatalf("StreamSize = %d, want 262", w.StreamSize())
	}
	f := finish(t, w)

	wantHead := cat([]byte("SplitStream"), []byte{0, 0, 0, 1, 12}, tag(32), tag(112))
	if !bytes.Equal(f[:32], wantHead) {
		t.Fatalf("header\n got %x\nwant %x", f[:32], wantHead)
	}
	info := f[32:112]
	ranges := map[string][2]uint64{}
	for _, r := range []struct {
		name string
		at   int
	}{{"stream_refs", 0}, {"object_refs", 16}, {"stream", 32}, {"named_refs", 48}} {
		ranges[r.name] = [2]uint64{u64(info, r.at), u64(info, r.at+8)}
	}
	if got := ranges["stream_refs"]; got != [2]uint64{112, 176} {
		t.Errorf("stream_refs range %v", got)
	}
	if got := ranges["object_refs"]; got != [2]uint64{176, 240} {
		t.Errorf("object_refs range %v", got)
	}
	named := ranges["named_refs"]
	if named[0] != 240 || ranges["stream"][0] != named[1] || ranges["stream"][1] != uint64(len(f)) {
		t.Errorf("named_refs %v and stream %v are not consecutive up to the end (%d)", named, ranges["stream"], len(f))
	}
	if got := u64(info, 64); got != ContentTypeOCILayer {
		t.Errorf("content type %#x", got)
	}
	if got := u64(info, 72); got != 262 {
		t.Errorf("stream size %d", got)
	}
	if !bytes.Equal(f[112:176], cat(s1, s2)) {
		t.Errorf("stream_refs %x", f[112:176])
	}
	if !bytes.Equal(f[176:240], cat(d1, d2)) {
		t.Errorf("object_refs %x", f[176:240])
	}
	if got, want := decompress(t, f[named[0]:named[1]]), []byte("1:a\x000:b\x000:c:with:colons\x00"); !bytes.Equal(got, want) {
		t.Errorf("named_refs %q, want %q", got, want)
	}
	wantStream := cat(tag(-11), []byte("hello world"), tag(0), tag(1), tag(0), tag(-1), []byte("!"))
	if got := decompress(t, f[ranges["stream"][0]:]); !bytes.Equal(got, wantStream) {
		t.Errorf("stream\n got %x\nwant %x", got, wantStream)
	}
}

// TestEmpty checks that empty sections still hold zstd frames, as
// composefs-rs writes them.
func TestEmpty(t *testing.T) {
	f := finish(t, NewWriter(verity.SHA512, 7))
	if f[14] != 2 {
		t.Errorf("algorithm byte %d", f[14])
	}
	info := f[32:112]
	for _, at := range []int{32, 48} {
		if u64(info, at+8) == u64(info, at) {
			t.Errorf("section at info offset %d is empty", at)
		}
	}
	rd, err := NewReader(bytes.NewReader(f), int64(len(f)))
	if err != nil {
		t.Fatal(err)
	}
	if rd.ContentType() != 7 || rd.StreamSize() != 0 || len(rd.ObjectRefs()) != 0 || len(rd.NamedRefs()) != 0 {
		t.Errorf("reader: type %d size %d refs %d named %d", rd.ContentType(), rd.StreamSize(), len(rd.ObjectRefs()), len(rd.NamedRefs()))
	}
	if err := rd.Chunks(func(Chunk) error { return errors.New("chunk in an empty stream") }); err != nil {
		t.Error(err)
	}
}

// op is one Writer call of a round-trip test.
type op struct {
	inline []byte
	object byte // external chunk of object digest(object), when inline is nil
	size   int
}

func content(obj byte, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = obj ^ byte(i*7) ^ byte(i>>9)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("tar header padding "), rawLimit/10)
	tests := []struct {
		name  string
		alg   verity.Algorithm
		ops   []op
		named map[string]byte
	}{
		{name: "inline only", alg: verity.SHA256, ops: []op{{inline: []byte("a")}, {inline: []byte("bc")}}},
		{name: "external only", alg: verity.SHA512, ops: []op{{object: 1, size: 65}, {object: 2, size: 4096}, {object: 1, size: 65}}},
		{name: "mixed", alg: verity.SHA256, ops: []op{{object: 3, size: 1}, {inline: []byte("x")}, {object: 4, size: 0}, {inline: []byte("yz")}},
			named: map[string]byte{"config:sha256:00": 9, "layer": 8, "": 9}},
		{name: "large inline", alg: verity.SHA256, ops: []op{{inline: big}, {object: 5, size: 70000}, {inline: big}, {inline: big}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewWriter(tt.alg, ContentTypeOCIBlob)
			var want bytes.Buffer
			var wantChunks []Chunk
			objects := map[string][]byte{}
			for _, o := range tt.ops {
				if o.inline != nil {
					w.WriteInline(o.inline)
					want.Write(o.inline)
					if n := len(wantChunks); n > 0 && !wantChunks[n-1].IsExternal() {
						wantChunks[n-1].Inline = append(wantChunks[n-1].Inline, o.inline...)
						wantChunks[n-1].Size += int64(len(o.inline))
					} else {
						wantChunks = append(wantChunks, Chunk{Inline: bytes.Clone(o.inline), Size: int64(len(o.inline))})
					}
					continue
				}
				d := digest(tt.alg, o.object)
				data := content(o.object, o.size)
				objects[string(d)] = data
				w.WriteExternal(d, int64(o.size))
				want.Write(data)
				wantChunks = append(wantChunks, Chunk{Object: d})
			}
			for name, b := range tt.named {
				w.AddNamedRef(name, digest(tt.alg, b))
			}
			f := finish(t, w)
			rd, err := NewReader(bytes.NewReader(f), int64(len(f)))
			if err != nil {
				t.Fatal(err)
			}
			if rd.Algorithm() != tt.alg || rd.ContentType() != ContentTypeOCIBlob || rd.StreamSize() != int64(want.Len()) || rd.OldHeader() {
				t.Errorf("alg %v type %#x size %d (want %d) old %v", rd.Algorithm(), rd.ContentType(), rd.StreamSize(), want.Len(), rd.OldHeader())
			}
			if len(rd.NamedRefs()) != len(tt.named) {
				t.Errorf("%d named refs, want %d", len(rd.NamedRefs()), len(tt.named))
			}
			prev := ""
			for i, n := range rd.NamedRefs() {
				if i > 0 && n.Name <= prev {
					t.Errorf("named refs not sorted: %q after %q", n.Name, prev)
				}
				prev = n.Name
				if b, ok := tt.named[n.Name]; !ok || !bytes.Equal(n.Digest, digest(tt.alg, b)) || !bytes.Equal(rd.NamedRef(n.Name), n.Digest) {
					t.Errorf("named ref %q = %x", n.Name, n.Digest)
				}
			}
			var got []Chunk
			err = rd.Chunks(func(c Chunk) error {
				c.Inline = bytes.Clone(c.Inline)
				got = append(got, c)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(wantChunks) {
				t.Errorf("chunks\n got %.200v\nwant %.200v", got, wantChunks)
			}
			var out bytes.Buffer
			err = rd.Reassemble(&out, func(d []byte) (io.ReadCloser, error) {
				b, ok := objects[string(d)]
				if !ok {
					return nil, fmt.Errorf("no object %x", d)
				}
				return io.NopCloser(bytes.NewReader(b)), nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), want.Bytes()) {
				t.Errorf("reassembled %d bytes differ from the %d written", out.Len(), want.Len())
			}
		})
	}
}

// TestChunkReader reads inline chunks in small pieces and skips others.
func TestChunkReader(t *testing.T) {
	alg := verity.SHA256
	w := NewWriter(alg, 0)
	w.WriteInline(bytes.Repeat([]byte{1}, 3*rawLimit))
	w.WriteExternal(digest(alg, 1), 10)
	w.WriteInline([]byte("tail"))
	f := finish(t, w)
	rd, err := NewReader(bytes.NewReader(f), int64(len(f)))
	if err != nil {
		t.Fatal(err)
	}
	cr, err := rd.ChunkReader()
	if err != nil {
		t.Fatal(err)
	}
	defer cr.Close()
	c, err := cr.Next()
	if err != nil || c.IsExternal() || c.Size != 3*rawLimit || c.Inline != nil {
		t.Fatalf("first chunk %v, %v", c, err)
	}
	buf := make([]byte, 1000)
	if n, err := cr.Read(buf); n == 0 || err != nil || buf[0] != 1 {
		t.Fatalf("Read = %d, %v", n, err)
	}
	// The rest of the inline chunk is skipped.
	if c, err = cr.Next(); err != nil || !bytes.Equal(c.Object, digest(alg, 1)) {
		t.Fatalf("second chunk %v, %v", c, err)
	}
	if n, err := cr.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("Read of an external chunk = %d, %v", n, err)
	}
	if c, err = cr.Next(); err != nil || c.Size != 4 {
		t.Fatalf("third chunk %v, %v", c, err)
	}
	b, err := io.ReadAll(cr)
	if err != nil || string(b) != "tail" {
		t.Errorf("ReadAll = %q, %v", b, err)
	}
	for range 2 {
		if _, err := cr.Next(); err != io.EOF {
			t.Errorf("Next at the end: %v", err)
		}
	}
}

// oldFormat rewrites a stream's header in the pre-repr(C) field order.
func oldFormat(f []byte) []byte {
	old := bytes.Clone(f)
	h := f[:32]
	copy(old[0:16], h[16:32])
	copy(old[16:18], h[12:14])
	copy(old[18:29], h[0:11])
	old[29], old[30], old[31] = h[11], h[14], h[15]
	return old
}

func TestOldHeader(t *testing.T) {
	w := NewWriter(verity.SHA512, ContentTypeOCIConfig)
	w.WriteExternal(digest(verity.SHA512, 3), 1234)
	w.AddNamedRef("composefs.image.v1", digest(verity.SHA512, 4))
	f := oldFormat(finish(t, w))
	if !bytes.Equal(f[18:29], []byte(magic)) {
		t.Fatalf("old header %x", f[:32])
	}
	rd, err := NewReader(bytes.NewReader(f), int64(len(f)))
	if err != nil {
		t.Fatal(err)
	}
	if !rd.OldHeader() || rd.Algorithm() != verity.SHA512 || rd.StreamSize() != 1234 || rd.ContentType() != ContentTypeOCIConfig ||
		!bytes.Equal(rd.NamedRef("composefs.image.v1"), digest(verity.SHA512, 4)) {
		t.Errorf("old header read as alg %v size %d type %#x", rd.Algorithm(), rd.StreamSize(), rd.ContentType())
	}
}

func TestWriterErrors(t *testing.T) {
	tests := []struct {
		name string
		alg  verity.Algorithm
		do   func(w *Writer)
		want string
	}{
		{"bad algorithm", 9, func(w *Writer) {}, "unknown fs-verity algorithm"},
		{"short object digest", verity.SHA256, func(w *Writer) { w.WriteExternal(make([]byte, 31), 1) }, "31 bytes, want 32"},
		{"sha256 digest in sha512 stream", verity.SHA512, func(w *Writer) { w.WriteExternal(make([]byte, 32), 1) }, "want 64"},
		{"negative size", verity.SHA256, func(w *Writer) { w.WriteExternal(make([]byte, 32), -1) }, "negative size"},
		{"short stream digest", verity.SHA256, func(w *Writer) { w.AddNamedRef("x", nil) }, "0 bytes"},
		{"NUL in name", verity.SHA256, func(w *Writer) { w.AddNamedRef("a\x00b", make([]byte, 32)) }, "NUL"},
		{"name not UTF-8", verity.SHA256, func(w *Writer) { w.AddNamedRef("\xff", make([]byte, 32)) }, "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewWriter(tt.alg, 0)
			tt.do(w)
			w.WriteInline([]byte("more"))
			if _, err := w.WriteTo(io.Discard); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("WriteTo error %v, want %q", err, tt.want)
			}
		})
	}
	w := NewWriter(verity.SHA256, 0)
	finish(t, w)
	if _, err := w.WriteTo(io.Discard); err == nil {
		t.Error("second WriteTo succeeded")
	}
	w.WriteInline([]byte("late"))
	if _, err := w.WriteTo(io.Discard); err == nil || !strings.Contains(err.Error(), "after WriteTo") {
		t.Errorf("write after WriteTo: %v", err)
	}
}

// raw describes a splitstream to assemble by hand, for malformed inputs.
type raw struct {
	alg                    byte
	version, lgBlk         byte
	streamRefs, objectRefs []byte
	named, stream          []byte // uncompressed
	namedComp, streamComp  []byte // used instead when not nil
	streamSize             uint64
	infoLen                int
}

func (r raw) build() []byte {
	if r.alg == 0 {
		r.alg = 1
	}
	if r.lgBlk == 0 {
		r.lgBlk = 12
	}
	if r.infoLen == 0 {
		r.infoLen = infoSize
	}
	nc, sc := r.namedComp, r.streamComp
	if nc == nil {
		nc = encoder.EncodeAll(r.named, nil)
	}
	if sc == nil {
		sc = encoder.EncodeAll(r.stream, nil)
	}
	f := cat([]byte(magic), []byte{r.version, 0, 0, r.alg, r.lgBlk}, tag(32), tag(int64(32+r.infoLen)))
	info := make([]byte, r.infoLen)
	off := uint64(32 + r.infoLen)
	for _, s := range []struct {
		at int
		n  int
	}{{0, len(r.streamRefs)}, {16, len(r.objectRefs)}, {48, len(nc)}, {32, len(sc)}} {
		if s.at+16 <= len(info) {
			putRange(info[s.at:], off, off+uint64(s.n))
		}
		off += uint64(s.n)
	}
	if len(info) >= infoSize {
		binary.LittleEndian.PutUint64(info[64:], 0)
		binary.LittleEndian.PutUint64(info[72:], r.streamSize)
	}
	return cat(f, info, r.streamRefs, r.objectRefs, nc, sc)
}

func TestReaderErrors(t *testing.T) {
	d := bytes.Repeat([]byte{7}, 32)
	good := raw{streamRefs: d, objectRefs: d, named: []byte("0:x\x00"), stream: cat(tag(-2), []byte("ab"), tag(0)), streamSize: 12}
	if _, err := NewReader(bytes.NewReader(good.build()), int64(len(good.build()))); err != nil {
		t.Fatalf("good stream: %v", err)
	}
	mutate := func(f func(r *raw)) []byte {
		r := good
		f(&r)
		return r.build()
	}
	patch := func(off int, b ...byte) []byte {
		f := good.build()
		copy(f[off:], b)
		return f
	}
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "shorter than"},
		{"short", good.build()[:31], "shorter than"},
		{"bad magic", patch(0, 's'), "bad magic"},
		{"version 1", mutate(func(r *raw) { r.version = 1 }), "unsupported version 1"},
		{"algorithm 3", mutate(func(r *raw) { r.alg = 3 }), "unknown fs-verity algorithm 3"},
		{"64k blocks", mutate(func(r *raw) { r.lgBlk = 16 }), "2^16"},
		{"info beyond end", patch(24, 0xff, 0xff), "info range"},
		{"info reversed", patch(16, 200), "info range"},
		{"info short", mutate(func(r *raw) { r.infoLen = 72 }), "info section of 72 bytes"},
		{"object refs beyond end", patch(32+24, 0xff, 0xff, 0xff), "object_refs range"},
		{"partial digest", mutate(func(r *raw) { r.objectRefs = d[:31] }), "whole number"},
		{"named without colon", mutate(func(r *raw) { r.named = []byte("0x\x00") }), "no colon"},
		{"named bad index", mutate(func(r *raw) { r.named = []byte("a:x\x00") }), "bad index"},
		{"named signed index", mutate(func(r *raw) { r.named = []byte("+0:x\x00") }), "bad index"},
		{"named leading zero", mutate(func(r *raw) { r.named = []byte("00:x\x00") }), "bad index"},
		{"named index out of range", mutate(func(r *raw) { r.named = []byte("1:x\x00") }), "beyond the 1 stream"},
		{"named unterminated", mutate(func(r *raw) { r.named = []byte("0:x") }), "ends inside a record"},
		{"named twice", mutate(func(r *raw) { r.named = []byte("0:x\x000:x\x00") }), "appears twice"},
		{"named not UTF-8", mutate(func(r *raw) { r.named = []byte("0:\xff\x00") }), "not UTF-8"},
		{"named not zstd", mutate(func(r *raw) { r.namedComp = []byte("junk") }), "named_refs section"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(tt.file), int64(len(tt.file)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("error %v does not wrap ErrFormat", err)
			}
		})
	}
}

func TestStreamErrors(t *testing.T) {
	d := bytes.Repeat([]byte{7}, 32)
	tests := []struct {
		name       string
		stream     []byte
		streamComp []byte
		size       uint64
		want       string
	}{
		{"truncated tag", cat(tag(-1), []byte("a"), []byte{1, 2, 3}), nil, 1, "ends inside a chunk tag"},
		{"truncated inline", cat(tag(-5), []byte("ab")), nil, 5, "ends inside an inline chunk"},
		{"object out of range", tag(1), nil, 0, "names object 1 of 1"},
		{"min int64", tag(math.MinInt64), nil, 0, "inline chunk length"},
		{"inline beyond size", cat(tag(-3), []byte("abc")), nil, 2, "exceed the stream size"},
		{"not zstd", nil, []byte("definitely not zstd"), 0, "stream section"},
		{"size mismatch", cat(tag(-3), []byte("abc")), nil, 4, "reassembled 3 bytes, the stream records 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := raw{objectRefs: d, stream: tt.stream, streamComp: tt.streamComp, streamSize: tt.size}.build()
			rd, err := NewReader(bytes.NewReader(f), int64(len(f)))
			if err != nil {
				t.Fatal(err)
			}
			err = rd.Reassemble(io.Discard, func([]byte) (io.ReadCloser, error) {
				return io.NopCloser(strings.NewReader("")), nil
			})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Reassemble error %v, want %q", err, tt.want)
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("error %v does not wrap ErrFormat", err)
			}
			if err := rd.Chunks(func(Chunk) error { return nil }); err == nil && tt.name != "size mismatch" {
				t.Error("Chunks succeeded")
			}
		})
	}
}

func TestReassembleOpenError(t *testing.T) {
	alg := verity.SHA256
	w := NewWriter(alg, 0)
	w.WriteExternal(digest(alg, 1), 3)
	f := finish(t, w)
	rd, err := NewReader(bytes.NewReader(f), int64(len(f)))
	if err != nil {
		t.Fatal(err)
	}
	missing := errors.New("no such object")
	err = rd.Reassemble(io.Discard, func([]byte) (io.ReadCloser, error) { return nil, missing })
	if !errors.Is(err, missing) || !strings.Contains(err.Error(), "0101") {
		t.Errorf("Reassemble error %v", err)
	}
}

// FuzzReader feeds arbitrary bytes to the reader: it must never panic, and
// what it accepts must be consistent.
func FuzzReader(f *testing.F) {
	for _, alg := range []verity.Algorithm{verity.SHA256, verity.SHA512} {
		w := NewWriter(alg, ContentTypeOCILayer)
		w.WriteInline([]byte("header"))
		w.WriteExternal(digest(alg, 1), 100)
		w.WriteInline([]byte("pad"))
		w.AddNamedRef("n", digest(alg, 2))
		var buf bytes.Buffer
		if _, err := w.WriteTo(&buf); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
		f.Add(oldFormat(buf.Bytes()))
	}
	f.Add(raw{stream: cat(tag(-1), []byte("a"), tag(math.MinInt64)), streamSize: 1}.build())
	f.Fuzz(func(t *testing.T, data []byte) {
		rd, err := NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("error %v wraps neither ErrFormat nor io.ErrUnexpectedEOF", err)
			}
			return
		}
		for _, n := range rd.NamedRefs() {
			if len(n.Digest) != rd.Algorithm().Size() {
				t.Fatalf("named ref digest of %d bytes", len(n.Digest))
			}
		}
		cr, err := rd.ChunkReader()
		if err != nil {
			return
		}
		defer cr.Close()
		// Bounded reading: zstd expands a small input a lot.
		var inline int64
		for range 1000 {
			c, err := cr.Next()
			if err != nil {
				return
			}
			if c.IsExternal() {
				if len(c.Object) != rd.Algorithm().Size() {
					t.Fatalf("external chunk digest of %d bytes", len(c.Object))
				}
				continue
			}
			if c.Size <= 0 || c.Size > rd.StreamSize() {
				t.Fatalf("inline chunk of %d bytes in a stream of %d", c.Size, rd.StreamSize())
			}
			n, _ := io.CopyN(io.Discard, cr, min(c.Size, 1<<20))
			if inline += n; inline > 1<<24 {
				return
			}
		}
	})
}
