package erofs

import (
	"encoding/binary"
	"math/bits"
)

// xxh32 primes, from the xxHash specification.
const (
	xxhPrime1 uint32 = 2654435761
	xxhPrime2 uint32 = 2246822519
	xxhPrime3 uint32 = 3266489917
	xxhPrime4 uint32 = 668265263
	xxhPrime5 uint32 = 374761393
)

// xxh32 is the 32-bit xxHash of b. EROFS uses it, seeded with
// XattrFilterSeed plus the name index, to pick an xattr name's bit in the
// per-inode bloom filter; it is written out here because the filter must
// match what the kernel computes bit for bit.
func xxh32(b []byte, seed uint32) uint32 {
	n := len(b)
	var h uint32
	if n >= 16 {
		v1 := seed + xxhPrime1 + xxhPrime2
		v2 := seed + xxhPrime2
		v3 := seed
		v4 := seed - xxhPrime1
		for len(b) >= 16 {
			v1 = xxh32Round(v1, binary.LittleEndian.Uint32(b[0:]))
			v2 = xxh32Round(v2, binary.LittleEndian.Uint32(b[4:]))
			v3 = xxh32Round(v3, binary.LittleEndian.Uint32(b[8:]))
			v4 = xxh32Round(v4, binary.LittleEndian.Uint32(b[12:]))
			b = b[16:]
		}
		h = bits.RotateLeft32(v1, 1) + bits.RotateLeft32(v2, 7) +
			bits.RotateLeft32(v3, 12) + bits.RotateLeft32(v4, 18)
	} else {
		h = seed + xxhPrime5
	}
	h += uint32(n)
	for len(b) >= 4 {
		h += binary.LittleEndian.Uint32(b) * xxhPrime3
		h = bits.RotateLeft32(h, 17) * xxhPrime4
		b = b[4:]
	}
	for _, c := range b {
		h += uint32(c) * xxhPrime5
		h = bits.RotateLeft32(h, 11) * xxhPrime1
	}
	h ^= h >> 15
	h *= xxhPrime2
	h ^= h >> 13
	h *= xxhPrime3
	h ^= h >> 16
	return h
}

func xxh32Round(acc, lane uint32) uint32 {
	acc += lane * xxhPrime2
	return bits.RotateLeft32(acc, 13) * xxhPrime1
}

// xxh32String is xxh32 of a string. Xattr name suffixes are at most 255
// bytes, so copying them to the stack avoids an allocation per name.
func xxh32String(s string, seed uint32) uint32 {
	var buf [256]byte
	if len(s) <= len(buf) {
		n := copy(buf[:], s)
		return xxh32(buf[:n], seed)
	}
	return xxh32([]byte(s), seed)
}
