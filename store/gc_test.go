package store

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gocfs/gocfs/verity"
)

// gcFixture is a repository shaped like one holding OCI images: layer
// streams with file objects, a config naming the layers and an EROFS image,
// a manifest naming the config, tags on manifests, an image with its own
// ref, and garbage.
type gcFixture struct {
	r *Repository
	// digests by role
	o                        map[string][]byte
	layer1, layer2, cfg, man []byte
	other, orphan            []byte
	img, bootImg             []byte
}

func newGCFixture(t *testing.T) *gcFixture {
	r := newRepo(t, InitOptions{})
	f := &gcFixture{r: r, o: map[string][]byte{}}
	for i, name := range []string{"shared", "l1", "l2", "img-only", "other", "orphan", "boot-only", "loose"} {
		f.o[name] = verity.DigestBytes(data(1000+i, byte(i)), verity.SHA256)
	}
	content := func(name string) []byte {
		for i, n := range []string{"shared", "l1", "l2", "img-only", "other", "orphan", "boot-only", "loose"} {
			if n == name {
				return data(1000+i, byte(i))
			}
		}
		panic(name)
	}
	f.layer1 = mustStream(t, r, "oci-layer-sha256:1", "", streamSpec{objects: [][]byte{content("shared"), content("l1")}})
	f.layer2 = mustStream(t, r, "oci-layer-sha256:2", "", streamSpec{objects: [][]byte{content("l2")}})
	f.img = mustImage(t, r, "", map[string][]byte{"a": content("shared"), "b": content("img-only"), "small": []byte("x")})
	f.cfg = mustStream(t, r, "oci-config-sha256:c", "", streamSpec{objects: [][]byte{data(300, 99)},
		named: map[string][]byte{"sha256:1": f.layer1, "sha256:2": f.layer2, "composefs.image.v1": f.img}})
	f.o["cfg-json"] = verity.DigestBytes(data(300, 99), verity.SHA256)
	f.man = mustStream(t, r, "oci-manifest-sha256:m", "oci/app:1", streamSpec{objects: [][]byte{data(200, 98)},
		named: map[string][]byte{"config:sha256:c": f.cfg, "sha256:1": f.layer1, "sha256:2": f.layer2}})
	f.o["man-json"] = verity.DigestBytes(data(200, 98), verity.SHA256)
	f.other = mustStream(t, r, "other", "other", streamSpec{objects: [][]byte{content("other")}})
	f.orphan = mustStream(t, r, "orphan", "", streamSpec{objects: [][]byte{content("orphan")}})
	f.bootImg = mustImage(t, r, "boot/1", map[string][]byte{"shared": content("shared"), "b": content("boot-only")})
	mustObject(t, r, content("loose"))
	return f
}

func (f *gcFixture) objects(names ...string) [][]byte {
	var out [][]byte
	for _, n := range names {
		if f.o[n] == nil {
			panic(n)
		}
		out = append(out, f.o[n])
	}
	return out
}

func (f *gcFixture) check(t *testing.T, want ...[]byte) {
	t.Helper()
	if got := objectSet(t, f.r); fmt.Sprint(got) != fmt.Sprint(hexes(want...)) {
		t.Errorf("objects after GC\n got %v\nwant %v", got, hexes(want...))
	}
	rep, err := f.r.Fsck(FsckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Errorf("fsck after GC: %v", rep.Errors)
	}
}

func exists(t *testing.T, r *Repository, name string) bool {
	t.Helper()
	_, err := os.Lstat(filepath.Join(r.Path(), name))
	return err == nil
}

func TestGC(t *testing.T) {
	f := newGCFixture(t)
	r := f.r
	all := objectSet(t, r)

	// A dry run counts without removing.
	res, err := r.GC(GCOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := objectSet(t, r); fmt.Sprint(got) != fmt.Sprint(all) {
		t.Error("dry run removed objects")
	}
	if !exists(t, r, "streams/orphan") {
		t.Error("dry run removed a link")
	}
	dry := *res

	res, err = r.GC(GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *res != dry {
		t.Errorf("GC result %+v, dry run said %+v", *res, dry)
	}
	// orphan stream object, its object, the loose object.
	if res.ObjectsRemoved != 3 || res.StreamsPruned != 1 || res.ImagesPruned != 0 {
		t.Errorf("GC result %+v", *res)
	}
	if exists(t, r, "streams/orphan") {
		t.Error("link of a collected stream kept")
	}
	live := append(f.objects("shared", "l1", "l2", "img-only", "other", "boot-only", "cfg-json", "man-json"),
		f.layer1, f.layer2, f.cfg, f.man, f.other, f.img, f.bootImg)
	f.check(t, live...)

	// Untagging the other stream lets it go.
	if err := r.DeleteRef(Streams, "other"); err != nil {
		t.Fatal(err)
	}
	if res, err = r.GC(GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if res.ObjectsRemoved != 2 || res.StreamsPruned != 1 {
		t.Errorf("GC result %+v", *res)
	}
	live = slices.DeleteFunc(live, func(d []byte) bool { return string(d) == string(f.other) || string(d) == string(f.o["other"]) })
	f.check(t, live...)

	// Untagging the image: the manifest, config, layers and the config's
	// EROFS go, except what the boot image shares, which an extra root
	// keeps.
	if err := r.DeleteRef(Streams, "oci/app:1"); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteRef(Images, "boot/1"); err != nil {
		t.Fatal(err)
	}
	if res, err = r.GC(GCOptions{ExtraRoots: []string{hexDigest(f.bootImg), "not-here"}}); err != nil {
		t.Fatal(err)
	}
	if res.StreamsPruned != 4 || res.ImagesPruned != 1 {
		t.Errorf("GC result %+v", *res)
	}
	f.check(t, append(f.objects("shared", "boot-only"), f.bootImg)...)

	if res, err = r.GC(GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if res.ObjectsRemoved != 3 || res.ImagesPruned != 1 {
		t.Errorf("last GC result %+v", *res)
	}
	f.check(t)
}

// TestGCSHA512 checks that images of a sha512 repository keep their objects.
func TestGCSHA512(t *testing.T) {
	r := newRepo(t, InitOptions{Algorithm: verity.SHA512})
	big := data(3000, 1)
	img := mustImage(t, r, "img", map[string][]byte{"big": big})
	mustObject(t, r, data(3000, 2))
	if _, err := r.GC(GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := objectSet(t, r), hexes(img, verity.DigestBytes(big, verity.SHA512)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("objects %v, want %v", got, want)
	}
	rep, err := r.Fsck(FsckOptions{})
	if err != nil || !rep.OK() || rep.ImagesChecked != 1 {
		t.Errorf("fsck: %v, %+v", err, rep)
	}
}

// TestGCRefusesUnreadableRoot checks that GC removes nothing when it cannot
// tell what a root reaches.
func TestGCRefusesUnreadableRoot(t *testing.T) {
	f := newGCFixture(t)
	before := objectSet(t, f.r)
	p := filepath.Join(f.r.Path(), objectPath(f.cfg))
	os.Remove(p)
	if err := os.WriteFile(p, []byte("not a splitstream"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.r.GC(GCOptions{}); err == nil {
		t.Fatal("GC with an unreadable root succeeded")
	}
	if got := objectSet(t, f.r); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Error("failed GC removed objects")
	}
}

func TestGCRemovesTempLeftovers(t *testing.T) {
	r := newRepo(t, InitOptions{})
	mustStream(t, r, "s", "keep", streamSpec{})
	for _, name := range []string{"objects/.tmpAbc123", "streams/.tmp-xyz", "streams/refs/.tmp-1"} {
		p := filepath.Join(r.Path(), name)
		if err := os.Symlink("whatever", p); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := r.Fsck(FsckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.TempFiles) != 3 {
		t.Errorf("fsck: errors %v, temp files %v", rep.Errors, rep.TempFiles)
	}
	res, err := r.GC(GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.TempRemoved != 3 {
		t.Errorf("GC result %+v", *res)
	}
	if rep, _ := r.Fsck(FsckOptions{}); len(rep.TempFiles) != 0 {
		t.Errorf("temp files after GC: %v", rep.TempFiles)
	}
}

// TestGCWaitsForSharedHolder checks the locking: GC waits until every other
// Repository on the directory is closed; a dry run does not.
func TestGCWaitsForSharedHolder(t *testing.T) {
	r := newRepo(t, InitOptions{})
	other, err := Open(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.GC(GCOptions{DryRun: true}); err != nil {
		t.Fatalf("dry run with another holder: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.GC(GCOptions{})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("GC finished (%v) while another Repository held the lock", err)
	case <-time.After(300 * time.Millisecond):
	}
	// Calls on the collecting Repository wait too.
	blocked := make(chan struct{})
	go func() {
		r.HasObject(make([]byte, 32))
		close(blocked)
	}()
	select {
	case <-blocked:
		t.Error("a call ran during GC")
	case <-time.After(100 * time.Millisecond):
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("GC still waiting after the other Repository was closed")
	}
	<-blocked
	// The lock is shared again: others can open.
	again, err := Open(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	again.Close()
}

// TestOpenWaitsForGC checks that Open waits while a GC holds the lock.
func TestOpenWaitsForGC(t *testing.T) {
	r := newRepo(t, InitOptions{})
	end, err := r.beginExclusive()
	if err != nil {
		t.Fatal(err)
	}
	opened := make(chan *Repository, 1)
	go func() {
		o, err := Open(r.Path())
		if err != nil {
			t.Error(err)
		}
		opened <- o
	}()
	select {
	case <-opened:
		t.Fatal("Open did not wait for the exclusive lock")
	case <-time.After(200 * time.Millisecond):
	}
	end()
	select {
	case o := <-opened:
		if o != nil {
			o.Close()
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Open still waiting")
	}
}
