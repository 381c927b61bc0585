package testenv

import (
	"encoding/binary"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// PGCounter is a TCP proxy between a test's client and Postgres that
// counts what the client sends: statements executed (each Bind or simple
// Query message: a prepared statement reused from a cache is bound again) and round trips (each time the client speaks after the server
// did). It is how a test proves a path costs N statements, without
// pg_stat_statements (which needs a server restart to load).
type PGCounter struct {
	// URL is the database URL through the proxy.
	URL        string
	ln         net.Listener
	statements atomic.Int64
	roundTrips atomic.Int64
	wg         sync.WaitGroup
}

// CountPostgres starts a proxy to the database at dbURL (sslmode=disable)
// and stops it when the test ends.
func CountPostgres(t testing.TB, dbURL string) *PGCounter {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.Host = ln.Addr().String()
	p := &PGCounter{URL: u.String(), ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.serve(c, target) }()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return p
}

// Counts answers the statements and round trips seen so far.
func (p *PGCounter) Counts() (statements, roundTrips int64) {
	return p.statements.Load(), p.roundTrips.Load()
}

func (p *PGCounter) serve(client net.Conn, target string) {
	server, err := net.Dial("tcp", target)
	if err != nil {
		client.Close()
		return
	}
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
		pr, pw := io.Pipe()
		go p.parse(pr)
		defer pw.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				if !clientSpoke.Swap(true) {
					p.roundTrips.Add(1)
				}
				_, _ = pw.Write(buf[:n])
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

// parse reads the frontend stream: one untyped startup packet, then typed
// messages; it counts Bind ('B') and Query ('Q'): one per execution.
func (p *PGCounter) parse(r io.Reader) {
	defer io.Copy(io.Discard, r)
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return
	}
	if _, err := io.CopyN(io.Discard, r, int64(binary.BigEndian.Uint32(hdr[:4]))-4); err != nil {
		return
	}
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		if hdr[0] == 'B' || hdr[0] == 'Q' {
			p.statements.Add(1)
		}
		if _, err := io.CopyN(io.Discard, r, int64(binary.BigEndian.Uint32(hdr[1:]))-4); err != nil {
			return
		}
	}
}
