package scan

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/erofs"
	"github.com/gocfs/gocfs/erofs/dumpfile"
	"github.com/gocfs/gocfs/store/objects"
	"github.com/gocfs/gocfs/tests/golden"
	"github.com/gocfs/gocfs/verity"
)

// mktreeCase is one row of golden/mktree/expected.tsv: what the C
// mkcomposefs made of the tree generated from a seed, in one mode.
type mktreeCase struct {
	seed, mode, args string
	sha256, verity   string
	size             int64 // 0 if the row gives the object count instead
	objects          int
}

func readMktreeCases(t *testing.T, dir string) []mktreeCase {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "expected.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []mktreeCase
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		fs := strings.Split(line, "\t")
		if len(fs) != 6 {
			t.Fatalf("expected.tsv:%d: %d fields", i+1, len(fs))
		}
		if i == 0 {
			continue // header
		}
		c := mktreeCase{seed: fs[0], mode: fs[1], args: fs[2], sha256: fs[3], verity: fs[4]}
		k, v, _ := strings.Cut(fs[5], "=")
		n, err := strconv.ParseInt(v, 10, 64)
		switch {
		case err != nil:
			t.Fatalf("expected.tsv:%d: bad extra field %q", i+1, fs[5])
		case k == "bytes":
			c.size = n
		case k == "objects":
			c.objects = int(n)
		default:
			t.Fatalf("expected.tsv:%d: bad extra field %q", i+1, fs[5])
		}
		cases = append(cases, c)
	}
	if len(cases) == 0 {
		t.Fatal("expected.tsv lists nothing")
	}
	return cases
}

// TestGoldenMktree scans the trees golden/mktree/mktree.py generates and
// checks that the images are those the C mkcomposefs made of them.
func TestGoldenMktree(t *testing.T) {
	dir := filepath.Join(golden.Dir(t), "mktree")
	cases := readMktreeCases(t, dir)
	if !isRoot() {
		t.Skip("mktree.py needs root (mknod, chown, trusted.* xattrs)")
	}
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3, which runs mktree.py, is not installed")
	}
	base := t.TempDir()
	trees := map[string]string{}
	for _, c := range cases {
		t.Run("seed"+c.seed+"/"+c.mode, func(t *testing.T) {
			src, ok := trees[c.seed]
			if !ok {
				// The temporary directory must be on a filesystem
				// with xattrs, ACLs and device nodes; mktree.py
				// fails if it is not.
				src = filepath.Join(base, "seed"+c.seed)
				out, err := exec.Command(python, filepath.Join(dir, "mktree.py"), src, c.seed).CombinedOutput()
				if err != nil {
					t.Fatalf("mktree.py %s: %v\n%s", c.seed, err, out)
				}
				trees[c.seed] = src
			}
			var opts Options
			var store *objects.Dir
			switch c.args {
			case "":
			case "--use-epoch":
				opts.UseEpoch = true
			case "--digest-store=STORE":
				store, err = objects.OpenDir(filepath.Join(t.TempDir(), "store"), true)
				if err != nil {
					t.Fatal(err)
				}
				defer store.Close()
				opts.Store = store
			default:
				t.Fatalf("unknown mode %q", c.args)
			}
			image := buildImage(t, src, opts)
			checkImageDigests(t, image, c)
			if store != nil {
				if n := countFiles(t, store.Path()); n != c.objects {
					t.Errorf("%d objects in the store, want %d", n, c.objects)
				}
			}
			if c.args == "" {
				checkDump(t, image, filepath.Join(dir, "seed"+c.seed+".expected-dump.gz"))
				// The image does not depend on the number of workers.
				for _, threads := range []int{1, 7} {
					opts.Threads = threads
					if other := buildImage(t, src, opts); !bytes.Equal(other, image) {
						t.Errorf("Threads=%d gives another image", threads)
					}
				}
			}
		})
	}
}

func buildImage(t *testing.T, src string, opts Options) []byte {
	t.Helper()
	root, err := Dir(src, opts)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := erofs.Write(&buf, root, erofs.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func checkImageDigests(t *testing.T, image []byte, c mktreeCase) {
	t.Helper()
	sum := sha256.Sum256(image)
	if got := hex.EncodeToString(sum[:]); got != c.sha256 {
		t.Errorf("image sha256 %s, want %s", got, c.sha256)
	}
	if got := hex.EncodeToString(verity.DigestBytes(image, verity.SHA256)); got != c.verity {
		t.Errorf("image fs-verity digest %s, want %s", got, c.verity)
	}
	if c.size != 0 && int64(len(image)) != c.size {
		t.Errorf("image of %d bytes, want %d", len(image), c.size)
	}
}

// checkDump compares the dump of the image with the C composefs-info dump of
// the C image: a difference there shows which entry is wrong.
func checkDump(t *testing.T, image []byte, expectedPath string) {
	t.Helper()
	f, err := os.Open(expectedPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	want, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	root, _, err := erofs.ReadTree(bytes.NewReader(image), int64(len(image)))
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := dumpfile.Write(&got, root, dumpfile.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(got.Bytes(), want) {
		return
	}
	gl, wl := strings.Split(got.String(), "\n"), strings.Split(string(want), "\n")
	shown := 0
	for i := 0; i < max(len(gl), len(wl)) && shown < 10; i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Errorf("dump line %d:\n got  %q\n want %q", i+1, g, w)
			shown++
		}
	}
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
