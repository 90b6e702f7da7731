package dumpfile

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/gocfs/gocfs/tests/golden"
)

// parserAccepts lists the should-fail vectors that the C parser accepts:
// the C image writer rejects them, so the image writer must.
var parserAccepts = map[string]string{
	"should-fail-too-big.dump": "a 9.5 PB external file needs more chunks than one block holds",
}

func TestGoldenExpectedDumps(t *testing.T) {
	for _, v := range golden.Vectors(t) {
		if v.Fail {
			continue
		}
		t.Run(v.Name(), func(t *testing.T) {
			want, err := v.ExpectedDump()
			if err != nil {
				t.Fatal(err)
			}
			root, err := Parse(bytes.NewReader(want), ParseOptions{Strict: true})
			if err != nil {
				t.Fatalf("parsing expected dump: %v", err)
			}
			var got bytes.Buffer
			if err := Write(&got, root, WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("Write differs from the expected dump:\n%s", firstDiff(got.Bytes(), want))
			}
		})
	}
}

func TestGoldenInputs(t *testing.T) {
	for _, v := range golden.Vectors(t) {
		t.Run(v.Name(), func(t *testing.T) {
			in, err := v.Input()
			if err != nil {
				t.Fatal(err)
			}
			root, err := Parse(bytes.NewReader(in), ParseOptions{Strict: v.Strict})
			if err == nil {
				checkFixedPoint(t, root)
			}
			switch {
			case !v.Fail && err != nil:
				t.Errorf("Parse: %v", err)
			case v.Fail && err == nil && parserAccepts[v.Asset] == "":
				t.Errorf("Parse accepted an input the C parser rejects")
			case v.Fail && err != nil && parserAccepts[v.Asset] != "":
				t.Errorf("Parse rejected an input the C parser accepts: %v", err)
			case err != nil:
				t.Logf("rejected: %v", err)
			}
		})
	}
}

// The real root filesystems of the C fuzzing corpus list symlinks with SIZE
// 0: only lenient parsing accepts them.
func TestGoldenCorpusStrict(t *testing.T) {
	for _, v := range golden.Vectors(t) {
		if v.Fail || v.Strict || !strings.HasPrefix(v.Asset, "fuzzing-corpus/") || v.Asset == "fuzzing-corpus/dump-example" {
			continue
		}
		t.Run(v.Name(), func(t *testing.T) {
			in, err := v.Input()
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(bytes.NewReader(in), ParseOptions{Strict: true})
			if err == nil || !strings.Contains(err.Error(), "symlink SIZE") {
				t.Errorf("strict Parse: %v, want a symlink SIZE error", err)
			}
		})
	}
}

// firstDiff describes the first differing line of two dumps.
func firstDiff(got, want []byte) string {
	g := strings.Split(string(got), "\n")
	w := strings.Split(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n got: %s\nwant: %s", i+1, trim(gl), trim(wl))
		}
	}
	return "(no difference)"
}

func trim(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}
