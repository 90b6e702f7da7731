package store

import (
	"reflect"
	"testing"
)

func TestCmdlineImages(t *testing.T) {
	h := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		cmdline string
		want    []string
	}{
		{"root=/dev/vda rw", nil},
		{"composefs=" + h, []string{h}},
		{"composefs=?" + h + " quiet", []string{h}},
		{"composefs.digest=v1-sha256-12:" + h, []string{h}},
		{"composefs.digest=?v1-sha512-12:" + h + h, []string{h + h}},
		{"composefs=nothex composefs=" + h[:10], nil},
		{"xcomposefs=" + h, nil},
	}
	for _, tc := range tests {
		if got := CmdlineImages(tc.cmdline); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.cmdline, got, tc.want)
		}
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/a\040b\134c`); got != `/a b\c` {
		t.Errorf("got %q", got)
	}
}
