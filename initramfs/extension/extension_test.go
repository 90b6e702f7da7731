package extension

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/gocfs/gocfs/initramfs/cmdline"
	"github.com/gocfs/gocfs/initramfs/config"
	"github.com/gocfs/gocfs/verity"
)

var digest = cmdline.Digest{Algorithm: verity.SHA256, Hex: strings.Repeat("5a", 32)}

func TestRoundTrip(t *testing.T) {
	insecure512 := cmdline.Digest{Algorithm: verity.SHA512, Hex: strings.Repeat("07", 64), Insecure: true}
	tests := []struct {
		name string
		ext  Extension
	}{
		{"digest only", Extension{Digest: digest}},
		{"insecure sha512", Extension{Digest: insecure512}},
		{"with config", Extension{Digest: digest, Config: []byte("[etc]\nmount = transient\n")}},
		{"empty config", Extension{Digest: digest, Config: []byte{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, &tt.ext); err != nil {
				t.Fatal(err)
			}
			if buf.Len()%4 != 0 {
				t.Errorf("archive is %d bytes, not a multiple of 4", buf.Len())
			}
			got, err := Read(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest != tt.ext.Digest || !bytes.Equal(got.Config, tt.ext.Config) || (got.Config == nil) != (tt.ext.Config == nil) {
				t.Errorf("read back %+v, want %+v", got, tt.ext)
			}
			checkRecords(t, buf.Bytes(), tt.ext.Config != nil)
		})
	}
}

// checkRecords checks what the kernel will apply to the initramfs root:
// names, modes and owners.
func checkRecords(t *testing.T, archive []byte, withConfig bool) {
	t.Helper()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(archive)))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name string
		mode uint64
	}{
		{"etc", cpio.S_IFDIR | 0o755},
		{"etc/composefs", cpio.S_IFDIR | 0o755},
		{DigestPath, cpio.S_IFREG | 0o644},
	}
	if withConfig {
		want = append(want, struct {
			name string
			mode uint64
		}{config.EtcPath, cpio.S_IFREG | 0o644})
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d: %v", len(recs), len(want), recs)
	}
	for i, w := range want {
		r := recs[i]
		if r.Name != w.name || r.Mode != w.mode || r.UID != 0 || r.GID != 0 || r.MTime != 0 {
			t.Errorf("record %d = %s mode %#o uid %d gid %d mtime %d, want %s mode %#o owned by root, mtime 0",
				i, r.Name, r.Mode, r.UID, r.GID, r.MTime, w.name, w.mode)
		}
	}
}

func TestWriteDeterministic(t *testing.T) {
	var a, b bytes.Buffer
	e := Extension{Digest: digest, Config: []byte("[root]\ntransient = true\n")}
	if err := Write(&a, &e); err != nil {
		t.Fatal(err)
	}
	if err := Write(&b, &e); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two writes differ")
	}
}

func TestWriteErrors(t *testing.T) {
	tests := []struct {
		name string
		ext  Extension
		want string
	}{
		{"no digest", Extension{}, "no image digest"},
		{"bad hex", Extension{Digest: cmdline.Digest{Algorithm: verity.SHA256, Hex: strings.Repeat("x", 64)}}, "malformed"},
		{"short", Extension{Digest: cmdline.Digest{Algorithm: verity.SHA512, Hex: digest.Hex}}, "malformed"},
		{"bad config", Extension{Digest: digest, Config: []byte("[etc]\nmount = x\n")}, "configuration:2:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Write(io.Discard, &tt.ext)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func archive(t *testing.T, recs ...cpio.Record) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	for _, r := range recs {
		if err := w.WriteRecord(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadErrors(t *testing.T) {
	good := cpio.StaticFile(DigestPath, digest.String()+"\n", 0o644)
	tests := []struct {
		name    string
		archive []byte
		want    string
	}{
		{"empty", nil, "no " + DigestPath},
		{"garbage", []byte("070707garbage"), "extension:"},
		{"truncated", archive(t, good)[:100], "extension:"},
		{"no digest", archive(t, cpio.Directory("etc", 0o755)), "no " + DigestPath},
		{"extra file", archive(t, good, cpio.StaticFile("init", "x", 0o755)), `unexpected entry "init"`},
		{"bad digest", archive(t, cpio.StaticFile(DigestPath, "v1-sha256-12:00\n", 0o644)), "malformed"},
		{"digest is a symlink", archive(t, cpio.Symlink(DigestPath, "/x")), "not a regular file"},
		{"etc is a file", archive(t, cpio.StaticFile("etc", "", 0o644), good), "etc is not a directory"},
		{"too big", archive(t, cpio.StaticFile(ConfigPath, strings.Repeat("#", maxFile+1), 0o644), good), "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tt.archive))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestAppend(t *testing.T) {
	var ext bytes.Buffer
	if err := Write(&ext, &Extension{Digest: digest}); err != nil {
		t.Fatal(err)
	}
	for size := 0; size < 12; size++ {
		base := bytes.Repeat([]byte{0xee}, size)
		var out bytes.Buffer
		n, err := Append(&out, bytes.NewReader(base), bytes.NewReader(ext.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		padded := (size + 3) / 4 * 4
		if n != int64(out.Len()) || out.Len() != padded+ext.Len() {
			t.Fatalf("base of %d bytes: wrote %d (reported %d), want %d", size, out.Len(), n, padded+ext.Len())
		}
		b := out.Bytes()
		if !bytes.Equal(b[:size], base) || !bytes.Equal(b[size:padded], make([]byte, padded-size)) || !bytes.Equal(b[padded:], ext.Bytes()) {
			t.Fatalf("base of %d bytes: wrong layout", size)
		}
		if _, err := Read(bytes.NewReader(b[padded:])); err != nil {
			t.Fatalf("base of %d bytes: extension unreadable after append: %v", size, err)
		}
	}
}

type failWriter struct{ after int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("disk full")
	}
	f.after--
	return len(p), nil
}

func TestAppendErrors(t *testing.T) {
	for after := 0; after < 3; after++ {
		_, err := Append(&failWriter{after: after}, strings.NewReader("abc"), strings.NewReader("ext"))
		if err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("failure after %d writes: error = %v", after, err)
		}
	}
}

// TestGNUCpio lists the archive with GNU cpio, the reader outside Go
// closest to the kernel's, when it is installed.
func TestGNUCpio(t *testing.T) {
	path, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio not installed")
	}
	var buf bytes.Buffer
	if err := Write(&buf, &Extension{Digest: digest, Config: []byte("[var]\nmount = transient\n")}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "-it", "--quiet")
	cmd.Stdin = &buf
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "etc\netc/composefs\n" + DigestPath + "\n" + ConfigPath + "\n"
	if string(out) != want {
		t.Errorf("cpio -t listed %q, want %q", out, want)
	}
}

func FuzzRead(f *testing.F) {
	var buf bytes.Buffer
	if err := Write(&buf, &Extension{Digest: digest, Config: []byte("[etc]\nmount = bind\n")}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = Read(bytes.NewReader(b))
	})
}

func TestReadHugeName(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, &Extension{Digest: digest}); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	copy(b[nameLengthOffset:], "FFFFFFF0")
	if _, err := Read(bytes.NewReader(b)); err == nil || !strings.Contains(err.Error(), "past the end") {
		t.Fatalf("error = %v", err)
	}
}
