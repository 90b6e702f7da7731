package oci

import (
	"strings"
	"testing"
)

func TestTagRef(t *testing.T) {
	tests := []struct {
		tag, ref, err string
	}{
		{"fedora:42", "oci/fedora:42", ""},
		{"quay.io/a/b:c", "oci/quay.io%2Fa%2Fb:c", ""},
		{"100%/x", "oci/100%25%2Fx", ""},
		{"%2F", "oci/%252F", ""},
		{"", "", "empty"},
		{"@sha256:ab", "", "reserved"},
		{".x", "", "dot"},
		{"a\x00b", "", "NUL"},
		{strings.Repeat("a", 255), "oci/" + strings.Repeat("a", 255), ""},
		{strings.Repeat("/", 86), "", "too long"},
	}
	for _, tt := range tests {
		ref, err := tagRef(tt.tag)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("tagRef(%q): %q, %v; want an error containing %q", tt.tag, ref, err, tt.err)
			}
			continue
		}
		if err != nil || ref != tt.ref {
			t.Errorf("tagRef(%q) = %q, %v; want %q", tt.tag, ref, err, tt.ref)
			continue
		}
		if got := decodeTag(strings.TrimPrefix(ref, tagRefPrefix)); got != tt.tag {
			t.Errorf("decodeTag(%q) = %q, want %q", ref, got, tt.tag)
		}
	}
	if got := decodeTag("a%2fb%zz%2"); got != "a%2fb%zz%2" {
		t.Errorf("unknown escapes: %q", got)
	}
}
