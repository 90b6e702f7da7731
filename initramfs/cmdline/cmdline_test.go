package cmdline

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/verity"
)

var (
	h256  = strings.Repeat("ab", 32)
	h256b = strings.Repeat("cd", 32)
	h512  = strings.Repeat("0f", 64)
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		cmdline string
		want    *Args
		wantErr bool
	}{
		{name: "empty", cmdline: "", want: &Args{}},
		{name: "sha256", cmdline: "quiet composefs.digest=v1-sha256-12:" + h256 + " rw",
			want: &Args{Digests: []Digest{{verity.SHA256, h256, false}}}},
		{name: "sha512 insecure", cmdline: "composefs.digest=?v1-sha512-12:" + h512,
			want: &Args{Digests: []Digest{{verity.SHA512, h512, true}}}},
		{name: "upper-case hex", cmdline: "composefs.digest=v1-sha256-12:" + strings.ToUpper(h256),
			want: &Args{Digests: []Digest{{verity.SHA256, h256, false}}}},
		{name: "legacy sha256", cmdline: "composefs=" + h256,
			want: &Args{Digests: []Digest{{verity.SHA256, h256, false}}}},
		{name: "legacy sha512 insecure", cmdline: "composefs=?" + h512,
			want: &Args{Digests: []Digest{{verity.SHA512, h512, true}}}},
		{name: "several in order", cmdline: "composefs=" + h512 + " composefs.digest=?v1-sha256-12:" + h256 + " composefs.digest=v1-sha256-12:" + h256b,
			want: &Args{Digests: []Digest{{verity.SHA512, h512, false}, {verity.SHA256, h256, true}, {verity.SHA256, h256b, false}}}},
		{name: "boot arguments", cmdline: `root=/dev/vda2 rootfstype=ext4 rootflags="data=ordered,noatime" ro init=/usr/lib/systemd/systemd ostree=/ostree/boot.1/os/abc/0`,
			want: &Args{Root: "/dev/vda2", RootFSType: "ext4", RootFlags: "data=ordered,noatime", ReadOnly: true, Init: "/usr/lib/systemd/systemd", OSTree: "/ostree/boot.1/os/abc/0"}},
		{name: "ro then rw", cmdline: "ro rw", want: &Args{}},
		{name: "other composefs keys ignored", cmdline: "composefs.debug=1 composefsx=zz composefs", want: &Args{}},
		{name: "bad hex", cmdline: "composefs.digest=v1-sha256-12:" + strings.Repeat("zz", 32), wantErr: true},
		{name: "short", cmdline: "composefs.digest=v1-sha256-12:" + h256[:62], wantErr: true},
		{name: "wrong length for algorithm", cmdline: "composefs.digest=v1-sha512-12:" + h256, wantErr: true},
		{name: "unknown scheme", cmdline: "composefs.digest=v2-sha256-12:" + h256, wantErr: true},
		{name: "no scheme", cmdline: "composefs.digest=" + h256, wantErr: true},
		{name: "empty value", cmdline: "composefs.digest=", wantErr: true},
		{name: "legacy bad length", cmdline: "composefs=" + h256 + "00", wantErr: true},
		{name: "legacy bad hex", cmdline: "composefs=?" + strings.Repeat("g", 64), wantErr: true},
		{name: "double marker", cmdline: "composefs=??" + h256, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.cmdline)
			if tt.wantErr {
				if !errors.Is(err, ErrBadDigest) {
					t.Fatalf("Parse(%q) error = %v, want ErrBadDigest", tt.cmdline, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.cmdline, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q) = %+v, want %+v", tt.cmdline, got, tt.want)
			}
		})
	}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  a  b\tc\n", []string{"a", "b", "c"}},
		{`a="b c" d`, []string{"a=b c", "d"}},
		{`"x y"`, []string{"x y"}},
		{`a=""`, []string{"a="}},
	}
	for _, tt := range tests {
		if got := Split(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Split(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDigestString(t *testing.T) {
	for _, s := range []string{"v1-sha256-12:" + h256, "?v1-sha512-12:" + h512} {
		d, err := ParseDigest(s)
		if err != nil {
			t.Fatal(err)
		}
		if d.String() != s {
			t.Errorf("round trip of %q gave %q", s, d.String())
		}
	}
}

func TestCandidates(t *testing.T) {
	a := Digest{verity.SHA256, h256, false}
	aInsecure := Digest{verity.SHA256, h256, true}
	b := Digest{verity.SHA256, h256b, false}
	tests := []struct {
		name    string
		cmdline []Digest
		pinned  *Digest
		want    []Digest
		wantErr bool
	}{
		{name: "command line only", cmdline: []Digest{a, b}, want: []Digest{a, b}},
		{name: "nothing", want: nil},
		{name: "extension only", pinned: &a, want: []Digest{a}},
		{name: "agree", cmdline: []Digest{a}, pinned: &a, want: []Digest{a}},
		{name: "agree twice", cmdline: []Digest{a, a}, pinned: &a, want: []Digest{a}},
		{name: "other image", cmdline: []Digest{b}, pinned: &a, wantErr: true},
		{name: "one of two differs", cmdline: []Digest{a, b}, pinned: &a, wantErr: true},
		{name: "command line weakens", cmdline: []Digest{aInsecure}, pinned: &a, wantErr: true},
		{name: "command line strengthens", cmdline: []Digest{a}, pinned: &aInsecure, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Candidates(tt.cmdline, tt.pinned)
			if tt.wantErr {
				if !errors.Is(err, ErrDisagree) {
					t.Fatalf("error = %v, want ErrDisagree", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("composefs.digest=v1-sha256-12:" + h256 + ` a="b c"`)
	f.Add("composefs=?" + h512)
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			return
		}
		for _, d := range a.Digests {
			if _, err := ParseDigest(d.String()); err != nil {
				t.Fatalf("digest %v does not round trip: %v", d, err)
			}
		}
	})
}
