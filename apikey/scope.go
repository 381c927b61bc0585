package apikey

import (
	"fmt"
	"slices"
	"strings"
)

// The 11 scopes of API.md.
const (
	InstanceRead   = "instance:read"
	InstanceWrite  = "instance:write"
	InstanceDelete = "instance:delete"
	OperationsRead = "operations:read"
	KeysRead       = "keys:read"
	KeysWrite      = "keys:write"
	WebhooksRead   = "webhooks:read"
	WebhooksWrite  = "webhooks:write"
	LogsRead       = "logs:read"
	UsageRead      = "usage:read"
	AccountRead    = "account:read"
)

// AllScopes lists every scope in a stable order.
var AllScopes = []string{
	InstanceRead, InstanceWrite, InstanceDelete, OperationsRead,
	KeysRead, KeysWrite, WebhooksRead, WebhooksWrite,
	LogsRead, UsageRead, AccountRead,
}

// Presets accepted in place of a scope list.
const (
	PresetReadOnly = "read-only"
	PresetWrite    = "write"
	PresetFull     = "full"
)

func readOnly() []string {
	var out []string
	for _, s := range AllScopes {
		if strings.HasSuffix(s, ":read") {
			out = append(out, s)
		}
	}
	return out
}

// Expand turns a list of scopes and presets into a sorted, de-duplicated
// scope list, or says which entry is unknown.
func Expand(in []string) ([]string, error) {
	var out []string
	for _, s := range in {
		switch s {
		case PresetReadOnly:
			out = append(out, readOnly()...)
		case PresetWrite:
			out = append(out, readOnly()...)
			out = append(out, InstanceWrite)
		case PresetFull:
			out = append(out, AllScopes...)
		default:
			if !slices.Contains(AllScopes, s) {
				return nil, fmt.Errorf("unknown scope %q", s)
			}
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Missing returns the scopes of want that have does not hold.
func Missing(have, want []string) []string {
	var out []string
	for _, s := range want {
		if !slices.Contains(have, s) {
			out = append(out, s)
		}
	}
	return out
}
