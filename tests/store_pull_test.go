package tests

import (
	"bytes"
	"encoding/hex"
	"path/filepath"
	"testing"

	"github.com/gocfs/gocfs/store"
	"github.com/gocfs/gocfs/store/oci"
	"github.com/gocfs/gocfs/tests/ocibuild"
	"github.com/gocfs/gocfs/tests/registry"
	"github.com/gocfs/gocfs/verity"
)

// TestStorePullBase pulls the 5-layer base image over docker:// into fresh
// repositories, sha256 and sha512, and compares what each holds with what
// the layers say: the image, its objects, the layer streams and the tag. A
// second pull, and one by digest, change nothing.
func TestStorePullBase(t *testing.T) {
	reg := registry.Start(t)
	b := pushFixtures(t, reg, map[string]*ocibuild.Image{"base": ocibuild.BaseImage()})["base"]
	for _, alg := range []verity.Algorithm{verity.SHA256, verity.SHA512} {
		t.Run(alg.String(), func(t *testing.T) {
			opts := repoOptions
			opts.Algorithm = alg
			repo := initRepoWith(t, t.TempDir(), opts)
			pullBase(t, reg, repo, b)
		})
	}
}

func pullBase(t *testing.T, reg *registry.Registry, repo *store.Repository, b *ocibuild.Built) {
	t.Helper()
	res := pull(t, repo, reg, fixtureRef(reg, "base"), "base", false)
	if res.ManifestDigest != b.ManifestDigest || res.ConfigDigest != b.ConfigDigest {
		t.Fatalf("pulled manifest %s config %s, pushed %s %s", res.ManifestDigest, res.ConfigDigest, b.ManifestDigest, b.ConfigDigest)
	}
	if res.BootImage != nil {
		t.Errorf("a boot image was made without Bootable")
	}
	checkImage(t, repo, res.Image, b, false)
	checkLayers(t, repo, b)
	refs, err := repo.Refs(store.Streams)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := refs["oci/base"], oci.ManifestStreamID(b.ManifestDigest); got != want {
		t.Errorf("tag ref oci/base -> %q, want %q (refs %v)", got, want, refs)
	}
	if got := streamContent(t, repo, oci.ManifestStreamID(b.ManifestDigest)); !bytes.Equal(got, b.Manifest) {
		t.Errorf("manifest stream holds %q", got)
	}
	if got := streamContent(t, repo, oci.ConfigStreamID(b.ConfigDigest)); !bytes.Equal(got, b.Config) {
		t.Errorf("config stream holds %q", got)
	}
	fsckClean(t, repo)

	before := readState(t, repo)
	again := pull(t, repo, reg, fixtureRef(reg, "base"), "base", false)
	byDigest := pull(t, repo, reg, reg.DigestRef("gocfs/base", b.ManifestDigest), "base-by-digest", false)
	for _, r := range []*oci.PullResult{again, byDigest} {
		if !bytes.Equal(r.Image, res.Image) || r.ManifestDigest != res.ManifestDigest {
			t.Errorf("pulling again gives image %x manifest %s, first %x %s", r.Image, r.ManifestDigest, res.Image, res.ManifestDigest)
		}
	}
	after := readState(t, repo)
	if extra := setDiff(after.objects, before.objects); len(extra) > 0 {
		t.Errorf("pulling the same image again added %d objects: %v", len(extra), extra)
	}
	fsckClean(t, repo)
}

// TestStoreImageMatchesMkcomposefs checks that a pulled image is byte for
// byte what mkcomposefs makes from composefs-info's dump of it: the
// repository's EROFS is the C tools' EROFS.
func TestStoreImageMatchesMkcomposefs(t *testing.T) {
	reg := registry.Start(t)
	built := pushFixtures(t, reg, map[string]*ocibuild.Image{"base": ocibuild.BaseImage(), "boot": ocibuild.BootableImage(1)})
	repo := initRepo(t, t.TempDir())
	var images [][]byte
	res := pull(t, repo, reg, fixtureRef(reg, "base"), "base", false)
	images = append(images, res.Image)
	res = pull(t, repo, reg, fixtureRef(reg, "boot"), "boot", true)
	images = append(images, res.Image, res.BootImage)
	checkImage(t, repo, res.BootImage, built["boot"], true)

	for _, d := range images {
		img := readImage(t, repo, d)
		path := filepath.Join(repo.Path(), "images", hex.EncodeToString(d))
		dump := runTool(t, nil, nil, "composefs-info", "dump", path)
		if dump.code != 0 {
			t.Fatalf("composefs-info dump %s: exit %d: %s", path, dump.code, dump.stderr)
		}
		args := append(mkcomposefsArgs(t, repo), "--from-file", "-", "-")
		re := runTool(t, dump.stdout, []string{"CFS_PARSE_STRICT=1"}, "mkcomposefs", args...)
		if re.code != 0 {
			t.Fatalf("mkcomposefs from the dump of %x: exit %d: %s", d, re.code, re.stderr)
		}
		if !bytes.Equal(re.stdout, img) {
			t.Fatalf("mkcomposefs makes another image from the dump of %x:\n%s", d, imageDiff(t, re.stdout, img))
		}
	}
}

// TestStoreGCKeepsWhatTagsReach pulls two versions of the bootable image,
// which share 17 of their 20 layers, into one repository, untags one and
// collects garbage: exactly what the other tag reaches must stay (objects,
// streams, images), and the other image must still read completely.
func TestStoreGCKeepsWhatTagsReach(t *testing.T) {
	reg := registry.Start(t)
	built := pushFixtures(t, reg, map[string]*ocibuild.Image{"boot1": ocibuild.BootableImage(1), "boot2": ocibuild.BootableImage(2)})
	repo := initRepo(t, t.TempDir())
	res1 := pull(t, repo, reg, fixtureRef(reg, "boot1"), "v1", true)
	res2 := pull(t, repo, reg, fixtureRef(reg, "boot2"), "v2", true)
	for _, c := range []struct {
		res *oci.PullResult
		b   *ocibuild.Built
	}{{res1, built["boot1"]}, {res2, built["boot2"]}} {
		checkImage(t, repo, c.res.Image, c.b, false)
		checkImage(t, repo, c.res.BootImage, c.b, true)
	}
	fsckClean(t, repo)

	if err := oci.Untag(repo, "v1"); err != nil {
		t.Fatal(err)
	}
	live := reachable(t, repo)
	before := readState(t, repo)

	// What must stay, from the image specifications alone.
	alg := repo.Algorithm()
	want := built["boot2"].LayerObjects(alg)
	for _, d := range [][]byte{res2.Image, res2.BootImage} {
		want[hex.EncodeToString(d)] = true
	}
	if missing := setDiff(want, live); len(missing) > 0 {
		t.Fatalf("the refs do not reach %d objects of v2: %v", len(missing), missing)
	}
	v1Only := setDiff(built["boot1"].LayerObjects(alg), want)
	for _, d := range [][]byte{res1.Image, res1.BootImage} {
		v1Only = append(v1Only, hex.EncodeToString(d))
	}
	if len(v1Only) < 4 {
		t.Fatalf("the versions share too much for the test to mean anything: %v", v1Only)
	}

	dry, err := repo.GC(store.GCOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if st := readState(t, repo); len(st.objects) != len(before.objects) || len(st.streams) != len(before.streams) {
		t.Fatal("a dry run removed something")
	}
	gc, err := repo.GC(store.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if gc.ObjectsRemoved != dry.ObjectsRemoved || gc.ObjectsRemoved == 0 {
		t.Errorf("GC removed %d objects, the dry run announced %d", gc.ObjectsRemoved, dry.ObjectsRemoved)
	}
	after := readState(t, repo)
	if lost := setDiff(live, after.objects); len(lost) > 0 {
		t.Errorf("GC removed %d reachable objects: %v", len(lost), lost)
	}
	if kept := setDiff(after.objects, live); len(kept) > 0 {
		t.Errorf("GC kept %d unreachable objects: %v", len(kept), kept)
	}
	if int(gc.ObjectsRemoved) != len(before.objects)-len(after.objects) {
		t.Errorf("GC reports %d objects removed, %d went", gc.ObjectsRemoved, len(before.objects)-len(after.objects))
	}
	for _, d := range v1Only {
		if after.objects[d] {
			t.Errorf("object %s of v1 only survived", d)
		}
	}
	for id, d := range after.streams {
		if !live[d] {
			t.Errorf("stream %s -> %s survived without being reachable", id, d)
		}
	}
	for id, d := range before.streams {
		if _, ok := after.streams[id]; live[d] && !ok {
			t.Errorf("reachable stream %s was removed", id)
		}
	}
	for d := range after.images {
		if !live[d] {
			t.Errorf("image %s survived without being reachable", d)
		}
	}
	for d := range before.images {
		if live[d] && !after.images[d] {
			t.Errorf("reachable image %s was removed", d)
		}
	}
	t.Logf("GC removed %d of %d objects, %d streams and %d images", gc.ObjectsRemoved, len(before.objects), gc.StreamsPruned, gc.ImagesPruned)
	for _, l := range built["boot1"].Layers[17:] {
		if _, ok := after.streams[oci.LayerStreamID(l.DiffID)]; ok {
			t.Errorf("layer stream of v1 only %s survived", l.DiffID)
		}
	}
	if _, ok := after.streams[oci.ManifestStreamID(built["boot1"].ManifestDigest)]; ok {
		t.Error("the manifest stream of v1 survived")
	}

	// v2 is whole.
	checkImage(t, repo, res2.Image, built["boot2"], false)
	checkImage(t, repo, res2.BootImage, built["boot2"], true)
	checkLayers(t, repo, built["boot2"])
	fsckClean(t, repo)

	again, err := repo.GC(store.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again.ObjectsRemoved != 0 || again.StreamsPruned != 0 || again.ImagesPruned != 0 {
		t.Errorf("a second GC still removed %+v", again)
	}
}
