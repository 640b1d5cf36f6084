// config.go: the worker's config file — its fields, defaults, validation with errors that name the
// key and the next step, and loading and saving it durably. It must not know who changes it.

package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"

	"studioworker/engine"
	"studioworker/internal/durable"
	"studioworker/session"
)

// EnvConfig names the environment variable that points at the config file.
const EnvConfig = "STUDIO_WORKER_CONFIG"

// ErrNoConfig: there is no config file yet (first run).
var ErrNoConfig = errors.New("no configuration yet")

// Config is the worker's configuration file (JSON, snake_case keys, mode 0600).
type Config struct {
	ServerURL         string  `json:"server_url"`
	WorkerID          string  `json:"worker_id"`
	AuthToken         string  `json:"auth_token"`
	Name              string  `json:"name"`
	AutoAccept        bool    `json:"auto_accept"`
	Paused            bool    `json:"paused"`
	VRAMThresholdGB   float64 `json:"vram_threshold_gb"`   // the user's cap; 0 = no cap
	MaxConcurrentJobs int     `json:"max_concurrent_jobs"` // 0 = one per GPU
	ReconnectAttempts int     `json:"reconnect_attempts"`  // 0 = forever
	AllowInsecure     bool    `json:"allow_insecure"`
	SpoolDir          string  `json:"spool_dir"` // "" = "spool" beside the config file
	// InputLimitMB is the most a job's input file may be (spec §6); 0 = 2048 (2 GiB).
	InputLimitMB int64 `json:"input_limit_mb,omitempty"`
	// SpoolFreeMarginMB is the free space the spool's disk must keep for offers to be taken;
	// 0 = 256, a negative value turns the check off.
	SpoolFreeMarginMB int64         `json:"spool_free_margin_mb,omitempty"`
	Engines           engine.Config `json:"engines"`
	GPU               GPUConfig     `json:"gpu"`
	// RetiredAutoStart only lets files written before autostart.go load: what starts the worker
	// with this computer is the OS's own record (the logon entry, the user unit), read each time,
	// never a copy here that could disagree with it. ParseConfig drops it; it is never written.
	RetiredAutoStart *bool `json:"auto_start,omitempty"`
}

// GPUConfig holds the GPU sampling, simulation and yield settings.
type GPUConfig struct {
	SampleIntervalS float64 `json:"sample_interval_s"` // default 2
	SafetyMarginMB  int64   `json:"safety_margin_mb"`  // free VRAM kept spare at admission; default 1024
	// UnifiedMemoryReserveMB is the unified memory (Apple silicon) kept back for macOS and the
	// creator's programs; 0 means the default (a quarter of it, at least 4 GB, about what Metal
	// itself keeps back from the GPU).
	UnifiedMemoryReserveMB int64         `json:"unified_memory_reserve_mb,omitempty"`
	Simulated              *SimulatedGPU `json:"simulated,omitempty"`
	Yield                  YieldConfig   `json:"yield"`
}

// SimulatedGPU stands in for a GPU where NVML is absent (the demo); it is always labelled simulated.
type SimulatedGPU struct {
	Name   string  `json:"name"`
	VRAMGB float64 `json:"vram_gb"`
}

// YieldConfig controls stepping aside when the user's own programs use the GPU.
type YieldConfig struct {
	Enabled       bool     `json:"enabled"`
	ThresholdMB   int64    `json:"threshold_mb"`   // default 512
	ResumeAfterS  float64  `json:"resume_after_s"` // default 30
	Ignore        []string `json:"ignore"`         // process names never yielded to, added to the defaults
	CancelRunning bool     `json:"cancel_running"` // cancel the running job (retryable) when yielding starts
}

// DefaultConfig is what a new worker starts with.
func DefaultConfig() Config {
	return Config{
		AutoAccept: true,
		Engines:    engine.DefaultConfig(),
		GPU: GPUConfig{
			SampleIntervalS: 2,
			SafetyMarginMB:  1024,
			Yield:           YieldConfig{Enabled: true, ThresholdMB: 512, ResumeAfterS: 30},
		},
	}
}

// ConfigError is a configuration problem: the file and, when known, the key at fault.
type ConfigError struct {
	Path string
	Key  string
	Msg  string
	Err  error
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("config ")
	b.WriteString(e.Path)
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

func (e *ConfigError) Unwrap() error { return e.Err }

// ConfigPath resolves where the config file is: the flag, then $STUDIO_WORKER_CONFIG, then
// os.UserConfigDir()/studio-worker/config.json.
func ConfigPath(flagValue string) (string, error) {
	if flagValue != "" {
		return filepath.Abs(flagValue)
	}
	if env := os.Getenv(EnvConfig); env != "" {
		return filepath.Abs(env)
	}
	return defaultConfigPath()
}

// defaultConfigPath is where the config file is when neither a flag nor $STUDIO_WORKER_CONFIG
// says otherwise: os.UserConfigDir()/studio-worker/config.json.
func defaultConfigPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the user config folder: %w (use --config PATH)", err)
	}
	return filepath.Join(dir, "studio-worker", "config.json"), nil
}

// LoadConfig reads and validates the config file. A missing file is ErrNoConfig (wrapped); any
// other problem is a *ConfigError naming the file and the key.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, fmt.Errorf("%s: %w", path, ErrNoConfig)
	}
	if err != nil {
		return Config{}, &ConfigError{Path: path, Msg: err.Error(), Err: err}
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			ce.Path = path
		}
		return Config{}, err
	}
	return cfg, nil
}

// ParseConfig decodes a config file's bytes over the defaults: unknown keys and wrong types are
// errors that name the key.
func ParseConfig(data []byte) (Config, error) {
	cfg := DefaultConfig()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	// Decode the engines over an empty map: the defaults apply only when the key is absent.
	var probe map[string]json.RawMessage
	if json.Unmarshal(data, &probe) == nil {
		if _, ok := probe["engines"]; ok {
			cfg.Engines = nil
		}
	}
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, decodeError(data, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Config{}, &ConfigError{Msg: "unexpected data after the JSON object"}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	cfg.RetiredAutoStart = nil
	return cfg, nil
}

func decodeError(data []byte, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		line, col := position(data, se.Offset)
		return &ConfigError{Msg: fmt.Sprintf("not valid JSON at line %d, column %d: %v", line, col, se), Err: err}
	case errors.As(err, &te):
		return &ConfigError{Key: te.Field, Msg: fmt.Sprintf("must be %s, not a JSON %s", typeWords(te.Type.Kind().String()), te.Value), Err: err}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		key := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &ConfigError{Key: key, Msg: "unknown key (a typo?)", Err: err}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &ConfigError{Msg: "the file is empty or cut short", Err: err}
	}
	return &ConfigError{Msg: err.Error(), Err: err}
}

func typeWords(kind string) string {
	switch kind {
	case "float64", "int", "int64":
		return "a number"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	case "slice":
		return "a list"
	case "map", "struct", "ptr":
		return "an object"
	}
	return kind
}

func position(data []byte, offset int64) (line, col int) {
	line, col = 1, 1
	for i := int64(0); i < offset && i < int64(len(data)); i++ {
		if data[i] == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

// Validate checks values that decode but cannot work, naming the key.
func (c *Config) Validate() error {
	bad := func(key, msg string) error { return &ConfigError{Key: key, Msg: msg} }
	if c.ServerURL != "" {
		if err := session.CheckServerURL(c.ServerURL, c.AllowInsecure); err != nil {
			_, why := registerProblem(err, c.ServerURL)
			return &ConfigError{Key: "server_url", Msg: why, Err: err}
		}
	}
	finite := func(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
	switch {
	case c.VRAMThresholdGB < 0 || !finite(c.VRAMThresholdGB):
		return bad("vram_threshold_gb", "must be 0 (no cap) or a positive number of GB")
	case c.MaxConcurrentJobs < 0 || c.MaxConcurrentJobs > 64:
		return bad("max_concurrent_jobs", "must be between 0 (one per GPU) and 64")
	case c.ReconnectAttempts < 0:
		return bad("reconnect_attempts", "must be 0 (retry forever) or a positive number")
	case c.InputLimitMB < 0:
		return bad("input_limit_mb", "must be 0 (2048 MB) or a positive number of MB")
	case c.GPU.SampleIntervalS != 0 && (c.GPU.SampleIntervalS < 0.1 || c.GPU.SampleIntervalS > 3600):
		return bad("gpu.sample_interval_s", "must be between 0.1 and 3600 seconds")
	case c.GPU.SafetyMarginMB < 0:
		return bad("gpu.safety_margin_mb", "must not be negative")
	case c.GPU.UnifiedMemoryReserveMB < 0:
		return bad("gpu.unified_memory_reserve_mb", "must be 0 (a quarter of the memory, at least 4 GB) or a positive number of MB")
	case c.GPU.Yield.ThresholdMB < 0:
		return bad("gpu.yield.threshold_mb", "must not be negative")
	case c.GPU.Yield.ResumeAfterS < 0:
		return bad("gpu.yield.resume_after_s", "must not be negative")
	case (c.WorkerID == "") != (c.AuthToken == ""):
		return bad("worker_id", "worker_id and auth_token go together: register again")
	}
	if s := c.GPU.Simulated; s != nil {
		if s.VRAMGB <= 0 || !finite(s.VRAMGB) {
			return bad("gpu.simulated.vram_gb", "must be a positive number of GB")
		}
	}
	if err := c.Engines.Validate(); err != nil {
		return &ConfigError{Key: "engines", Msg: err.Error(), Err: err}
	}
	return nil
}

// Registered reports whether the worker has credentials.
func (c *Config) Registered() bool { return c.WorkerID != "" && c.AuthToken != "" }

// spoolMarginMB is the free space offers need on the spool's disk; 0 turns the check off.
func (c *Config) spoolMarginMB() int64 {
	switch {
	case c.SpoolFreeMarginMB < 0:
		return 0
	case c.SpoolFreeMarginMB == 0:
		return 256 // room for a few image or audio results; a video needs the creator to set more
	}
	return c.SpoolFreeMarginMB
}

// SpoolPath returns the spool folder for a config file at path.
func (c *Config) SpoolPath(path string) string {
	if c.SpoolDir != "" {
		return c.SpoolDir
	}
	return filepath.Join(filepath.Dir(path), "spool")
}

// Redacted returns a copy without secrets, for status output and the control socket.
func (c Config) Redacted() Config {
	if c.AuthToken != "" {
		c.AuthToken = "(set)"
	}
	engines := make(engine.Config, len(c.Engines))
	for k, b := range c.Engines {
		if b.APIKey != "" {
			b.APIKey = "(set)"
		}
		engines[k] = b
	}
	c.Engines = engines
	return c
}

// SaveConfig writes the config atomically (temp file, fsync, rename) with mode 0600 in a 0700
// folder, so a crash leaves either the old file or the new one.
func SaveConfig(path string, c Config) error {
	if err := c.Validate(); err != nil {
		if ce, ok := err.(*ConfigError); ok {
			ce.Path = path
		}
		return err
	}
	data, err := encodeConfig(c)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create config folder: %w", err)
	}
	if err := durable.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// encodeConfig is the config file's content for c.
func encodeConfig(c Config) ([]byte, error) {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return append(data, '\n'), nil
}
