package bls

import (
	"strings"
	"testing"

	"github.com/gocfs/gocfs/initramfs/cmdline"
	"github.com/gocfs/gocfs/verity"
)

func TestWriteTo(t *testing.T) {
	tests := []struct {
		name    string
		entry   Entry
		want    string
		wantErr string
	}{
		{
			name: "full",
			entry: Entry{
				Title: "Fedora Linux 43", Version: "6.18.1", MachineID: "0123456789abcdef0123456789abcdef", SortKey: "fedora",
				Linux: "/fedora/vmlinuz", Initrds: []string{"/fedora/initramfs.img", "/fedora/composefs.cpio"},
				Options: "root=UUID=x rw composefs.digest=v1-sha256-12:00",
			},
			want: "title Fedora Linux 43\nversion 6.18.1\nmachine-id 0123456789abcdef0123456789abcdef\nsort-key fedora\n" +
				"linux /fedora/vmlinuz\ninitrd /fedora/initramfs.img\ninitrd /fedora/composefs.cpio\n" +
				"options root=UUID=x rw composefs.digest=v1-sha256-12:00\n",
		},
		{name: "minimal", entry: Entry{Linux: "/vmlinuz"}, want: "linux /vmlinuz\n"},
		{name: "no linux", entry: Entry{Title: "x"}, wantErr: "no linux"},
		{name: "newline", entry: Entry{Linux: "/v", Options: "a\ninitrd /evil"}, wantErr: "line break"},
		{name: "empty initrd", entry: Entry{Linux: "/v", Initrds: []string{""}}, wantErr: "empty initrd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			n, err := tt.entry.WriteTo(&b)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || b.Len() != 0 {
					t.Fatalf("error = %v (wrote %q), want one containing %q", err, b.String(), tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want || n != int64(len(tt.want)) {
				t.Errorf("wrote (%d)\n%s\nwant\n%s", n, b.String(), tt.want)
			}
		})
	}
}

func TestSetDigest(t *testing.T) {
	d := cmdline.Digest{Algorithm: verity.SHA256, Hex: strings.Repeat("ab", 32)}
	arg := d.Arg()
	tests := []struct{ in, want string }{
		{"", arg},
		{"quiet rw", "quiet rw " + arg},
		{"quiet composefs=?" + strings.Repeat("cd", 32) + " rw composefs.digest=v1-sha256-12:00", "quiet " + arg + " rw"},
		{"composefs.debug=1", "composefs.debug=1 " + arg},
	}
	for _, tt := range tests {
		if got := SetDigest(tt.in, d); got != tt.want {
			t.Errorf("SetDigest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
