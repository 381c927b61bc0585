package config_test

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/config"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		mode    config.Mode
		env     map[string]string
		check   func(t *testing.T, c config.Config)
		wantErr []string // each in the error; nil: no error
	}{
		{
			name: "dev works with nothing set",
			mode: config.ModeDev, env: map[string]string{},
			check: func(t *testing.T, c config.Config) {
				if c.Pepper != config.DevPepper || c.SecretKey != config.DevSecretKey {
					t.Errorf("dev secrets: %q %q", c.Pepper, c.SecretKey)
				}
				if c.FlysimDelay != 300*time.Millisecond || !c.WebhookAllowPrivate || !c.UseEmbeddedFlysim() {
					t.Errorf("dev defaults: %+v", c)
				}
				if c.Listen != "127.0.0.1:8080" || c.Retention != 2160*time.Hour || c.RateLimitTimeout != 500*time.Millisecond || c.LogLevel != slog.LevelInfo || c.DBMaxConns != 0 {
					t.Errorf("defaults: %+v", c)
				}
			},
		},
		{
			name: "prod fakes no secret and allows no private webhook",
			mode: config.ModeProd, env: map[string]string{},
			check: func(t *testing.T, c config.Config) {
				if c.Pepper != "" || c.SecretKey != "" || c.WebhookAllowPrivate || c.FlysimDelay != 0 || c.UseEmbeddedFlysim() {
					t.Errorf("prod defaults: %+v", c)
				}
				if err := c.RequirePepper(); err == nil || !strings.Contains(err.Error(), "MOC_PEPPER is required") {
					t.Errorf("RequirePepper: %v", err)
				}
				if err := c.RequireSecretKey(); err == nil || !strings.Contains(err.Error(), "MOC_SECRET_KEY is required") {
					t.Errorf("RequireSecretKey: %v", err)
				}
				if err := c.RequireFly(); err == nil || !strings.Contains(err.Error(), "FLY_API_TOKEN is required for the worker") {
					t.Errorf("RequireFly: %v", err)
				}
			},
		},
		{
			name: "every setting read",
			mode: config.ModeProd,
			env: map[string]string{
				"DATABASE_URL": "postgres://u:pw@db/x", "REDIS_URL": "redis://r:6379/1", "MOC_LISTEN": ":9000",
				"MOC_PEPPER": strings.Repeat("p", 16), "MOC_SECRET_KEY": strings.Repeat("s", 16),
				"MOC_TLS_CERT": "c.pem", "MOC_TLS_KEY": "k.pem", "MOC_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1",
				"MOC_INSECURE_HTTP": "true", "FLY_API_TOKEN": "tok", "FLY_ORG": "acme", "FLY_FLAPS_BASE_URL": "http://flaps",
				"MOC_INSTANCE_IMAGE": "img:1", "MOC_WEBHOOK_ALLOW_PRIVATE": "true", "FLYSIM_LISTEN": ":4281",
				"FLYSIM_DELAY": "1s", "MOC_RETENTION": "24h", "MOC_RATELIMIT_TIMEOUT": "2s", "MOC_LOG_LEVEL": "debug",
				"MOC_DB_MAX_CONNS": "12",
			},
			check: func(t *testing.T, c config.Config) {
				want := config.Config{
					Mode: config.ModeProd, DatabaseURL: "postgres://u:pw@db/x", RedisURL: "redis://r:6379/1", Listen: ":9000",
					Pepper: strings.Repeat("p", 16), SecretKey: strings.Repeat("s", 16), TLSCert: "c.pem", TLSKey: "k.pem",
					TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.1/32")},
					InsecureHTTP:   true, FlyAPIToken: "tok", FlyOrg: "acme", FlyAPIBaseURL: "http://flaps", InstanceImage: "img:1",
					WebhookAllowPrivate: true, FlysimListen: ":4281", FlysimDelay: time.Second, Retention: 24 * time.Hour,
					RateLimitTimeout: 2 * time.Second, LogLevel: slog.LevelDebug, DBMaxConns: 12,
				}
				if c.Mode != want.Mode || c.DatabaseURL != want.DatabaseURL || c.RedisURL != want.RedisURL || c.Listen != want.Listen ||
					c.Pepper != want.Pepper || c.SecretKey != want.SecretKey || c.TLSCert != want.TLSCert || c.TLSKey != want.TLSKey ||
					len(c.TrustedProxies) != 2 || c.TrustedProxies[0] != want.TrustedProxies[0] || c.TrustedProxies[1] != want.TrustedProxies[1] ||
					c.InsecureHTTP != want.InsecureHTTP || c.FlyAPIToken != want.FlyAPIToken || c.FlyOrg != want.FlyOrg ||
					c.FlyAPIBaseURL != want.FlyAPIBaseURL || c.InstanceImage != want.InstanceImage ||
					c.WebhookAllowPrivate != want.WebhookAllowPrivate || c.FlysimListen != want.FlysimListen ||
					c.FlysimDelay != want.FlysimDelay || c.Retention != want.Retention ||
					c.RateLimitTimeout != want.RateLimitTimeout || c.LogLevel != want.LogLevel || c.DBMaxConns != want.DBMaxConns {
					t.Errorf("got  %+v\nwant %+v", c, want)
				}
				for _, need := range []func() error{c.RequirePepper, c.RequireSecretKey, c.RequireFly} {
					if err := need(); err != nil {
						t.Errorf("a Require… failed with every setting given: %v", err)
					}
				}
			},
		},
		{
			name: "FLY_API_BASE_URL wins over FLY_FLAPS_BASE_URL",
			mode: config.ModeDev, env: map[string]string{"FLY_API_BASE_URL": "http://a", "FLY_FLAPS_BASE_URL": "http://b"},
			check: func(t *testing.T, c config.Config) {
				if c.FlyAPIBaseURL != "http://a" || c.UseEmbeddedFlysim() {
					t.Errorf("FlyAPIBaseURL %q, embedded %v", c.FlyAPIBaseURL, c.UseEmbeddedFlysim())
				}
				if err := c.RequireFly(); err == nil || !strings.Contains(err.Error(), "unset FLY_API_BASE_URL") {
					t.Errorf("dev RequireFly with a base URL and no token: %v", err)
				}
			},
		},
		{
			name: "every bad value named at once",
			mode: config.ModeProd,
			env: map[string]string{
				"MOC_INSECURE_HTTP": "yes please", "MOC_WEBHOOK_ALLOW_PRIVATE": "2", "FLYSIM_DELAY": "-1s",
				"MOC_RETENTION": "30m", "MOC_RATELIMIT_TIMEOUT": "0s", "MOC_LOG_LEVEL": "loud",
				"MOC_DB_MAX_CONNS": "2", "MOC_TRUSTED_PROXIES": "10.0.0.0/8,not-an-address", "MOC_TLS_CERT": "c.pem",
				"MOC_PEPPER": "short", "MOC_SECRET_KEY": "short",
			},
			wantErr: []string{"MOC_INSECURE_HTTP", "MOC_WEBHOOK_ALLOW_PRIVATE", "FLYSIM_DELAY", "MOC_RETENTION",
				"MOC_RATELIMIT_TIMEOUT", "MOC_LOG_LEVEL", "MOC_DB_MAX_CONNS", `"not-an-address"`, "MOC_TLS_CERT and MOC_TLS_KEY",
				"MOC_PEPPER: at least 16", "MOC_SECRET_KEY: at least 16"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Load(tt.mode, envOf(tt.env))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				tt.check(t, c)
				return
			}
			if err == nil {
				t.Fatal("Load accepted bad values")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not name %s:\n%v", w, err)
				}
			}
		})
	}
}

func TestLogValueMasksSecrets(t *testing.T) {
	c, err := config.Load(config.ModeProd, envOf(map[string]string{
		"DATABASE_URL": "postgres://u:db-password@db/x", "REDIS_URL": "redis://:redis-password@r:6379/0",
		"MOC_PEPPER": "pepper-0123456789", "MOC_SECRET_KEY": "secret-0123456789", "FLY_API_TOKEN": "fly-token",
	}))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", slog.Any("config", c))
	for _, secret := range []string{"db-password", "redis-password", "pepper-0123456789", "secret-0123456789", "fly-token"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("logged config shows %s: %s", secret, buf.String())
		}
	}
	if !strings.Contains(buf.String(), `"fly_api_token":"***"`) {
		t.Errorf("logged config: %s", buf.String())
	}
}
