// Package config is mocd's one configuration struct, filled from environment
// variables with defaults that make `mocd dev` work with zero setup, and
// validated at start so that a bad setting stops the process with one clear
// line instead of failing at the first request.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/myopenclaw/mocd/store"
)

// Mode says which process is starting: dev relaxes transport and secrets.
type Mode string

// Modes.
const (
	ModeDev  Mode = "dev"
	ModeProd Mode = "prod"
)

// DevPepper is the dev-only token pepper; outside dev, a command that
// needs the pepper refuses to start without MOC_PEPPER (RequirePepper).
const DevPepper = "mocd-dev-pepper-not-for-production"

// DevSecretKey encrypts webhook secrets at rest in dev only.
const DevSecretKey = "mocd-dev-secret-key-not-for-production"

// Config is every setting of every mocd process.
type Config struct {
	Mode        Mode
	DatabaseURL string
	RedisURL    string
	Listen      string
	Pepper      string
	SecretKey   string
	// SecretKeyPrevious are earlier MOC_SECRET_KEYs, still accepted for
	// opening what they sealed while a rotation completes.
	SecretKeyPrevious   []string
	TLSCert             string
	TLSKey              string
	TrustedProxies      []netip.Prefix
	InsecureHTTP        bool
	FlyAPIToken         string
	FlyOrg              string
	FlyAPIBaseURL       string
	InstanceImage       string
	WebhookAllowPrivate bool
	FlysimListen        string
	FlysimDelay         time.Duration
	FlysimPropagation   time.Duration
	FlyLeaseTTL         time.Duration
	FlysimChaos         float64
	FlysimSeed          uint64
	Retention           time.Duration
	RateLimitTimeout    time.Duration
	LogLevel            slog.Level
	// DBMaxConns sizes each process's Postgres pool (MOC_DB_MAX_CONNS);
	// 0 leaves store.DefaultMaxConns.
	DBMaxConns int
	// MetricsListen is where `mocd worker` serves its own /metrics; empty
	// when MOC_METRICS_LISTEN is "off". The api serves /metrics on Listen,
	// and `mocd dev` shows every process's series there.
	MetricsListen string
	// DebugListen, when set, is a loopback address where mocd api (or
	// mocd worker) serves net/http/pprof (MOC_DEBUG_LISTEN; off by default): profiles of the
	// real binary, for make bench and for an operator on the host.
	DebugListen string
	// VersionsFile is the operator's catalog of OpenClaw versions
	// (package versions); empty means the one version InstanceImage.
	VersionsFile string
	// UpgradeTimeout bounds how long a new version has to come up healthy
	// before the worker rolls it back.
	UpgradeTimeout time.Duration
	// FlysimUnhealthyImages are images whose machines the emulator makes
	// fail their health checks (to try a rollback).
	FlysimUnhealthyImages []string
}

// MinDBConns is the smallest Postgres pool a process may be given: the
// worker holds an instance's lock on a connection of its own while it
// runs an operation, and needs others beside it to record progress.
const MinDBConns = 4

// Load reads the environment for the given mode and checks every value
// set; in dev, the secrets default to dev-only values. Whether a setting a
// command needs is there is the command's check (RequirePepper and the
// others). getenv is os.Getenv in production and a map in tests.
func Load(mode Mode, getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	get := func(k, def string) string {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
		return def
	}
	dev := mode == ModeDev
	c := Config{
		Mode:          mode,
		DatabaseURL:   get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mocd?sslmode=disable"),
		RedisURL:      get("REDIS_URL", "redis://127.0.0.1:6379/0"),
		Listen:        get("MOC_LISTEN", "127.0.0.1:8080"),
		Pepper:        get("MOC_PEPPER", ""),
		SecretKey:     get("MOC_SECRET_KEY", ""),
		TLSCert:       get("MOC_TLS_CERT", ""),
		TLSKey:        get("MOC_TLS_KEY", ""),
		FlyAPIToken:   get("FLY_API_TOKEN", ""),
		FlyOrg:        get("FLY_ORG", "personal"),
		FlyAPIBaseURL: get("FLY_API_BASE_URL", get("FLY_FLAPS_BASE_URL", "")),
		InstanceImage: get("MOC_INSTANCE_IMAGE", "ghcr.io/openclaw/openclaw:latest"),
		FlysimListen:  get("FLYSIM_LISTEN", "127.0.0.1:4280"),
		MetricsListen: get("MOC_METRICS_LISTEN", "127.0.0.1:9091"),
		DebugListen:   get("MOC_DEBUG_LISTEN", ""),
		VersionsFile:  get("MOC_VERSIONS_FILE", ""),
	}
	for _, img := range strings.Split(get("FLYSIM_UNHEALTHY_IMAGES", ""), ",") {
		if img = strings.TrimSpace(img); img != "" {
			c.FlysimUnhealthyImages = append(c.FlysimUnhealthyImages, img)
		}
	}
	if strings.EqualFold(c.MetricsListen, "off") {
		c.MetricsListen = ""
	}
	for _, k := range strings.Split(get("MOC_SECRET_KEY_PREVIOUS", ""), ",") {
		if k = strings.TrimSpace(k); k != "" {
			c.SecretKeyPrevious = append(c.SecretKeyPrevious, k)
		}
	}
	var errs []error
	var err error
	if c.InsecureHTTP, err = parseBool(get("MOC_INSECURE_HTTP", "false")); err != nil {
		errs = append(errs, fmt.Errorf("MOC_INSECURE_HTTP: %w", err))
	}
	if c.WebhookAllowPrivate, err = parseBool(get("MOC_WEBHOOK_ALLOW_PRIVATE", strconv.FormatBool(dev))); err != nil {
		errs = append(errs, fmt.Errorf("MOC_WEBHOOK_ALLOW_PRIVATE: %w", err))
	}
	defDelay := "0s"
	if dev {
		defDelay = "300ms"
	}
	if c.FlysimDelay, err = time.ParseDuration(get("FLYSIM_DELAY", defDelay)); err != nil || c.FlysimDelay < 0 {
		errs = append(errs, fmt.Errorf("FLYSIM_DELAY: want a duration such as 300ms, got %q", getenv("FLYSIM_DELAY")))
	}
	if c.FlyLeaseTTL, err = time.ParseDuration(get("MOC_FLY_LEASE_TTL", "30s")); err != nil || c.FlyLeaseTTL < time.Second {
		errs = append(errs, fmt.Errorf("MOC_FLY_LEASE_TTL: want a duration of at least 1s such as 30s, got %q", getenv("MOC_FLY_LEASE_TTL")))
	}
	if c.FlysimPropagation, err = time.ParseDuration(get("FLYSIM_PROPAGATION", "2s")); err != nil || c.FlysimPropagation < 0 {
		errs = append(errs, fmt.Errorf("FLYSIM_PROPAGATION: want a duration such as 2s, got %q", getenv("FLYSIM_PROPAGATION")))
	}
	if c.FlysimChaos, err = strconv.ParseFloat(get("FLYSIM_CHAOS", "0"), 64); err != nil || c.FlysimChaos < 0 || c.FlysimChaos > 1 {
		errs = append(errs, fmt.Errorf("FLYSIM_CHAOS: want a share of calls from 0 to 1 such as 0.1, got %q", getenv("FLYSIM_CHAOS")))
	}
	if c.FlysimSeed, err = strconv.ParseUint(get("FLYSIM_SEED", "0"), 10, 64); err != nil {
		errs = append(errs, fmt.Errorf("FLYSIM_SEED: want a whole number, got %q", getenv("FLYSIM_SEED")))
	}
	if c.Retention, err = time.ParseDuration(get("MOC_RETENTION", "2160h")); err != nil || c.Retention < time.Hour {
		errs = append(errs, fmt.Errorf("MOC_RETENTION: want a duration of at least 1h such as 2160h, got %q", getenv("MOC_RETENTION")))
	}
	if c.UpgradeTimeout, err = time.ParseDuration(get("MOC_UPGRADE_TIMEOUT", "5m")); err != nil || c.UpgradeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("MOC_UPGRADE_TIMEOUT: want a duration such as 5m, got %q", getenv("MOC_UPGRADE_TIMEOUT")))
	}
	if c.RateLimitTimeout, err = time.ParseDuration(get("MOC_RATELIMIT_TIMEOUT", "500ms")); err != nil || c.RateLimitTimeout <= 0 {
		errs = append(errs, fmt.Errorf("MOC_RATELIMIT_TIMEOUT: want a duration such as 500ms, got %q", getenv("MOC_RATELIMIT_TIMEOUT")))
	}
	if v := get("MOC_DB_MAX_CONNS", ""); v != "" {
		if c.DBMaxConns, err = strconv.Atoi(v); err != nil || c.DBMaxConns < MinDBConns {
			errs = append(errs, fmt.Errorf("MOC_DB_MAX_CONNS: want a whole number of at least %d such as 32, got %q", MinDBConns, v))
		}
	}
	if err := c.LogLevel.UnmarshalText([]byte(get("MOC_LOG_LEVEL", "info"))); err != nil {
		errs = append(errs, fmt.Errorf("MOC_LOG_LEVEL: %w", err))
	}
	for _, p := range strings.Split(get("MOC_TRUSTED_PROXIES", ""), ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			addr, aerr := netip.ParseAddr(p)
			if aerr != nil {
				errs = append(errs, fmt.Errorf("MOC_TRUSTED_PROXIES: %q is neither a CIDR nor an address", p))
				continue
			}
			pfx = netip.PrefixFrom(addr, addr.BitLen())
		}
		c.TrustedProxies = append(c.TrustedProxies, pfx)
	}
	if c.DebugListen != "" && !loopbackAddr(c.DebugListen) {
		errs = append(errs, fmt.Errorf("MOC_DEBUG_LISTEN: profiles are served on loopback only (such as 127.0.0.1:6060), got %q", c.DebugListen))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("MOC_TLS_CERT and MOC_TLS_KEY must be set together"))
	}
	if dev {
		if c.Pepper == "" {
			c.Pepper = DevPepper
		}
		if c.SecretKey == "" {
			c.SecretKey = DevSecretKey
		}
	}
	if c.Pepper != "" && len(c.Pepper) < 16 {
		errs = append(errs, errors.New("MOC_PEPPER: at least 16 characters (generate one with `openssl rand -hex 32`)"))
	}
	if c.SecretKey != "" && len(c.SecretKey) < 16 {
		errs = append(errs, errors.New("MOC_SECRET_KEY: at least 16 characters (generate one with `openssl rand -hex 32`)"))
	}
	return c, errors.Join(errs...)
}

// RequirePepper checks that MOC_PEPPER is set: the api checks tokens with
// it and mocd admin mints them with it, so both must use the same one.
func (c Config) RequirePepper() error {
	if c.Pepper == "" {
		return errors.New("MOC_PEPPER is required: the HMAC key of API tokens, the same for the api and mocd admin (at least 16 characters; generate one with `openssl rand -hex 32`)")
	}
	return nil
}

// RequireSecretKey checks that MOC_SECRET_KEY is set: it seals webhook
// signing secrets and stored idempotent answers.
func (c Config) RequireSecretKey() error {
	if c.SecretKey == "" {
		return errors.New("MOC_SECRET_KEY is required: it encrypts webhook secrets and stored answers at rest (at least 16 characters; generate one with `openssl rand -hex 32`)")
	}
	return nil
}

// UseEmbeddedFlysim reports whether mocd dev should run the Machines API
// emulator in-process: neither FLY_API_BASE_URL nor FLY_API_TOKEN is set.
func (c Config) UseEmbeddedFlysim() bool {
	return c.Mode == ModeDev && c.FlyAPIBaseURL == "" && c.FlyAPIToken == ""
}

// RequireFly checks the settings a worker needs to reach a Machines API
// other than mocd dev's embedded emulator: a token, which Fly checks on
// every call (without it every operation would fail with a 401).
func (c Config) RequireFly() error {
	if c.FlyAPIToken != "" {
		return nil
	}
	if c.Mode == ModeDev && c.FlyAPIBaseURL != "" {
		return fmt.Errorf("FLY_API_TOKEN is required when FLY_API_BASE_URL (%s) points mocd dev at another Machines API: set FLY_API_TOKEN (any value for `mocd flysim`), or unset FLY_API_BASE_URL to use the embedded emulator", c.FlyAPIBaseURL)
	}
	return errors.New("FLY_API_TOKEN is required for the worker (a Fly.io API token, or any value when FLY_API_BASE_URL points at `mocd flysim`)")
}

// loopbackAddr reports whether addr is host:port with a loopback IP host
// (a name such as localhost could resolve elsewhere).
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func parseBool(s string) (bool, error) {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("want true or false, got %q", s)
	}
	return b, nil
}

// LogValue masks secrets so that the config can be logged whole.
func (c Config) LogValue() slog.Value {
	mask := func(s string) string {
		if s == "" {
			return ""
		}
		return "***"
	}
	return slog.GroupValue(
		slog.String("mode", string(c.Mode)),
		slog.String("database_url", store.Redact(c.DatabaseURL)),
		slog.String("redis_url", store.Redact(c.RedisURL)),
		slog.String("listen", c.Listen),
		slog.String("pepper", mask(c.Pepper)),
		slog.String("secret_key", mask(c.SecretKey)),
		slog.Int("secret_key_previous", len(c.SecretKeyPrevious)),
		slog.Bool("tls", c.TLSCert != ""),
		slog.Int("trusted_proxies", len(c.TrustedProxies)),
		slog.Bool("insecure_http", c.InsecureHTTP),
		slog.String("fly_api_token", mask(c.FlyAPIToken)),
		slog.String("fly_api_base_url", c.FlyAPIBaseURL),
		slog.String("fly_org", c.FlyOrg),
		slog.String("instance_image", c.InstanceImage),
		slog.String("versions_file", c.VersionsFile),
		slog.Duration("upgrade_timeout", c.UpgradeTimeout),
		slog.Bool("webhook_allow_private", c.WebhookAllowPrivate),
		slog.String("metrics_listen", c.MetricsListen),
		slog.String("debug_listen", c.DebugListen),
	)
}
