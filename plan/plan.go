// Package plan is the one table of what each account plan allows: API access,
// instance quota and rate limits. Everything that enforces or reports a limit
// reads it from here.
package plan

import "time"

// Name is an account plan.
type Name string

// The plans of API.md.
const (
	Free     Name = "free"
	Pro      Name = "pro"
	Business Name = "business"
)

// Rate is a request allowance over a window.
type Rate struct {
	Limit  int           `json:"limit"`
	Period time.Duration `json:"-"`
	Window string        `json:"window"`
}

// Limits is what a plan allows.
type Limits struct {
	APIAccess      bool `json:"api_access"`
	Instances      int  `json:"instance_limit"`
	KeyPerMinute   Rate `json:"-"`
	KeyPerHour     Rate `json:"-"`
	AccountPerMin  Rate `json:"-"`
	RequestsPerDay int  `json:"-"`
	// VolumeGB is the size of each instance's persistent data volume.
	VolumeGB int `json:"-"`
}

func perMinute(n int) Rate { return Rate{Limit: n, Period: time.Minute, Window: "minute"} }
func perHour(n int) Rate   { return Rate{Limit: n, Period: time.Hour, Window: "hour"} }

var table = map[Name]Limits{
	Free:     {APIAccess: false},
	Pro:      {APIAccess: true, Instances: 6, KeyPerMinute: perMinute(120), KeyPerHour: perHour(2000), AccountPerMin: perMinute(300), VolumeGB: 10},
	Business: {APIAccess: true, Instances: 21, KeyPerMinute: perMinute(600), KeyPerHour: perHour(10000), AccountPerMin: perMinute(1500), VolumeGB: 40},
}

// Valid reports whether n names a plan.
func Valid(n string) bool {
	_, ok := table[Name(n)]
	return ok
}

// Of returns the limits of plan n; an unknown plan has no API access.
func Of(n string) Limits {
	return table[Name(n)]
}
