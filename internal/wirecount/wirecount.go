// Package wirecount counts round trips and statements on the wire: a TCP
// proxy between one client process and Postgres or Redis. It serves the
// load harness (cmd/mocdbench) and the tests (testenv.CountPostgres).
//
// Round trips are counted exactly, per process. pg_stat_statements would
// need shared_preload_libraries and a restart of the shared server, and it
// cannot tell the api's statements from the worker's; INFO commandstats
// cannot either. Each process under count gets its own proxy, so the api's
// and the worker's round trips are told apart.
//
// A proxy adds a hop: the load harness uses it only in its counting pass;
// the timed scenarios talk to Postgres and Redis directly.
package wirecount

import (
	"bytes"
	"encoding/binary"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Proto is the protocol a Counter parses on the client→server stream.
type Proto int

// The protocols a Counter understands.
const (
	Postgres Proto = iota
	Redis
)

// Counts is what one proxy saw: round trips (a burst of client bytes after
// the server last spoke) and statements or commands by name.
type Counts struct {
	RoundTrips int64
	ByName     map[string]int64
}

// Sub is what happened between prev and c.
func (c Counts) Sub(prev Counts) Counts {
	out := Counts{RoundTrips: c.RoundTrips - prev.RoundTrips, ByName: map[string]int64{}}
	for k, v := range c.ByName {
		if d := v - prev.ByName[k]; d != 0 {
			out.ByName[k] = d
		}
	}
	return out
}

// Statements is the number of statements (Postgres) or commands (Redis).
func (c Counts) Statements() int64 {
	var n int64
	for _, v := range c.ByName {
		n += v
	}
	return n
}

// Counter is a counting TCP proxy.
type Counter struct {
	proto  Proto
	target string
	ln     net.Listener

	rt     atomic.Int64
	mu     sync.Mutex
	byName map[string]int64
}

// Start listens on a free loopback port and forwards to target.
func Start(proto Proto, target string) (*Counter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	w := &Counter{proto: proto, target: target, ln: ln, byName: map[string]int64{}}
	go w.accept()
	return w, nil
}

// Addr is the proxy's host:port.
func (w *Counter) Addr() string { return w.ln.Addr().String() }

// Snapshot returns the totals so far.
func (w *Counter) Snapshot() Counts {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[string]int64, len(w.byName))
	for k, v := range w.byName {
		m[k] = v
	}
	return Counts{RoundTrips: w.rt.Load(), ByName: m}
}

// Close stops accepting; proxied connections end with their process.
func (w *Counter) Close() { w.ln.Close() }

func (w *Counter) accept() {
	for {
		c, err := w.ln.Accept()
		if err != nil {
			return
		}
		go w.serve(c)
	}
}

func (w *Counter) serve(client net.Conn) {
	server, err := net.Dial("tcp", w.target)
	if err != nil {
		client.Close()
		return
	}
	// clientSpoke is true from the client's first byte of a request until
	// the server's first byte of the answer: each false→true is a round trip.
	var clientSpoke atomic.Bool
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 {
				clientSpoke.Store(false)
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		p := w.newParser()
		buf := make([]byte, 32<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				if !clientSpoke.Swap(true) {
					w.rt.Add(1)
				}
				for _, name := range p.feed(buf[:n]) {
					w.mu.Lock()
					w.byName[name]++
					w.mu.Unlock()
				}
				if _, werr := server.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	<-done
	client.Close()
	server.Close()
	<-done
}

// parser turns client bytes into statement or command names.
type parser interface {
	feed(b []byte) []string
}

func (w *Counter) newParser() parser {
	if w.proto == Postgres {
		return &pgParser{}
	}
	return &respParser{}
}

// pgParser reads the frontend side of the Postgres protocol: an untyped
// startup packet (after any SSLRequest), then typed messages. A statement
// runs, named by its SQL text, on a simple Query ('Q'), on a Parse ('P') of
// the unnamed statement (lib/pq's one-shot path), or on a Bind ('B') of a
// named statement, which the connection prepared earlier (mocd keeps its
// statements prepared): the Parse of a named statement only prepares it.
type pgParser struct {
	buf      []byte
	started  bool
	prepared map[string]string // statement name → SQL text
}

// Protocol codes of untyped packets that precede the startup message.
const (
	pgSSLRequest = 80877103
	pgGSSRequest = 80877104
)

func (p *pgParser) feed(b []byte) []string {
	p.buf = append(p.buf, b...)
	var names []string
	for {
		if !p.started {
			if len(p.buf) < 8 {
				return names
			}
			n := int(binary.BigEndian.Uint32(p.buf))
			if n < 8 || len(p.buf) < n {
				return names
			}
			code := binary.BigEndian.Uint32(p.buf[4:])
			if code != pgSSLRequest && code != pgGSSRequest {
				p.started = true
			}
			p.buf = p.buf[n:]
			continue
		}
		if len(p.buf) < 5 {
			return names
		}
		n := int(binary.BigEndian.Uint32(p.buf[1:]))
		if len(p.buf) < 1+n {
			return names
		}
		typ, body := p.buf[0], p.buf[5:1+n]
		switch typ {
		case 'P': // Parse: statement name, then the SQL text
			if stmt, rest, ok := bytes.Cut(body, []byte{0}); ok {
				q, _, _ := bytes.Cut(rest, []byte{0})
				if len(stmt) == 0 {
					names = append(names, sqlName(string(q)))
				} else {
					if p.prepared == nil {
						p.prepared = map[string]string{}
					}
					p.prepared[string(stmt)] = sqlName(string(q))
				}
			}
		case 'B': // Bind: portal name, then statement name
			if _, rest, ok := bytes.Cut(body, []byte{0}); ok {
				stmt, _, _ := bytes.Cut(rest, []byte{0})
				if q, ok := p.prepared[string(stmt)]; ok && len(stmt) > 0 {
					names = append(names, q)
				}
			}
		case 'Q':
			q, _, _ := bytes.Cut(body, []byte{0})
			names = append(names, sqlName(string(q)))
		}
		p.buf = p.buf[1+n:]
	}
}

var spaces = regexp.MustCompile(`\s+`)

// sqlName shortens a statement to a readable, stable label.
func sqlName(q string) string {
	q = strings.TrimSpace(spaces.ReplaceAllString(q, " "))
	if len(q) > 90 {
		q = q[:87] + "..."
	}
	return q
}

// respParser reads RESP arrays of bulk strings, which is how every Redis
// client sends commands. EVALSHA and EVAL are named by what their first key
// is about, so the rate limiter's script and Asynq's show apart.
type respParser struct {
	buf []byte
}

func (p *respParser) feed(b []byte) []string {
	p.buf = append(p.buf, b...)
	var names []string
	for {
		args, n, ok := parseRESP(p.buf)
		if !ok {
			return names
		}
		p.buf = p.buf[n:]
		if len(args) > 0 {
			names = append(names, commandName(args))
		}
	}
}

// parseRESP parses one command (an array of bulk strings, or an inline
// command line) from the start of b; ok is false when b holds less.
func parseRESP(b []byte) (args []string, n int, ok bool) {
	line := func(at int) (string, int, bool) {
		i := bytes.Index(b[at:], []byte("\r\n"))
		if i < 0 {
			return "", 0, false
		}
		return string(b[at : at+i]), at + i + 2, true
	}
	if len(b) == 0 {
		return nil, 0, false
	}
	if b[0] != '*' { // inline command
		l, next, ok := line(0)
		if !ok {
			return nil, 0, false
		}
		return strings.Fields(l), next, true
	}
	head, at, ok := line(0)
	if !ok {
		return nil, 0, false
	}
	count, err := strconv.Atoi(head[1:])
	if err != nil {
		return nil, len(b), true // not RESP: skip what we have
	}
	for range count {
		h, next, ok := line(at)
		if !ok {
			return nil, 0, false
		}
		size, err := strconv.Atoi(strings.TrimPrefix(h, "$"))
		if err != nil || size < 0 {
			return nil, len(b), true
		}
		if len(b) < next+size+2 {
			return nil, 0, false
		}
		args = append(args, string(b[next:next+size]))
		at = next + size + 2
	}
	return args, at, true
}

// commandName labels a command: its name, and for scripts what they act on.
func commandName(args []string) string {
	cmd := strings.ToUpper(args[0])
	switch cmd {
	case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO":
		if len(args) < 3 {
			return cmd
		}
		about := "no keys"
		if nk, _ := strconv.Atoi(args[2]); nk > 0 && len(args) > 3 {
			about = keyShape(args[3])
		}
		return cmd + " (" + about + ")"
	case "SCRIPT":
		return "SCRIPT " + strings.ToUpper(args[1%len(args)])
	}
	return cmd
}

// keyShape keeps the fixed part of a key, eliding ids: the rate limiter's
// "moc:rl:{acct_…}:key:key_…:m" becomes "moc:rl:…", Asynq's
// "asynq:{lifecycle}:t:op_…" stays "asynq:{lifecycle}:t:…".
func keyShape(key string) string {
	parts := strings.Split(key, ":")
	var keep []string
	for _, p := range parts {
		if strings.ContainsAny(p, "_0123456789") && !strings.HasPrefix(p, "{") || strings.HasPrefix(p, "{acct_") {
			keep = append(keep, "…")
			break
		}
		keep = append(keep, p)
	}
	return strings.Join(keep, ":")
}
