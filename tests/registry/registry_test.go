package registry

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"
)

func TestListeningAddr(t *testing.T) {
	for _, tc := range []struct {
		line, want string
		ok         bool
	}{
		{`time="2026-11-21T10:00:00Z" level=info msg="listening on 127.0.0.1:40577" go.version=go1.19.8`, "127.0.0.1:40577", true},
		{`level=info msg="listening on [::1]:5000"`, "[::1]:5000", true},
		{`msg="listening on 127.0.0.1:0"`, "", false},
		{`msg="listening on nowhere"`, "", false},
		{`msg="redis not configured"`, "", false},
	} {
		got, ok := listeningAddr(tc.line)
		if got != tc.want || ok != tc.ok {
			t.Errorf("listeningAddr(%q) = %q, %v; want %q, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

func TestStartStop(t *testing.T) {
	var host string
	t.Run("run", func(t *testing.T) {
		r := Start(t)
		host = r.Host
		resp, err := http.Get("http://" + r.Host + "/v2/_catalog")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"repositories"`) {
			t.Fatalf("catalog: %s %s", resp.Status, body)
		}
		if st, err := os.Stat(r.Dir); err != nil || !st.IsDir() {
			t.Fatalf("storage directory: %v", err)
		}
		if got, want := r.Ref("a/b", "t1"), "docker://"+r.Host+"/a/b:t1"; got != want {
			t.Errorf("Ref = %q, want %q", got, want)
		}
		d := digest.Digest("sha256:" + strings.Repeat("ab", 32))
		if got, want := r.DigestRef("x", d), "docker://"+r.Host+"/x@"+d.String(); got != want {
			t.Errorf("DigestRef = %q, want %q", got, want)
		}
		if got := r.BlobPath(d); !strings.HasSuffix(got, "/docker/registry/v2/blobs/sha256/ab/"+d.Encoded()+"/data") {
			t.Errorf("BlobPath = %q", got)
		}
		sys := r.SystemContext()
		if sys.DockerInsecureSkipTLSVerify != types.OptionalBoolTrue {
			t.Error("SystemContext does not allow plain HTTP")
		}
		for _, p := range []string{sys.SignaturePolicyPath, sys.SystemRegistriesConfPath, sys.BlobInfoCacheDir} {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("SystemContext: %v", err)
			}
		}
		sys.AuthFilePath = "changed"
		if r.SystemContext().AuthFilePath == "changed" {
			t.Error("SystemContext returns a shared context")
		}
		if got := ClientContext(r.ClientDir()); !reflect.DeepEqual(got, r.SystemContext()) {
			t.Error("ClientContext differs from SystemContext")
		}
		if !strings.Contains(r.Log(), "listening on") {
			t.Errorf("log lacks the address line:\n%s", r.Log())
		}
	})
	if host == "" {
		return
	}
	// The cleanup of the subtest has killed the registry.
	if c, err := net.Dial("tcp", host); err == nil {
		c.Close()
		t.Fatalf("registry still listening on %s after the test", host)
	}
}

func TestLaunchNotInstalled(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	r, err := Launch(t.TempDir())
	if !errors.Is(err, ErrNotInstalled) || r != nil {
		t.Fatalf("Launch without %s = %v, %v; want ErrNotInstalled", Binary, r, err)
	}
}

func TestLaunchStop(t *testing.T) {
	if _, err := exec.LookPath(Binary); err != nil {
		t.Skipf("SKIP: %s not installed (Debian package docker-registry)", Binary)
	}
	r, err := Launch(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r.Stop()
	r.Stop() // a second Stop must neither block nor panic
	if c, err := net.Dial("tcp", r.Host); err == nil {
		c.Close()
		t.Fatalf("registry still listening on %s after Stop", r.Host)
	}
}
