package store

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/store/internal/fakeverity"
	"github.com/gocfs/gocfs/verity"
)

// kinds returns "kind path" for every problem, sorted.
func kinds(rep *FsckReport, repairedToo bool) []string {
	var out []string
	for _, p := range rep.Errors {
		if repairedToo || !p.Repaired {
			out = append(out, p.Kind+" "+p.Path)
		}
	}
	slices.Sort(out)
	return out
}

func replaceFile(t *testing.T, p string, b []byte) {
	t.Helper()
	os.Remove(p)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFsck(t *testing.T) {
	f := newGCFixture(t)
	r := f.r
	rep, err := r.Fsck(FsckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || !rep.HasMetadata || rep.ObjectsChecked != 18 || rep.StreamsChecked != 6 || rep.ImagesChecked != 2 {
		t.Fatalf("fsck of a sound repository: %+v", rep)
	}

	// Corrupt a file object of layer 1 and of the boot image, remove the
	// object of stream "other" (its link breaks) and truncate the
	// orphan stream's object.
	l1 := filepath.Join(r.Path(), objectPath(f.o["l1"]))
	replaceFile(t, l1, data(1001, 0xff))
	boot := filepath.Join(r.Path(), objectPath(f.o["boot-only"]))
	os.Remove(boot)
	os.Remove(filepath.Join(r.Path(), objectPath(f.other)))
	orphan := filepath.Join(r.Path(), objectPath(f.orphan))
	b, _ := os.ReadFile(orphan)
	replaceFile(t, orphan, b[:40])

	rep, err = r.Fsck(FsckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	objPath := func(d []byte) string { return objectPath(d) }
	want := []string{
		"broken-symlink streams/other",
		"broken-symlink streams/refs/other",
		"image-missing-object images/" + hexDigest(f.bootImg),
		"object-digest-mismatch " + objPath(f.o["l1"]),
		"object-digest-mismatch " + objPath(f.orphan),
		"stream-open-failed streams/orphan",
	}
	if got := kinds(rep, true); !slices.Equal(got, want) {
		t.Errorf("problems\n got %q\nwant %q", got, want)
	}
	if rep.OK() || rep.ObjectsCorrupted != 2 || rep.BrokenLinks != 2 || rep.MissingObjects != 1 || rep.StreamsCorrupted != 2 || rep.ImagesCorrupted != 1 {
		t.Errorf("counts %+v", rep)
	}
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"type":"object-digest-mismatch"`, `"objectsCorrupted":2`, `"type":"image-missing-object"`, `"objectId":"` + hexDigest(f.o["boot-only"])} {
		if !strings.Contains(string(js), s) {
			t.Errorf("JSON lacks %s: %s", s, js)
		}
	}

	// Repair: corrupt objects and broken links go; what is left missing
	// goes to the repairer, which restores the boot image's object.
	var offered []string
	rep, err = r.Fsck(FsckOptions{Repair: true, Repairer: func(rr *Repository, p *FsckProblem) (bool, error) {
		offered = append(offered, p.Kind+" "+p.Path)
		if p.Kind == FsckImageMissingObject {
			_, err := rr.EnsureObject(bytes.NewReader(data(1006, 6)))
			return err == nil, err
		}
		return false, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	wantLeft := []string{"missing-object-ref streams/oci-layer-sha256:1"}
	slices.Sort(offered)
	if want := []string{"image-missing-object images/" + hexDigest(f.bootImg), "missing-object-ref streams/oci-layer-sha256:1"}; !slices.Equal(offered, want) {
		t.Errorf("offered to the repairer %q, want %q", offered, want)
	}
	if got := kinds(rep, false); !slices.Equal(got, wantLeft) {
		t.Errorf("unrepaired\n got %q\nwant %q", got, wantLeft)
	}
	if exists(t, r, "streams/other") || exists(t, r, "streams/refs/other") || exists(t, r, "streams/orphan") {
		t.Error("broken links left")
	}
	if _, err := os.Stat(l1); err == nil {
		t.Error("corrupt object left")
	}

	// What the repair could not fix is still reported, nothing else.
	rep, err = r.Fsck(FsckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(rep, true); !slices.Equal(got, wantLeft) {
		t.Errorf("after repair\n got %q\nwant %q", got, wantLeft)
	}
	// Storing the content again makes the repository whole.
	mustObject(t, r, data(1001, 1))
	if rep, _ = r.Fsck(FsckOptions{}); !rep.OK() {
		t.Errorf("after restoring: %q", kinds(rep, true))
	}
}

func TestFsckStructure(t *testing.T) {
	r := newRepo(t, InitOptions{})
	s := mustStream(t, r, "s", "", streamSpec{objects: [][]byte{data(100, 1)}, named: map[string][]byte{"gone": make([]byte, 32)}})
	p := func(name string) string { return filepath.Join(r.Path(), name) }
	os.WriteFile(p("streams/not-a-link"), nil, 0o644)
	os.Symlink("../objects/zz/nothex", p("streams/bad-target"))
	os.MkdirAll(p("streams/refs/d"), 0o755)
	os.WriteFile(p("streams/refs/d/file"), nil, 0o644)
	os.Symlink("/etc/passwd", p("streams/refs/abs"))
	os.Symlink("../s", p("streams/refs/good"))
	os.WriteFile(p("objects/stray"), nil, 0o644)
	os.MkdirAll(p("objects/00"), 0o755)
	os.WriteFile(p("objects/00/short"), nil, 0o644)
	img := mustImage(t, r, "", map[string][]byte{"f": data(10, 1)})
	os.Symlink("../objects/"+objectPath(img)[len("objects/"):], p("images/"+strings.Repeat("0", 64)))

	rep, err := r.Fsck(FsckOptions{MetadataOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"entry-not-symlink streams/not-a-link",
		"invalid-symlink images/" + strings.Repeat("0", 64),
		"invalid-symlink streams/bad-target",
		"invalid-symlink streams/refs/abs",
		"missing-named-ref streams/s",
		"unexpected-file-type streams/refs/d/file",
	}
	if got := kinds(rep, true); !slices.Equal(got, want) {
		t.Errorf("problems\n got %q\nwant %q", got, want)
	}
	if rep.ObjectsChecked != 0 {
		t.Errorf("metadata-only fsck checked %d objects", rep.ObjectsChecked)
	}
	rep, err = r.Fsck(FsckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, "object-invalid-name objects/00/short", "unexpected-file-type objects/stray")
	slices.Sort(want)
	if got := kinds(rep, true); !slices.Equal(got, want) {
		t.Errorf("problems\n got %q\nwant %q", got, want)
	}
	_ = s
}

// TestFsckSecure checks fs-verity in a secure repository, with a fake
// kernel.
func TestFsckSecure(t *testing.T) {
	k := &fakeverity.Kernel{}
	useKernel(t, k)
	r, err := Init(filepath.Join(t.TempDir(), "repo"), InitOptions{Algorithm: verity.SHA512})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	good := mustObject(t, r, data(5000, 1))
	// Objects without fs-verity: one whose content matches its name, one
	// whose does not.
	plain := data(6000, 2)
	pd := verity.DigestBytes(plain, verity.SHA512)
	bad := verity.DigestBytes(data(7000, 3), verity.SHA512)
	for _, o := range []struct {
		d []byte
		b []byte
	}{{pd, plain}, {bad, data(7000, 4)}} {
		p := filepath.Join(r.Path(), objectPath(o.d))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, o.b, 0o644)
	}
	rep, err := r.Fsck(FsckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"object-verity-missing " + objectPath(bad), "object-verity-missing " + objectPath(pd)}
	slices.Sort(want)
	if got := kinds(rep, true); !slices.Equal(got, want) {
		t.Errorf("problems %q, want %q", got, want)
	}
	rep, err = r.Fsck(FsckOptions{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Errorf("repair left %q", kinds(rep, false))
	}
	if !k.Has(filepath.Join(r.Path(), objectPath(pd))) {
		t.Error("matching object not sealed")
	}
	if _, err := os.Stat(filepath.Join(r.Path(), objectPath(bad))); err == nil {
		t.Error("mismatching object kept")
	}
	if rep, _ = r.Fsck(FsckOptions{}); len(rep.Errors) != 0 {
		t.Errorf("after repair: %q", kinds(rep, true))
	}
	_ = good
}
