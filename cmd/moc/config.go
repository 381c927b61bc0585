package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// config is what `moc auth login` saves: the token and, when one was given,
// the API address. It lives in the user's configuration directory, readable
// by the user alone (0600 in a 0700 directory), as gh and doctl keep theirs.
type config struct {
	Token  string `json:"token,omitempty"`
	APIURL string `json:"api_url,omitempty"`
}

// configDir is $MOC_CONFIG_DIR, else the platform's user configuration
// directory (os.UserConfigDir's rules, read through getenv) plus "moc".
func configDir(getenv func(string) string) (string, error) {
	if d := getenv("MOC_CONFIG_DIR"); d != "" {
		return d, nil
	}
	var base string
	switch runtime.GOOS {
	case "windows":
		base = getenv("AppData")
	case "darwin", "ios":
		if h := getenv("HOME"); h != "" {
			base = filepath.Join(h, "Library", "Application Support")
		}
	default:
		base = getenv("XDG_CONFIG_HOME")
		if base == "" || !filepath.IsAbs(base) {
			base = ""
			if h := getenv("HOME"); h != "" {
				base = filepath.Join(h, ".config")
			}
		}
	}
	if base == "" {
		return "", errors.New("no configuration directory: set MOC_CONFIG_DIR or HOME (or use MOC_TOKEN)")
	}
	return filepath.Join(base, "moc"), nil
}

func configPath(getenv func(string) string) (string, error) {
	d, err := configDir(getenv)
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "config.json"), nil
}

// loadConfig reads the saved configuration; none is an empty one.
func loadConfig(getenv func(string) string) (config, error) {
	var cfg config
	p, err := configPath(getenv)
	if err != nil {
		return cfg, nil // nowhere to look: MOC_TOKEN must do
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return cfg, fmt.Errorf("read %s: %w", p, err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, fmt.Errorf("read %s: %w (delete it and run 'moc auth login')", p, err)
	}
	return cfg, nil
}

// saveConfig writes cfg with mode 0600, replacing the file atomically so a
// crash never leaves half a token behind.
func saveConfig(getenv func(string) string, cfg config) (string, error) {
	p, err := configPath(getenv)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".config-*.json")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	// CreateTemp makes the file 0600 already; Chmod says so for umask-proof
	// certainty and for platforms where it differs.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return "", err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return p, os.Rename(f.Name(), p)
}
