package dumpfile

import (
	"bytes"
	"errors"
	"fmt"
)

// Escaping variants of composefs-info dump. Every field escapes backslash,
// newline, carriage return, tab and every byte outside C's isgraph; xattr
// keys and values also escape '=' (the key/value separator), and the
// optional PAYLOAD and CONTENT fields write a value that is exactly "-" as
// "\x2d" so that it does not read back as "unset".
const (
	escEqual = 1 << iota
	escLoneDash
)

// plain[c] is true for the bytes written as themselves in every field.
var plain = func() (t [256]bool) {
	for c := 0x21; c < 0x7f; c++ {
		t[c] = c != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendEscaped appends s escaped as composefs-info prints it.
func appendEscaped[T string | []byte](dst []byte, s T, flags int) []byte {
	if flags&escLoneDash != 0 && len(s) == 1 && s[0] == '-' {
		return append(dst, `\x2d`...)
	}
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if plain[c] && (c != '=' || flags&escEqual == 0) {
			continue
		}
		dst = append(dst, s[start:i]...)
		start = i + 1
		switch c {
		case '\\':
			dst = append(dst, `\\`...)
		case '\n':
			dst = append(dst, `\n`...)
		case '\r':
			dst = append(dst, `\r`...)
		case '\t':
			dst = append(dst, `\t`...)
		default:
			dst = append(dst, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
		}
	}
	return append(dst, s[start:]...)
}

var errTrailingBackslash = errors.New(`escape "\" at end of field`)

// unescape decodes the escapes of a field. Without a backslash the field is
// returned as is; otherwise the result is appended to buf[:0]. The accepted
// escapes are exactly those of the C parser: \\ \n \r \t and \xHH (either
// case).
func unescape(buf, field []byte) ([]byte, error) {
	i := bytes.IndexByte(field, '\\')
	if i < 0 {
		return field, nil
	}
	out := append(buf[:0], field[:i]...)
	for i < len(field) {
		c := field[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(field) {
			return nil, errTrailingBackslash
		}
		switch e := field[i+1]; e {
		case '\\':
			out = append(out, '\\')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'x':
			if i+3 >= len(field) {
				return nil, fmt.Errorf(`incomplete escape %q`, field[i:])
			}
			hi, ok1 := unhex(field[i+2])
			lo, ok2 := unhex(field[i+3])
			if !ok1 || !ok2 {
				return nil, fmt.Errorf(`invalid hex escape %q`, field[i:i+4])
			}
			out = append(out, hi<<4|lo)
			i += 2
		default:
			return nil, fmt.Errorf("unsupported escape character %q after backslash", e)
		}
		i += 2
	}
	return out, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
