package gvariant

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrNotNormal is wrapped by every Unmarshal error about the data.
var ErrNotNormal = errors.New("gvariant: data not in normal form")

// Unmarshal decodes data, which must be exactly one value of type t in
// normal form.
func Unmarshal(t *Type, data []byte) (any, error) {
	return decode(t, data, 0)
}

func bad(t *Type, format string, args ...any) error {
	return fmt.Errorf("gvariant: %s: %s: %w", t.sig, fmt.Sprintf(format, args...), ErrNotNormal)
}

func decode(t *Type, data []byte, depth int) (any, error) {
	if depth > maxDepth {
		return nil, bad(t, "nested deeper than %d", maxDepth)
	}
	if t.fixed != 0 && len(data) != t.fixed {
		return nil, bad(t, "%d bytes for a value of %d", len(data), t.fixed)
	}
	switch t.code {
	case 'y':
		return data[0], nil
	case 'b':
		if data[0] > 1 {
			return nil, bad(t, "boolean byte %#x", data[0])
		}
		return data[0] == 1, nil
	case 'n':
		return int16(binary.LittleEndian.Uint16(data)), nil
	case 'q':
		return binary.LittleEndian.Uint16(data), nil
	case 'i', 'h':
		return int32(binary.LittleEndian.Uint32(data)), nil
	case 'u':
		return binary.LittleEndian.Uint32(data), nil
	case 'x':
		return int64(binary.LittleEndian.Uint64(data)), nil
	case 't':
		return binary.LittleEndian.Uint64(data), nil
	case 'd':
		return math.Float64frombits(binary.LittleEndian.Uint64(data)), nil
	case 's', 'o', 'g':
		if len(data) == 0 || data[len(data)-1] != 0 {
			return nil, bad(t, "string not NUL-terminated")
		}
		s := data[:len(data)-1]
		if err := checkString(t.code, s); err != nil {
			return nil, fmt.Errorf("%w: %w", err, ErrNotNormal)
		}
		return string(s), nil
	case 'v':
		return decodeVariant(t, data, depth)
	case 'm':
		return decodeMaybe(t, data, depth)
	case 'a':
		return decodeArray(t, data, depth)
	case '(':
		return decodeTuple(t, data, depth)
	case '{':
		xs, err := decodeTuple(t, data, depth)
		if err != nil {
			return nil, err
		}
		return DictEntry{Key: xs[0], Value: xs[1]}, nil
	}
	return nil, bad(t, "unknown type")
}

func decodeVariant(t *Type, data []byte, depth int) (any, error) {
	z := bytes.LastIndexByte(data, 0)
	if z < 0 {
		return nil, bad(t, "no type string separator")
	}
	ct, n, err := parseOne(string(data[z+1:]), 0, depth+1)
	if err != nil || n != len(data)-z-1 {
		return nil, bad(t, "bad type string %q", data[z+1:])
	}
	v, err := decode(ct, data[:z], depth+1)
	if err != nil {
		return nil, err
	}
	return Variant{Type: ct, Value: v}, nil
}

func decodeMaybe(t *Type, data []byte, depth int) (any, error) {
	if len(data) == 0 {
		return Maybe{}, nil
	}
	child := data
	if t.elem.fixed == 0 {
		if data[len(data)-1] != 0 {
			return nil, bad(t, "Just value not followed by a zero byte")
		}
		child = data[:len(data)-1]
	}
	v, err := decode(t.elem, child, depth+1)
	if err != nil {
		return nil, err
	}
	return Maybe{Value: v, Valid: true}, nil
}

// offsetSize is the width of the framing offsets of a container of size n.
func offsetSize(n int) int {
	switch {
	case n == 0:
		return 0
	case n <= math.MaxUint8:
		return 1
	case n <= math.MaxUint16:
		return 2
	case uint64(n) <= math.MaxUint32:
		return 4
	}
	return 8
}

func readOffset(b []byte) uint64 {
	var o uint64
	for i, c := range b {
		o |= uint64(c) << (8 * i)
	}
	return o
}

// member checks the padding before a member that starts at start, aligned,
// after the previous one ended at prev, and returns the start.
func member(t *Type, data []byte, prev, align int) (int, error) {
	start := alignUp(prev, align)
	if start > len(data) {
		return 0, bad(t, "member at %d beyond the end %d", start, len(data))
	}
	for _, c := range data[prev:start] {
		if c != 0 {
			return 0, bad(t, "non-zero padding at %d", prev)
		}
	}
	return start, nil
}

func decodeArray(t *Type, data []byte, depth int) (any, error) {
	el := t.elem
	if el.code == 'y' {
		return append([]byte{}, data...), nil
	}
	if el.fixed != 0 {
		if len(data)%el.fixed != 0 {
			return nil, bad(t, "%d bytes is not a whole number of %d-byte elements", len(data), el.fixed)
		}
		xs := make([]any, len(data)/el.fixed)
		for i := range xs {
			v, err := decode(el, data[i*el.fixed:(i+1)*el.fixed], depth+1)
			if err != nil {
				return nil, err
			}
			xs[i] = v
		}
		return xs, nil
	}
	if len(data) == 0 {
		return []any{}, nil
	}
	w := offsetSize(len(data))
	last := readOffset(data[len(data)-w:])
	if last > uint64(len(data)-w) || (uint64(len(data))-last)%uint64(w) != 0 {
		return nil, bad(t, "last framing offset %d out of range for %d bytes", last, len(data))
	}
	table := data[last:]
	n := len(table) / w
	if offsetWidth(int(last), n) != w {
		return nil, bad(t, "%d-byte framing offsets where %d-byte ones address all %d bytes", w, offsetWidth(int(last), n), len(data))
	}
	xs := make([]any, n)
	prev := 0
	for i := range n {
		start, err := member(t, data, prev, el.align)
		if err != nil {
			return nil, err
		}
		end := readOffset(table[i*w : (i+1)*w])
		if end < uint64(start) || end > last {
			return nil, bad(t, "element %d ends at %d, outside %d..%d", i, end, start, last)
		}
		v, err := decode(el, data[start:end], depth+1)
		if err != nil {
			return nil, err
		}
		xs[i] = v
		prev = int(end)
	}
	return xs, nil
}

func decodeTuple(t *Type, data []byte, depth int) ([]any, error) {
	nf := len(t.fields)
	noffs := 0
	for i, f := range t.fields {
		if f.fixed == 0 && i != nf-1 {
			noffs++
		}
	}
	w := offsetSize(len(data))
	if noffs > 0 && noffs*w > len(data) || noffs > 0 && w == 0 {
		return nil, bad(t, "%d bytes cannot hold %d framing offsets", len(data), noffs)
	}
	bodyEnd := len(data) - noffs*w
	if noffs > 0 && offsetWidth(bodyEnd, noffs) != w {
		return nil, bad(t, "%d-byte framing offsets where %d-byte ones address all %d bytes", w, offsetWidth(bodyEnd, noffs), len(data))
	}
	xs := make([]any, nf)
	prev, k := 0, 0
	for i, f := range t.fields {
		start, err := member(t, data[:bodyEnd], prev, f.align)
		if err != nil {
			return nil, err
		}
		var end int
		switch {
		case f.fixed != 0:
			end = start + f.fixed
		case i == nf-1:
			end = bodyEnd
		default:
			k++
			o := readOffset(data[len(data)-k*w : len(data)-(k-1)*w])
			if o > uint64(bodyEnd) {
				return nil, bad(t, "member %d ends at %d beyond %d", i, o, bodyEnd)
			}
			end = int(o)
		}
		if end < start || end > bodyEnd {
			return nil, bad(t, "member %d spans %d..%d outside 0..%d", i, start, end, bodyEnd)
		}
		v, err := decode(f, data[start:end], depth+1)
		if err != nil {
			return nil, err
		}
		xs[i] = v
		prev = end
	}
	if t.fixed != 0 {
		// A fixed-size tuple ends with zero padding up to its size (the
		// empty tuple is one zero byte).
		for _, c := range data[prev:] {
			if c != 0 {
				return nil, bad(t, "non-zero padding at the end")
			}
		}
		return xs, nil
	}
	if prev != bodyEnd {
		return nil, bad(t, "%d bytes between the last member and the framing offsets", bodyEnd-prev)
	}
	return xs, nil
}
