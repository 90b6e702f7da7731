package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/gocfs/gocfs/verity"
)

// metaName is the repository metadata file, as composefs-rs names it.
const metaName = "meta.json"

// formatVersion is the repository format version this package implements.
const formatVersion = 1

// lgBlockSize is log2 of the fs-verity block size, verity.BlockSize.
const lgBlockSize = 12

// Feature flags this package knows, by compatibility class. Unknown
// incompatible features make Open refuse a repository, unknown
// read-only-compatible ones make it read-only, compatible ones are ignored,
// as in composefs-rs.
const featureV1Erofs = "v1_erofs" // read-only-compatible

var (
	knownROCompat = []string{featureV1Erofs}
	knownIncompat = []string{}
)

// metadata is meta.json. Field names and order are composefs-rs's, so that
// the file it writes is byte for byte the one cfsctl writes for the same
// settings (pretty-printed, two-space indent, trailing newline).
type metadata struct {
	Version   uint32       `json:"version"`
	Algorithm string       `json:"algorithm"`
	Features  featureFlags `json:"features"`
	// ErofsFormats is absent in repositories made before composefs-rs
	// 0.8; they hold V2 images unless the v1_erofs flag says V1.
	ErofsFormats *erofsFormats `json:"erofs_formats,omitempty"`
}

type featureFlags struct {
	Compatible         []string `json:"compatible"`
	ReadOnlyCompatible []string `json:"read-only-compatible"`
	Incompatible       []string `json:"incompatible"`
}

// erofsFormats is composefs-rs's FormatConfig: the EROFS format version of
// the images a repository makes, and others it makes besides.
type erofsFormats struct {
	Default int   `json:"default"`
	Extra   []int `json:"extra,omitempty"`
}

// algorithmName returns the meta.json name of an algorithm, in composefs-rs's
// "fsverity-<hash>-<lg_blocksize>" form.
func algorithmName(alg verity.Algorithm) string {
	return fmt.Sprintf("fsverity-%s-%d", alg, lgBlockSize)
}

// parseAlgorithm parses a meta.json algorithm name.
func parseAlgorithm(s string) (verity.Algorithm, error) {
	rest, ok := strings.CutPrefix(s, "fsverity-")
	if !ok {
		return 0, fmt.Errorf("algorithm %q is not of the form fsverity-<hash>-<lg_blocksize>", s)
	}
	hash, bits, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, fmt.Errorf("algorithm %q is not of the form fsverity-<hash>-<lg_blocksize>", s)
	}
	alg, err := verity.ParseAlgorithm(hash)
	if err != nil {
		return 0, fmt.Errorf("algorithm %q: %w", s, err)
	}
	if bits != fmt.Sprint(lgBlockSize) {
		return 0, fmt.Errorf("algorithm %q: only %d-byte fs-verity blocks are supported", s, verity.BlockSize)
	}
	return alg, nil
}

// newMetadata returns the metadata composefs-rs writes for a new repository
// with these settings.
func newMetadata(alg verity.Algorithm, erofsVersion int) *metadata {
	m := &metadata{
		Version:   formatVersion,
		Algorithm: algorithmName(alg),
		Features: featureFlags{
			Compatible:         []string{},
			ReadOnlyCompatible: []string{},
			Incompatible:       []string{},
		},
		ErofsFormats: &erofsFormats{Default: erofsVersion},
	}
	if erofsVersion == 1 {
		m.Features.ReadOnlyCompatible = append(m.Features.ReadOnlyCompatible, featureV1Erofs)
	}
	return m
}

// marshal returns the file content.
func (m *metadata) marshal() []byte {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("store: marshal %s: %v", metaName, err)) // plain structs always marshal
	}
	return append(b, '\n')
}

// parseMetadata parses meta.json. Like composefs-rs, it ignores unknown
// fields and takes missing feature lists as empty.
func parseMetadata(b []byte) (*metadata, error) {
	var m metadata
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", metaName, err)
	}
	if d.More() {
		return nil, fmt.Errorf("%s: data after the JSON object", metaName)
	}
	return &m, nil
}

// check validates the metadata for opening and reports whether the
// repository must be opened read-only (unknown read-only-compatible
// features), and why.
func (m *metadata) check() (alg verity.Algorithm, readOnly string, err error) {
	if m.Version > formatVersion {
		return 0, "", fmt.Errorf("%s: repository format version %d, this tool supports up to %d", metaName, m.Version, formatVersion)
	}
	if m.Algorithm == "" {
		return 0, "", fmt.Errorf("%s: no algorithm", metaName)
	}
	if alg, err = parseAlgorithm(m.Algorithm); err != nil {
		return 0, "", fmt.Errorf("%s: %w", metaName, err)
	}
	if unknown := unknownFeatures(m.Features.Incompatible, knownIncompat); len(unknown) > 0 {
		return 0, "", fmt.Errorf("%s: repository requires unknown incompatible features %q", metaName, unknown)
	}
	if unknown := unknownFeatures(m.Features.ReadOnlyCompatible, knownROCompat); len(unknown) > 0 {
		readOnly = fmt.Sprintf("unknown read-only-compatible features %q", unknown)
	}
	if f := m.ErofsFormats; f != nil {
		for _, v := range append([]int{f.Default}, f.Extra...) {
			if v < 0 || v > 2 {
				return 0, "", fmt.Errorf("%s: unknown EROFS format version %d", metaName, v)
			}
		}
	}
	return alg, readOnly, nil
}

func unknownFeatures(have, known []string) []string {
	var unknown []string
	for _, f := range have {
		if !slices.Contains(known, f) {
			unknown = append(unknown, f)
		}
	}
	return unknown
}

// erofsVersion returns the EROFS format version of the repository's images:
// erofs_formats.default, or for repositories older than that field, 1 with
// the v1_erofs flag and 2 without, as composefs-rs decides.
func (m *metadata) erofsVersion() int {
	if m.ErofsFormats != nil {
		return m.ErofsFormats.Default
	}
	if slices.Contains(m.Features.ReadOnlyCompatible, featureV1Erofs) {
		return 1
	}
	return 2
}

// equal reports whether two metadata files say the same.
func (m *metadata) equal(o *metadata) bool {
	sorted := func(s []string) []string { return slices.Sorted(slices.Values(s)) }
	extra := func(m *metadata) []int {
		if m.ErofsFormats == nil {
			return nil
		}
		return slices.Sorted(slices.Values(m.ErofsFormats.Extra))
	}
	return m.Version == o.Version && m.Algorithm == o.Algorithm &&
		slices.Equal(sorted(m.Features.Compatible), sorted(o.Features.Compatible)) &&
		slices.Equal(sorted(m.Features.ReadOnlyCompatible), sorted(o.Features.ReadOnlyCompatible)) &&
		slices.Equal(sorted(m.Features.Incompatible), sorted(o.Features.Incompatible)) &&
		m.erofsVersion() == o.erofsVersion() && slices.Equal(extra(m), extra(o))
}
