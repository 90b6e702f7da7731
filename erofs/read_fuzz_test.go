package erofs

import (
	"bytes"
	"errors"
	"runtime"
	"testing"

	"github.com/gocfs/gocfs/tests/golden"
)

// rdExercise walks an image with the low-level API, calling every method
// on every inode reachable from the root; it only looks for panics, so
// errors end the inspection of the inode concerned.
func rdExercise(data []byte, open func([]byte) (*Image, error)) {
	img, err := open(data)
	if err != nil {
		return
	}
	_ = img.Info()
	seen := map[uint64]bool{}
	queue := []uint64{img.Root()}
	for len(queue) > 0 && len(seen) < 2000 {
		nid := queue[0]
		queue = queue[1:]
		if seen[nid] {
			continue
		}
		seen[nid] = true
		ino, err := img.Inode(nid)
		if err != nil {
			continue
		}
		img.Xattrs(ino)
		switch {
		case ino.IsDir():
			ents, _ := img.ReadDir(ino)
			for _, e := range ents {
				img.Lookup(ino, e.Name)
				queue = append(queue, e.Nid)
			}
			img.Lookup(ino, "zz")
		case ino.IsSymlink():
			img.ReadLink(ino)
		case ino.Layout == LayoutChunkBased:
			img.ChunkTable(ino)
		}
		p := make([]byte, 100)
		for _, off := range []int64{0, 4000, 4096, int64(ino.Size) - 1} {
			img.ReadAt(ino, p, off)
		}
	}
}

// rdCheckImage reads data as an image and checks the reader's contract:
// no panic, allocations bounded by the image size, only classified errors,
// and a tree that writes an image that reads back to the same image.
func rdCheckImage(t *testing.T, data []byte) { rdCheck(t, data, true) }

// rdCheck is rdCheckImage, leaving out the costly write checks unless
// rewrite is set.
func rdCheck(t *testing.T, data []byte, rewrite bool) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	root, _, err := ReadTree(bytes.NewReader(data), int64(len(data)))
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64*uint64(len(data))+4<<20 {
		t.Fatalf("reading a %d-byte image allocated %d bytes", len(data), grew)
	}
	for _, open := range hbOpeners {
		rdExercise(data, open)
	}
	if err != nil {
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrNotComposefs) {
			t.Fatalf("unclassified error: %v", err)
		}
		return
	}
	if !rewrite {
		return
	}
	var img bytes.Buffer
	if _, err := Write(&img, root, WriteOptions{}); err != nil {
		t.Fatalf("a tree read from an image cannot be written: %v", err)
	}
	rdCheckFixedPoint(t, img.Bytes(), WriteOptions{})
}

// FuzzReadTree feeds mutated images to the reader. Seeds are the
// hand-built sample and the images of the small golden vectors, the C
// project's fuzzing corpus among them.
func FuzzReadTree(f *testing.F) {
	f.Add(hbSample().build())
	for _, v := range golden.Vectors(f) {
		if !v.Fail && v.Size <= 128<<10 {
			f.Add(rdGoldenImage(f, v))
		}
	}
	f.Fuzz(rdCheckImage)
}

// TestReadTreeMutatedBytes changes every byte of the sample image in turn,
// leaving out most of the bytes no reader looks at (the header's padding)
// or that only change file data.
func TestReadTreeMutatedBytes(t *testing.T) {
	b := hbSample()
	img := b.build()
	dataStart := int(b.nodes[hbBlockFile].blkadr) * BlockSize
	for _, flip := range []byte{0xff, 0x01} {
		for i := range img {
			if (i >= ComposefsHeaderSize && i < SuperblockOffset || i >= dataStart) && i%61 != 0 ||
				testing.Short() && i%7 != 0 {
				continue
			}
			m := bytes.Clone(img)
			m[i] ^= flip
			rdCheckImage(t, m)
			if t.Failed() {
				t.Fatalf("offset %d ^ %#x", i, flip)
			}
		}
	}
}

// TestReadTreeMutatedGolden changes a sample of the bytes of golden images
// with whiteouts, hardlinks, shared xattrs and multi-block directories.
func TestReadTreeMutatedGolden(t *testing.T) {
	step := 37
	if testing.Short() {
		step = 199
	}
	for _, v := range golden.Vectors(t) {
		if v.Asset != "special_v1.dump" && v.Asset != "fuzzing-corpus/busybox" {
			continue
		}
		img := rdGoldenImage(t, v)
		for i := 0; i < len(img); i += step {
			m := bytes.Clone(img)
			m[i] ^= byte(i) | 1
			rdCheck(t, m, false)
			if t.Failed() {
				t.Fatalf("%s: offset %d", v.Asset, i)
			}
		}
	}
}
