package main

import (
	"math/rand/v2"
	"path"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/tests/ocibuild"
)

func TestDistroImageShape(t *testing.T) {
	const files, total = 10000, 300 << 20
	img, err := distroImage(files, total)
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != layerCount {
		t.Fatalf("%d layers, want %d", len(img.Layers), layerCount)
	}
	var sizes []int64
	var sum, text int64
	kinds := map[ocibuild.Type]int{}
	for i, l := range img.Layers {
		if l.Compression != ocibuild.Gzip {
			t.Errorf("layer %d is not gzip", i+1)
		}
		checkOrder(t, i+1, l.Entries)
		for _, e := range l.Entries {
			kinds[e.Type]++
			if e.Type != ocibuild.File {
				continue
			}
			sizes = append(sizes, e.DataSize())
			sum += e.DataSize()
			if e.Content != nil {
				text += e.DataSize()
			}
		}
	}
	if len(sizes) != files || sum != total {
		t.Fatalf("%d files of %d bytes, want %d of %d", len(sizes), sum, files, total)
	}
	for _, k := range []ocibuild.Type{ocibuild.Dir, ocibuild.Symlink, ocibuild.Hardlink, ocibuild.Whiteout, ocibuild.Opaque} {
		if kinds[k] == 0 {
			t.Errorf("no %s entries", k)
		}
	}
	// A distribution's shape: most files small, a few large, some
	// small enough to be inline; mostly data that does not compress.
	slices.Sort(sizes)
	inline := 0
	for _, s := range sizes {
		if s <= ocibuild.InlineMax {
			inline++
		}
	}
	if median := sizes[files/2]; median < 2<<10 || median > 16<<10 {
		t.Errorf("median size %d, want 2..16 KiB", median)
	}
	if largest := sizes[files-1]; largest < 4<<20 {
		t.Errorf("largest file %d bytes, want at least 4 MiB", largest)
	}
	if inline < files/100 {
		t.Errorf("%d inline files, want at least %d", inline, files/100)
	}
	if text < total/20 || text > total*3/10 {
		t.Errorf("%d bytes of text in %d, want 5%%..30%%", text, total)
	}
}

// checkOrder checks that a layer names every directory before what it
// holds, and that an opaque marker follows its directory's entry.
func checkOrder(t *testing.T, layer int, es []ocibuild.Entry) {
	t.Helper()
	seen := map[string]bool{"/": true}
	for i, e := range es {
		if !seen[path.Dir(e.Path)] {
			t.Errorf("layer %d: %s before its directory", layer, e.Path)
		}
		switch e.Type {
		case ocibuild.Dir:
			seen[e.Path] = true
		case ocibuild.Opaque:
			if i == 0 || es[i-1].Path != e.Path || es[i-1].Type != ocibuild.Dir {
				t.Errorf("layer %d: opaque marker of %s not right after its directory", layer, e.Path)
			}
		}
	}
}

func TestDistroImageBuilds(t *testing.T) {
	img, err := distroImage(400, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ocibuild.Build(img)
	if err != nil {
		t.Fatal(err)
	}
	// ExpectedTree applies the layers strictly: whiteouts, opaque
	// directories and hardlinks must name what exists.
	root, err := b.ExpectedTree(ocibuild.TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := tree.Resolve(root, "/usr/share/doc/pkg003"); err == nil {
		t.Errorf("a whited-out directory survived: %+v", n)
	}
	again, err := distroImage(400, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(img, again) {
		t.Fatal("the same arguments give different images")
	}
	if b2 := ocibuild.MustBuild(again); b2.ManifestDigest != b.ManifestDigest {
		t.Fatalf("the same image builds to manifests %s and %s", b.ManifestDigest, b2.ManifestDigest)
	}
}

func TestDistroImageErrors(t *testing.T) {
	for _, tc := range []struct {
		files int
		total int64
		want  string
	}{
		{99, 1 << 20, "too few"},
		{1000, 1000, "too little"},
		{1000, 1 << 20, "too little"},
	} {
		if _, err := distroImage(tc.files, tc.total); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("distroImage(%d, %d) = %v, want an error saying %q", tc.files, tc.total, err, tc.want)
		}
	}
}

func TestScale(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sizes []int64
		total int64
		want  []int64
		err   bool
	}{
		{"up", []int64{10, 100 << 10, 200 << 10}, 10 + 600<<10, []int64{10, 200 << 10, 400 << 10}, false},
		{"down", []int64{10, 100 << 10, 300 << 10}, 10 + 200<<10, []int64{10, 50 << 10, 150 << 10}, false},
		{"remainder to the largest", []int64{0, 3 << 20, 3 << 20}, 7<<20 + 1, []int64{0, 3.5*(1<<20) + 1, 3.5 * (1 << 20)}, false},
		{"no large file", []int64{10, 20}, 1 << 20, nil, true},
		{"small files alone too big", []int64{60 << 10, 100 << 10}, 60 << 10, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := make([]file, len(tc.sizes))
			for i, s := range tc.sizes {
				fs[i].size = s
			}
			err := scale(fs, tc.total)
			if (err != nil) != tc.err {
				t.Fatalf("scale: %v, want error %v", err, tc.err)
			}
			if err != nil {
				return
			}
			var got []int64
			for _, f := range fs {
				got = append(got, f.size)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("sizes %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWordsText(t *testing.T) {
	w := newWords(rand.New(rand.NewPCG(1, 2)))
	for _, n := range []int{0, 1, 100, 5000} {
		a, b := w.text(7, n), w.text(7, n)
		if len(a) != n || string(a) != string(b) {
			t.Errorf("text(7, %d): %d bytes, deterministic %v", n, len(a), string(a) == string(b))
		}
	}
	if string(w.text(1, 200)) == string(w.text(2, 200)) {
		t.Error("different seeds give the same text")
	}
}
