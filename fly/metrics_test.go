package fly

import "testing"

// TestRouteIsATemplate: whatever the path, the route label is one of a
// fixed set of templates, never a name, an id or raw input.
func TestRouteIsATemplate(t *testing.T) {
	tests := []struct{ path, want string }{
		{"/v1/apps", "/v1/apps"},
		{"/v1/apps/moc-0123456789abcdef0123", "/v1/apps/{app}"},
		{"/v1/apps/a/machines", "/v1/apps/{app}/machines"},
		{"/v1/apps/a/machines/3d8d413b29d089", "/v1/apps/{app}/machines/{id}"},
		{"/v1/apps/a/machines/3d8d413b29d089/start", "/v1/apps/{app}/machines/{id}/start"},
		{"/v1/apps/a/machines/3d8d413b29d089/wait", "/v1/apps/{app}/machines/{id}/wait"},
		{"/prefix/v1/apps/a/machines/m/lease", "/v1/apps/{app}/machines/{id}/lease"},
		{"/v1/apps/a/machines/m/<script>", "other"},
		{"/v1/apps/a/machines/m/start/extra", "other"},
		{"/v1/apps/a/volumes", "/v1/apps/{app}/volumes"},
		{"/v1/apps/a/volumes/vol_0123", "/v1/apps/{app}/volumes/{id}"},
		{"/v1/apps/a/volumes/vol_0123/extend", "other"},
		{"/v1/apps/a/secrets", "other"},
		{"/v1/orgs/x", "other"},
		{"/v2/apps", "other"},
		{"", "other"},
		{"/v1/", "other"},
	}
	for _, tt := range tests {
		if got := Route(tt.path); got != tt.want {
			t.Errorf("Route(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

func TestResultOf(t *testing.T) {
	tests := []struct {
		code int
		want string
	}{
		{200, resultOK}, {201, resultOK}, {404, resultRejected}, {422, resultRejected}, {409, resultRejected},
		{429, resultTransient}, {502, resultTransient}, {503, resultTransient}, {504, resultTransient},
		{500, resultError}, {501, resultError},
	}
	for _, tt := range tests {
		if got := resultOf(tt.code); got != tt.want {
			t.Errorf("resultOf(%d) = %q, want %q", tt.code, got, tt.want)
		}
	}
}
