package vm

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/gocfs/gocfs/tests/ocibuild"
)

// DataFiles are the NAME.bin files of the test image, in DataDir: the boot
// tests read data in every boot, corrupt tamper's object and replace
// subst's.
var DataFiles = []string{"data", "tamper", "subst"}

// Image is the image the boot tests (and the demo) boot: initProg (guestinit)
// as /sbin/init, the directories and files prepare-root and the switch to
// the new root need, the boot counter, and the data files with their
// checksums, in two layers.
func Image(initProg []byte) *ocibuild.Image {
	const mtime = 1700000000
	dir := func(p string) ocibuild.Entry {
		return ocibuild.Entry{Path: p, Type: ocibuild.Dir, Mode: 0o755, Mtime: mtime}
	}
	file := func(p string, mode uint32, content []byte) ocibuild.Entry {
		return ocibuild.Entry{Path: p, Type: ocibuild.File, Mode: mode, Mtime: mtime, Content: content}
	}
	var base []ocibuild.Entry
	for _, d := range []string{"/dev", "/etc", "/etc/gocfs-vm", "/proc", "/run", "/sbin", "/sys", "/sysroot", "/tmp", "/usr", "/usr/lib", "/usr/share", DataDir, "/var"} {
		base = append(base, dir(d))
	}
	base = append(base, file("/sbin/init", 0o755, initProg), file(BootCounter, 0o644, []byte("0\n")),
		// systemd switches only to a root with an os-release file.
		file("/usr/lib/os-release", 0o644, []byte("ID=gocfs-vm\nNAME=\"gocfs boot test image\"\n")))
	var data []ocibuild.Entry
	for i, n := range DataFiles {
		content := ocibuild.Generate(uint64(i+1), 200_000)
		sum := sha256.Sum256(content)
		data = append(data,
			file(DataDir+"/"+n+".bin", 0o644, content),
			file(DataDir+"/"+n+".sha256", 0o644, []byte(hex.EncodeToString(sum[:])+"\n")))
	}
	return &ocibuild.Image{Created: mtime, Layers: []ocibuild.Layer{
		{Entries: base, Compression: ocibuild.Gzip},
		{Entries: data, Compression: ocibuild.Zstd},
	}}
}
