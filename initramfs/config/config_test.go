package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, text string
		want       Config
		wantErr    string
	}{
		{name: "empty", text: "", want: Config{}},
		{name: "comments", text: "# x\n; y\n\n   \n", want: Config{}},
		{name: "all", text: "[root]\ntransient = yes\n[etc]\nmount = transient\n[ var ]\n  mount=transient  \n",
			want: Config{RootTransient: true, Etc: EtcTransient, Var: VarTransient}},
		{name: "etc modes", text: "[etc]\nmount = bind\nmount = none\n", want: Config{Etc: EtcNone}},
		{name: "etc overlay", text: "[etc]\nmount = overlay", want: Config{Etc: EtcOverlay}},
		{name: "var bind", text: "[var]\nmount = bind", want: Config{Var: VarBind}},
		{name: "bool false", text: "[root]\ntransient = 0", want: Config{}},
		{name: "outside section", text: "\nmount = bind", wantErr: "f.conf:2: setting \"mount\" outside a section"},
		{name: "unknown section", text: "[usr]\n", wantErr: "f.conf:1: unknown section [usr]"},
		{name: "unterminated", text: "[etc\n", wantErr: "f.conf:1: unterminated section header"},
		{name: "not a setting", text: "[etc]\n\nbind\n", wantErr: "f.conf:3: \"bind\" is not a setting"},
		{name: "bad etc", text: "[etc]\nmount = tmpfs", wantErr: "f.conf:2: [etc] mount = \"tmpfs\""},
		{name: "bad var", text: "[var]\nmount = overlay", wantErr: "f.conf:2: [var] mount = \"overlay\""},
		{name: "var none refused", text: "[var]\nmount = none", wantErr: "[var] mount = \"none\""},
		{name: "bad bool", text: "[root]\ntransient = maybe", wantErr: "f.conf:2: [root] transient: \"maybe\" is not a boolean"},
		{name: "unknown key", text: "[root]\nreadonly = true", wantErr: "f.conf:2: unknown setting \"readonly\" in [root]"},
		{name: "transient in etc", text: "[etc]\ntransient = true", wantErr: "unknown setting \"transient\" in [etc]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			err := Parse("f.conf", strings.NewReader(tt.text), &c)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c != tt.want {
				t.Errorf("got %+v, want %+v", c, tt.want)
			}
		})
	}
}

func write(t *testing.T, root, name, text string) {
	t.Helper()
	p := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoad(t *testing.T) {
	usr := "[root]\ntransient = true\n[etc]\nmount = bind\n"
	etc := "[etc]\nmount = transient\n[var]\nmount = transient\n"
	tests := []struct {
		name     string
		usr, etc string
		want     Config
	}{
		{name: "none", want: Config{}},
		{name: "usr only", usr: usr, want: Config{RootTransient: true, Etc: EtcBind}},
		{name: "etc only", etc: etc, want: Config{Etc: EtcTransient, Var: VarTransient}},
		{name: "etc overrides key by key", usr: usr, etc: etc, want: Config{RootTransient: true, Etc: EtcTransient, Var: VarTransient}},
		{name: "etc turns off", usr: usr, etc: "[root]\ntransient = false\n", want: Config{Etc: EtcBind}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.usr != "" {
				write(t, root, UsrPath, tt.usr)
			}
			if tt.etc != "" {
				write(t, root, EtcPath, tt.etc)
			}
			got, err := Load(root)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLoadErrorNamesFile(t *testing.T) {
	root := t.TempDir()
	write(t, root, UsrPath, "[etc]\nmount = bind\n")
	write(t, root, EtcPath, "[etc]\n\nmount = nope\n")
	_, err := Load(root)
	want := filepath.Join(root, EtcPath) + ":3:"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v, want one naming %s", err, want)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("[root]\ntransient = yes\n[etc]\nmount = bind\n")
	f.Fuzz(func(t *testing.T, s string) {
		var c Config
		_ = Parse("fuzz", strings.NewReader(s), &c)
	})
}
