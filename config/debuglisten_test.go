package config_test

import (
	"strings"
	"testing"

	"github.com/myopenclaw/mocd/config"
)

// TestDebugListenLoopbackOnly: the profiling listener is off by default
// and never binds beyond loopback.
func TestDebugListenLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{"", true},
		{"127.0.0.1:6060", true},
		{"[::1]:6060", true},
		{"0.0.0.0:6060", false},
		{":6060", false},
		{"10.0.0.5:6060", false},
		{"localhost:6060", false},
		{"127.0.0.1", false},
	} {
		env := map[string]string{"MOC_DEBUG_LISTEN": tc.value}
		c, err := config.Load(config.ModeDev, func(k string) string { return env[k] })
		if tc.ok && (err != nil || c.DebugListen != tc.value) {
			t.Errorf("MOC_DEBUG_LISTEN=%q: %v, DebugListen %q", tc.value, err, c.DebugListen)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "MOC_DEBUG_LISTEN")) {
			t.Errorf("MOC_DEBUG_LISTEN=%q accepted (err %v)", tc.value, err)
		}
	}
}
