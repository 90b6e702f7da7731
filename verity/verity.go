// Package verity computes fs-verity file digests in userspace and asks the
// kernel to enable and measure fs-verity on files.
//
// A composefs image names every external object by its fs-verity digest, and
// boot configurations pin the fs-verity digest of the image itself, so the
// digest here must match the kernel's bit for bit. It is the one the kernel and
// `fsverity digest` compute for 4096-byte blocks and no salt: the file is cut
// into 4096-byte blocks (the last one zero-padded) and each block is hashed;
// the hashes are packed into 4096-byte blocks of the next tree level, which are
// hashed in turn, until one hash remains, the root hash (all zero for an empty
// file). The file digest is the hash of a 256-byte fsverity_descriptor holding
// the algorithm, the block size, the file size and the root hash.
//
// Hash computes this incrementally: it keeps only one partly filled block per
// tree level and hashes each block as soon as it is full, so memory stays
// constant (a few pages) whatever the file size, and whole blocks of large
// writes are hashed straight from the caller's buffer without being copied.
package verity

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Errors from Enable, Measure and Supported, for errors.Is. The errors
// returned also wrap the kernel's errno.
var (
	// ErrNotSupported means the kernel or the filesystem has no fs-verity.
	ErrNotSupported = errors.New("fs-verity not supported")
	// ErrNoVerity means the file does not have fs-verity enabled.
	ErrNoVerity = errors.New("fs-verity not enabled")
)

// Algorithm is an fs-verity hash algorithm, numbered as in the kernel's
// FS_VERITY_HASH_ALG_* constants.
type Algorithm uint8

// The fs-verity hash algorithms.
const (
	SHA256 Algorithm = 1
	SHA512 Algorithm = 2
)

// MaxDigestSize is the size of the largest digest of any Algorithm.
const MaxDigestSize = sha512.Size

// BlockSize is the Merkle tree block size (and data block size) composefs
// uses: the kernel's page size on common systems and what `fsverity digest`
// defaults to.
const (
	BlockSize    = 1 << logBlockSize
	logBlockSize = 12
)

// descriptorSize is the size of struct fsverity_descriptor, the block whose
// hash is the file digest.
const descriptorSize = 256

// Size returns the length in bytes of a digest made with a, or 0 if a is not
// a known algorithm.
func (a Algorithm) Size() int {
	switch a {
	case SHA256:
		return sha256.Size
	case SHA512:
		return sha512.Size
	}
	return 0
}

// Valid reports whether a is a known algorithm.
func (a Algorithm) Valid() bool { return a.Size() != 0 }

// String returns the name `fsverity digest --hash-alg` uses for a.
func (a Algorithm) String() string {
	switch a {
	case SHA256:
		return "sha256"
	case SHA512:
		return "sha512"
	}
	return fmt.Sprintf("Algorithm(%d)", uint8(a))
}

// ParseAlgorithm returns the algorithm named s ("sha256" or "sha512").
func ParseAlgorithm(s string) (Algorithm, error) {
	switch s {
	case "sha256":
		return SHA256, nil
	case "sha512":
		return SHA512, nil
	}
	return 0, fmt.Errorf("verity: unknown hash algorithm %q (want sha256 or sha512)", s)
}

// Hash computes the fs-verity digest of the bytes written to it. It
// implements hash.Hash and io.ReaderFrom. The zero value is not usable; call
// New.
type Hash struct {
	alg  Algorithm
	size uint64 // bytes written since the last Reset

	// block holds the trailing partial data block: block[:n].
	block [BlockSize]byte
	n     int

	// levels[i] holds the hashes of level i of the tree that have not yet
	// filled a block of level i+1 (level 0 hashes data blocks). Each has
	// capacity BlockSize and is always shorter than that. Only
	// levels[:depth] are in use; the rest are kept for reuse after Reset.
	// Level i+1 is in use exactly when a full block of level i has been
	// hashed, which is how Sum finds the top of the tree.
	levels [][]byte
	depth  int

	// scratch builds padded blocks in Sum without disturbing the state.
	scratch [BlockSize]byte

	// readBuf is ReadFrom's buffer, kept across Resets so that hashing many
	// files with one Hash does not allocate per file.
	readBuf []byte
}

// readBufSize is large enough that reading a file costs few system calls and
// small enough to stay in cache while it is hashed.
const readBufSize = 128 << 10

// New returns a Hash computing fs-verity digests with alg. It panics if alg is
// not a known algorithm, like crypto.Hash.New for an unavailable hash; check
// untrusted values with Algorithm.Valid or ParseAlgorithm first.
func New(alg Algorithm) *Hash {
	if !alg.Valid() {
		panic(fmt.Sprintf("verity: unknown hash algorithm %d", uint8(alg)))
	}
	return &Hash{alg: alg}
}

// Algorithm returns the algorithm h was created with.
func (h *Hash) Algorithm() Algorithm { return h.alg }

// Size returns the length of the digest Sum appends.
func (h *Hash) Size() int { return h.alg.Size() }

// BlockSize returns the fs-verity block size: writes of whole blocks are
// hashed without copying.
func (h *Hash) BlockSize() int { return BlockSize }

// Reset forgets everything written, keeping the algorithm and the buffers.
func (h *Hash) Reset() {
	h.size = 0
	h.n = 0
	h.depth = 0
}

// Write adds p to the data being hashed. It never fails.
func (h *Hash) Write(p []byte) (int, error) {
	written := len(p)
	h.size += uint64(written)
	if h.n > 0 {
		c := copy(h.block[h.n:], p)
		h.n += c
		p = p[c:]
		if h.n < BlockSize {
			return written, nil
		}
		h.hashDataBlock(h.block[:])
		h.n = 0
	}
	for len(p) >= BlockSize {
		h.hashDataBlock(p[:BlockSize])
		p = p[BlockSize:]
	}
	h.n = copy(h.block[:], p)
	return written, nil
}

// ReadFrom hashes everything r returns until io.EOF, reusing one buffer
// across calls and Resets. It returns the number of bytes read and the first
// read error other than io.EOF.
func (h *Hash) ReadFrom(r io.Reader) (int64, error) {
	if h.readBuf == nil {
		h.readBuf = make([]byte, readBufSize)
	}
	var total int64
	for {
		n, err := r.Read(h.readBuf)
		if n > 0 {
			h.Write(h.readBuf[:n])
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// hashDataBlock hashes one full data block and records its hash in level 0.
func (h *Hash) hashDataBlock(b []byte) {
	var sum [MaxDigestSize]byte
	h.push(0, h.sum(sum[:0], b))
}

// sum appends the plain hash of b to dst, which must have room for it so that
// nothing is allocated.
func (h *Hash) sum(dst, b []byte) []byte {
	if h.alg == SHA256 {
		s := sha256.Sum256(b)
		return append(dst, s[:]...)
	}
	s := sha512.Sum512(b)
	return append(dst, s[:]...)
}

// push records digest d at level i, hashing each level block that fills up
// into the level above.
func (h *Hash) push(i int, d []byte) {
	var sum [MaxDigestSize]byte
	for {
		if i == h.depth {
			if i == len(h.levels) {
				h.levels = append(h.levels, make([]byte, 0, BlockSize))
			}
			h.levels[i] = h.levels[i][:0]
			h.depth++
		}
		lv := append(h.levels[i], d...)
		if len(lv) < BlockSize {
			h.levels[i] = lv
			return
		}
		d = h.sum(sum[:0], lv)
		h.levels[i] = lv[:0]
		i++
	}
}

// Sum appends the fs-verity digest of the data written so far to b. It does
// not change the state: more data may be written afterwards.
func (h *Hash) Sum(b []byte) []byte {
	var root [MaxDigestSize]byte
	h.rootHash(root[:0])

	var desc [descriptorSize]byte
	desc[0] = 1 // version
	desc[1] = byte(h.alg)
	desc[2] = logBlockSize
	// desc[3] salt size and desc[4:8] signature size stay zero.
	binary.LittleEndian.PutUint64(desc[8:16], h.size)
	copy(desc[16:16+MaxDigestSize], root[:h.Size()])
	// Salt (32 bytes) and reserved (144 bytes) stay zero.
	var sum [MaxDigestSize]byte
	return append(b, h.sum(sum[:0], desc[:])...)
}

// rootHash appends the Merkle tree root hash to dst (which has room for it),
// finishing each level's last, partial block with zero padding. Only the
// padding bytes past the pending data are written to, so the state stays
// valid.
func (h *Hash) rootHash(dst []byte) []byte {
	size := h.Size()
	if h.size == 0 {
		return append(dst, make([]byte, size)...)
	}
	// carry is the hash of the last, padded block of the level below i that
	// has not yet been recorded in level i.
	var carryBuf [MaxDigestSize]byte
	var carry []byte
	if h.n > 0 {
		clear(h.block[h.n:])
		carry = h.sum(carryBuf[:0], h.block[:])
	}
	for i, pending := range h.levels[:h.depth] {
		if len(pending)+len(carry) == 0 {
			continue
		}
		if i == h.depth-1 && len(pending)+len(carry) == size {
			// The top level holds a single hash: the root.
			if carry != nil {
				return append(dst, carry...)
			}
			return append(dst, pending...)
		}
		m := copy(h.scratch[:], pending)
		m += copy(h.scratch[m:], carry)
		clear(h.scratch[m:])
		carry = h.sum(carryBuf[:0], h.scratch[:])
	}
	// Either the file is a single partial block, or the top level held
	// several hashes and carry is the hash of its only block.
	return append(dst, carry...)
}

// hashPools hold Hashes for Digest and DigestBytes, indexed by Algorithm:
// a Hash carries two pages and a read buffer, too much to allocate for each
// of the many small files of a tree.
var hashPools [SHA512 + 1]sync.Pool

// pooledHash returns a reset Hash for alg from its pool, or a new one. It
// panics if alg is not a known algorithm.
func pooledHash(alg Algorithm) *Hash {
	if !alg.Valid() {
		return New(alg)
	}
	if h, ok := hashPools[alg].Get().(*Hash); ok {
		h.Reset()
		return h
	}
	return New(alg)
}

// Digest returns the fs-verity digest of everything r returns until io.EOF.
func Digest(r io.Reader, alg Algorithm) ([]byte, error) {
	if !alg.Valid() {
		return nil, fmt.Errorf("verity: unknown hash algorithm %d", uint8(alg))
	}
	h := pooledHash(alg)
	defer hashPools[alg].Put(h)
	if _, err := h.ReadFrom(r); err != nil {
		return nil, fmt.Errorf("verity: reading data: %w", err)
	}
	return h.Sum(nil), nil
}

// DigestBytes returns the fs-verity digest of b. It panics if alg is not a
// known algorithm.
func DigestBytes(b []byte, alg Algorithm) []byte {
	h := pooledHash(alg)
	defer hashPools[alg].Put(h)
	h.Write(b)
	return h.Sum(nil)
}
