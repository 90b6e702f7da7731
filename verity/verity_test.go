package verity

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// pattern is a deterministic byte stream (splitmix64, little endian), the
// content behind the recorded digests below.
type pattern struct {
	state uint64
	left  int // bytes still to produce
	buf   [8]byte
	off   int // unread bytes in buf start here; 8 when empty
}

func newPattern(n int) *pattern { return &pattern{left: n, off: 8} }

func (p *pattern) next() uint64 {
	p.state += 0x9e3779b97f4a7c15
	z := p.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (p *pattern) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	b = b[:min(len(b), p.left)]
	n := 0
	for n < len(b) {
		if p.off == 8 {
			if len(b)-n >= 8 {
				binary.LittleEndian.PutUint64(b[n:], p.next())
				n += 8
				continue
			}
			binary.LittleEndian.PutUint64(p.buf[:], p.next())
			p.off = 0
		}
		c := copy(b[n:], p.buf[p.off:])
		p.off += c
		n += c
	}
	p.left -= n
	return n, nil
}

func patternBytes(t testing.TB, n int) []byte {
	t.Helper()
	b, err := io.ReadAll(newPattern(n))
	if err != nil || len(b) != n {
		t.Fatalf("generating %d bytes: got %d, %v", n, len(b), err)
	}
	return b
}

// knownDigests were computed once with `fsverity digest --compact
// --hash-alg=ALG` (fsverity-utils 1.5) over the first size bytes of pattern.
// The sizes straddle the data block and the level block boundaries of both
// algorithms (128 sha256 or 64 sha512 hashes per block); the last two give
// sha256 a three-level tree, the two before them sha512.
var knownDigests = []struct {
	size           int
	sha256, sha512 string
}{
	{0, "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95", "ccf9e5aea1c2a64efa2f2354a6024b90dffde6bbc017825045dce374474e13d10adb9dadcc6ca8e17a3c075fbd31336e8f266ae6fa93a6c3bed66f9e784e5abf"},
	{1, "4d3b26a3350968139fa3c9aed0296bb4fe8f8970ff3cc86582668368f8ecda40", "9af9e6e686c700dd7e3b992a601a417195f41d0bab513c1583e4508bd82613a38e844a416d2c071d7b2deb7db81773c1cdd5c03d6704670e453c5f0575a546df"},
	{4095, "c5d089adb2345d4c9bcf2da6cd72417e505e29f0a514b4ba48409c6836cd21b4", "a214621dbc827edacb32f9afb59c59114e010f6aa19e267b3f91c82c09790812b7733138687d6f15f8e9f2d4d3c17e262af4b2a3daf9cfa32d5051b097d29798"},
	{4096, "01ea87f44364d7d7d2cd1e9f1a20c1b43ccf1e925036111503b5bce76cb336ad", "606eff06fb0bf76a01380ea750ce14b68484d3dd6f82e859110e839a1de7791de5025dbe7dbea7030a20ca8fd19cd91cf053e00ebd78bc31ca0e525ec4c626bc"},
	{4097, "5bfc9ffb5093a37ff50c8f02015e2f5fd7f311b455602732c06ef025451a48ff", "c035032cfcb0be7a4fc83bb43be89e66f5139939e30520318d7fb4ca0acccc1b24accd182bcda41167613239f5999cf6ae0e3bc8564718cba03a41cbbf10c24e"},
	{8192, "091dce75b5e2ee0edc0ebf0bfd8268e175799cc7f3c231c5ac603a437581a2ae", "e2de9f47715152b52fc64cf42194136a706d28773f4fcc50bc39f58b0c28e82a34ac3debf95fc17599ddb0aea7cce185362a6671df0d1176fadc6912182c7bf7"},
	{64 * 4096, "cf2a1a99f2e8fe5590ef081ab96c3f552a7cd4415fc1f31707594c1b3ac2ffd1", "e52079113610d0c05d6e9334b6576a1ea80d396852eeaad00f9f8e57a4416348405e335235354408149e8b1d687de16fbe46cdce55a5e8b3465912ae960f1e4d"},
	{64*4096 + 1, "1778e7429dd80285abb66941a491221446f43c9933150ebd19da74df2780c48a", "a50a32934938123fddd8727e9e94056109d046f14e78071e6bd63d0a34c21a1441ca6a0f476d8cef6f3e5eec5afa487d2079efcec77ad8b6e021a9b724d780f7"},
	{65 * 4096, "23f9ea46a9d1b2a80c5bc2e93e842f1a7f2277a37a63a38e06b78b28bae7d514", "fe20d62a0871b6f299ce9d3bd7d44e1c4f2c5205bba99d0b6f5698eeac0034de243639d39decdb94888b6c21fd63183166aec679b5dfd536146be3f357c6dd2e"},
	{128*4096 - 1, "18eb4f649f55b4d838620a13843ceacbb0d2c4ccdf4928b94eb4f52e2fb197fd", "c4b9cfc10b2e5a03aa993537bc545b1a244c995cfdfbc36499b8b359f05053aebfd43bbe017eb25abcc37b0247f0013f2fb4429c2a957099df4ec8e3e8885ee8"},
	{128 * 4096, "c03339d82bd67cf6c7da2d68f506fa9ee630a1b8abef5afaab2dc94048d1be62", "0897ce467c06932435e7cad335b91ede97aa428895ebad05118a268c1d65320f3dea6cc6898f369e45b4d48c5f9b669881d7fc91bcc2bf0209fdd544c704677b"},
	{128*4096 + 1, "d95cad955144ee3e12b9343ac20c2f7696ea3a293264445b6e329fd79b42d4b2", "277477399b78bebaceb75d7ad93368dff33f9fcdd2ca2cc87a47d2318550ccdf669b9808ea4bbaf6f23b654ed6e845f27983b6ab05c47ee97b7ce471368d8620"},
	{129 * 4096, "fa2a589afa75486607d106958411fc9fa0b414be23a4a736a200c7beb2b0f3d1", "5c2acaf132ce2a0ada32b7c79d9122283d164e04ea86fb2bef105af72d887e9931f92f719b55add2f93144d3dc370a879368ff5cdde1868df57ae3fad06fb7a3"},
	{5<<20 + 12345, "473edb24ab9db75ab6fe98df4ccae936b2c3f683b2f1325971a05f52a40a0960", "a8243074c6f78c87c0f50ecb5570a0800955402fd3b272c0751f5f34948b104c503a6b3df7f906e28346c59e3a834e7a2af560d845200754086197e11e332b04"},
	{64 * 64 * 4096, "73cd04074becfb106522fe5f8f8313cd9470d6cc552ceda7890f00b63515f26c", "995711bcbb564e190248e6db0359ac2640c80dcb6b29131af14bc9ddc5d664a9797516cc9dffde775f37eb0f5a436b3cf4f9dae11c2216fa18c5f27e21cc10d5"},
	{64*64*4096 + 1, "098d1f48115d2db90e650bc8a6df075f6d43a193c585e4be89900b12c4a8a9d3", "0ee55e17d3a45afbac3c07724a8ab3dba4252e8e4f03181a2d0015cf1478b8c9e6ad1fb9c7e8af595b0ad4633d1ca83f9ed0d5579682939c8feec12d7bfe6aeb"},
	{128 * 128 * 4096, "970d583d2dd24bb56e068df9bcb572c1ab7a92836ccccae7ec4370bdd1c7cc32", "885ce821d9e77a666a7f46a6fe75f0ca2016aaeec263712089c44976687abdf96f2e1196eede4fffdd82366b842c1cfa65fab2365473b5c7f43741f6e7e0a2a5"},
	{128*128*4096 + 1, "a2de4d7dd50303cebbd170faac80dd080468445b4bc649fcb802893cad04be97", "f89a6976d3650e4d666e0011c672347c36a98904bbcaf804e12e6249247320b703d96417ba63edaea836a630e5b9ebcc021fe70ca4df5c8d37b4594dba103115"},
}

func TestKnownDigests(t *testing.T) {
	for _, tc := range knownDigests {
		if testing.Short() && tc.size > 8<<20 {
			continue
		}
		for _, alg := range []Algorithm{SHA256, SHA512} {
			want := tc.sha256
			if alg == SHA512 {
				want = tc.sha512
			}
			got, err := Digest(newPattern(tc.size), alg)
			if err != nil {
				t.Fatalf("size %d %v: %v", tc.size, alg, err)
			}
			if hex.EncodeToString(got) != want {
				t.Errorf("size %d %v: digest %x, want %s", tc.size, alg, got, want)
			}
		}
	}
}

func TestKnownStrings(t *testing.T) {
	tests := []struct {
		data string
		alg  Algorithm
		want string
	}{
		// The values composefs's own tests check, and those of the
		// `fsverity digest` tool.
		{"", SHA256, "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95"},
		{"hello world\n", SHA256, "37061ef2ac4c21bec68489b56138c5780306a4ad7fe6676236ecdf2c9027cd92"},
		{"foo bar baz\n", SHA256, "91e7d88cb7bc9cf6d8db3b0ecf89af4abf204bef5b3ade5113d5b62ef374e70b"},
		{"", SHA512, "ccf9e5aea1c2a64efa2f2354a6024b90dffde6bbc017825045dce374474e13d10adb9dadcc6ca8e17a3c075fbd31336e8f266ae6fa93a6c3bed66f9e784e5abf"},
		{"hello world\n", SHA512, "4098b052d2427dc9029c85062215dd6e6c41667bfae09f5ce90a49f7e01fca295c89b16a4d2703ac5b0593f476ca174675ee51829c2f1fd07c4133a87041c1d7"},
	}
	for _, tc := range tests {
		got := DigestBytes([]byte(tc.data), tc.alg)
		if hex.EncodeToString(got) != tc.want {
			t.Errorf("%v of %q: %x, want %s", tc.alg, tc.data, got, tc.want)
		}
		if len(got) != tc.alg.Size() {
			t.Errorf("%v of %q: %d bytes, want %d", tc.alg, tc.data, len(got), tc.alg.Size())
		}
	}
}

func TestAlgorithm(t *testing.T) {
	tests := []struct {
		name    string
		alg     Algorithm
		size    int
		wantErr bool
	}{
		{"sha256", SHA256, 32, false},
		{"sha512", SHA512, 64, false},
		{"SHA256", 0, 0, true},
		{"sha1", 0, 0, true},
		{"", 0, 0, true},
		{"1", 0, 0, true},
	}
	for _, tc := range tests {
		alg, err := ParseAlgorithm(tc.name)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseAlgorithm(%q): error %v, want error %v", tc.name, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if alg != tc.alg || alg.Size() != tc.size || alg.String() != tc.name || !alg.Valid() {
			t.Errorf("ParseAlgorithm(%q) = %v (size %d, valid %v), want %v size %d",
				tc.name, alg, alg.Size(), alg.Valid(), tc.alg, tc.size)
		}
	}
	// The numbering is the kernel's.
	if SHA256 != 1 || SHA512 != 2 {
		t.Errorf("SHA256 = %d, SHA512 = %d, want 1 and 2", SHA256, SHA512)
	}
	for _, bad := range []Algorithm{0, 3, 255} {
		if bad.Valid() || bad.Size() != 0 {
			t.Errorf("Algorithm(%d) valid %v size %d, want invalid", bad, bad.Valid(), bad.Size())
		}
		if got, want := bad.String(), "Algorithm("; !strings.HasPrefix(got, want) {
			t.Errorf("Algorithm(%d).String() = %q", bad, got)
		}
		if _, err := Digest(strings.NewReader("x"), bad); err == nil {
			t.Errorf("Digest with Algorithm(%d) did not fail", bad)
		}
	}
}

func TestNewPanicsOnUnknownAlgorithm(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New(0) did not panic")
		}
	}()
	New(0)
}

// writeChunked writes data to h in pieces whose sizes cycle through chunks.
func writeChunked(h *Hash, data []byte, chunks []int) {
	for i := 0; len(data) > 0; i++ {
		n := min(chunks[i%len(chunks)], len(data))
		h.Write(data[:n])
		data = data[n:]
	}
}

func TestChunkedWrites(t *testing.T) {
	sizes := []int{0, 1, 4095, 4096, 4097, 128 * 4096, 128*4096 + 1, 129*4096 + 7, 300*4096 + 5}
	chunkings := [][]int{
		{1},
		{7, 4089},
		{4095, 1, 4097},
		{4096},
		{100000},
		{3, 8191, 12289, 1, 0, 65536},
	}
	for _, size := range sizes {
		data := patternBytes(t, size)
		for _, alg := range []Algorithm{SHA256, SHA512} {
			want := DigestBytes(data, alg)
			for _, chunks := range chunkings {
				if chunks[0] == 1 && size > 200000 {
					continue // one-byte writes of large inputs only slow the test down
				}
				h := New(alg)
				writeChunked(h, data, chunks)
				if got := h.Sum(nil); !bytes.Equal(got, want) {
					t.Errorf("size %d %v chunks %v: %x, want %x", size, alg, chunks, got, want)
				}
			}
		}
	}
}

func TestReadFrom(t *testing.T) {
	const size = 700*1024 + 3
	data := patternBytes(t, size)
	for _, alg := range []Algorithm{SHA256, SHA512} {
		want := DigestBytes(data, alg)
		readers := map[string]io.Reader{
			"plain":    bytes.NewReader(data),
			"onebyte":  iotest.OneByteReader(bytes.NewReader(data[:5000])),
			"half":     iotest.HalfReader(bytes.NewReader(data)),
			"dataerr":  iotest.DataErrReader(bytes.NewReader(data)),
			"io.Copy":  nil,
			"os.File":  nil,
			"pattern":  newPattern(size),
			"emptyEOF": strings.NewReader(""),
		}
		for name, r := range readers {
			h := New(alg)
			var err error
			switch name {
			case "io.Copy":
				_, err = io.Copy(h, bytes.NewReader(data))
			case "os.File":
				f := writeTemp(t, data)
				_, err = io.Copy(h, f)
				f.Close()
			default:
				var n int64
				n, err = h.ReadFrom(r)
				if name != "onebyte" && name != "emptyEOF" && n != size {
					t.Errorf("%s %v: ReadFrom returned %d, want %d", name, alg, n, size)
				}
			}
			if err != nil {
				t.Fatalf("%s %v: %v", name, alg, err)
			}
			w := want
			switch name {
			case "onebyte":
				w = DigestBytes(data[:5000], alg)
			case "emptyEOF":
				w = DigestBytes(nil, alg)
			}
			if got := h.Sum(nil); !bytes.Equal(got, w) {
				t.Errorf("%s %v: %x, want %x", name, alg, got, w)
			}
		}
	}

	// A read error is returned, wrapped by Digest.
	boom := errors.New("boom")
	if _, err := Digest(iotest.ErrReader(boom), SHA256); !errors.Is(err, boom) {
		t.Errorf("Digest of failing reader: %v, want %v", err, boom)
	}
	r := io.MultiReader(bytes.NewReader(data[:10000]), iotest.ErrReader(boom))
	if n, err := New(SHA256).ReadFrom(r); n != 10000 || !errors.Is(err, boom) {
		t.Errorf("ReadFrom of failing reader: %d, %v, want 10000, %v", n, err, boom)
	}
}

func writeTemp(t *testing.T, data []byte) *os.File {
	t.Helper()
	name := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Sum must not disturb the state, and Reset must start over, so that one Hash
// can digest many files and report intermediate digests.
func TestSumAndReset(t *testing.T) {
	data := patternBytes(t, 129*4096+100)
	for _, alg := range []Algorithm{SHA256, SHA512} {
		h := New(alg)
		for _, cut := range []int{0, 1, 4096, 5000, 128 * 4096, 129*4096 + 100} {
			h.Reset()
			h.Write(data[:cut])
			if got, want := h.Sum(nil), DigestBytes(data[:cut], alg); !bytes.Equal(got, want) {
				t.Errorf("%v after %d bytes: %x, want %x", alg, cut, got, want)
			}
			h.Sum(nil) // a second Sum must not matter either
			h.Write(data[cut:])
			if got, want := h.Sum(nil), DigestBytes(data, alg); !bytes.Equal(got, want) {
				t.Errorf("%v after Sum at %d: %x, want %x", alg, cut, got, want)
			}
		}
		prefix := []byte("prefix")
		if got := h.Sum(prefix); !bytes.Equal(got[:len(prefix)], prefix) || len(got) != len(prefix)+alg.Size() {
			t.Errorf("%v: Sum(prefix) = %x", alg, got)
		}
		if h.Size() != alg.Size() || h.BlockSize() != 4096 || h.Algorithm() != alg {
			t.Errorf("%v: Size %d BlockSize %d Algorithm %v", alg, h.Size(), h.BlockSize(), h.Algorithm())
		}
	}
}

func TestWriteAllocations(t *testing.T) {
	data := patternBytes(t, 1<<20)
	h := New(SHA256)
	h.Write(data) // grows the tree levels once
	allocs := testing.AllocsPerRun(20, func() {
		h.Reset()
		h.Write(data[:777])
		h.Write(data[777:])
		h.Sum(make([]byte, 0, 64)[:0])
	})
	if allocs > 1 {
		t.Errorf("hashing 1 MiB with a reused Hash: %v allocations, want at most 1", allocs)
	}
}

// Digest and DigestBytes share pooled Hashes; concurrent use must not mix
// their states.
func TestDigestConcurrent(t *testing.T) {
	const workers = 8
	data := patternBytes(t, 200*1024+3)
	want := [...][]byte{SHA256: DigestBytes(data, SHA256), SHA512: DigestBytes(data, SHA512)}
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range 20 {
				alg := []Algorithm{SHA256, SHA512}[(w+i)%2]
				n := len(data) - i*4099
				got, err := Digest(bytes.NewReader(data[:n]), alg)
				if err == nil && !bytes.Equal(got, DigestBytes(data[:n], alg)) {
					err = fmt.Errorf("%v of %d bytes: Digest and DigestBytes differ", alg, n)
				}
				if err == nil && i == 0 && !bytes.Equal(got, want[alg]) {
					err = fmt.Errorf("%v: %x, want %x", alg, got, want[alg])
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestFsverityTool cross-checks random sizes and contents against the
// `fsverity digest` tool when it is installed.
func TestFsverityTool(t *testing.T) {
	tool, err := exec.LookPath("fsverity")
	if err != nil {
		t.Skip("fsverity tool (fsverity-utils) not on PATH; the recorded digests still cover the algorithm")
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	for i := range 12 {
		var size int
		switch i % 3 {
		case 0:
			size = rng.IntN(3 * 4096)
		case 1:
			blocks := []int{64, 128, 129, 4096, 128 * 128}[rng.IntN(5)]
			size = blocks*4096 + rng.IntN(3) - 1
		default:
			size = rng.IntN(3 << 20)
		}
		if testing.Short() && size > 8<<20 {
			continue
		}
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		name := filepath.Join(dir, "f")
		if err := os.WriteFile(name, data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, alg := range []Algorithm{SHA256, SHA512} {
			out, err := exec.Command(tool, "digest", "--compact", "--hash-alg="+alg.String(), name).Output()
			if err != nil {
				t.Fatalf("fsverity digest of %d bytes: %v", size, err)
			}
			want := strings.TrimSpace(string(out))
			if got := hex.EncodeToString(DigestBytes(data, alg)); got != want {
				t.Errorf("size %d %v: %s, fsverity says %s", size, alg, got, want)
			}
		}
	}
}

func FuzzDigestChunks(f *testing.F) {
	f.Add([]byte("hello world\n"), []byte{1, 2, 3}, false)
	f.Add(bytes.Repeat([]byte{0xa5}, 3*4096+1), []byte{255, 0, 17}, true)
	f.Add([]byte{}, []byte{}, false)
	f.Fuzz(func(t *testing.T, data, chunking []byte, sha512 bool) {
		alg := SHA256
		if sha512 {
			alg = SHA512
		}
		want := DigestBytes(data, alg)

		// Chunk sizes are scaled so that some writes cross block
		// boundaries and some hit them exactly.
		h := New(alg)
		rest := data
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if len(chunking) > 0 {
				c := int(chunking[i%len(chunking)])
				n = min(len(rest), max(1, c*c+c%3*4096))
			}
			if i%7 == 3 {
				h.Write(nil)
			}
			h.Write(rest[:n])
			rest = rest[n:]
			if i < 64 && i%5 == 4 {
				h.Sum(nil) // must not disturb the state
			}
		}
		if got := h.Sum(nil); !bytes.Equal(got, want) {
			t.Errorf("chunked %v digest %x, want %x", alg, got, want)
		}
		if got, err := Digest(iotest.HalfReader(bytes.NewReader(data)), alg); err != nil || !bytes.Equal(got, want) {
			t.Errorf("Digest %x, %v, want %x", got, err, want)
		}
	})
}
