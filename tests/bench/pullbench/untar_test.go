package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/erofs/tree"
	"github.com/gocfs/gocfs/tests/ocibuild"
)

// TestUntarLayers unpacks a small benchmark image with tar and compares
// the directory with the tree ocibuild computes from the layers.
func TestUntarLayers(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("SKIP: tar not installed")
	}
	b := ocibuild.MustBuild(must(distroImage(1000, 16<<20)))
	dir := t.TempDir()
	var blobs []string
	for i, l := range b.Layers {
		p := filepath.Join(dir, fmt.Sprintf("layer%d", i))
		if err := os.WriteFile(p, l.Blob, 0o644); err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, p)
	}
	root := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := untarLayers(context.Background(), root, blobs); err != nil {
		t.Fatal(err)
	}
	want, err := b.ExpectedTree(ocibuild.TreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := listDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if exp := listTree(want); !reflect.DeepEqual(got, exp) {
		t.Errorf("unpacked tree differs from the layers':\n%s", diffLists(got, exp))
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// listDir and listTree describe each entry as "PATH TYPE SIZE|TARGET".
func listDir(root string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			out = append(out, rel+" dir")
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out = append(out, rel+" symlink "+target)
		default:
			out = append(out, fmt.Sprintf("%s file %d", rel, info.Size()))
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

func listTree(root *tree.Inode) []string {
	var out []string
	tree.Walk(root, func(p string, d *tree.Dirent) error {
		switch {
		case d.Inode.IsDir():
			out = append(out, p+" dir")
		case d.Inode.IsSymlink():
			out = append(out, p+" symlink "+d.Inode.Payload)
		default:
			out = append(out, fmt.Sprintf("%s file %d", p, d.Inode.Size))
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func diffLists(got, want []string) string {
	in := func(l []string) map[string]bool {
		m := map[string]bool{}
		for _, s := range l {
			m[s] = true
		}
		return m
	}
	g, w := in(got), in(want)
	var b strings.Builder
	for _, s := range got {
		if !w[s] {
			fmt.Fprintf(&b, "+ %s\n", s)
		}
	}
	for _, s := range want {
		if !g[s] {
			fmt.Fprintf(&b, "- %s\n", s)
		}
	}
	return b.String()
}

func TestApplyWhiteouts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		lower   []string // directories end with "/"
		written []string // the layer's members, extracted over lower
		want    []string
		err     string
	}{
		{
			name:    "whiteout file and directory",
			lower:   []string{"a/", "a/f", "a/g", "d/", "d/x"},
			written: []string{"a/", "a/.wh.f", ".wh.d", ".wh.missing"},
			want:    []string{"a/", "a/g"},
		},
		{
			name:    "whiteout of a name the layer writes",
			lower:   []string{"a/"},
			written: []string{"a/", "a/f", "a/.wh.f"},
			want:    []string{"a/", "a/f"},
		},
		{
			name:    "opaque directory",
			lower:   []string{"o/", "o/old", "o/keep/", "o/keep/old", "o/keep/new", "o/new", "other"},
			written: []string{"o/", "o/.wh..wh..opq", "o/new", "o/keep/", "o/keep/new"},
			want:    []string{"o/", "o/keep/", "o/keep/new", "o/new", "other"},
		},
		{
			name:    "opaque root",
			lower:   []string{"a", "b/", "b/c"},
			written: []string{"./", "./.wh..wh..opq", "./b/"},
			want:    []string{"b/"},
		},
		{
			name:    "name above the directory",
			lower:   []string{"a"},
			written: []string{"../a"},
			want:    []string{"a"},
			err:     "not below",
		},
		{
			name:    "absolute name",
			lower:   []string{"a"},
			written: []string{"/a"},
			want:    []string{"a"},
			err:     "not below",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, p := range append(tc.lower, tc.written...) {
				makeEntry(t, dir, p)
			}
			err := applyWhiteouts(dir, strings.Join(tc.written, "\n")+"\n")
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("applyWhiteouts: %v, want error %q", err, tc.err)
			}
			got, err := listDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, p := range tc.want {
				if d, ok := strings.CutSuffix(p, "/"); ok {
					want = append(want, d+" dir")
				} else {
					want = append(want, p+" file 0")
				}
			}
			sort.Strings(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

// makeEntry creates the file or directory (ending in "/") p below dir,
// ignoring names that are not below it.
func makeEntry(t *testing.T, dir, p string) {
	t.Helper()
	if _, err := memberPath(p); err != nil {
		return
	}
	full := filepath.Join(dir, p)
	if strings.HasSuffix(p, "/") {
		if err := os.MkdirAll(full, 0o755); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestApplyWhiteoutsStaysInside checks that a whiteout reached through a
// symlink pointing out of the directory deletes nothing outside.
func TestApplyWhiteoutsStaysInside(t *testing.T) {
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "esc")); err != nil {
		t.Fatal(err)
	}
	if err := applyWhiteouts(dir, "esc/.wh.victim\n"); err == nil {
		t.Error("a whiteout through an escaping symlink was applied")
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("file outside the directory: %v", err)
	}
}
