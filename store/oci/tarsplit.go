package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/gocfs/gocfs/store/splitstream"
)

// InlineMax is the size up to which a regular file stays inline, in layer
// splitstreams and in images; larger files become objects. composefs-rs
// fixes it (INLINE_CONTENT_MAX_V0): changing it changes every image.
const InlineMax = 64

// bufferedMax is the largest file body read into memory and stored by a
// worker, so that the many small files of a layer are hashed in parallel.
// Larger bodies are stored straight from the archive, one at a time per
// layer, which keeps memory bounded.
const bufferedMax = 1 << 20

// inlineFlush is how much inline data the splitter gathers before handing
// it on.
const inlineFlush = 64 << 10

// objectStore stores file contents; *store.Repository is one.
type objectStore interface {
	// EnsureObject stores everything r returns as an object, unless it
	// is present, and returns its fs-verity digest.
	EnsureObject(r io.Reader) ([]byte, error)
}

// ingester stores objects for the layers of one import, running at most
// cap(slots) stores at once across all of them.
type ingester struct {
	ctx     context.Context
	objects objectStore
	slots   chan struct{}
	bufs    sync.Pool
}

func newIngester(ctx context.Context, store objectStore, workers int) *ingester {
	if workers < 1 {
		workers = 1
	}
	return &ingester{
		ctx:     ctx,
		objects: store,
		slots:   make(chan struct{}, workers),
		bufs:    sync.Pool{New: func() any { b := make([]byte, bufferedMax); return &b }},
	}
}

func (ing *ingester) acquire() error {
	select {
	case ing.slots <- struct{}{}:
		return nil
	case <-ing.ctx.Done():
		return ing.ctx.Err()
	}
}

func (ing *ingester) release() { <-ing.slots }

// future is the digest of an object being stored.
type future struct {
	done   chan struct{}
	digest []byte
	err    error
}

func (f *future) wait() ([]byte, error) {
	<-f.done
	return f.digest, f.err
}

// put stores the next size bytes of r as an object. Small bodies are
// read here and stored by a worker; the returned future resolves when the
// object is in place.
func (ing *ingester) put(r io.Reader, size int64) (*future, error) {
	if err := ing.acquire(); err != nil {
		return nil, err
	}
	f := &future{done: make(chan struct{})}
	if size > bufferedMax {
		defer ing.release()
		defer close(f.done)
		er := &exactReader{r: r, left: size}
		d, err := ing.objects.EnsureObject(er)
		if err == nil {
			err = er.check()
		}
		f.digest, f.err = d, err
		return f, err
	}
	bp := ing.bufs.Get().(*[]byte)
	buf := (*bp)[:size]
	if _, err := io.ReadFull(r, buf); err != nil {
		ing.bufs.Put(bp)
		ing.release()
		return nil, noEOF(err)
	}
	go func() {
		defer ing.release()
		defer close(f.done)
		f.digest, f.err = ing.objects.EnsureObject(bytes.NewReader(buf))
		ing.bufs.Put(bp)
	}()
	return f, nil
}

// noEOF reports a body that ends early as a truncated archive.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// exactReader passes on exactly left bytes of r; check reports whether all
// of them were read.
type exactReader struct {
	r    io.Reader
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (e *exactReader) check() error {
	if e.left != 0 {
		return fmt.Errorf("object store stopped %d bytes before the end of the file", e.left)
	}
	return nil
}

// piece is a part of a layer stream on its way to the splitstream writer:
// inline bytes or an object being stored.
type piece struct {
	inline []byte
	object *future
	size   int64
}

// splitStats counts what a layer import stored.
type splitStats struct {
	Objects     int64 // external chunks
	ObjectBytes int64
	InlineBytes int64
}

// splitTar writes the tar archive read from r to sw as composefs-rs splits
// it: every header (with its extension records), small file, padding block
// and the end-of-archive blocks, and whatever follows them, inline; the
// body of every regular file larger than InlineMax an object. The stream
// therefore reassembles to exactly the bytes of r.
//
// The archive is parsed with archive/tar, whose rules decide where entries
// end; entries it would read differently from tar-core, composefs-rs's
// parser, are refused: sparse files and non-file entries that claim data.
func splitTar(r io.Reader, sw *splitstream.Writer, ing *ingester) (splitStats, error) {
	var st splitStats
	pieces := make(chan piece, 64)
	stop := make(chan struct{})
	consumed := make(chan error, 1)
	go func() {
		var err error
		for p := range pieces {
			if err != nil {
				continue
			}
			if p.object == nil {
				sw.WriteInline(p.inline)
				st.InlineBytes += int64(len(p.inline))
				continue
			}
			d, werr := p.object.wait()
			if werr != nil {
				err = werr
				close(stop)
				continue
			}
			sw.WriteExternal(d, p.size)
			st.Objects++
			st.ObjectBytes += p.size
		}
		consumed <- err
	}()
	perr := produce(r, pieces, stop, ing)
	close(pieces)
	if err := <-consumed; err != nil {
		return st, fmt.Errorf("store file: %w", err)
	}
	return st, perr
}

var errStopped = errors.New("stopped")

// produce parses the archive and sends its pieces in order.
func produce(r io.Reader, pieces chan<- piece, stop <-chan struct{}, ing *ingester) error {
	rec := &recorder{r: r, on: true}
	send := func(p piece) error {
		select {
		case pieces <- p:
			return nil
		case <-stop:
			return errStopped
		}
	}
	flush := func() error {
		if len(rec.buf) == 0 {
			return nil
		}
		b := rec.buf
		rec.buf = nil
		return send(piece{inline: b})
	}
	tr := tar.NewReader(rec)
	for n := 1; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("tar entry %d: %w", n, noEOF(err))
		}
		if err := checkHeader(hdr); err != nil {
			return fmt.Errorf("tar entry %d (%q): %w", n, hdr.Name, err)
		}
		if !isFile(hdr) || hdr.Size <= InlineMax {
			if len(rec.buf) >= inlineFlush {
				if err := flush(); err != nil {
					return err
				}
			}
			continue
		}
		if err := flush(); err != nil {
			return err
		}
		rec.on = false
		f, err := ing.put(tr, hdr.Size)
		rec.on = true
		if err != nil {
			return fmt.Errorf("tar entry %d (%q): %w", n, hdr.Name, err)
		}
		if err := send(piece{object: f, size: hdr.Size}); err != nil {
			return err
		}
	}
	// The end-of-archive blocks and any record padding after them belong
	// to the layer's bytes (its diff_id): keep them, within reason.
	var tail int64
	buf := make([]byte, 32<<10)
	for {
		n, err := rec.Read(buf)
		tail += int64(n)
		if tail > maxTrailer {
			return fmt.Errorf("more than %d bytes after the end of the archive", maxTrailer)
		}
		if len(rec.buf) >= inlineFlush {
			if err := flush(); err != nil {
				return err
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("after the end of the archive: %w", err)
		}
	}
	return flush()
}

// maxTrailer bounds what may follow the end of an archive, normally zeros
// up to the end of a record; 16 MiB is a record of any sensible blocking
// factor, and keeps a hostile layer from filling memory.
const maxTrailer = 16 << 20

// recorder keeps a copy of what is read through it while on is set.
type recorder struct {
	r   io.Reader
	on  bool
	buf []byte
}

func (rc *recorder) Read(p []byte) (int, error) {
	n, err := rc.r.Read(p)
	if rc.on && n > 0 {
		rc.buf = append(rc.buf, p[:n]...)
	}
	return n, err
}

// isFile reports whether an entry is a regular file (tar-core counts
// contiguous files as regular ones; archive/tar has already turned the old
// NUL type flag into TypeReg or TypeDir).
func isFile(hdr *tar.Header) bool {
	return hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeCont
}

// checkHeader refuses entries whose extent in the archive archive/tar and
// tar-core disagree on.
func checkHeader(hdr *tar.Header) error {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return errors.New("sparse files are not supported")
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return errors.New("sparse files are not supported")
		}
	}
	switch hdr.Typeflag {
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
		// archive/tar skips no data for these; tar-core would skip
		// Size bytes.
		if hdr.Size != 0 {
			return fmt.Errorf("entry of type %q claims %d bytes of data", hdr.Typeflag, hdr.Size)
		}
	}
	return nil
}
