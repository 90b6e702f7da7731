package main

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"path"
	"slices"

	"github.com/gocfs/gocfs/tests/ocibuild"
)

// category is one kind of file of the benchmark image: where it lives, in
// which layer, and how its sizes spread. Sizes are log-normal, as in real
// distributions: most files are a few KiB, a few are many MiB.
type category struct {
	layer int
	share float64 // of the regular files
	// dir is a path, or with dirs > 1 a pattern taking the directory's
	// number; the files spread over that many directories.
	dir  string
	dirs int
	name string // pattern taking the file's number, unique in the image
	// median and sigma give the size: median·e^(sigma·N(0,1)) bytes.
	median float64
	sigma  float64
	// text files hold words, which compress about 3:1; the others hold
	// random bytes, as binaries and already compressed files nearly do.
	text bool
	mode uint32
	// link, when set, is a pattern taking the file's number: the name of
	// a symlink to the file beside it, as libraries have.
	link string
	// hardlinkEvery gives every n-th file a second name, path+".alt".
	hardlinkEvery int
}

// layerCount is the number of layers: a base system, shared data and
// Python, an application, and an update that replaces, deletes and hides
// files of the layers below.
const layerCount = 4

// categories sum to a share of 0.96; the update layer holds the rest.
// docCategory and pythonCategory are the indexes of the categories the
// update deletes from and hides.
var categories = []category{
	{layer: 0, share: 0.04, dir: "/etc/conf%02d.d", dirs: 40, name: "setting%05d.conf", median: 600, sigma: 1.0, text: true, mode: 0o644},
	{layer: 0, share: 0.06, dir: "/usr/bin", dirs: 1, name: "cmd%05d", median: 40 << 10, sigma: 1.3, mode: 0o755, hardlinkEvery: 50},
	{layer: 0, share: 0.08, dir: "/usr/lib/x86_64-linux-gnu", dirs: 1, name: "lib%05d.so.1", median: 100 << 10, sigma: 1.6, mode: 0o644, link: "lib%05d.so"},
	{layer: 0, share: 0.05, dir: "/usr/lib/x86_64-linux-gnu/plugins%02d", dirs: 30, name: "plugin%05d.so", median: 30 << 10, sigma: 1.2, mode: 0o644},
	{layer: 0, share: 0.04, dir: "/usr/share/misc/stamps%02d", dirs: 10, name: "stamp%05d", median: 24, sigma: 0.6, text: true, mode: 0o644},
	{layer: 1, share: 0.12, dir: "/usr/share/doc/pkg%03d", dirs: 500, name: "copyright%05d", median: 1500, sigma: 1.0, text: true, mode: 0o644},
	{layer: 1, share: 0.08, dir: "/usr/share/man/man%d", dirs: 8, name: "page%05d.1.gz", median: 2 << 10, sigma: 0.8, mode: 0o644},
	{layer: 1, share: 0.08, dir: "/usr/share/locale/lang%02d/LC_MESSAGES", dirs: 60, name: "domain%05d.mo", median: 12 << 10, sigma: 1.0, mode: 0o644},
	{layer: 1, share: 0.25, dir: "/usr/lib/python3/dist-packages/pkg%03d", dirs: 250, name: "module%05d.py", median: 5 << 10, sigma: 1.2, text: true, mode: 0o644},
	{layer: 1, share: 0.10, dir: "/usr/share/icons/hicolor/size%02d/apps", dirs: 12, name: "icon%05d.png", median: 3 << 10, sigma: 1.0, mode: 0o644},
	{layer: 2, share: 0.06, dir: "/opt/app/data%02d", dirs: 20, name: "blob%05d.bin", median: 300 << 10, sigma: 1.8, mode: 0o644},
}

const (
	docCategory    = 5
	pythonCategory = 8
)

const (
	// largeFile is the size from which files are scaled to reach the
	// requested total, so that small files keep their sizes.
	largeFile = 64 << 10
	// maxFile caps drawn sizes, as the largest files of distributions
	// are some tens of MiB.
	maxFile = 48 << 20
	// baseTime is the mtime of the first layer's entries; each later
	// layer is a day younger.
	baseTime = 1700000000
)

// file is a regular file entry before its content is made.
type file struct {
	layer int
	path  string
	size  int64
	cat   *category
}

// distroImage returns the benchmark image: files regular-file entries
// holding total bytes in all, over layerCount gzip layers. The same
// arguments always give the same image.
func distroImage(files int, total int64) (*ocibuild.Image, error) {
	if files < 100 {
		return nil, fmt.Errorf("benchmark image: %d files is too few (at least 100)", files)
	}
	rng := rand.New(rand.NewPCG(0x9e3779b97f4a7c15, 0x6a09e667f3bcc908))
	draw := func(c *category) int64 {
		return min(int64(c.median*math.Exp(c.sigma*rng.NormFloat64())), maxFile)
	}
	var fs []file
	for i := range categories {
		c := &categories[i]
		for range int(c.share * float64(files)) {
			dir := c.dir
			if c.dirs > 1 {
				dir = fmt.Sprintf(c.dir, rng.IntN(c.dirs))
			}
			fs = append(fs, file{layer: c.layer, path: dir + "/" + fmt.Sprintf(c.name, len(fs)), size: draw(c), cat: c})
		}
	}

	// The update replaces some base files with new versions and adds
	// files to a Python package it makes opaque.
	update := layerCount - 1
	base := 0
	for base < len(fs) && fs[base].layer == 0 {
		base++
	}
	python := &categories[pythonCategory]
	opaqueDir := fmt.Sprintf(python.dir, 7)
	for _, j := range rng.Perm(base)[:min(base, (files-len(fs))*3/4)] {
		old := fs[j]
		fs = append(fs, file{layer: update, path: old.path, size: draw(old.cat), cat: old.cat})
	}
	for len(fs) < files {
		fs = append(fs, file{layer: update, path: opaqueDir + "/" + fmt.Sprintf(python.name, len(fs)), size: draw(python), cat: python})
	}
	if err := scale(fs, total); err != nil {
		return nil, err
	}

	layers := make([]layerBuilder, layerCount)
	for i := range layers {
		layers[i] = layerBuilder{mtime: baseTime + int64(i)*86400, dirs: map[string]bool{}}
	}
	layers[0].add(ocibuild.Entry{Path: "/", Type: ocibuild.Dir, Mode: 0o755})
	for _, l := range []string{"bin", "sbin", "lib"} {
		layers[0].add(ocibuild.Entry{Path: "/" + l, Type: ocibuild.Symlink, Mode: 0o777, Target: "usr/" + l})
	}
	layers[0].add(ocibuild.Entry{Path: "/tmp", Type: ocibuild.Dir, Mode: 0o1777})
	layers[0].add(ocibuild.Entry{Path: "/var/tmp", Type: ocibuild.Dir, Mode: 0o1777})
	layers[update].add(ocibuild.Entry{Path: opaqueDir, Type: ocibuild.Dir, Mode: 0o755})
	layers[update].add(ocibuild.Entry{Path: opaqueDir, Type: ocibuild.Opaque})

	// The update deletes one document in a hundred, and a whole package's
	// documentation.
	doc := &categories[docCategory]
	goneDir := fmt.Sprintf(doc.dir, 3)
	var docs []string
	words := newWords(rng)
	for i, f := range fs {
		e := ocibuild.Entry{Path: f.path, Type: ocibuild.File, Mode: f.cat.mode}
		if f.cat.text {
			e.Content = words.text(uint64(i), int(f.size))
		} else {
			e.Size, e.Seed = f.size, uint64(i)+1
		}
		l := &layers[f.layer]
		l.add(e)
		if f.layer == update {
			continue
		}
		if f.cat.link != "" {
			l.add(ocibuild.Entry{Path: path.Dir(f.path) + "/" + fmt.Sprintf(f.cat.link, i), Type: ocibuild.Symlink, Mode: 0o777, Target: path.Base(f.path)})
		}
		if f.cat.hardlinkEvery > 0 && i%f.cat.hardlinkEvery == 0 {
			l.add(ocibuild.Entry{Path: f.path + ".alt", Type: ocibuild.Hardlink, Mode: f.cat.mode, Target: f.path})
		}
		if f.cat == doc && path.Dir(f.path) != goneDir {
			docs = append(docs, f.path)
		}
	}
	for _, j := range rng.Perm(len(docs))[:len(docs)/100] {
		layers[update].add(ocibuild.Entry{Path: docs[j], Type: ocibuild.Whiteout})
	}
	layers[update].add(ocibuild.Entry{Path: goneDir, Type: ocibuild.Whiteout})

	img := &ocibuild.Image{
		Created: baseTime + layerCount*86400,
		Labels:  map[string]string{"org.opencontainers.image.title": "gocfs pull benchmark"},
	}
	for i := range layers {
		img.Layers = append(img.Layers, layers[i].layer())
	}
	return img, nil
}

// scale multiplies the sizes of the large files so that all sizes sum to
// total, leaving small files as drawn, and gives the rounding remainder to
// the largest file.
func scale(fs []file, total int64) error {
	var small, large int64
	biggest := 0
	for i, f := range fs {
		if f.size >= largeFile {
			large += f.size
		} else {
			small += f.size
		}
		if f.size > fs[biggest].size {
			biggest = i
		}
	}
	if large == 0 || total <= small {
		return fmt.Errorf("benchmark image: %d bytes is too little for %d files (at least %d)", total, len(fs), small+int64(len(fs)))
	}
	f := float64(total-small) / float64(large)
	sum := small
	for i := range fs {
		if fs[i].size >= largeFile {
			fs[i].size = int64(float64(fs[i].size) * f)
			sum += fs[i].size
		}
	}
	fs[biggest].size += total - sum
	if fs[biggest].size < 0 {
		return fmt.Errorf("benchmark image: cannot reach %d bytes", total)
	}
	return nil
}

// layerBuilder collects a layer's entries and the directories they need.
type layerBuilder struct {
	mtime   int64
	entries []ocibuild.Entry
	dirs    map[string]bool
}

// add adds e after the directories leading to it, which image builders
// write in every layer that has something below them.
func (l *layerBuilder) add(e ocibuild.Entry) {
	l.addDir(path.Dir(e.Path))
	e.Mtime = l.mtime
	if e.Type == ocibuild.Dir {
		if l.dirs[e.Path] {
			return
		}
		l.dirs[e.Path] = true
	}
	l.entries = append(l.entries, e)
}

func (l *layerBuilder) addDir(p string) {
	if p == "/" || l.dirs[p] {
		return
	}
	l.add(ocibuild.Entry{Path: p, Type: ocibuild.Dir, Mode: 0o755})
}

// layer returns the entries in path order, as a directory walk writes
// them: a directory comes before what it holds, and its opaque marker
// right after it.
func (l *layerBuilder) layer() ocibuild.Layer {
	rank := func(t ocibuild.Type) int {
		switch t {
		case ocibuild.Dir:
			return 0
		case ocibuild.Opaque:
			return 1
		}
		return 2
	}
	slices.SortStableFunc(l.entries, func(a, b ocibuild.Entry) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(rank(a.Type), rank(b.Type)))
	})
	return ocibuild.Layer{Entries: l.entries, Compression: ocibuild.Gzip}
}

// words makes text: lines of words drawn with a Zipf law from a fixed
// vocabulary, which gzip compresses about as well as prose or source code.
type words struct {
	vocab [][]byte
}

func newWords(rng *rand.Rand) *words {
	w := &words{vocab: make([][]byte, 4096)}
	for i := range w.vocab {
		b := make([]byte, 2+rng.IntN(8))
		for j := range b {
			b[j] = 'a' + byte(rng.IntN(26))
		}
		w.vocab[i] = b
	}
	return w
}

// text returns n bytes of text determined by seed.
func (w *words) text(seed uint64, n int) []byte {
	z := rand.NewZipf(rand.New(rand.NewPCG(seed, 0x5851f42d4c957f2d)), 1.1, 4, uint64(len(w.vocab)-1))
	b := make([]byte, 0, n+16)
	col := 0
	for len(b) < n {
		word := w.vocab[z.Uint64()]
		b = append(b, word...)
		col += len(word) + 1
		if col > 72 {
			b = append(b, '\n')
			col = 0
		} else {
			b = append(b, ' ')
		}
	}
	return b[:n]
}
