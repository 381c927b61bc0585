package ratelimit

import (
	"net/netip"
	"time"

	"github.com/myopenclaw/mocd/plan"
)

// Policy names, as clients see them in RateLimit-Policy.
const (
	KeyMinute     = "key-minute"
	KeyHour       = "key-hour"
	AccountMinute = "account-minute"
	AddressMinute = "address-minute"
)

// FailedAuthsPerMinute is how many rejected tokens one client address may
// present per minute before it is refused without a database lookup.
const FailedAuthsPerMinute = 60

// ForPlan returns the limits a request made with API key keyID of account
// accountID must pass: the key's per-minute and per-hour limits and the
// account's per-minute ceiling, from plan.Of. It returns nil for a plan
// without API access, whose keys are refused before rate limiting (Allow
// refuses an empty list rather than admit it).
//
// The keys share the hash tag {accountID}, so one call stays in one slot of
// a Redis Cluster.
func ForPlan(planName, keyID, accountID string) []Limit {
	p := plan.Of(planName)
	if !p.APIAccess {
		return nil
	}
	acct := "{" + accountID + "}:"
	return []Limit{
		fromRate(acct+"key:"+keyID+":m", KeyMinute, p.KeyPerMinute),
		fromRate(acct+"key:"+keyID+":h", KeyHour, p.KeyPerHour),
		fromRate(acct+"acct:m", AccountMinute, p.AccountPerMin),
	}
}

func fromRate(key, name string, r plan.Rate) Limit {
	return Limit{Key: key, Name: name, Rate: r.Limit, Period: r.Period}
}

// ForAddress returns the limit on failed authentications from client address
// ip: FailedAuthsPerMinute per minute. The HTTP layer spends it (Allow) when
// it rejects a token and Checks it before looking a token up. IPv6 addresses
// count per /64, since one host usually holds a whole /64 and could
// otherwise rotate through it; an address that does not parse counts as
// given.
func ForAddress(ip string) []Limit {
	if a, err := netip.ParseAddr(ip); err == nil {
		a = a.Unmap()
		if p, err := a.Prefix(64); a.Is6() && err == nil {
			ip = p.String()
		} else {
			ip = a.String()
		}
	}
	return []Limit{{Key: "addr:" + ip + ":m", Name: AddressMinute, Rate: FailedAuthsPerMinute, Period: time.Minute}}
}
