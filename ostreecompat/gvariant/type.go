// Package gvariant encodes and decodes GVariant serialised data in normal
// form, the binary format GLib defines and ostree stores its metadata objects
// in.
//
// A value is described by a Type, parsed from a GVariant type string, and
// held in Go values:
//
//	y  byte          n  int16     q  uint16    i, h  int32
//	b  bool          u  uint32    x  int64     t     uint64
//	d  float64       s, o, g  string
//	v  Variant       ay  []byte   other aT  []any
//	mT Maybe         (...)  []any, one element per member
//	{KV} DictEntry
//
// Numbers are little-endian, as GVariant defines them; formats that store
// some numbers big-endian (ostree does) swap them before encoding.
//
// Marshal writes normal form. Unmarshal accepts only normal form: every
// framing offset in range and in order and of the width the container's size
// implies, padding zero, fixed-size values of exactly their size, strings
// NUL-terminated valid UTF-8 without inner NULs, booleans 0 or 1. GLib treats
// other input leniently (it reads defaults where data is short), but ostree
// rejects any metadata object that is not in normal form, so a strict decoder
// is what a reader of its objects needs. Whatever Unmarshal accepts, Marshal
// encodes back to the same bytes. (GLib's own normal-form check also passes
// an empty tuple body whose framing offsets would be zero bytes wide; GLib
// never writes that, and Unmarshal refuses it.)
package gvariant

import (
	"errors"
	"fmt"
)

// maxDepth bounds the nesting of containers and variants, in type strings and
// in data, as GLib bounds it (G_VARIANT_MAX_RECURSION_DEPTH).
const maxDepth = 128

// Type is a complete GVariant type.
type Type struct {
	code   byte    // the type character: 'y', 'a', '(', '{', 'm', 'v', ...
	elem   *Type   // element of an array or maybe
	fields []*Type // members of a tuple or dict entry
	align  int     // alignment in bytes: 1, 2, 4 or 8
	fixed  int     // size of a fixed-size type; 0 for variable-size types
	sig    string
}

// ErrType is wrapped by errors about malformed type strings and about Go
// values that do not match their type.
var ErrType = errors.New("gvariant: type mismatch")

// ParseType parses a type string holding exactly one complete type.
func ParseType(sig string) (*Type, error) {
	t, n, err := parseOne(sig, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("gvariant: type %q: %w", sig, err)
	}
	if n != len(sig) {
		return nil, fmt.Errorf("gvariant: type %q: trailing characters after a complete type: %w", sig, ErrType)
	}
	return t, nil
}

// MustParseType is ParseType for type strings fixed in a program; it panics
// on a malformed one.
func MustParseType(sig string) *Type {
	t, err := ParseType(sig)
	if err != nil {
		panic(err)
	}
	return t
}

// String returns the type string.
func (t *Type) String() string { return t.sig }

// Code returns the type character: the basic type's letter, or 'a', 'm',
// 'v', '(' or '{'.
func (t *Type) Code() byte { return t.code }

// Elem returns the element type of an array or maybe type, or nil.
func (t *Type) Elem() *Type { return t.elem }

// Fields returns the member types of a tuple or dict entry type.
func (t *Type) Fields() []*Type { return t.fields }

// Alignment returns the alignment of the type's values in bytes.
func (t *Type) Alignment() int { return t.align }

// FixedSize returns the size of every value of a fixed-size type, or 0 for
// a type whose values vary in size.
func (t *Type) FixedSize() int { return t.fixed }

// basicTypes maps the basic type characters to alignment and fixed size
// (0 for the string types).
var basicTypes = map[byte][2]int{
	'y': {1, 1}, 'b': {1, 1},
	'n': {2, 2}, 'q': {2, 2},
	'i': {4, 4}, 'u': {4, 4}, 'h': {4, 4},
	'x': {8, 8}, 't': {8, 8}, 'd': {8, 8},
	's': {1, 0}, 'o': {1, 0}, 'g': {1, 0},
}

// parseOne parses the complete type starting at sig[i] and returns it with
// the index after it.
func parseOne(sig string, i, depth int) (*Type, int, error) {
	if depth > maxDepth {
		return nil, 0, fmt.Errorf("nested deeper than %d: %w", maxDepth, ErrType)
	}
	if i >= len(sig) {
		return nil, 0, fmt.Errorf("incomplete type: %w", ErrType)
	}
	c := sig[i]
	if ba, ok := basicTypes[c]; ok {
		return &Type{code: c, align: ba[0], fixed: ba[1], sig: sig[i : i+1]}, i + 1, nil
	}
	switch c {
	case 'v':
		return &Type{code: 'v', align: 8, sig: "v"}, i + 1, nil
	case 'a', 'm':
		e, n, err := parseOne(sig, i+1, depth+1)
		if err != nil {
			return nil, 0, err
		}
		t := &Type{code: c, elem: e, align: e.align, sig: sig[i:n]}
		return t, n, nil
	case '(', '{':
		closing := byte(')')
		if c == '{' {
			closing = '}'
		}
		t := &Type{code: c, align: 1}
		j := i + 1
		for {
			if j >= len(sig) {
				return nil, 0, fmt.Errorf("unterminated %c: %w", c, ErrType)
			}
			if sig[j] == closing {
				j++
				break
			}
			f, n, err := parseOne(sig, j, depth+1)
			if err != nil {
				return nil, 0, err
			}
			t.fields = append(t.fields, f)
			j = n
		}
		if c == '{' {
			if len(t.fields) != 2 {
				return nil, 0, fmt.Errorf("dict entry with %d members: %w", len(t.fields), ErrType)
			}
			if _, basic := basicTypes[t.fields[0].code]; !basic {
				return nil, 0, fmt.Errorf("dict entry key %s is not a basic type: %w", t.fields[0].sig, ErrType)
			}
		}
		t.sig = sig[i:j]
		t.layoutTuple()
		return t, j, nil
	}
	return nil, 0, fmt.Errorf("bad type character %q: %w", c, ErrType)
}

// layoutTuple sets the alignment and fixed size of a tuple or dict entry:
// fixed when every member is, its size then the members laid out and rounded
// up to the alignment, and 1 for the empty tuple.
func (t *Type) layoutTuple() {
	fixed := true
	end := 0
	for _, f := range t.fields {
		t.align = max(t.align, f.align)
		if f.fixed == 0 {
			fixed = false
			continue
		}
		end = alignUp(end, f.align) + f.fixed
	}
	if !fixed {
		return
	}
	if len(t.fields) == 0 {
		t.fixed = 1
		return
	}
	t.fixed = alignUp(end, t.align)
}

func alignUp(n, a int) int { return (n + a - 1) &^ (a - 1) }
