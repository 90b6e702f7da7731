package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/gocfs/gocfs/tests/ocibuild"
	"github.com/gocfs/gocfs/tests/registry"
)

// imageTag names the image in the registry, the repositories and the OCI
// layouts.
const imageTag = "bench"

// pushed describes the benchmark image once in the registry.
type pushed struct {
	Ref                 string
	Layers, Files       int
	Data, Tar, Blobs    int64
	BuildTime, PushTime time.Duration
}

// pushImage builds the benchmark image and pushes it to ref, talking to
// the registry with the client configuration in clientDir.
func pushImage(ctx context.Context, ref, clientDir string, files int, total int64) (*pushed, error) {
	start := time.Now()
	img, err := distroImage(files, total)
	if err != nil {
		return nil, err
	}
	b, err := ocibuild.Build(img)
	if err != nil {
		return nil, fmt.Errorf("benchmark image: %w", err)
	}
	p := &pushed{Ref: ref, Layers: len(b.Layers), Files: files, Data: total, BuildTime: time.Since(start)}
	for _, l := range b.Layers {
		p.Tar += int64(len(l.Tar))
		p.Blobs += int64(len(l.Blob))
	}
	start = time.Now()
	if err := b.Push(ctx, ref, registry.ClientContext(clientDir)); err != nil {
		return nil, err
	}
	p.PushTime = time.Since(start)
	return p, nil
}

// pushInChild has a child process build and push the image. Linux records
// the peak RSS of the process that starts a child in the child's own peak
// (Go starts children with vfork, sharing its memory until exec), so a
// benchmark that holds the image's hundreds of MiB would see them in
// every figure.
func pushInChild(ctx context.Context, reg *registry.Registry, files int, total int64) (*pushed, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, "-push", reg.Ref("gocfs/distro", imageTag), "-client", reg.ClientDir(),
		"-files", strconv.Itoa(files), "-mib", strconv.FormatInt(total>>20, 10))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("building and pushing the image: %w", err)
	}
	var p pushed
	if err := json.Unmarshal(out, &p); err != nil {
		return nil, fmt.Errorf("building and pushing the image: %w", err)
	}
	return &p, nil
}

// clientEnv keeps the containers/image clients (cfsctl, skopeo) off the
// host's registries.conf and credentials, which could redirect or slow
// down the pulls.
func clientEnv(reg *registry.Registry) []string {
	sys := reg.SystemContext()
	return []string{"CONTAINERS_REGISTRIES_CONF=" + sys.SystemRegistriesConfPath, "REGISTRY_AUTH_FILE=" + sys.AuthFilePath}
}

// pullOurs measures `cfsctl oci pull` of ref into a new insecure
// repository, runs times, and returns the best figures and the digest of
// the image made, which every run must agree on.
func pullOurs(ctx context.Context, cfsctl string, reg *registry.Registry, ref, tmp string, runs int) (figure, string, error) {
	env := clientEnv(reg)
	repo := filepath.Join(tmp, "repo")
	var figs []figure
	image := ""
	for r := 1; r <= runs; r++ {
		init := exec.CommandContext(ctx, cfsctl, "--repo", repo, "init", "--insecure")
		if out, err := init.CombinedOutput(); err != nil {
			return figure{}, "", fmt.Errorf("cfsctl init: %w\n%s", err, out)
		}
		var out bytes.Buffer
		f, err := measure(ctx, env, &out, cfsctl, "--repo", repo, "--json", "oci", "pull", "--tls-verify=false", ref, imageTag)
		if err != nil {
			return figure{}, "", err
		}
		d, ok := imageDigest(out.Bytes())
		if !ok {
			return figure{}, "", fmt.Errorf("cfsctl oci pull printed no image digest:\n%s", out.String())
		}
		if image != "" && d != image {
			return figure{}, "", fmt.Errorf("cfsctl oci pull: run %d made image %s, run 1 %s", r, d, image)
		}
		image = d
		figs = append(figs, f)
		if err := os.RemoveAll(repo); err != nil {
			return figure{}, "", err
		}
	}
	return best(figs), image, nil
}

// imageDigest returns the image digest in the JSON output of cfsctl oci
// pull.
func imageDigest(out []byte) (string, bool) {
	var res struct {
		Image string `json:"image"`
	}
	if json.Unmarshal(out, &res) != nil || res.Image == "" {
		return "", false
	}
	return res.Image, true
}

// theirs is the pipeline of the C composefs tools: skopeo, an unpacker and
// mkcomposefs.
type theirs struct {
	skopeo, mkcomposefs string
	// umoci unpacks when set; otherwise this program does with tar.
	umoci, self string
}

// findTheirs looks the tools of the C pipeline up in PATH, or says which
// are missing. The C mkcomposefs is cmk when given, else one on PATH that
// is not ours.
func findTheirs(bin, cmk string) (*theirs, []string) {
	t := &theirs{}
	var missing []string
	var err error
	if t.skopeo, err = exec.LookPath("skopeo"); err != nil {
		missing = append(missing, "skopeo")
	}
	if t.umoci, err = exec.LookPath("umoci"); err != nil {
		t.umoci = ""
		_, terr := exec.LookPath("tar")
		self, serr := os.Executable()
		if terr != nil || serr != nil {
			missing = append(missing, "an unpacker (umoci or tar)")
		}
		t.self = self
	}
	if cmk != "" {
		if t.mkcomposefs, err = exec.LookPath(cmk); err != nil {
			missing = append(missing, fmt.Sprintf("mkcomposefs (%v)", err))
		}
	} else if t.mkcomposefs, err = exec.LookPath("mkcomposefs"); err != nil || filepath.Dir(t.mkcomposefs) == bin {
		missing = append(missing, "C mkcomposefs (not packaged in Debian)")
	}
	if len(missing) > 0 {
		return nil, missing
	}
	return t, nil
}

// step is the best figure of one step of a pipeline.
type step struct {
	name string
	fig  figure
}

// run measures the C pipeline on ref, runs times, each into new
// directories: the steps' best figures, then the best total of a run.
func (t *theirs) run(ctx context.Context, reg *registry.Registry, ref, tmp string, runs int) ([]step, error) {
	steps := []step{{name: "skopeo copy"}, {name: "umoci unpack"}, {name: "mkcomposefs --digest-store"}, {name: "total"}}
	if t.umoci == "" {
		steps[1].name = "tar -x layers, whiteouts"
	}
	figs := make([][]figure, len(steps))
	sys := reg.SystemContext()
	env := clientEnv(reg)
	work := filepath.Join(tmp, "theirs")
	for range runs {
		if err := os.Mkdir(work, 0o755); err != nil {
			return nil, err
		}
		layout := filepath.Join(work, "layout")
		bundle := filepath.Join(work, "bundle")
		rootfs := filepath.Join(bundle, "rootfs")
		var run [3]figure
		var err error
		run[0], err = measure(ctx, env, nil, t.skopeo, "--policy", sys.SignaturePolicyPath, "--registries.d", sys.RegistriesDirPath,
			"copy", "--quiet", "--src-tls-verify=false", ref, "oci:"+layout+":"+imageTag)
		if err != nil {
			return nil, err
		}
		if t.umoci != "" {
			args := []string{t.umoci, "unpack", "--image", layout + ":" + imageTag, bundle}
			if os.Geteuid() != 0 {
				args = []string{t.umoci, "unpack", "--rootless", "--image", layout + ":" + imageTag, bundle}
			}
			run[1], err = measure(ctx, nil, nil, args...)
		} else {
			var blobs []string
			if blobs, err = layoutLayers(layout, imageTag); err != nil {
				return nil, err
			}
			if err = os.MkdirAll(rootfs, 0o755); err != nil {
				return nil, err
			}
			run[1], err = measure(ctx, nil, nil, append([]string{t.self, "-untar", rootfs}, blobs...)...)
		}
		if err != nil {
			return nil, err
		}
		run[2], err = measure(ctx, nil, nil, t.mkcomposefs, "--digest-store="+filepath.Join(work, "objects"), rootfs, filepath.Join(work, "image.cfs"))
		if err != nil {
			return nil, err
		}
		for i, f := range run {
			figs[i] = append(figs[i], f)
		}
		figs[3] = append(figs[3], run[0].add(run[1]).add(run[2]))
		if err := os.RemoveAll(work); err != nil {
			return nil, err
		}
	}
	for i := range steps {
		steps[i].fig = best(figs[i])
	}
	return steps, nil
}

// layoutLayers returns the paths of the layer blobs, in order, of the
// image tagged tag in the OCI layout dir.
func layoutLayers(dir, tag string) ([]string, error) {
	var index v1.Index
	if err := readJSON(filepath.Join(dir, v1.ImageIndexFile), &index); err != nil {
		return nil, err
	}
	var desc *v1.Descriptor
	for i, m := range index.Manifests {
		if m.Annotations[v1.AnnotationRefName] == tag {
			desc = &index.Manifests[i]
		}
	}
	if desc == nil {
		return nil, fmt.Errorf("OCI layout %s: no image tagged %q", dir, tag)
	}
	blob := func(d digest.Digest) (string, error) {
		if err := d.Validate(); err != nil {
			return "", fmt.Errorf("OCI layout %s: %w", dir, err)
		}
		return filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded()), nil
	}
	p, err := blob(desc.Digest)
	if err != nil {
		return nil, err
	}
	var m v1.Manifest
	if err := readJSON(p, &m); err != nil {
		return nil, err
	}
	var layers []string
	for _, l := range m.Layers {
		p, err := blob(l.Digest)
		if err != nil {
			return nil, err
		}
		layers = append(layers, p)
	}
	return layers, nil
}

func readJSON(name string, v any) error {
	b, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
