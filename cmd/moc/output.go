package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/myopenclaw/mocd/client"
)

// print writes v as one JSON document (-o json) or as a table.
func (a *app) print(v any) error {
	if a.json() {
		return writeJSON(a.io.Stdout, v)
	}
	tw := tabwriter.NewWriter(a.io.Stdout, 0, 4, 2, ' ', 0)
	a.table(tw, v)
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func row(w io.Writer, cells ...string) {
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

// colour paints a status on a terminal that wants colour (NO_COLOR unset).
func (a *app) colour(s string) string {
	if !a.io.StdoutTTY || a.io.Getenv("NO_COLOR") != "" || a.io.Getenv("TERM") == "dumb" {
		return s
	}
	code := ""
	switch s {
	case "running", "succeeded", "true":
		code = "32"
	case "failed", "cancelled", "deleted", "false":
		code = "31"
	case "pending", "creating", "starting", "stopping", "restarting", "deleting":
		code = "33"
	}
	if code == "" {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func tsp(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return ts(*t)
}

func strp(s *string) string {
	if s == nil || *s == "" {
		return "-"
	}
	return *s
}

func intp(n *int) string {
	if n == nil {
		return "-"
	}
	return strconv.Itoa(*n)
}

func (a *app) table(w io.Writer, v any) {
	switch v := v.(type) {
	case []client.Instance:
		row(w, "ID", "SUBDOMAIN", "STATUS", "VERSION", "REGION", "VOLUME", "URL", "CREATED")
		for _, i := range v {
			row(w, i.ID, i.Subdomain, a.colour(string(i.Status)), i.Version, i.FlyRegion, strconv.Itoa(i.VolumeGB)+" GB", i.URL, ts(i.CreatedAt))
		}
	case *client.Instance:
		a.table(w, []client.Instance{*v})
	case []client.Operation:
		row(w, "ID", "TYPE", "STATUS", "INSTANCE", "CREATED", "FINISHED", "ERROR")
		for _, o := range v {
			e := "-"
			if o.Error != nil {
				e = o.Error.Code + ": " + o.Error.Message
			}
			row(w, o.ID, string(o.Type), a.colour(string(o.Status)), o.InstanceID, ts(o.CreatedAt), tsp(o.FinishedAt), e)
		}
	case *client.Operation:
		a.table(w, []client.Operation{*v})
	case []client.InstanceEvent:
		row(w, "ID", "TIME", "FROM", "TO", "OPERATION")
		for _, e := range v {
			from := "-"
			if e.FromStatus != nil {
				from = string(*e.FromStatus)
			}
			row(w, e.ID, ts(e.CreatedAt), from, a.colour(string(e.ToStatus)), strp(e.OperationID))
		}
	case []client.Key:
		row(w, "ID", "NAME", "PREFIX", "SCOPES", "LAST USED", "EXPIRES")
		for _, k := range v {
			scopes := make([]string, len(k.Scopes))
			for i, s := range k.Scopes {
				scopes[i] = string(s)
			}
			row(w, k.ID, k.Name, k.Prefix, strings.Join(scopes, ","), tsp(k.LastUsedAt), tsp(k.ExpiresAt))
		}
	case *client.KeyWithToken:
		a.table(w, []client.Key{v.Key})
		row(w)
		row(w, "TOKEN (shown once; store it now):", v.Token)
	case []client.WebhookEndpoint:
		row(w, "ID", "URL", "EVENTS", "ENABLED", "CREATED")
		for _, e := range v {
			events := make([]string, len(e.Events))
			for i, s := range e.Events {
				events[i] = string(s)
			}
			row(w, e.ID, e.URL, strings.Join(events, ","), a.colour(strconv.FormatBool(e.Enabled)), ts(e.CreatedAt))
		}
	case *client.WebhookEndpoint:
		a.table(w, []client.WebhookEndpoint{*v})
	case *client.WebhookEndpointWithSecret:
		a.table(w, []client.WebhookEndpoint{v.WebhookEndpoint})
		row(w)
		row(w, "SIGNING SECRET (shown once; store it now):", v.Secret)
	case []client.WebhookDelivery:
		row(w, "ID", "EVENT", "STATUS", "ATTEMPTS", "LAST STATUS", "CREATED", "FAILURE")
		for _, d := range v {
			row(w, d.ID, string(d.EventType), a.colour(string(d.Status)), strconv.Itoa(d.Attempts), intp(d.LastStatusCode), ts(d.CreatedAt), strp(d.FailureReason))
		}
	case *client.WebhookDelivery:
		a.table(w, []client.WebhookDelivery{*v})
	case []client.AuditEntry:
		row(w, "TIME", "KEY", "METHOD", "PATH", "STATUS", "OPERATION", "CLIENT IP")
		for _, e := range v {
			row(w, ts(e.CreatedAt), e.KeyName+" ("+e.KeyID+")", e.Method, e.Path, strconv.Itoa(e.Status), strp(e.OperationID), e.ClientIP)
		}
	case *client.Usage:
		row(w, "DATE", "REQUESTS", "INSTANCE HOURS")
		for _, d := range v.Days {
			var req int64
			var hours float64
			for _, r := range d.Requests {
				req += r.Requests
			}
			for _, h := range d.InstanceHours {
				hours += h.Hours
			}
			row(w, d.Date, strconv.FormatInt(req, 10), strconv.FormatFloat(hours, 'f', 3, 64))
		}
		row(w, "TOTAL", strconv.FormatInt(v.Totals.Requests, 10), strconv.FormatFloat(v.Totals.InstanceHours, 'f', 3, 64))
	case *client.Account:
		row(w, "ID", v.ID)
		row(w, "EMAIL", v.Email)
		row(w, "PLAN", v.Plan)
		row(w, "INSTANCES", fmt.Sprintf("%d of %d", v.InstancesUsed, v.InstanceLimit))
		row(w, "RATE LIMITS", fmt.Sprintf("%d/min and %d/hour per key, %d/min per account",
			v.RateLimits.KeyPerMinute, v.RateLimits.KeyPerHour, v.RateLimits.AccountPerMinute))
	case []client.OpenClawVersion:
		row(w, "VERSION", "DEFAULT", "IMAGE", "RELEASED")
		for _, r := range v {
			def := ""
			if r.Default {
				def = "default"
			}
			row(w, r.Version, def, r.Image, tsp(r.ReleasedAt))
		}
	case []client.Secret:
		row(w, "NAME", "DIGEST", "UPDATED")
		for _, s := range v {
			row(w, s.Name, s.Digest, ts(s.UpdatedAt))
		}
	case []client.Event:
		row(w, "TIME", "TYPE", "ID", "SUBJECT")
		for _, e := range v {
			a.eventRow(w, e)
		}
	default:
		// Every type moc prints has a case above; JSON is the safe answer
		// for one that does not.
		_ = writeJSON(w, v)
	}
}

// eventRow is one event as a table row: its time, type, id and what it is
// about (the operation or instance and its new status).
func (a *app) eventRow(w io.Writer, e client.Event) {
	row(w, ts(e.Timestamp), string(e.Type), e.ID, eventSubject(e))
}

func eventSubject(e client.Event) string {
	var d struct {
		ID         string `json:"id"`
		Status     string `json:"status"`
		Type       string `json:"type"`
		InstanceID string `json:"instance_id"`
		ToStatus   string `json:"to_status"`
		Instance   struct {
			ID string `json:"id"`
		} `json:"instance"`
		Message string `json:"message"`
	}
	if json.Unmarshal(e.Data, &d) != nil {
		return "-"
	}
	switch {
	case d.ToStatus != "":
		return d.Instance.ID + " → " + d.ToStatus
	case d.Type != "":
		return d.ID + " " + d.Type + " " + d.Status + " (" + d.InstanceID + ")"
	case d.Message != "":
		return d.Message
	}
	return "-"
}
