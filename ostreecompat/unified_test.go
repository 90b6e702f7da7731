package ostreecompat

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParsePolicy(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Policy
		ok   bool
	}{
		{"disabled", PolicyDisabled, true},
		{"enabled", PolicyEnabled, true},
		{"enabled-with-copy", PolicyEnabledWithCopy, true},
		{"Enabled", 0, false},
		{"", 0, false},
		{"copy", 0, false},
	} {
		got, err := ParsePolicy(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParsePolicy(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok && got.String() != tc.in {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
	for _, s := range []string{"composefs", "full"} {
		sc, err := ParseScope(s)
		if err != nil || sc.String() != s {
			t.Errorf("ParseScope(%q) = %v, %v", s, sc, err)
		}
	}
	if _, err := ParseScope("containers"); err == nil {
		t.Error("ParseScope accepted an unknown scope")
	}
	if _, err := Policy(7).MarshalText(); err == nil {
		t.Error("an invalid policy marshals")
	}
}

func TestMarker(t *testing.T) {
	dir := t.TempDir()
	if m, err := ReadMarker(dir); m != nil || err != nil {
		t.Fatalf("no marker: %v, %v", m, err)
	}
	want := &Marker{Version: 1, Unified: PolicyEnabledWithCopy, Scope: ScopeFull, OSTreeRepo: "../ostree/repo"}
	if err := writeMarker(dir, want); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, MarkerName))
	if err != nil {
		t.Fatal(err)
	}
	const text = "{\n  \"version\": 1,\n  \"unified\": \"enabled-with-copy\",\n  \"scope\": \"full\",\n  \"ostree-repo\": \"../ostree/repo\"\n}\n"
	if string(b) != text {
		t.Errorf("marker text:\n%s\nwant:\n%s", b, text)
	}
	got, err := ReadMarker(dir)
	if err != nil || *got != *want {
		t.Fatalf("ReadMarker = %+v, %v", got, err)
	}
	if p := got.RepoPath("/sysroot/composefs"); p != "/sysroot/ostree/repo" {
		t.Errorf("RepoPath = %q", p)
	}
	if err := removeMarker(dir); err != nil {
		t.Fatal(err)
	}
	if m, err := ReadMarker(dir); m != nil || err != nil {
		t.Fatalf("removed marker: %v, %v", m, err)
	}
	if err := removeMarker(dir); err != nil {
		t.Errorf("removing no marker: %v", err)
	}
}

func TestReadMarkerStrict(t *testing.T) {
	for name, text := range map[string]string{
		"version":  `{"version":2,"unified":"enabled","scope":"full","ostree-repo":"r"}`,
		"disabled": `{"version":1,"unified":"disabled","scope":"full","ostree-repo":"r"}`,
		"policy":   `{"version":1,"unified":"yes","scope":"full","ostree-repo":"r"}`,
		"scope":    `{"version":1,"unified":"enabled","scope":"all","ostree-repo":"r"}`,
		"repo":     `{"version":1,"unified":"enabled","scope":"full"}`,
		"unknown":  `{"version":1,"unified":"enabled","scope":"full","ostree-repo":"r","x":1}`,
		"trailing": `{"version":1,"unified":"enabled","scope":"full","ostree-repo":"r"} {}`,
		"json":     `{"version":1,`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, MarkerName), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			if m, err := ReadMarker(dir); err == nil {
				t.Errorf("accepted %s: %+v", text, m)
			}
		})
	}
}

func TestRelRepoPath(t *testing.T) {
	for _, tc := range []struct{ store, repo, want string }{
		{"/sysroot/composefs", "/sysroot/ostree/repo", "../ostree/repo"},
		{"/a/store", "/a/store/repo", "repo"},
	} {
		if got := relRepoPath(tc.store, tc.repo); got != tc.want {
			t.Errorf("relRepoPath(%q, %q) = %q, want %q", tc.store, tc.repo, got, tc.want)
		}
	}
}

// TestProbeReflinkHere checks the probe gives an answer and no error on
// the test's own filesystem, and that a missing directory is an error
// rather than "no reflinks".
func TestProbeReflinkHere(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	ok, err := ProbeReflink(a, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reflinks on %s: %v", Filesystem(a), ok)
	for _, d := range []string{a, b} {
		if ents, _ := os.ReadDir(d); len(ents) != 0 {
			t.Errorf("probe left %d files in %s", len(ents), d)
		}
	}
	if _, err := ProbeReflink(filepath.Join(a, "missing"), b); err == nil {
		t.Error("probe of a missing directory")
	}
}

func TestCheckPolicyTmpfs(t *testing.T) {
	dir := t.TempDir()
	if Filesystem(dir) != "tmpfs" {
		// /dev/shm is tmpfs wherever systemd or Docker set it up.
		d, err := os.MkdirTemp("/dev/shm", "policy")
		if err != nil || Filesystem(d) != "tmpfs" {
			t.Skip("SKIP: no tmpfs to test on")
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		dir = d
	}
	storeDir, repoDir := filepath.Join(dir, "store"), filepath.Join(dir, "repo")
	for _, d := range []string{filepath.Join(storeDir, "objects"), filepath.Join(repoDir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := CheckPolicy(PolicyDisabled, storeDir, repoDir); ok || err == nil {
		t.Errorf("disabled: %v, %v", ok, err)
	}
	if ok, err := CheckPolicy(PolicyEnabledWithCopy, storeDir, repoDir); ok || err != nil {
		t.Errorf("enabled-with-copy on tmpfs: %v, %v", ok, err)
	}
	_, err := CheckPolicy(PolicyEnabled, storeDir, repoDir)
	if !errors.Is(err, ErrNoReflink) || !strings.Contains(err.Error(), "tmpfs") || !strings.Contains(err.Error(), "enabled-with-copy") {
		t.Errorf("enabled on tmpfs: %v", err)
	}
}

func TestStateJSON(t *testing.T) {
	b, err := json.Marshal(map[string]any{"s": StateUnified, "p": PolicyEnabled, "c": ScopeComposefs})
	if err != nil || string(b) != `{"c":"composefs","p":"enabled","s":"unified"}` {
		t.Errorf("JSON: %s, %v", b, err)
	}
}
