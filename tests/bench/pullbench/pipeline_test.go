package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gocfs/gocfs/tests/ocibuild"
)

func TestImageDigest(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want string
		ok   bool
	}{
		{`{"manifestDigest":"sha256:00","image":"ab12"}`, "ab12", true},
		{"{\n  \"image\": \"cd\",\n  \"tag\": \"bench\"\n}\n", "cd", true},
		{`{"manifestDigest":"sha256:00"}`, "", false},
		{`image ab12`, "", false},
		{``, "", false},
	} {
		got, ok := imageDigest([]byte(tc.out))
		if got != tc.want || ok != tc.ok {
			t.Errorf("imageDigest(%q) = %q, %v; want %q, %v", tc.out, got, ok, tc.want, tc.ok)
		}
	}
}

func TestLayoutLayers(t *testing.T) {
	b := ocibuild.MustBuild(must(distroImage(200, 2<<20)))
	dir := t.TempDir()
	if err := b.WriteLayout(dir, imageTag); err != nil {
		t.Fatal(err)
	}
	got, err := layoutLayers(dir, imageTag)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, l := range b.Layers {
		want = append(want, filepath.Join(dir, "blobs", "sha256", l.Digest.Encoded()))
	}
	if !slices.Equal(got, want) {
		t.Errorf("layers %q, want %q", got, want)
	}
	if _, err := layoutLayers(dir, "other"); err == nil || !strings.Contains(err.Error(), `no image tagged "other"`) {
		t.Errorf("unknown tag: %v", err)
	}

	// A digest that is not one must not become a path.
	index := filepath.Join(dir, "index.json")
	data, err := os.ReadFile(index)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data), b.ManifestDigest.String(), "sha256:../../../etc/passwd", 1)
	if err := os.WriteFile(index, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := layoutLayers(dir, imageTag); err == nil || !strings.Contains(err.Error(), "OCI layout") {
		t.Errorf("bad digest: %v", err)
	}
}

func TestFigures(t *testing.T) {
	a := figure{wall: 3 * time.Second, cpu: 2 * time.Second, rss: 100}
	b := figure{wall: 2 * time.Second, cpu: 4 * time.Second, rss: 50}
	if got, want := a.add(b), (figure{wall: 5 * time.Second, cpu: 6 * time.Second, rss: 100}); got != want {
		t.Errorf("add = %+v, want %+v", got, want)
	}
	if got, want := best([]figure{a, b}), (figure{wall: 2 * time.Second, cpu: 2 * time.Second, rss: 100}); got != want {
		t.Errorf("best = %+v, want %+v", got, want)
	}
}
