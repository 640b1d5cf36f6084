// config_test.go: the config file's errors name the key, its defaults round-trip, its path precedence.

package app

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseConfigErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name, in, key, msg string
	}{
		{"typo", `{"auto_acept": true}`, "auto_acept", "unknown key"},
		{"wrong type", `{"vram_threshold_gb": "twenty"}`, "vram_threshold_gb", "must be a number"},
		{"nested wrong type", `{"gpu": {"yield": {"threshold_mb": true}}}`, "gpu.yield.threshold_mb", "must be a number"},
		{"nested unknown", `{"gpu": {"sample_every": 2}}`, "sample_every", "unknown key"},
		{"negative cap", `{"vram_threshold_gb": -1}`, "vram_threshold_gb", "positive"},
		{"too many jobs", `{"max_concurrent_jobs": 1000}`, "max_concurrent_jobs", "between"},
		{"negative attempts", `{"reconnect_attempts": -3}`, "reconnect_attempts", "retry forever"},
		{"negative input limit", `{"input_limit_mb": -1}`, "input_limit_mb", "positive number of MB"},
		{"negative unified reserve", `{"gpu": {"unified_memory_reserve_mb": -1}}`, "gpu.unified_memory_reserve_mb", "a quarter"},
		{"insecure url", `{"server_url": "http://studio.example.com"}`, "server_url", "http://"},
		{"bad scheme", `{"server_url": "ftp://studio.example.com"}`, "server_url", ""},
		{"token without id", `{"auth_token": "x"}`, "worker_id", "register again"},
		{"simulated without vram", `{"gpu": {"simulated": {"name": "x", "vram_gb": 0}}}`, "gpu.simulated.vram_gb", "positive"},
		{"syntax", "{\n  \"auto_accept\": true,\n}", "", "line 3"},
		{"empty", ``, "", "empty"},
		{"trailing", `{} {}`, "", "after the JSON object"},
		{"unknown engine kind", `{"engines": {"imgae": {"backend": "synthetic"}}}`, "engines", "imgae"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.in))
			if err == nil {
				t.Fatal("no error")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v is not a *ConfigError", err, err)
			}
			if ce.Key != tt.key {
				t.Errorf("key = %q, want %q (%v)", ce.Key, tt.key, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("message %q lacks %q", err.Error(), tt.msg)
			}
		})
	}
}

func TestConfigDefaultsAndRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "config.json")
	_, err := LoadConfig(path)
	if !errors.Is(err, ErrNoConfig) {
		t.Fatalf("missing file: %v, want ErrNoConfig", err)
	}
	cfg, err := ParseConfig([]byte(`{"server_url":"http://127.0.0.1:7860","paused":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.AutoAccept || cfg.GPU.SafetyMarginMB != 1024 || !cfg.GPU.Yield.Enabled || len(cfg.Engines) != 5 {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	cfg.WorkerID, cfg.AuthToken = "w-1", "secret-token"
	if err := SaveConfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
	back, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Paused || back.AuthToken != "secret-token" || back.ServerURL != cfg.ServerURL {
		t.Fatalf("round trip lost data: %+v", back)
	}
	if strings.Contains(back.Redacted().AuthToken, "secret") {
		t.Fatal("Redacted keeps the token")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temp files left beside the config: %v", entries)
	}
}

func TestEnginesKeyReplacesDefaults(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"engines":{"tts":{"backend":"exec","command":["espeak-ng","-w","{output}","{text}"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Engines) != 1 || cfg.Engines["tts"].Backend != "exec" {
		t.Fatalf("engines = %+v, want only tts", cfg.Engines)
	}
}

func TestLoadConfigNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(`{"paused": "yes"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "paused") {
		t.Fatalf("error %v does not name the file and the key", err)
	}
	data, _ := os.ReadFile(path)
	if string(data) != `{"paused": "yes"}` {
		t.Fatal("a config that failed to parse was changed")
	}
}

func TestConfigPathPrecedence(t *testing.T) {
	t.Setenv(EnvConfig, "/tmp/from-env.json")
	if p, _ := ConfigPath("/tmp/flag.json"); p != "/tmp/flag.json" {
		t.Errorf("flag not first: %s", p)
	}
	if p, _ := ConfigPath(""); p != "/tmp/from-env.json" {
		t.Errorf("env not used: %s", p)
	}
	t.Setenv(EnvConfig, "")
	t.Setenv("XDG_CONFIG_HOME", "/tmp/xdg")
	if p, _ := ConfigPath(""); p != "/tmp/xdg/studio-worker/config.json" {
		t.Errorf("default = %s", p)
	}
}
