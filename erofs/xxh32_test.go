package erofs

import (
	"strings"
	"testing"
)

// wtXXHSanityBuffer is the pseudo-random input of xxHash's own sanity checks
// (xxhsum's XSUM_fillTestBuffer), whose expected hashes are published with
// it.
func wtXXHSanityBuffer(n int) []byte {
	const prime32, prime64 = 2654435761, 11400714785074694797
	b := make([]byte, n)
	gen := uint64(prime32)
	for i := range b {
		b[i] = byte(gen >> 56)
		gen *= prime64
	}
	return b
}

func TestXXH32(t *testing.T) {
	const prime32 = 2654435761
	buf := wtXXHSanityBuffer(222)
	tests := []struct {
		len  int
		seed uint32
		want uint32
	}{
		// From xxHash's XSUM_XXH32_testdata: they cover the empty input,
		// the byte loop, the 4-byte loop and the 16-byte stripes.
		{0, 0, 0x02CC5D05},
		{0, prime32, 0x36B78AE7},
		{1, 0, 0xCF65B03E},
		{1, prime32, 0xB4545AA4},
		{14, 0, 0x1208E7E2},
		{14, prime32, 0x6AF1D1FE},
		{222, 0, 0x5BD11DBD},
		{222, prime32, 0x58803C5F},
	}
	for _, tt := range tests {
		if got := xxh32(buf[:tt.len], tt.seed); got != tt.want {
			t.Errorf("xxh32(len %d, seed %#x) = %#08x, want %#08x", tt.len, tt.seed, got, tt.want)
		}
		if got := xxh32String(string(buf[:tt.len]), tt.seed); got != tt.want {
			t.Errorf("xxh32String(len %d, seed %#x) = %#08x, want %#08x", tt.len, tt.seed, got, tt.want)
		}
	}
	// Strings longer than the stack buffer take the copying path.
	long := strings.Repeat("x", 300)
	if got, want := xxh32String(long, 7), xxh32([]byte(long), 7); got != want {
		t.Errorf("xxh32String of 300 bytes = %#08x, want %#08x", got, want)
	}
}
