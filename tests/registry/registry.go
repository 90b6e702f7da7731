// Package registry runs a private OCI distribution registry for tests: Debian's
// docker-registry binary (distribution 2.8) on a loopback port of its own, with
// its storage in a temporary directory, stopped when the test ends (Start),
// or when a program that is not a test says so (Launch).
//
// The registry speaks plain HTTP, so clients must allow an insecure registry;
// SystemContext returns a containers/image context that does, and that also
// keeps containers/image away from the host's configuration and caches.
package registry

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"
)

// Binary is the registry program looked up in PATH.
const Binary = "docker-registry"

// startTimeout bounds how long the registry may take to answer; it is
// normally ready within 50 ms.
const startTimeout = 20 * time.Second

// Registry is a running registry.
type Registry struct {
	// Host is the "127.0.0.1:PORT" the registry listens on.
	Host string
	// Dir is the registry's storage root directory.
	Dir string

	cmd    *exec.Cmd
	exited chan error // holds the exit status once the process is reaped; readers put it back
	logs   *logBuffer

	clientDir string
}

// config is the registry configuration: no authentication, no caches that
// could hide changes made to the storage directory behind the registry's
// back, and no health checks. The address and storage root come from the
// environment, so one file serves every instance.
const config = `version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: /nonexistent
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:0
  secret: gocfs-test-registry-not-secret
health:
  storagedriver:
    enabled: false
`

// ErrNotInstalled is returned by Launch when the registry binary is not in
// PATH.
var ErrNotInstalled = errors.New(Binary + " not installed (Debian package docker-registry)")

// Start runs a new registry for the duration of the test. It skips the test
// when the registry binary is not installed and fails it when the registry
// does not come up.
func Start(t testing.TB) *Registry {
	t.Helper()
	r, err := Launch(t.TempDir())
	if errors.Is(err, ErrNotInstalled) {
		t.Skipf("SKIP: %v", err)
	}
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	t.Cleanup(r.Stop)
	return r
}

// Launch runs a new registry outside of tests, keeping its storage and
// client configuration in dir, an existing directory the caller removes
// once it has called Stop. Should the calling process die first, the
// registry is killed too.
func Launch(dir string) (*Registry, error) {
	bin, err := exec.LookPath(Binary)
	if err != nil {
		return nil, ErrNotInstalled
	}
	r, err := start(bin, dir)
	if err != nil {
		if r != nil {
			r.Stop()
			return nil, fmt.Errorf("%w\nregistry log:\n%s", err, r.logs.String())
		}
		return nil, err
	}
	r.clientDir = filepath.Join(dir, "client")
	if err := writeClientConfig(r.clientDir); err != nil {
		r.Stop()
		return nil, fmt.Errorf("registry client configuration: %w", err)
	}
	return r, nil
}

func start(bin, tmp string) (*Registry, error) {
	cfg := filepath.Join(tmp, "config.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		return nil, err
	}
	data := filepath.Join(tmp, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		return nil, err
	}
	// Port 0 lets the kernel pick a free port with no window in which
	// another process could take it; the registry logs the one it got.
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Env = append(os.Environ(),
		"REGISTRY_HTTP_ADDR=127.0.0.1:0",
		"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY="+data,
	)
	// Should the program die without cleaning up, the registry goes too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	r := &Registry{Dir: data, cmd: cmd, exited: make(chan error, 1), logs: &logBuffer{}}
	addr := make(chan string, 1)
	logDone := make(chan struct{})
	go func() {
		r.logs.consume(stderr, addr)
		close(logDone)
	}()
	go func() {
		// Wait closes the pipe: let the log reader finish first.
		<-logDone
		r.exited <- cmd.Wait()
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case a := <-addr:
		r.Host = a
	case err := <-r.exited:
		r.exited <- err
		return r, fmt.Errorf("%s exited during start-up: %v", bin, err)
	case <-timer.C:
		return r, fmt.Errorf("%s did not report its address within %v", bin, startTimeout)
	}
	return r, r.waitReady(timer.C)
}

// waitReady polls the API base endpoint until it answers 200.
func (r *Registry) waitReady(deadline <-chan time.Time) error {
	client := &http.Client{Timeout: time.Second}
	url := "http://" + r.Host + "/v2/"
	for {
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		select {
		case e := <-r.exited:
			r.exited <- e
			return fmt.Errorf("registry exited: %v", e)
		case <-deadline:
			return fmt.Errorf("registry not ready within %v: %v", startTimeout, err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Stop kills the registry process itself and reaps it; it may be called
// more than once. The registry keeps nothing worth a graceful shutdown.
func (r *Registry) Stop() {
	r.cmd.Process.Kill()
	err := <-r.exited
	r.exited <- err
}

// Ref returns the containers/image reference of repo:tag in this registry,
// as "docker://HOST/REPO:TAG".
func (r *Registry) Ref(repo, tag string) string {
	return "docker://" + r.Host + "/" + repo + ":" + tag
}

// DigestRef returns the reference of repo@d, as "docker://HOST/REPO@D".
func (r *Registry) DigestRef(repo string, d digest.Digest) string {
	return "docker://" + r.Host + "/" + repo + "@" + d.String()
}

// BlobPath returns where the registry stores the content of blob d (layers,
// configs and manifests alike). Tests corrupt it to play a hostile registry.
func (r *Registry) BlobPath(d digest.Digest) string {
	h := d.Encoded()
	return filepath.Join(r.Dir, "docker", "registry", "v2", "blobs", d.Algorithm().String(), h[:2], h, "data")
}

// SystemContext returns a containers/image context for talking to the
// registry: plain HTTP allowed, and no host-wide registries.conf, auth file,
// signature policy or blob-info cache, so that tests neither depend on nor
// change the machine's state. Callers may modify the returned copy.
func (r *Registry) SystemContext() *types.SystemContext {
	return ClientContext(r.clientDir)
}

// Log returns what the registry has logged so far.
func (r *Registry) Log() string { return r.logs.String() }

// ClientDir returns the directory holding the client configuration of
// SystemContext, for handing to another process (see ClientContext).
func (r *Registry) ClientDir() string { return r.clientDir }

// ClientContext returns the context SystemContext returns, for the client
// configuration in dir (a registry's ClientDir).
func ClientContext(dir string) *types.SystemContext {
	return &types.SystemContext{
		SignaturePolicyPath:         filepath.Join(dir, "policy.json"),
		RegistriesDirPath:           filepath.Join(dir, "registries.d"),
		SystemRegistriesConfPath:    filepath.Join(dir, "registries.conf"),
		SystemRegistriesConfDirPath: filepath.Join(dir, "registries.conf.d"),
		AuthFilePath:                filepath.Join(dir, "auth.json"),
		BlobInfoCacheDir:            filepath.Join(dir, "cache"),
		BigFilesTemporaryDir:        dir,
		DockerInsecureSkipTLSVerify: types.OptionalBoolTrue,
		OCIInsecureSkipTLSVerify:    true,
	}
}

// writeClientConfig creates in dir an empty client configuration and a
// policy that accepts unsigned images.
func writeClientConfig(dir string) error {
	for _, d := range []string{"registries.d", "registries.conf.d", "cache"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "registries.conf"), nil, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "policy.json"), []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`+"\n"), 0o644)
}

// logBuffer keeps the registry's log and spots the line announcing the
// listening address.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logBuffer) consume(r io.Reader, addr chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	found := false
	for sc.Scan() {
		line := sc.Text()
		l.mu.Lock()
		l.buf.WriteString(line)
		l.buf.WriteByte('\n')
		l.mu.Unlock()
		if !found {
			if a, ok := listeningAddr(line); ok {
				found = true
				addr <- a
			}
		}
	}
	// After an overlong line, keep the pipe flowing so that the registry
	// never blocks writing its log.
	io.Copy(io.Discard, r)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// listeningAddr extracts HOST:PORT from the registry's
// `msg="listening on 127.0.0.1:40577"` line.
func listeningAddr(line string) (string, bool) {
	const marker = "listening on "
	i := strings.Index(line, marker)
	if i < 0 {
		return "", false
	}
	rest := line[i+len(marker):]
	if j := strings.IndexAny(rest, "\" \t,"); j >= 0 {
		rest = rest[:j]
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil || host == "" || port == "" || port == "0" {
		return "", false
	}
	return rest, true
}
