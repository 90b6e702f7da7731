package verity

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"testing"
	"time"
)

// benchSize is large enough for the Merkle tree overhead to show and small
// enough to stay in cache, so that hashing, not memory, is measured.
const benchSize = 8 << 20

func benchDigest(b *testing.B, alg Algorithm, size int) {
	data := patternBytes(b, size)
	h := New(alg)
	sum := make([]byte, 0, MaxDigestSize)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		h.Reset()
		h.Write(data)
		sum = h.Sum(sum[:0])
	}
}

func benchRaw(b *testing.B, newHash func() hash.Hash, size int) {
	data := patternBytes(b, size)
	h := newHash()
	sum := make([]byte, 0, MaxDigestSize)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		h.Reset()
		h.Write(data)
		sum = h.Sum(sum[:0])
	}
}

func BenchmarkDigestSHA256(b *testing.B) { benchDigest(b, SHA256, benchSize) }
func BenchmarkDigestSHA512(b *testing.B) { benchDigest(b, SHA512, benchSize) }
func BenchmarkRawSHA256(b *testing.B)    { benchRaw(b, sha256.New, benchSize) }
func BenchmarkRawSHA512(b *testing.B)    { benchRaw(b, sha512.New, benchSize) }

// BenchmarkDigestSmallFiles models a tree like /usr: many files of a few
// KiB digested with one reused Hash.
func BenchmarkDigestSmallFiles(b *testing.B) {
	data := patternBytes(b, 5000)
	h := New(SHA256)
	sum := make([]byte, 0, MaxDigestSize)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		h.Reset()
		h.Write(data)
		sum = h.Sum(sum[:0])
	}
}

// BenchmarkDigestReaderSmallFiles is the same through Digest, which takes
// its Hash and read buffer from a pool.
func BenchmarkDigestReaderSmallFiles(b *testing.B) {
	data := patternBytes(b, 5000)
	r := bytes.NewReader(data)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(data)
		if _, err := Digest(r, SHA256); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDigestVsRaw hashes the same bytes both ways in each iteration and
// reports the fs-verity throughput as a fraction of plain hashing ("ratio").
func BenchmarkDigestVsRaw(b *testing.B) {
	for _, tc := range []struct {
		alg Algorithm
		raw func() hash.Hash
	}{{SHA256, sha256.New}, {SHA512, sha512.New}} {
		b.Run(tc.alg.String(), func(b *testing.B) {
			data := patternBytes(b, benchSize)
			h, raw := New(tc.alg), tc.raw()
			sum := make([]byte, 0, MaxDigestSize)
			var tVerity, tRaw time.Duration
			b.SetBytes(int64(2 * len(data)))
			for b.Loop() {
				start := time.Now()
				h.Reset()
				h.Write(data)
				sum = h.Sum(sum[:0])
				mid := time.Now()
				raw.Reset()
				raw.Write(data)
				sum = raw.Sum(sum[:0])
				tVerity += mid.Sub(start)
				tRaw += time.Since(mid)
			}
			b.ReportMetric(float64(tRaw)/float64(tVerity), "ratio")
		})
	}
}
