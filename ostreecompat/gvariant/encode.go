package gvariant

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"unicode/utf8"
)

// Variant is a value of type v: a value together with its type.
type Variant struct {
	Type  *Type
	Value any
}

// NewVariant returns a Variant of the value v of the type sig.
func NewVariant(sig string, v any) (Variant, error) {
	t, err := ParseType(sig)
	if err != nil {
		return Variant{}, err
	}
	return Variant{Type: t, Value: v}, nil
}

// DictEntry is a value of a dict entry type {KV}.
type DictEntry struct {
	Key, Value any
}

// Maybe is a value of a maybe type mT: Nothing when Valid is false, else
// Just Value.
type Maybe struct {
	Value any
	Valid bool
}

// Marshal returns the normal-form serialisation of v as a value of type t.
func Marshal(t *Type, v any) ([]byte, error) {
	e := encoder{}
	if err := e.value(t, v, 0); err != nil {
		return nil, err
	}
	return e.buf, nil
}

// encoder appends values to buf. Every container starts at a position of
// buf aligned to the container's alignment, which is at least that of any
// of its members, so aligning positions in buf aligns them relative to the
// container, as the format requires.
type encoder struct {
	buf []byte
}

func (e *encoder) pad(align int) {
	for len(e.buf)%align != 0 {
		e.buf = append(e.buf, 0)
	}
}

func mismatch(t *Type, v any) error {
	return fmt.Errorf("gvariant: %T is not a value of type %s: %w", v, t.sig, ErrType)
}

func (e *encoder) value(t *Type, v any, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("gvariant: value nested deeper than %d: %w", maxDepth, ErrType)
	}
	ok := true
	switch t.code {
	case 'y':
		var x byte
		x, ok = v.(byte)
		e.buf = append(e.buf, x)
	case 'b':
		var x bool
		x, ok = v.(bool)
		b := byte(0)
		if x {
			b = 1
		}
		e.buf = append(e.buf, b)
	case 'n':
		var x int16
		x, ok = v.(int16)
		e.buf = binary.LittleEndian.AppendUint16(e.buf, uint16(x))
	case 'q':
		var x uint16
		x, ok = v.(uint16)
		e.buf = binary.LittleEndian.AppendUint16(e.buf, x)
	case 'i', 'h':
		var x int32
		x, ok = v.(int32)
		e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(x))
	case 'u':
		var x uint32
		x, ok = v.(uint32)
		e.buf = binary.LittleEndian.AppendUint32(e.buf, x)
	case 'x':
		var x int64
		x, ok = v.(int64)
		e.buf = binary.LittleEndian.AppendUint64(e.buf, uint64(x))
	case 't':
		var x uint64
		x, ok = v.(uint64)
		e.buf = binary.LittleEndian.AppendUint64(e.buf, x)
	case 'd':
		var x float64
		x, ok = v.(float64)
		e.buf = binary.LittleEndian.AppendUint64(e.buf, math.Float64bits(x))
	case 's', 'o', 'g':
		s, isStr := v.(string)
		if !isStr {
			return mismatch(t, v)
		}
		if err := checkString(t.code, []byte(s)); err != nil {
			return err
		}
		e.buf = append(e.buf, s...)
		e.buf = append(e.buf, 0)
	case 'v':
		x, isVar := v.(Variant)
		if !isVar || x.Type == nil {
			return mismatch(t, v)
		}
		if err := e.value(x.Type, x.Value, depth+1); err != nil {
			return err
		}
		e.buf = append(e.buf, 0)
		e.buf = append(e.buf, x.Type.sig...)
	case 'm':
		x, isMaybe := v.(Maybe)
		if !isMaybe {
			return mismatch(t, v)
		}
		if !x.Valid {
			return nil
		}
		if err := e.value(t.elem, x.Value, depth+1); err != nil {
			return err
		}
		if t.elem.fixed == 0 {
			e.buf = append(e.buf, 0)
		}
	case 'a':
		return e.array(t, v, depth)
	case '(':
		x, isSlice := v.([]any)
		if !isSlice || len(x) != len(t.fields) {
			return mismatch(t, v)
		}
		return e.tuple(t, x, depth)
	case '{':
		x, isEntry := v.(DictEntry)
		if !isEntry {
			return mismatch(t, v)
		}
		return e.tuple(t, []any{x.Key, x.Value}, depth)
	}
	if !ok {
		return mismatch(t, v)
	}
	return nil
}

func (e *encoder) array(t *Type, v any, depth int) error {
	if t.elem.code == 'y' {
		b, ok := v.([]byte)
		if !ok {
			return mismatch(t, v)
		}
		e.buf = append(e.buf, b...)
		return nil
	}
	xs, ok := v.([]any)
	if !ok {
		return mismatch(t, v)
	}
	start := len(e.buf)
	if t.elem.fixed != 0 {
		for _, x := range xs {
			if err := e.value(t.elem, x, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	ends := make([]int, len(xs))
	for i, x := range xs {
		e.pad(t.elem.align)
		if err := e.value(t.elem, x, depth+1); err != nil {
			return err
		}
		ends[i] = len(e.buf) - start
	}
	e.offsets(len(e.buf)-start, ends)
	return nil
}

// tuple appends the members of a tuple or dict entry, then the framing
// offsets of every variable-size member but the last, in reverse order.
func (e *encoder) tuple(t *Type, xs []any, depth int) error {
	start := len(e.buf)
	var ends []int
	for i, f := range t.fields {
		e.pad(f.align)
		if err := e.value(f, xs[i], depth+1); err != nil {
			return err
		}
		if f.fixed == 0 && i != len(t.fields)-1 {
			ends = append(ends, len(e.buf)-start)
		}
	}
	if t.fixed != 0 {
		for len(e.buf)-start < t.fixed {
			e.buf = append(e.buf, 0)
		}
		return nil
	}
	for i, j := 0, len(ends)-1; i < j; i, j = i+1, j-1 {
		ends[i], ends[j] = ends[j], ends[i]
	}
	e.offsets(len(e.buf)-start, ends)
	return nil
}

// offsets appends the framing offsets of a container.
func (e *encoder) offsets(body int, offs []int) {
	if len(offs) == 0 {
		return
	}
	w := offsetWidth(body, len(offs))
	for _, o := range offs {
		e.buf = appendOffset(e.buf, uint64(o), w)
	}
}

// offsetWidth is the width of the n framing offsets that follow a body:
// the smallest that can address the whole container, body and offsets
// together. Only this width is normal form.
func offsetWidth(body, n int) int {
	w := 1
	for ; w < 8; w *= 2 {
		if uint64(body)+uint64(n*w) <= 1<<(8*w)-1 {
			break
		}
	}
	return w
}

func appendOffset(b []byte, o uint64, w int) []byte {
	for i := range w {
		b = append(b, byte(o>>(8*i)))
	}
	return b
}

// checkString checks the bytes of a value of type s, o or g, without the
// terminating NUL.
func checkString(code byte, s []byte) error {
	if bytes.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("gvariant: string holds a NUL byte: %w", ErrType)
	}
	if !utf8.Valid(s) {
		return fmt.Errorf("gvariant: string %q is not valid UTF-8: %w", s, ErrType)
	}
	switch code {
	case 'o':
		if !validObjectPath(s) {
			return fmt.Errorf("gvariant: %q is not an object path: %w", s, ErrType)
		}
	case 'g':
		if !validSignature(s) {
			return fmt.Errorf("gvariant: %q is not a signature: %w", s, ErrType)
		}
	}
	return nil
}

// validObjectPath reports whether s is a D-Bus object path: "/", or
// slash-separated non-empty elements of [A-Za-z0-9_] after a leading slash.
func validObjectPath(s []byte) bool {
	if len(s) == 0 || s[0] != '/' {
		return false
	}
	if len(s) == 1 {
		return true
	}
	prev := byte('/')
	for _, c := range s[1:] {
		switch {
		case c == '/':
			if prev == '/' {
				return false
			}
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		default:
			return false
		}
		prev = c
	}
	return prev != '/'
}

// validSignature reports whether s is a sequence of complete types without
// maybes, as a value of type g must be (a D-Bus signature, as GLib checks it).
func validSignature(s []byte) bool {
	if bytes.IndexByte(s, 'm') >= 0 {
		return false
	}
	for i := 0; i < len(s); {
		_, n, err := parseOne(string(s), i, 0)
		if err != nil {
			return false
		}
		i = n
	}
	return true
}
