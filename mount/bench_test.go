package mount

import (
	"os"
	"path/filepath"
	"testing"
)

// The latency of a mount and its unmount, per tier, of a small image.

func BenchmarkMountFD(b *testing.B)     { benchMount(b, "fd") }
func BenchmarkMountString(b *testing.B) { benchMount(b, "string") }
func BenchmarkMountLoop(b *testing.B)   { benchMount(b, "loop") }
func BenchmarkMountLegacy(b *testing.B) { benchMount(b, "legacy") }

func benchMount(b *testing.B, name string) {
	f := getFixture(b, "handmade")
	var opts Options
	for _, tc := range tierCases {
		if tc.name == name {
			opts = tc.apply(b, f.options())
		}
	}
	mnt := filepath.Join(b.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Mount(mnt, opts); err != nil {
			b.Fatal(err)
		}
		unmount(b, mnt)
	}
}
