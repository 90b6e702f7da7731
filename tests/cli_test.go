package tests

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gocfs/gocfs/tests/golden"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// tool returns the path of one of the project's commands, built once per
// test run into a temporary directory.
func tool(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "gocfs-bin")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-tags", "containers_image_openpgp", "-o", binDir+"/", "../cmd/...")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = &buildError{err: err, out: string(out)}
		}
	})
	if buildErr != nil {
		t.Fatalf("building commands: %v", buildErr)
	}
	return filepath.Join(binDir, name)
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

type result struct {
	stdout, stderr []byte
	code           int
}

func runTool(t *testing.T, stdin []byte, env []string, name string, args ...string) result {
	t.Helper()
	cmd := exec.Command(tool(t, name), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s: %v", name, err)
		}
		code = ee.ExitCode()
	}
	return result{out.Bytes(), errb.Bytes(), code}
}

func versionArgs(v golden.Vector) []string {
	if v.MinVersion < 0 {
		return nil
	}
	return []string{"--min-version=" + strconv.Itoa(v.MinVersion), "--max-version=" + strconv.Itoa(v.MaxVersion)}
}

// TestGoldenCLI drives the drop-in tools over every golden vector: the image
// sha256, the dump, the dump -> mkcomposefs round trip, and exit status 1
// with a message for inputs that must be refused.
func TestGoldenCLI(t *testing.T) {
	for _, v := range golden.Vectors(t) {
		t.Run(v.Name(), func(t *testing.T) {
			t.Parallel()
			in, err := v.Input()
			if err != nil {
				t.Fatal(err)
			}
			var env []string
			if v.Strict {
				env = append(env, "CFS_PARSE_STRICT=1")
			}
			args := append(versionArgs(v), "--from-file", "-", "-")
			r := runTool(t, in, env, "mkcomposefs", args...)
			if v.Fail {
				if r.code != 1 {
					t.Fatalf("exit status %d, want 1 (stderr %q)", r.code, r.stderr)
				}
				if len(bytes.TrimSpace(r.stderr)) == 0 {
					t.Fatal("refused without a message")
				}
				t.Logf("refused: %s", bytes.TrimSpace(r.stderr))
				return
			}
			if r.code != 0 {
				t.Fatalf("exit status %d: %s", r.code, r.stderr)
			}
			img := r.stdout
			if got := sha(img); got != v.SHA256 {
				t.Fatalf("image sha256 %s, want %s", got, v.SHA256)
			}
			digest := runTool(t, in, env, "mkcomposefs", append(versionArgs(v), "--print-digest-only", "--from-file", "-")...)
			if got := strings.TrimSpace(string(digest.stdout)); digest.code != 0 || got != v.VeritySHA {
				t.Fatalf("--print-digest-only: %q (exit %d, %s), want %s", got, digest.code, digest.stderr, v.VeritySHA)
			}

			path := filepath.Join(t.TempDir(), "img")
			if err := os.WriteFile(path, img, 0o644); err != nil {
				t.Fatal(err)
			}
			dump := runTool(t, nil, nil, "composefs-info", "dump", path)
			if dump.code != 0 {
				t.Fatalf("composefs-info dump: exit %d: %s", dump.code, dump.stderr)
			}
			want, err := v.ExpectedDump()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dump.stdout, want) {
				t.Fatalf("dump differs from the expected dump:\n%s", firstDiff(dump.stdout, want))
			}

			// The dump rebuilds the same image, except where the golden
			// README documents that C itself does not (fedora's primary
			// hardlink is not the first name in sorted order).
			re := runTool(t, dump.stdout, []string{"CFS_PARSE_STRICT=1"}, "mkcomposefs", append(versionArgs(v), "--from-file", "-", "-")...)
			if re.code != 0 {
				t.Fatalf("rebuild from dump: exit %d: %s", re.code, re.stderr)
			}
			if strings.HasSuffix(v.Asset, "fuzzing-corpus/fedora") {
				if got := sha(re.stdout); got != fedoraRebuiltSHA {
					t.Fatalf("fedora rebuilt sha256 %s, want %s", got, fedoraRebuiltSHA)
				}
			} else if !bytes.Equal(re.stdout, img) {
				t.Fatal("dump -> mkcomposefs gives a different image")
			}
		})
	}
}

const fedoraRebuiltSHA = "91850ace1ebea965e2ff0c3f316785d9aafd06028df1081a26729ceec064d1d7"

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// firstDiff shows the first differing line of two texts.
func firstDiff(got, want []byte) string {
	g := strings.Split(string(got), "\n")
	w := strings.Split(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var a, b string
		if i < len(g) {
			a = g[i]
		}
		if i < len(w) {
			b = w[i]
		}
		if a != b {
			return "line " + strconv.Itoa(i+1) + ":\n got " + a + "\nwant " + b
		}
	}
	return "(no line differs)"
}

// TestFilteredDump is the C suite's check-dump-filtered: --filter keeps the
// named top-level entries only.
func TestFilteredDump(t *testing.T) {
	var v golden.Vector
	for _, v = range golden.Vectors(t) {
		if v.Asset == "special.dump" {
			break
		}
	}
	in, err := v.Input()
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "img")
	if r := runTool(t, in, nil, "mkcomposefs", "--from-file", "-", img); r.code != 0 {
		t.Fatalf("mkcomposefs: %s", r.stderr)
	}
	r := runTool(t, nil, nil, "composefs-info", "--filter=chardev", "--filter=inline", "--filter=whiteout", "dump", img)
	if r.code != 0 {
		t.Fatalf("composefs-info: %s", r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(string(r.stdout), "\n"), "\n")
	prefixes := []string{"/ 4096 40555 ", "/chardev 0 20777 ", "/inline 15 100777 ", "/whiteout 0 20777 "}
	if len(lines) != len(prefixes) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(prefixes), r.stdout)
	}
	for i, p := range prefixes {
		if !strings.HasPrefix(lines[i], p) {
			t.Errorf("line %d = %.60q, want prefix %q", i+1, lines[i], p)
		}
	}
	if r := runTool(t, nil, nil, "composefs-info", "--filter=a/b", "dump", img); r.code != 1 {
		t.Errorf("a filter with a slash: exit %d, want 1", r.code)
	}
}
