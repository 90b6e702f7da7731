package oci

import (
	"errors"
	"fmt"
	"io"

	"github.com/gocfs/gocfs/store/splitstream"
)

// chunkSource is the sequence of chunks of a layer splitstream, as
// *splitstream.ChunkReader delivers them.
type chunkSource interface {
	Next() (splitstream.Chunk, error)
	Read(p []byte) (int, error)
}

// errExternal is returned when the archive's metadata continues in an
// external chunk, which composefs-rs only ever makes of file bodies.
var errExternal = errors.New("an object where the layer stream needs inline data")

// chunkStream presents the archive stored in a layer splitstream to
// archive/tar without reading any object: the body of an external file is
// a hole the tar reader seeks over (reading it gives zeros), announced with
// external once the header that describes it has been read.
type chunkStream struct {
	src    chunkSource
	inline bool  // in an inline chunk that may have bytes left
	hole   int64 // bytes left of the current external body
	pos    int64
}

func (cs *chunkStream) Read(p []byte) (int, error) {
	for {
		if cs.hole > 0 {
			n := int(min(int64(len(p)), cs.hole))
			clear(p[:n])
			cs.hole -= int64(n)
			cs.pos += int64(n)
			return n, nil
		}
		if cs.inline {
			n, err := cs.src.Read(p)
			cs.pos += int64(n)
			if n > 0 {
				return n, nil
			}
			if err != io.EOF {
				return 0, err
			}
			cs.inline = false
		}
		c, err := cs.src.Next()
		if err != nil {
			return 0, err
		}
		if c.IsExternal() {
			return 0, errExternal
		}
		cs.inline = true
	}
}

// Seek lets archive/tar skip the hole of an external body without reading
// it; it can only move forward within the hole.
func (cs *chunkStream) Seek(off int64, whence int) (int64, error) {
	if whence != io.SeekCurrent || off < 0 || off > cs.hole {
		return cs.pos, errors.New("layer stream: unsupported seek")
	}
	cs.hole -= off
	cs.pos += off
	return cs.pos, nil
}

// external consumes the chunk holding the size-byte body of the entry
// whose header was just read and returns its object digest. The body must
// start a new chunk and be external.
func (cs *chunkStream) external(size int64) ([]byte, error) {
	if cs.inline {
		var none [0]byte
		if _, err := cs.src.Read(none[:]); err != io.EOF {
			if err == nil {
				return nil, fmt.Errorf("body of %d bytes stored inline, composefs keeps only up to %d", size, InlineMax)
			}
			return nil, err
		}
		cs.inline = false
	}
	c, err := cs.src.Next()
	if err == io.EOF {
		return nil, io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, err
	}
	if !c.IsExternal() {
		return nil, fmt.Errorf("body of %d bytes stored inline, composefs keeps only up to %d", size, InlineMax)
	}
	cs.hole = size
	return c.Object, nil
}
