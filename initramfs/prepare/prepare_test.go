package prepare

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/initramfs/cmdline"
	"github.com/gocfs/gocfs/initramfs/config"
	"github.com/gocfs/gocfs/mount"
	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/verity"
)

// fake records what prepare asks of the system, with the test's temporary
// directory shown as "T".
type fake struct {
	t          *testing.T
	base       string
	ops        []string
	repo       *fakeRepo
	imageDirs  []string // created in the target of MountImage
	mountErr   error
	mountPoint bool
}

func (f *fake) rel(p string) string { return strings.ReplaceAll(p, f.base, "T") }

func (f *fake) rec(format string, args ...any) {
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = f.rel(s)
		}
	}
	f.ops = append(f.ops, fmt.Sprintf(format, args...))
}

func (f *fake) MountImage(target string, o mount.Options) (mount.Info, error) {
	img := o.ImagePath
	if o.Image != nil {
		img = o.Image.Name()
	}
	f.rec("image %s on %s objects=%s verity=%s digest=%x ro=%v upper=%s work=%s source=%s",
		img, target, f.rel(strings.Join(o.ObjectDirs, ":")), o.Verity.String(), o.Digest, o.ReadOnly, o.UpperDir, o.WorkDir, o.Source)
	if f.mountErr != nil {
		return mount.Info{}, f.mountErr
	}
	for _, d := range f.imageDirs {
		if err := os.MkdirAll(filepath.Join(target, d), 0o755); err != nil {
			f.t.Fatal(err)
		}
	}
	return mount.Info{Tier: mount.TierFD, Verity: o.Verity == mount.VerityRequire}, nil
}

func (f *fake) Bind(src, target string) error { f.rec("bind %s on %s", src, target); return nil }
func (f *fake) MakePrivate(target string) error {
	f.rec("private %s", target)
	return nil
}
func (f *fake) Overlay(target, lower, upper, work string) error {
	f.rec("overlay on %s lower=%s upper=%s work=%s", target, lower, upper, work)
	return nil
}
func (f *fake) Tmpfs(target string) error         { f.rec("tmpfs %s", target); return nil }
func (f *fake) Move(src, target string) error     { f.rec("move %s to %s", src, target); return nil }
func (f *fake) Detach(target string) error        { f.rec("detach %s", target); return nil }
func (f *fake) IsMountPoint(string) (bool, error) { return f.mountPoint, nil }
func (f *fake) MkdirAll(path string, perm os.FileMode) error {
	f.rec("mkdir %s %#o", path, uint32(perm))
	return os.MkdirAll(path, perm)
}
func (f *fake) OpenRepository(path string) (Repository, error) {
	f.rec("open repository %s", path)
	if f.repo == nil {
		return nil, fmt.Errorf("store: open %s: %w", path, store.ErrNotRepository)
	}
	return f.repo, nil
}

type fakeRepo struct {
	t      *testing.T
	dir    string
	secure bool
	alg    verity.Algorithm
	images map[string]bool
}

func (r *fakeRepo) Secure() bool                { return r.secure }
func (r *fakeRepo) Algorithm() verity.Algorithm { return r.alg }
func (r *fakeRepo) ObjectDir() string           { return filepath.Join(r.dir, "objects") }
func (r *fakeRepo) Close() error                { return nil }
func (r *fakeRepo) OpenImage(h string) (*os.File, []byte, error) {
	if !r.images[h] {
		return nil, nil, fmt.Errorf("store: open image %s: images/%s: %w", h, h, store.ErrNotFound)
	}
	p := filepath.Join(r.dir, "images", h)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		r.t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		r.t.Fatal(err)
	}
	d, _ := mount.ParseDigest(h)
	return f, d, nil
}

var (
	hexA = strings.Repeat("a1", 32)
	hexB = strings.Repeat("b2", 32)
	hexC = strings.Repeat("c3", 64)
)

func dig(h string, insecure bool) cmdline.Digest {
	alg := verity.SHA256
	if len(h) == 128 {
		alg = verity.SHA512
	}
	return cmdline.Digest{Algorithm: alg, Hex: h, Insecure: insecure}
}

// newFake returns a fake with a sysroot T/sysroot holding a repository
// with the given images, and params for it.
func newFake(t *testing.T, secure bool, images ...string) (*fake, Params) {
	base := t.TempDir()
	f := &fake{t: t, base: base, imageDirs: []string{"etc", "var", "sysroot"}, mountPoint: true}
	f.repo = &fakeRepo{t: t, dir: filepath.Join(base, "sysroot", "composefs"), secure: secure, alg: verity.SHA256, images: map[string]bool{}}
	for _, h := range images {
		f.repo.images[h] = true
	}
	return f, Params{
		Sysroot: filepath.Join(base, "sysroot"),
		RunDir:  filepath.Join(base, "run"),
		Args:    &cmdline.Args{},
	}
}

// The operations every run starts and ends with.
var (
	opsStart = []string{
		"mkdir T/run/stage 0700",
		"bind T/run/stage on T/run/stage",
		"private T/run/stage",
		"mkdir T/run/stage/root 0755",
	}
	opsEnd = []string{
		"detach T/sysroot",
		"move T/run/stage/root to T/sysroot",
		"detach T/run/stage",
	}
)

func ops(parts ...[]string) []string {
	var all []string
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

func imageOp(h, verity string, ro bool, upper string) string {
	work := ""
	if upper != "" {
		work = strings.TrimSuffix(upper, "upper") + "work"
	}
	return fmt.Sprintf("image T/sysroot/composefs/images/%s on T/run/stage/root objects=T/sysroot/composefs/objects verity=%s digest=%s ro=%v upper=%s work=%s source=composefs:%s",
		h, verity, h, ro, upper, work, h)
}

func TestRunRepository(t *testing.T) {
	state := func(h string) string { return "T/sysroot/state/deploy/" + h }
	defaultTail := func(h string) []string {
		return []string{
			"bind T/sysroot on T/run/stage/root/sysroot",
			"mkdir " + state(h) + "/etc/upper 0755",
			"mkdir " + state(h) + "/etc/work 0700",
			"overlay on T/run/stage/root/etc lower=T/run/stage/root/etc upper=" + state(h) + "/etc/upper work=" + state(h) + "/etc/work",
			"mkdir " + state(h) + "/var 0755",
			"bind " + state(h) + "/var on T/run/stage/root/var",
		}
	}
	transient := func(name string) []string {
		d := "T/run/stage/" + name + "-transient"
		return []string{"mkdir " + d + " 0700", "tmpfs " + d, "mkdir " + d + "/upper 0755", "mkdir " + d + "/work 0700"}
	}
	tests := []struct {
		name    string
		secure  bool
		images  []string
		digests []cmdline.Digest
		pinned  *cmdline.Digest
		cfg     config.Config
		target  string // relative to T; "" for the sysroot
		notMP   bool
		want    []string
		wantErr error
		wantHex string
	}{
		{
			name: "secure default", secure: true, images: []string{hexA},
			digests: []cmdline.Digest{dig(hexA, false)},
			want:    ops(opsStart, []string{"open repository T/sysroot/composefs", imageOp(hexA, "require", true, "")}, defaultTail(hexA), opsEnd),
			wantHex: hexA,
		},
		{
			name: "insecure on repository without verity", images: []string{hexA},
			digests: []cmdline.Digest{dig(hexA, true)},
			want:    ops(opsStart, []string{"open repository T/sysroot/composefs", imageOp(hexA, "off", true, "")}, defaultTail(hexA), opsEnd),
			wantHex: hexA,
		},
		{
			name: "insecure on secure repository", secure: true, images: []string{hexA},
			digests: []cmdline.Digest{dig(hexA, true)},
			want:    ops(opsStart, []string{"open repository T/sysroot/composefs", imageOp(hexA, "off", true, "")}, defaultTail(hexA), opsEnd),
			wantHex: hexA,
		},
		{
			name: "secure without verity refused", images: []string{hexA},
			digests: []cmdline.Digest{dig(hexA, false)},
			want:    ops(opsStart, []string{"open repository T/sysroot/composefs", "detach T/run/stage"}),
			wantErr: ErrInsecure,
		},
		{
			name: "secure candidate after an insecure missing one is still refused", images: []string{hexA},
			digests: []cmdline.Digest{dig(hexB, true), dig(hexA, false)},
			want:    ops(opsStart, []string{"open repository T/sysroot/composefs", "detach T/run/stage"}),
			wantErr: ErrInsecure,
		},
		{
			name: "first present wins", secure: true, images: []string{hexB, hexA},
			digests: []cmdline.Digest{dig(hexC, false), dig(hexA, false), dig(hexB, false)},
			want:    ops(opsStart, []string{"open repository T/sysroot/composefs", imageOp(hexA, "require", true, "")}, defaultTail(hexA), opsEnd),
			wantHex: hexA,
		},
		{
			name: "none present", secure: true, images: []string{hexC},
			digests: []cmdline.Digest{dig(hexA, false), dig(hexB, false)},
			want:    ops(opsStart, []string{"open repository T/sysroot/composefs", "detach T/run/stage"}),
			wantErr: ErrNoImage,
		},
		{
			name: "no argument", secure: true, images: []string{hexA},
			wantErr: ErrNoImage,
		},
		{
			name: "extension digest", secure: true, images: []string{hexA, hexB},
			pinned:  &cmdline.Digest{Algorithm: verity.SHA256, Hex: hexB},
			want:    ops(opsStart, []string{"open repository T/sysroot/composefs", imageOp(hexB, "require", true, "")}, defaultTail(hexB), opsEnd),
			wantHex: hexB,
		},
		{
			name: "extension and command line disagree", secure: true, images: []string{hexA, hexB},
			digests: []cmdline.Digest{dig(hexA, false)},
			pinned:  &cmdline.Digest{Algorithm: verity.SHA256, Hex: hexB},
			wantErr: cmdline.ErrDisagree,
		},
		{
			name: "etc bind, var transient", secure: true, images: []string{hexA},
			digests: []cmdline.Digest{dig(hexA, false)},
			cfg:     config.Config{Etc: config.EtcBind, Var: config.VarTransient},
			want: ops(opsStart, []string{"open repository T/sysroot/composefs", imageOp(hexA, "require", true, ""),
				"bind T/sysroot on T/run/stage/root/sysroot",
				"mkdir " + state(hexA) + "/etc 0755",
				"bind " + state(hexA) + "/etc on T/run/stage/root/etc"},
				transient("var"),
				[]string{"overlay on T/run/stage/root/var lower=T/run/stage/root/var upper=T/run/stage/var-transient/upper work=T/run/stage/var-transient/work"},
				opsEnd),
			wantHex: hexA,
		},
		{
			name: "etc transient, var bind", secure: true, images: []string{hexA},
			digests: []cmdline.Digest{dig(hexA, false)},
			cfg:     config.Config{Etc: config.EtcTransient, Var: config.VarBind},
			want: ops(opsStart, []string{"open repository T/sysroot/composefs", imageOp(hexA, "require", true, ""),
				"bind T/sysroot on T/run/stage/root/sysroot"},
				transient("etc"),
				[]string{"overlay on T/run/stage/root/etc lower=T/run/stage/root/etc upper=T/run/stage/etc-transient/upper work=T/run/stage/etc-transient/work",
					"mkdir " + state(hexA) + "/var 0755",
					"bind " + state(hexA) + "/var on T/run/stage/root/var"},
				opsEnd),
			wantHex: hexA,
		},
		{
			name: "etc none", secure: true, images: []string{hexA},
			digests: []cmdline.Digest{dig(hexA, false)},
			cfg:     config.Config{Etc: config.EtcNone},
			want: ops(opsStart, []string{"open repository T/sysroot/composefs", imageOp(hexA, "require", true, ""),
				"bind T/sysroot on T/run/stage/root/sysroot",
				"mkdir " + state(hexA) + "/var 0755",
				"bind " + state(hexA) + "/var on T/run/stage/root/var"},
				opsEnd),
			wantHex: hexA,
		},
		{
			name: "transient root", secure: true, images: []string{hexA},
			digests: []cmdline.Digest{dig(hexA, false)},
			cfg:     config.Config{RootTransient: true},
			want: ops(opsStart, []string{"open repository T/sysroot/composefs"}, transient("root"),
				[]string{imageOp(hexA, "require", false, "T/run/stage/root-transient/upper")}, defaultTail(hexA), opsEnd),
			wantHex: hexA,
		},
		{
			name: "other target", secure: true, images: []string{hexA},
			digests: []cmdline.Digest{dig(hexA, false)}, target: "newroot",
			want: ops(opsStart, []string{"open repository T/sysroot/composefs", imageOp(hexA, "require", true, "")}, defaultTail(hexA),
				[]string{"move T/run/stage/root to T/newroot", "detach T/run/stage"}),
			wantHex: hexA,
		},
		{
			name: "sysroot not a mount point", secure: true, images: []string{hexA},
			digests: []cmdline.Digest{dig(hexA, false)}, notMP: true,
			want: ops(opsStart, []string{"open repository T/sysroot/composefs", imageOp(hexA, "require", true, "")}, defaultTail(hexA),
				[]string{"move T/run/stage/root to T/sysroot", "detach T/run/stage"}),
			wantHex: hexA,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, p := newFake(t, tt.secure, tt.images...)
			f.mountPoint = !tt.notMP
			p.Args.Digests = tt.digests
			p.Pinned = tt.pinned
			p.Config = tt.cfg
			if tt.target != "" {
				p.Target = filepath.Join(f.base, tt.target)
			}
			res, err := Run(f, p)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				t.Logf("error: %v", err)
			} else if err != nil {
				t.Fatal(err)
			} else if res.Digest == nil || res.Digest.Hex != tt.wantHex {
				t.Errorf("booted %v, want %s", res.Digest, tt.wantHex)
			}
			if !reflect.DeepEqual(f.ops, tt.want) {
				t.Errorf("operations:\n  %s\nwant:\n  %s", strings.Join(f.ops, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	t.Run("secure mount refused", func(t *testing.T) {
		f, p := newFake(t, true, hexA)
		f.mountErr = &mount.Error{Image: "x", Err: fmt.Errorf("object 00/11: %w", mount.ErrObjectNoVerity)}
		p.Args.Digests = []cmdline.Digest{dig(hexA, false)}
		_, err := Run(f, p)
		if !errors.Is(err, ErrInsecure) || !errors.Is(err, mount.ErrObjectNoVerity) || !strings.Contains(err.Error(), "composefs.digest=?v1-sha256-12:"+hexA) {
			t.Fatalf("error = %v", err)
		}
		if last := f.ops[len(f.ops)-1]; last != "detach T/run/stage" {
			t.Errorf("last operation %q, want the stage released", last)
		}
	})
	t.Run("image without etc", func(t *testing.T) {
		f, p := newFake(t, true, hexA)
		f.imageDirs = []string{"var"}
		p.Args.Digests = []cmdline.Digest{dig(hexA, false)}
		_, err := Run(f, p)
		if err == nil || !strings.Contains(err.Error(), "/etc of the new root") {
			t.Fatalf("error = %v", err)
		}
		if strings.Contains(strings.Join(f.ops, "\n"), "move") {
			t.Error("moved a half-made root")
		}
	})
	t.Run("image without sysroot", func(t *testing.T) {
		f, p := newFake(t, true, hexA)
		f.imageDirs = []string{"etc", "var"}
		p.Args.Digests = []cmdline.Digest{dig(hexA, false)}
		var logged []string
		p.Log = func(format string, a ...any) { logged = append(logged, fmt.Sprintf(format, a...)) }
		if _, err := Run(f, p); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(strings.Join(f.ops, "\n"), "on T/run/stage/root/sysroot") {
			t.Error("bound the sysroot on a directory the image does not have")
		}
		if !strings.Contains(strings.Join(logged, "\n"), "no /sysroot") {
			t.Errorf("no warning logged: %q", logged)
		}
	})
	t.Run("no repository", func(t *testing.T) {
		f, p := newFake(t, true)
		f.repo = nil
		p.Args.Digests = []cmdline.Digest{dig(hexA, false)}
		if _, err := Run(f, p); !errors.Is(err, store.ErrNotRepository) {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("algorithm mismatch skipped", func(t *testing.T) {
		f, p := newFake(t, true, hexA)
		p.Args.Digests = []cmdline.Digest{dig(hexC, false)}
		if _, err := Run(f, p); !errors.Is(err, ErrNoImage) {
			t.Fatalf("error = %v", err)
		}
	})
}

// ostreeSysroot makes an ostree sysroot: bootlink ostree/boot.1/os/bcsum/0
// through the boot.1 -> boot.1.1 link to deployment deploy/os/deploy/csum.0.
func ostreeSysroot(t *testing.T, sysroot string) string {
	t.Helper()
	deploy := filepath.Join(sysroot, "ostree/deploy/os/deploy/csum.0")
	for _, d := range []string{deploy + "/etc", "ostree/deploy/os/var", "ostree/boot.1.1/os/bcsum", "ostree/repo/objects"} {
		if !filepath.IsAbs(d) {
			d = filepath.Join(sysroot, d)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(deploy, ".ostree.cfs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("boot.1.1", filepath.Join(sysroot, "ostree/boot.1")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../deploy/os/deploy/csum.0", filepath.Join(sysroot, "ostree/boot.1.1/os/bcsum/0")); err != nil {
		t.Fatal(err)
	}
	return deploy
}

func TestRunOSTree(t *testing.T) {
	const link = "/ostree/boot.1/os/bcsum/0"
	deployT := "T/sysroot/ostree/deploy/os/deploy/csum.0"
	img := func(verity, digest string) string {
		return "image " + deployT + "/.ostree.cfs on T/run/stage/root objects=T/sysroot/ostree/repo/objects verity=" + verity +
			" digest=" + digest + " ro=true upper= work= source="
	}
	tail := []string{
		"bind T/sysroot on T/run/stage/root/sysroot",
		"mkdir " + deployT + "/etc 0755",
		"bind " + deployT + "/etc on T/run/stage/root/etc",
		"mkdir T/sysroot/ostree/deploy/os/var 0755",
		"bind T/sysroot/ostree/deploy/os/var on T/run/stage/root/var",
	}
	tests := []struct {
		name    string
		digests []cmdline.Digest
		cfg     config.Config
		want    []string
		wantErr string
	}{
		{name: "unpinned", want: ops(opsStart, []string{img("off", "")}, tail, opsEnd)},
		{name: "pinned secure", digests: []cmdline.Digest{dig(hexA, false)}, want: ops(opsStart, []string{img("require", hexA)}, tail, opsEnd)},
		{name: "pinned insecure", digests: []cmdline.Digest{dig(hexA, true)}, want: ops(opsStart, []string{img("off", hexA)}, tail, opsEnd)},
		{name: "etc overlay refused", cfg: config.Config{Etc: config.EtcOverlay},
			want:    ops(opsStart, []string{img("off", ""), "bind T/sysroot on T/run/stage/root/sysroot", "detach T/run/stage"}),
			wantErr: "not available for an ostree deployment"},
		{name: "two digests", digests: []cmdline.Digest{dig(hexA, false), dig(hexB, false)}, wantErr: "one image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, p := newFake(t, true)
			ostreeSysroot(t, p.Sysroot)
			p.Args.OSTree = link
			p.Args.Digests = tt.digests
			p.Config = tt.cfg
			res, err := Run(f, p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			} else if f.rel(res.Deployment) != deployT {
				t.Errorf("deployment %s, want %s", res.Deployment, deployT)
			}
			if !reflect.DeepEqual(f.ops, tt.want) {
				t.Errorf("operations:\n  %s\nwant:\n  %s", strings.Join(f.ops, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestResolveBootlink(t *testing.T) {
	sysroot := t.TempDir()
	deploy := ostreeSysroot(t, sysroot)
	for name, target := range map[string]string{
		"abs":      "/ostree/deploy/os/deploy/csum.0",
		"escape":   "../../../../../../../../ostree/deploy/os/deploy/csum.0",
		"loop":     "loop",
		"dangling": "nothing",
		"file":     "deploy/os/deploy/csum.0/.ostree.cfs",
	} {
		if err := os.Symlink(target, filepath.Join(sysroot, "ostree", name)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		link    string
		want    string
		wantErr string
	}{
		{link: "/ostree/boot.1/os/bcsum/0", want: deploy},
		{link: "ostree/boot.1/os/bcsum/0/", want: deploy},
		{link: "/ostree/abs", want: deploy},
		{link: "/ostree/escape", want: deploy},
		{link: "/ostree/deploy/os/deploy/csum.0", wantErr: "not a symbolic link"},
		{link: "/ostree/loop", wantErr: "too many levels"},
		{link: "/ostree/dangling", wantErr: "no such file"},
		{link: "/ostree/file", wantErr: "not a directory"},
		{link: "/ostree/missing", wantErr: "no such file"},
		{link: "/", wantErr: "not a bootlink"},
	}
	for _, tt := range tests {
		got, err := ResolveBootlink(sysroot, tt.link)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: error = %v, want one containing %q", tt.link, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: got %q, %v; want %q", tt.link, got, err, tt.want)
		}
	}
}
