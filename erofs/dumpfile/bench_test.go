package dumpfile

import (
	"bytes"
	"io"
	"os"
	"testing"

	"github.com/gocfs/gocfs/tests/golden"
)

// benchDump returns a large dump: the one named by GOCFS_BENCH_DUMP, or
// else the largest golden expected dump.
func benchDump(b *testing.B) []byte {
	if p := os.Getenv("GOCFS_BENCH_DUMP"); p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		return data
	}
	var best []byte
	for _, v := range golden.Vectors(b) {
		if v.Fail {
			continue
		}
		data, err := v.ExpectedDump()
		if err != nil {
			b.Fatal(err)
		}
		if len(data) > len(best) {
			best = data
		}
	}
	return best
}

func BenchmarkParse(b *testing.B) {
	data := benchDump(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(bytes.NewReader(data), ParseOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWrite(b *testing.B) {
	data := benchDump(b)
	root, err := Parse(bytes.NewReader(data), ParseOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Write(io.Discard, root, WriteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
