package mount

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/dumpfile"
	"github.com/gocfs/gocfs/tests/treecheck"
	"github.com/gocfs/gocfs/verity"
)

func fileDigest(t *testing.T, path string, alg verity.Algorithm) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := verity.Digest(f, alg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// imageHasVerity reports whether the kernel can measure the image.
func imageHasVerity(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, _, err = verity.Measure(f)
	return err == nil
}

func TestDigest(t *testing.T) {
	f := getFixture(t, "handmade")
	sha256 := fileDigest(t, f.img, verity.SHA256)
	sha512 := fileDigest(t, f.img, verity.SHA512)
	wrong := append([]byte(nil), sha256...)
	wrong[7] ^= 0x40
	kernel := imageHasVerity(t, f.img)
	tests := []struct {
		name   string
		digest []byte
		mode   VerityMode
		want   error // nil: mounts
	}{
		{"sha256", sha256, VerityOff, nil},
		{"sha256-try", sha256, VerityTry, nil},
		{"sha512", sha512, VerityOff, nil},
		{"wrong", wrong, VerityOff, ErrWrongDigest},
		{"wrong-try", wrong, VerityTry, ErrWrongDigest},
		{"sha512-as-sha256", sha512[:32], VerityOff, ErrWrongDigest},
	}
	if !kernel {
		tests = append(tests, struct {
			name   string
			digest []byte
			mode   VerityMode
			want   error
		}{"require-without-fs-verity", sha256, VerityRequire, ErrImageNoVerity})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := f.options()
			opts.Digest, opts.Verity = tc.digest, tc.mode
			mnt := filepath.Join(t.TempDir(), "mnt")
			must(t, os.Mkdir(mnt, 0o755))
			_, err := Mount(mnt, opts)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				unmount(t, mnt)
				return
			}
			if !errors.Is(err, tc.want) {
				unix.Unmount(mnt, unix.MNT_DETACH)
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			t.Logf("refused: %v", err)
			if mountInfo(t, mnt) != "" {
				t.Error("mounted anyway")
			}
		})
	}
}

// TestVerity checks that VerityTry never gives a mount whose reads fail and
// that VerityRequire refuses objects without fs-verity.
func TestVerity(t *testing.T) {
	f := getFixture(t, "handmade")
	objectsVerity, err := verity.Supported(f.store)
	if err != nil {
		t.Fatal(err)
	}
	canVerify := objectsVerity && Probe().OverlayVerity
	t.Logf("object directory does fs-verity: %v; overlay verity option: %v", objectsVerity, Probe().OverlayVerity)

	opts := f.options()
	opts.Verity = VerityTry
	mnt, info := mountAt(t, opts)
	if info.Verity != canVerify {
		t.Errorf("VerityTry: Info.Verity %v, want %v", info.Verity, canVerify)
	}
	if strings.Contains(mountInfo(t, mnt), "verity=") != info.Verity {
		t.Errorf("VerityTry: mount options %q do not match %+v", mountInfo(t, mnt), info)
	}
	treecheck.CompareTrees(t, f.src, mnt, treecheck.Compare{})
	unmount(t, mnt)

	opts.Verity = VerityRequire
	info, err = Mount(mnt, opts)
	if canVerify {
		if err != nil || !info.Verity {
			t.Fatalf("VerityRequire: %+v, %v", info, err)
		}
		treecheck.CompareTrees(t, f.src, mnt, treecheck.Compare{})
		unmount(t, mnt)
		return
	}
	if err == nil {
		unmount(t, mnt)
		t.Fatal("VerityRequire mounted objects without fs-verity")
	}
	if Probe().OverlayVerity && !errors.Is(err, ErrObjectNoVerity) || !Probe().OverlayVerity && !errors.Is(err, ErrUnsupported) {
		t.Errorf("VerityRequire: %v", err)
	}
	t.Logf("VerityRequire refused: %v", err)
}

// TestErrors checks refusals are clear and leave nothing behind.
func TestErrors(t *testing.T) {
	f := getFixture(t, "handmade")
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	must(t, os.WriteFile(file, []byte("x"), 0o644))
	img, err := os.ReadFile(f.img)
	must(t, err)
	corrupt := func(name string, edit func([]byte) []byte) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, edit(append([]byte(nil), img...)), 0o644))
		return p
	}
	badMagic := corrupt("bad-magic.cfs", func(b []byte) []byte { b[erofs.SuperblockOffset] ^= 0xff; return b })
	badHeader := corrupt("bad-header.cfs", func(b []byte) []byte { b[0] ^= 0xff; return b })
	truncated := corrupt("truncated.cfs", func(b []byte) []byte { return b[:erofs.BlockSize] })
	upperSame := filepath.Join(dir, "same")
	must(t, os.Mkdir(upperSame, 0o755))
	shm := tmpfsDir(t)

	tests := []struct {
		name  string
		edit  func(o *Options)
		want  error  // for errors.Is, if set
		words string // the message must contain this
	}{
		{"no-image", func(o *Options) { o.ImagePath = "" }, nil, "no image"},
		{"missing-image", func(o *Options) { o.ImagePath = filepath.Join(dir, "nope.cfs") }, fs.ErrNotExist, "nope.cfs"},
		{"image-is-dir", func(o *Options) { o.ImagePath = dir }, nil, "not a regular file"},
		{"no-object-dirs", func(o *Options) { o.ObjectDirs = nil }, nil, "no object directories"},
		{"empty-object-dir-name", func(o *Options) { o.ObjectDirs = []string{""} }, nil, "empty object directory"},
		{"missing-object-dir", func(o *Options) { o.ObjectDirs = []string{f.store, filepath.Join(dir, "gone")} }, fs.ErrNotExist, "gone"},
		{"object-dir-is-file", func(o *Options) { o.ObjectDirs = []string{file} }, unix.ENOTDIR, file},
		{"bad-superblock", func(o *Options) { o.ImagePath = badMagic }, erofs.ErrNotComposefs, "superblock magic"},
		{"bad-header", func(o *Options) { o.ImagePath = badHeader }, erofs.ErrNotComposefs, "composefs magic"},
		{"truncated", func(o *Options) { o.ImagePath = truncated }, erofs.ErrCorrupt, "superblock declares"},
		{"upper-without-work", func(o *Options) { o.UpperDir = dir }, nil, "together"},
		{"upper-work-mounts", func(o *Options) { o.UpperDir, o.WorkDir = dir, shm }, nil, "different mounts"},
		{"missing-upper", func(o *Options) { o.UpperDir, o.WorkDir = filepath.Join(dir, "u"), dir }, fs.ErrNotExist, "upper directory"},
		{"missing-idmap", func(o *Options) { o.IDMap = filepath.Join(dir, "ns") }, fs.ErrNotExist, "idmap"},
		{"idmap-not-userns", func(o *Options) { o.IDMap = file }, nil, "not a user namespace"},
		{"idmap-other-ns", func(o *Options) { o.IDMap = "/proc/self/ns/mnt" }, nil, "not a user namespace"},
		{"bad-digest-size", func(o *Options) { o.Digest = []byte{1, 2, 3} }, nil, "3 bytes"},
		{"bad-verity-mode", func(o *Options) { o.Verity = 7 }, nil, "verity mode"},
		{"bad-tier", func(o *Options) { o.Tier = 9 }, nil, "tier"},
		// Fails in overlayfs, after the EROFS is mounted and attached.
		{"upper-is-work", func(o *Options) { o.UpperDir, o.WorkDir, o.Tier = upperSame, upperSame, TierString }, unix.EINVAL, "overlay create"},
		{"upper-is-work-loop", func(o *Options) { o.UpperDir, o.WorkDir, o.Tier = upperSame, upperSame, TierLoop }, unix.EINVAL, "overlay create"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := f.options()
			opts.TempDir = t.TempDir()
			tc.edit(&opts)
			loops := loopsOver(t, fixtureRoot)
			mnt := filepath.Join(t.TempDir(), "mnt")
			must(t, os.Mkdir(mnt, 0o755))
			_, err := Mount(mnt, opts)
			if err == nil {
				unmount(t, mnt)
				t.Fatal("mounted")
			}
			t.Logf("%v", err)
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error does not wrap %v", tc.want)
			}
			if !strings.Contains(err.Error(), tc.words) {
				t.Errorf("error does not say %q", tc.words)
			}
			var me *Error
			if !errors.As(err, &me) || me.Target != mnt || me.Image != opts.name() {
				t.Errorf("error is not an *Error naming the image and target")
			}
			if mountInfo(t, mnt) != "" {
				t.Error("mounted anyway")
			}
			if ents, _ := os.ReadDir(opts.TempDir); len(ents) != 0 {
				t.Errorf("temporary directory left: %v", ents)
			}
			if n := waitLoops(t, fixtureRoot, loops); n != loops {
				t.Errorf("%d loop devices left", n-loops)
			}
		})
	}
}

// tmpfsDir returns a new directory on a tmpfs, or skips.
func tmpfsDir(t *testing.T) string {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Skip("SKIP: /dev/shm is not a tmpfs")
	}
	d, err := os.MkdirTemp("/dev/shm", "gocfs-mount-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// TestMissingObject mounts with an object directory that lacks one object:
// the mount works and only reading that file fails.
func TestMissingObject(t *testing.T) {
	for _, tc := range tierCases {
		t.Run(tc.name, func(t *testing.T) {
			f := getFixture(t, "handmade")
			objs := filepath.Join(t.TempDir(), "objects")
			splitObjects(t, f.store, []string{objs, filepath.Join(t.TempDir(), "rest")})
			opts := tc.apply(t, f.options())
			opts.ObjectDirs = []string{objs}
			mnt, _ := mountAt(t, opts)
			failed := 0
			for _, name := range []string{"f65", "f4095", "f4096", "f4097", "f3145728", "a/b/c/d/e/f/deep"} {
				want, err := os.ReadFile(filepath.Join(f.src, name))
				must(t, err)
				got, err := os.ReadFile(filepath.Join(mnt, name))
				switch {
				case err != nil:
					failed++
					t.Logf("%s: %v", name, err)
				case string(got) != string(want):
					t.Errorf("%s: wrong content", name)
				}
			}
			if failed == 0 {
				t.Error("every file read although half the objects are missing")
			}
			if b, err := os.ReadFile(filepath.Join(mnt, "f64")); err != nil || len(b) != 64 {
				t.Errorf("inline file: %d bytes, %v", len(b), err)
			}
		})
	}
}

// TestImageOnTmpfs: EROFS cannot be backed by a tmpfs file, so the image
// goes through a loop device.
func TestImageOnTmpfs(t *testing.T) {
	f := getFixture(t, "handmade")
	dir := tmpfsDir(t)
	img := filepath.Join(dir, "image.cfs")
	b, err := os.ReadFile(f.img)
	must(t, err)
	must(t, os.WriteFile(img, b, 0o644))
	if !Probe().Loop {
		t.Skip("SKIP: no loop devices")
	}
	opts := f.options()
	opts.ImagePath = img
	mnt, info := mountAt(t, opts)
	if !info.Loop {
		t.Errorf("Info %+v: no loop device", info)
	}
	if n := loopsOver(t, dir); n != 1 {
		t.Errorf("%d loop devices over the image", n)
	}
	treecheck.CompareTrees(t, f.src, mnt, treecheck.Compare{})
	unmount(t, mnt)
	if n := waitLoops(t, dir, 0); n != 0 {
		t.Errorf("%d loop devices left", n)
	}
}

// TestIDMap mounts through the ID mapping of a new user namespace mapping
// IDs 0-65535 to 100000-165535.
func TestIDMap(t *testing.T) {
	f := getFixture(t, "handmade")
	sleeper := exec.Command("sleep", "60")
	ids := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}}
	sleeper.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, UidMappings: ids, GidMappings: ids}
	if err := sleeper.Start(); err != nil {
		t.Skipf("SKIP: cannot create a user namespace: %v", err)
	}
	defer func() {
		sleeper.Process.Kill()
		sleeper.Wait()
	}()
	for _, tc := range tierCases {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.apply(t, f.options())
			opts.IDMap = fmt.Sprintf("/proc/%d/ns/user", sleeper.Process.Pid)
			mnt := filepath.Join(t.TempDir(), "mnt")
			must(t, os.Mkdir(mnt, 0o755))
			if _, err := Mount(mnt, opts); errors.Is(err, ErrUnsupported) {
				t.Skipf("SKIP: %v", err)
			} else if err != nil {
				t.Fatal(err)
			}
			defer unmount(t, mnt)
			for _, c := range []struct {
				name     string
				uid, gid uint32
			}{
				{"f1", 100000, 100000},
				{"f65", 65534, 65534}, // 70000 is outside the mapping: the overflow IDs
			} {
				var st unix.Stat_t
				must(t, unix.Lstat(filepath.Join(mnt, c.name), &st))
				if st.Uid != c.uid || st.Gid != c.gid {
					t.Errorf("%s: owner %d:%d, want %d:%d", c.name, st.Uid, st.Gid, c.uid, c.gid)
				}
			}
			if b, err := os.ReadFile(filepath.Join(mnt, "f4097")); err != nil || len(b) != 4097 {
				t.Errorf("f4097: %d bytes, %v", len(b), err)
			}
		})
	}
}

// TestDetached attaches a detached mount itself.
func TestDetached(t *testing.T) {
	f := getFixture(t, "handmade")
	fd, info, err := MountDetached(f.options())
	if err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	err = unix.MoveMount(int(fd.Fd()), "", unix.AT_FDCWD, mnt, unix.MOVE_MOUNT_F_EMPTY_PATH)
	fd.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v: %s", info, mountInfo(t, mnt))
	treecheck.CompareTrees(t, f.src, mnt, treecheck.Compare{Legacy: info.Tier == TierLegacy})
	unmount(t, mnt)
}

func TestKernelMessages(t *testing.T) {
	requireMount(t)
	c, err := openContext("erofs")
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	err = c.setString("gocfs-no-such-option", "1")
	if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "kernel: ") || !strings.Contains(err.Error(), "gocfs-no-such-option") {
		t.Errorf("error %q lacks the errno or the kernel's message", err)
	}
	t.Log(err)
}

func TestObjectPath(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"/ab/cdef", "ab/cdef", true},
		{"ab/cdef", "ab/cdef", true},
		{"//ab/cdef", "ab/cdef", true},
		{"/", "", false},
		{"", "", false},
		{"/ab/../../etc/shadow", "", false},
		{"/ab/./cd", "", false},
		{"/ab//cd", "", false},
		{"/ab/cd/", "", false},
		{"/..", "", false},
	}
	for _, tc := range tests {
		got, ok := objectPath(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("objectPath(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseDigest(t *testing.T) {
	h64 := strings.Repeat("ab", 32)
	tests := []struct {
		in string
		n  int // 0: error
	}{
		{h64, 32},
		{strings.ToUpper(h64), 32},
		{strings.Repeat("01", 64), 64},
		{"", 0},
		{h64[:62], 0},
		{h64 + "0", 0},
		{h64[:63] + "g", 0},
		{strings.Repeat("01", 48), 0},
	}
	for _, tc := range tests {
		d, err := ParseDigest(tc.in)
		if (err == nil) != (tc.n != 0) || len(d) != tc.n {
			t.Errorf("ParseDigest(%q) = %d bytes, %v; want %d bytes", tc.in, len(d), err, tc.n)
		}
	}
}

func TestStrings(t *testing.T) {
	for v, s := range map[fmt.Stringer]string{
		TierAuto: "auto", TierFD: "fd", TierString: "string", TierLoop: "loop", TierLegacy: "legacy", Tier(42): "Tier(42)",
		VerityOff: "off", VerityTry: "try", VerityRequire: "require", VerityMode(5): "VerityMode(5)",
	} {
		if v.String() != s {
			t.Errorf("%#v.String() = %q, want %q", v, v.String(), s)
		}
	}
}

// TestVerityWalkCycle: a corrupt image whose directory lists its own
// parent must not send the object check round in circles.
func TestVerityWalkCycle(t *testing.T) {
	const dump = "/ 4096 40755 3 0 0 0 0.0 - - -\n" +
		"/a 4096 40755 3 0 0 0 0.0 - - -\n" +
		"/a/b 4096 40755 2 0 0 0 0.0 - - -\n" +
		"/a/b/f 100 100644 1 0 0 0 0.0 ab/cdef - -\n"
	root, err := dumpfile.Parse(strings.NewReader(dump), dumpfile.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := erofs.Write(&buf, root, erofs.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	img, err := erofs.OpenBytes(data)
	must(t, err)
	rootIno, err := img.Inode(img.Root())
	must(t, err)
	a, err := img.Lookup(rootIno, "a")
	must(t, err)
	aIno, err := img.Inode(a.Nid)
	must(t, err)
	b, err := img.Lookup(aIno, "b")
	must(t, err)
	// Point the entry "b" of a at a: its first dirent with b's nid and the
	// directory type.
	var nid [8]byte
	binary.LittleEndian.PutUint64(nid[:], b.Nid)
	i := bytes.Index(data, nid[:])
	for i >= 0 && data[i+10] != erofs.FileTypeDir {
		j := bytes.Index(data[i+1:], nid[:])
		if j < 0 {
			i = -1
			break
		}
		i += 1 + j
	}
	if i < 0 {
		t.Fatal("dirent of b not found")
	}
	binary.LittleEndian.PutUint64(data[i:], a.Nid)
	if img, err = erofs.OpenBytes(data); err != nil {
		t.Fatal(err)
	}
	if e, err := img.Lookup(aIno, "b"); err != nil || e.Nid != a.Nid {
		t.Fatalf("patch failed: %+v, %v", e, err)
	}
	objs, err := openDir(t.TempDir())
	must(t, err)
	defer unix.Close(objs)
	m := &mounter{image: img, objs: []int{objs}, opts: Options{ObjectDirs: []string{"objects"}}}
	if err := m.checkObjects(-1); !errors.Is(err, erofs.ErrCorrupt) {
		t.Fatalf("checkObjects: %v, want a corrupt image", err)
	}
}
