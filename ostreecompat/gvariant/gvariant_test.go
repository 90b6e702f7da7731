package gvariant

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/tests/golden"
)

func TestParseType(t *testing.T) {
	for _, tc := range []struct {
		sig          string
		align, fixed int
	}{
		{"y", 1, 1}, {"b", 1, 1}, {"n", 2, 2}, {"q", 2, 2}, {"i", 4, 4}, {"u", 4, 4}, {"h", 4, 4},
		{"x", 8, 8}, {"t", 8, 8}, {"d", 8, 8}, {"s", 1, 0}, {"o", 1, 0}, {"g", 1, 0}, {"v", 8, 0},
		{"()", 1, 1}, {"(())", 1, 1}, {"(yu)", 4, 8}, {"(uy)", 4, 8}, {"(ty)", 8, 16}, {"(yyy)", 1, 3},
		{"ay", 1, 0}, {"at", 8, 0}, {"my", 1, 0}, {"{sv}", 8, 0}, {"{yu}", 4, 8}, {"a{sv}", 8, 0},
		{"(uuuusa(ayay))", 4, 0}, {"(a{sv}aya(say)sstayay)", 8, 0}, {"(a(say)a(sayay))", 1, 0},
		{"m(ts)", 8, 0},
	} {
		ty, err := ParseType(tc.sig)
		if err != nil {
			t.Errorf("%s: %v", tc.sig, err)
			continue
		}
		if ty.String() != tc.sig || ty.Alignment() != tc.align || ty.FixedSize() != tc.fixed {
			t.Errorf("%s: got %s align %d fixed %d, want align %d fixed %d",
				tc.sig, ty, ty.Alignment(), ty.FixedSize(), tc.align, tc.fixed)
		}
	}
	for _, sig := range []string{
		"", "a", "m", "(", "(y", "{s}", "{svv}", "{vs}", "{(y)s}", "ay)", "yy", "r", "*", "?", "z", "}", ")",
		strings.Repeat("a", maxDepth+2) + "y",
	} {
		if _, err := ParseType(sig); !errors.Is(err, ErrType) {
			t.Errorf("%q: got %v, want ErrType", sig, err)
		}
	}
}

func mustVariant(t *testing.T, sig string, v any) Variant {
	t.Helper()
	x, err := NewVariant(sig, v)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// The expected bytes are GLib's (g_variant_get_data of the same values).
func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		sig string
		v   any
		hex string
	}{
		{"s", "hello", "68656c6c6f00"},
		{"as", []any{"a", "bc"}, "61006263000205"},
		{"(yu)", []any{byte(1), uint32(2)}, "0100000002000000"},
		{"()", []any{}, "00"},
		{"mi", Maybe{}, ""},
		{"mi", Maybe{Value: int32(5), Valid: true}, "05000000"},
		{"ms", Maybe{Value: "a", Valid: true}, "610000"},
		{"ms", Maybe{}, ""},
		{"v", mustVariant(t, "u", uint32(7)), "070000000075"},
		{"(sy)", []any{"a", byte(1)}, "61000102"},
		{"a(yy)", []any{[]any{byte(1), byte(2)}, []any{byte(3), byte(4)}}, "01020304"},
		{"ab", []any{true, false}, "0100"},
		{"(ayay)", []any{[]byte{}, []byte{}}, "00"},
		{"(ay)", []any{[]byte{}}, ""},
		{"{sv}", DictEntry{Key: "k", Value: mustVariant(t, "s", "v")}, "6b000000000000007600007302"},
		{"d", 1.5, "000000000000f83f"},
		{"(ty)", []any{uint64(1), byte(2)}, "01000000000000000200000000000000"},
		{"a{sv}", []any{}, ""},
		{"aay", []any{[]byte{}, []byte{1}}, "010001"},
		{"(say)", []any{"ab", []byte{1, 2, 3}}, "61620001020303"},
		{"a(say)", []any{[]any{"a", []byte{1}}, []any{"bc", []byte{}}}, "61000102626300030408"},
		{"mas", Maybe{}, ""},
		{"mas", Maybe{Value: []any{"x"}, Valid: true}, "78000200"},
		{"m(yy)", Maybe{Value: []any{byte(1), byte(2)}, Valid: true}, "0102"},
		{"(uuu)", []any{uint32(1), uint32(2), uint32(3)}, "010000000200000003000000"},
		{"x", int64(-2), "feffffffffffffff"},
		{"n", int16(-3), "fdff"},
		{"q", uint16(9), "0900"},
		{"h", int32(4), "04000000"},
		{"o", "/a/b", "2f612f6200"},
		{"g", "a{sv}", "617b73767d00"},
		{"(ss)", []any{"a", "b"}, "6100620002"},
		{"mv", Maybe{Value: mustVariant(t, "b", true), Valid: true}, "01006200"},
		{"(vy)", []any{mustVariant(t, "y", byte(1)), byte(7)}, "0100790703"},
		{"(yv)", []any{byte(7), mustVariant(t, "ay", []byte{1, 2})}, "07000000000000000102006179"},
		{"aas", []any{[]any{"a"}, []any{}, []any{"b", "c"}}, "610002620063000204030309"},
	} {
		ty := MustParseType(tc.sig)
		b, err := Marshal(ty, tc.v)
		if err != nil {
			t.Errorf("%s: Marshal: %v", tc.sig, err)
			continue
		}
		if got := hex.EncodeToString(b); got != tc.hex {
			t.Errorf("%s: Marshal = %s, want %s", tc.sig, got, tc.hex)
		}
		v, err := Unmarshal(ty, b)
		if err != nil {
			t.Errorf("%s: Unmarshal: %v", tc.sig, err)
			continue
		}
		if !reflect.DeepEqual(v, tc.v) {
			t.Errorf("%s: Unmarshal = %#v, want %#v", tc.sig, v, tc.v)
		}
	}
}

func TestMarshalRejects(t *testing.T) {
	for _, tc := range []struct {
		sig string
		v   any
	}{
		{"s", "a\x00b"},
		{"s", "\xff"},
		{"s", 3},
		{"o", "a/b"},
		{"o", "/a/"},
		{"o", "//"},
		{"g", "(y"},
		{"g", "my"},
		{"u", int32(1)},
		{"(yy)", []any{byte(1)}},
		{"ay", []any{byte(1)}},
		{"as", []string{"a"}},
		{"v", Variant{}},
		{"{sv}", []any{"a", Variant{}}},
		{"my", byte(1)},
		{"a(su)", []any{[]any{"a", "b"}}},
	} {
		if _, err := Marshal(MustParseType(tc.sig), tc.v); !errors.Is(err, ErrType) {
			t.Errorf("%s %#v: got %v, want ErrType", tc.sig, tc.v, err)
		}
	}
}

func TestUnmarshalRejects(t *testing.T) {
	deep := []byte{1}
	for range 200 {
		deep = append(append([]byte{}, deep...), 0, 'v')
	}
	deep = deep[:len(deep)-1]
	deep[len(deep)-1] = 'y'
	for _, tc := range []struct {
		sig, why string
		data     []byte
	}{
		{"b", "boolean 2", []byte{2}},
		{"u", "short", []byte{1, 2, 3}},
		{"u", "long", []byte{1, 2, 3, 4, 5}},
		{"s", "no NUL", []byte("ab")},
		{"s", "empty", nil},
		{"s", "inner NUL", []byte("a\x00b\x00")},
		{"s", "bad UTF-8", []byte("\xff\x00")},
		{"o", "not a path", []byte("abc\x00")},
		{"g", "not a signature", []byte("(y\x00")},
		{"(yu)", "padding", []byte{1, 0xff, 0, 0, 2, 0, 0, 0}},
		{"(yy)", "fixed tuple short", []byte{1}},
		{"()", "unit not zero", []byte{1}},
		{"as", "wide offsets", []byte{'a', 0, 2, 0}},
		{"as", "offset out of range", []byte{'a', 0, 9}},
		{"as", "offsets decreasing", []byte{'a', 0, 'b', 0, 4, 2}},
		{"av", "padding between elements", []byte{1, 0, 'y', 9, 0, 0, 0, 0, 2, 0, 'y', 3, 11}},
		{"a(yy)", "partial element", []byte{1, 2, 3}},
		{"ab", "boolean element", []byte{1, 2}},
		{"at", "partial element", []byte{1}},
		{"(ss)", "bytes before offsets", []byte{'a', 0, 'b', 0, 'x', 2}},
		{"(ss)", "too small for offsets", nil},
		{"(sy)", "fixed member past the end", []byte{'a', 0, 2}},
		{"v", "no separator", []byte{7, 0, 0, 0}},
		{"v", "bad type", []byte{7, 0, 0, 0, 0, 'z'}},
		{"v", "two types", []byte{7, 0, 0, 0, 0, 'y', 'y'}},
		{"v", "child size", []byte{7, 0, 0, 'u'}},
		{"v", "too deep", deep},
		{"mi", "maybe size", []byte{1, 2, 3}},
		{"ms", "Just without zero", []byte{'a', 0, 1}},
		{"a{sv}", "entry without offset", []byte{'k', 0, 0, 0, 0, 0, 0, 0, 'v', 0, 0, 's'}},
	} {
		_, err := Unmarshal(MustParseType(tc.sig), tc.data)
		if !errors.Is(err, ErrNotNormal) {
			t.Errorf("%s (%s): got %v, want ErrNotNormal", tc.sig, tc.why, err)
		}
	}
}

// TestOffsetWidth crosses the sizes where framing offsets widen: a
// container of at most 255 bytes, offsets included, has 1-byte offsets; one
// of at most 65535 has 2-byte offsets; above, 4 bytes. The reference's
// examples: a body of 254 with one offset is 255 bytes, a body of 255 is 257.
func TestOffsetWidth(t *testing.T) {
	as := MustParseType("as")
	sas := MustParseType("(sas)")
	for _, tc := range []struct {
		body, size, width int
	}{
		{253, 254, 1}, {254, 255, 1}, {255, 257, 2}, {256, 258, 2},
		{65532, 65534, 2}, {65533, 65535, 2}, {65534, 65538, 4}, {65535, 65539, 4},
	} {
		v := []any{strings.Repeat("x", tc.body-1)}
		b, err := Marshal(as, v)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != tc.size {
			t.Errorf("as body %d: %d bytes, want %d", tc.body, len(b), tc.size)
		}
		if got := readOffset(b[len(b)-tc.width:]); got != uint64(tc.body) {
			t.Errorf("as body %d: last %d-byte offset %d", tc.body, tc.width, got)
		}
		if got := offsetSize(len(b)); got != tc.width {
			t.Errorf("as body %d: decoder width %d, want %d", tc.body, got, tc.width)
		}
		back, err := Unmarshal(as, b)
		if err != nil || !reflect.DeepEqual(back, v) {
			t.Errorf("as body %d: round trip: %v", tc.body, err)
		}

		// The outer tuple widens while the array inside keeps the width of
		// its own size.
		inner := []any{"y"}
		tv := []any{strings.Repeat("x", tc.body-4), inner}
		b, err = Marshal(sas, tv)
		if err != nil {
			t.Fatal(err)
		}
		if offsetSize(len(b)) != tc.width || len(b) != tc.size {
			t.Errorf("(sas) body %d: %d bytes", tc.body, len(b))
		}
		if b[len(b)-tc.width-1] != 2 {
			t.Errorf("(sas) body %d: inner array offset %d, want 2 in 1 byte", tc.body, b[len(b)-tc.width-1])
		}
		back, err = Unmarshal(sas, b)
		if err != nil || !reflect.DeepEqual(back, tv) {
			t.Errorf("(sas) body %d: round trip: %v", tc.body, err)
		}
	}
}

// Types of ostree's objects, by file extension of the golden vectors.
var goldenTypes = map[string]string{
	".dirtree":    "(a(say)a(sayay))",
	".dirmeta":    "(uuua(ayay))",
	".commit":     "(a{sv}aya(say)sstayay)",
	".commitmeta": "a{sv}",
}

type goldenObject struct {
	name, sig string
	data      []byte
}

// goldenObjects returns every golden metadata object and every file header
// (the GVariant after the 8-byte length prefix).
func goldenObjects(t testing.TB) []goldenObject {
	dir := filepath.Join(golden.Dir(t), "ostree", "expected")
	var objs []goldenObject
	err := filepath.WalkDir(filepath.Join(dir, "metadata-objects"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		sig, ok := goldenTypes[filepath.Ext(p)]
		if !ok {
			t.Fatalf("%s: unknown object type", p)
		}
		b, err := os.ReadFile(p)
		objs = append(objs, goldenObject{p, sig, b})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	hs, err := filepath.Glob(filepath.Join(dir, "file-headers", "*.header"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range hs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 8 || int(b[0])<<24|int(b[1])<<16|int(b[2])<<8|int(b[3]) != len(b)-8 {
			t.Fatalf("%s: bad length prefix", p)
		}
		objs = append(objs, goldenObject{p, "(uuuusa(ayay))", b[8:]})
	}
	if len(objs) != 14+11 {
		t.Fatalf("found %d golden objects, want 25", len(objs))
	}
	return objs
}

func TestGolden(t *testing.T) {
	for _, o := range goldenObjects(t) {
		ty := MustParseType(o.sig)
		v, err := Unmarshal(ty, o.data)
		if err != nil {
			t.Errorf("%s: %v", o.name, err)
			continue
		}
		b, err := Marshal(ty, v)
		if err != nil {
			t.Errorf("%s: %v", o.name, err)
			continue
		}
		if !bytes.Equal(b, o.data) {
			t.Errorf("%s: re-encoded\n%x\nwant\n%x", o.name, b, o.data)
		}
		// Any change of one byte either fails or decodes to something
		// that encodes to the changed bytes.
		for i := range o.data {
			mod := bytes.Clone(o.data)
			mod[i] ^= 0x41
			checkCanonical(t, ty, mod)
		}
		checkCanonical(t, ty, o.data[:len(o.data)-1])
		checkCanonical(t, ty, append(bytes.Clone(o.data), 0))
	}
}

// The root dirtree of tree-v1 is 383 bytes: its tuple has a 2-byte framing
// offset, its arrays (each under 256 bytes) 1-byte ones.
func TestGoldenOffsetWidths(t *testing.T) {
	p := filepath.Join(golden.Dir(t), "ostree", "expected", "metadata-objects",
		"f7", "0257f362d0ea3b0635a5c6ae84b598dd3bdf14fafce463c0b68f12e4c11801.dirtree")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 383 {
		t.Fatalf("%d bytes", len(b))
	}
	files := int(readOffset(b[len(b)-2:]))
	if files >= 256 || files > len(b)-2 {
		t.Fatalf("tuple offset %d", files)
	}
	// The files array ends with its own offsets, one byte each.
	if last := int(b[files-1]); last >= files {
		t.Errorf("files array last offset %d for %d bytes", last, files)
	}
	v, err := Unmarshal(MustParseType("(a(say)a(sayay))"), b)
	if err != nil {
		t.Fatal(err)
	}
	tv := v.([]any)
	if n, m := len(tv[0].([]any)), len(tv[1].([]any)); n != 4 || m != 3 {
		t.Errorf("%d files, %d dirs", n, m)
	}
}

// checkCanonical checks the invariant the fuzz target checks: what
// Unmarshal accepts, Marshal reproduces.
func checkCanonical(t testing.TB, ty *Type, data []byte) {
	t.Helper()
	v, err := Unmarshal(ty, data)
	if err != nil {
		if !errors.Is(err, ErrNotNormal) {
			t.Fatalf("%s %x: error %v does not wrap ErrNotNormal", ty, data, err)
		}
		return
	}
	b, err := Marshal(ty, v)
	if err != nil {
		t.Fatalf("%s %x: decoded %#v does not encode: %v", ty, data, v, err)
	}
	if !bytes.Equal(b, data) {
		t.Fatalf("%s: accepted %x, re-encoded %x", ty, data, b)
	}
}

// randomType and randomValue make arbitrary well-formed values, for round
// trips of every type and container combination.
func randomType(r *rand.Rand, depth int) string {
	basic := "ybnqiuxthdsog"
	if depth > 3 {
		return string(basic[r.IntN(len(basic))])
	}
	switch r.IntN(10) {
	case 0:
		return "a" + randomType(r, depth+1)
	case 1:
		return "m" + randomType(r, depth+1)
	case 2:
		return "v"
	case 3:
		s := "("
		for range r.IntN(4) {
			s += randomType(r, depth+1)
		}
		return s + ")"
	case 4:
		return "a{" + string(basic[r.IntN(len(basic))]) + randomType(r, depth+1) + "}"
	}
	return string(basic[r.IntN(len(basic))])
}

func randomValue(r *rand.Rand, ty *Type, depth int) any {
	switch ty.code {
	case 'y':
		return byte(r.Uint32())
	case 'b':
		return r.IntN(2) == 1
	case 'n':
		return int16(r.Uint32())
	case 'q':
		return uint16(r.Uint32())
	case 'i', 'h':
		return int32(r.Uint32())
	case 'u':
		return r.Uint32()
	case 'x':
		return int64(r.Uint64())
	case 't':
		return r.Uint64()
	case 'd':
		return r.NormFloat64()
	case 's':
		return strings.Repeat("é", r.IntN(3)) + strings.Repeat("s", r.IntN(300)*r.IntN(2))
	case 'o':
		return "/" + strings.Repeat("o", r.IntN(3))
	case 'g':
		return "a{sv}"[:r.IntN(2)*5]
	case 'v':
		if depth > 4 {
			return Variant{Type: MustParseType("u"), Value: r.Uint32()}
		}
		ct := MustParseType(randomType(r, depth))
		return Variant{Type: ct, Value: randomValue(r, ct, depth+1)}
	case 'm':
		if r.IntN(2) == 0 {
			return Maybe{}
		}
		return Maybe{Value: randomValue(r, ty.elem, depth+1), Valid: true}
	case 'a':
		n := r.IntN(4)
		if r.IntN(8) == 0 {
			n = 100
		}
		if ty.elem.code == 'y' {
			b := make([]byte, n*r.IntN(700))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			return b
		}
		xs := make([]any, n)
		for i := range xs {
			xs[i] = randomValue(r, ty.elem, depth+1)
		}
		return xs
	case '{':
		return DictEntry{Key: randomValue(r, ty.fields[0], depth+1), Value: randomValue(r, ty.fields[1], depth+1)}
	}
	xs := make([]any, len(ty.fields))
	for i, f := range ty.fields {
		xs[i] = randomValue(r, f, depth+1)
	}
	return xs
}

func TestRandomRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		ty := MustParseType(randomType(r, 0))
		v := randomValue(r, ty, 0)
		b, err := Marshal(ty, v)
		if err != nil {
			t.Fatalf("%d %s: %v", i, ty, err)
		}
		back, err := Unmarshal(ty, b)
		if err != nil {
			t.Fatalf("%d %s %x: %v", i, ty, b, err)
		}
		if !reflect.DeepEqual(back, v) {
			t.Fatalf("%d %s: got %#v, want %#v", i, ty, back, v)
		}
		checkCanonical(t, ty, b)
		if len(b) > 0 {
			checkCanonical(t, ty, b[:len(b)-1])
			mod := bytes.Clone(b)
			mod[r.IntN(len(b))] ^= byte(1 + r.IntN(255))
			checkCanonical(t, ty, mod)
		}
	}
}
