package wirecount

import "testing"

func TestKeyShape(t *testing.T) {
	for _, tc := range []struct{ key, want string }{
		{"moc:rl:{acct_abc}:key:key_x:m", "moc:rl:…"},
		{"asynq:{lifecycle}:t:op_123", "asynq:{lifecycle}:t:…"},
		{"asynq:{lifecycle}:pending", "asynq:{lifecycle}:pending"},
		{"asynq:servers", "asynq:servers"},
	} {
		if got := keyShape(tc.key); got != tc.want {
			t.Errorf("keyShape(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}
