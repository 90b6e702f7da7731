package dumpfile

import (
	"bytes"
	"strings"
	"testing"
)

func TestAppendEscaped(t *testing.T) {
	tests := []struct {
		in    string
		flags int
		want  string
	}{
		{"", 0, ""},
		{"plain/path.txt", 0, "plain/path.txt"},
		{"a b", 0, `a\x20b`},
		{"back\\slash", 0, `back\\slash`},
		{"nl\ncr\rtab\t", 0, `nl\ncr\rtab\t`},
		{"\x00\x01\x7f\x80\xff", 0, `\x00\x01\x7f\x80\xff`},
		{"k=v", 0, "k=v"},
		{"k=v", escEqual, `k\x3dv`},
		{"-", 0, "-"},
		{"-", escLoneDash, `\x2d`},
		{"--", escLoneDash, "--"},
		{"-", escEqual, "-"},
		{"~!\"#$%&'()*+,./:;<>?@[]^_`{|}", 0, "~!\"#$%&'()*+,./:;<>?@[]^_`{|}"},
	}
	for _, tt := range tests {
		if got := string(appendEscaped(nil, tt.in, tt.flags)); got != tt.want {
			t.Errorf("appendEscaped(%q, %d) = %q, want %q", tt.in, tt.flags, got, tt.want)
		}
		if got := string(appendEscaped([]byte("x"), []byte(tt.in), tt.flags)); got != "x"+tt.want {
			t.Errorf("appendEscaped([]byte(%q), %d) = %q, want %q", tt.in, tt.flags, got, "x"+tt.want)
		}
	}
}

func TestUnescape(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"", "", ""},
		{"abc", "abc", ""},
		{`a\\b`, `a\b`, ""},
		{`\n\r\t`, "\n\r\t", ""},
		{`\x41\x6a\x6A\xff\x00`, "Ajj\xff\x00", ""},
		{`x\x2d`, "x-", ""},
		{`a\`, "", "at end of field"},
		{`\x`, "", "incomplete escape"},
		{`\x4`, "", "incomplete escape"},
		{`\x4g`, "", "invalid hex escape"},
		{`\xg4`, "", "invalid hex escape"},
		{`\a`, "", "unsupported escape"},
		{`\"`, "", "unsupported escape"},
		{`\ `, "", "unsupported escape"},
	}
	for _, tt := range tests {
		got, err := unescape(nil, []byte(tt.in))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("unescape(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || string(got) != tt.want {
			t.Errorf("unescape(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
}

// Every byte string survives escaping and unescaping, with every variant.
func TestEscapeRoundTrip(t *testing.T) {
	var all []byte
	for c := 0; c < 256; c++ {
		all = append(all, byte(c))
	}
	inputs := [][]byte{all, []byte("-"), []byte("=-="), []byte(`\\x41`), {}}
	for _, in := range inputs {
		for _, flags := range []int{0, escEqual, escLoneDash, escEqual | escLoneDash} {
			esc := appendEscaped(nil, in, flags)
			for _, c := range esc {
				if c <= ' ' || c >= 0x7f || (flags&escEqual != 0 && c == '=') {
					t.Errorf("escaped %q (flags %d) contains byte %#x", in, flags, c)
				}
			}
			got, err := unescape(nil, esc)
			if err != nil || !bytes.Equal(got, in) {
				t.Errorf("round trip of %q (flags %d): %q, %v", in, flags, got, err)
			}
		}
	}
}
