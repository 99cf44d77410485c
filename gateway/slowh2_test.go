package gateway_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/phigate/phigate/internal/e2e"
)

// TestSlowHTTP2HeadersClosed: over HTTP/2 a client that opens a request
// and trickles its header block (CONTINUATION frames, never END_HEADERS)
// is closed once portal.conn_idle_timeout has passed: the connection has
// no request under way, however long the trickle.
func TestSlowHTTP2HeadersClosed(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	cfg.Portal.ConnIdleTimeout.Duration = 500 * time.Millisecond
	h := e2e.Start(t, cfg)

	c, err := tls.Dial("tcp", h.HTTPS, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "portal"}, {":path", "/login"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	enc.WriteField(hpack.HeaderField{Name: "x-slow", Value: string(bytes.Repeat([]byte("a"), 4096))})
	hb := block.Bytes()
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb[:8], EndStream: true}); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { io.Copy(io.Discard, c); close(closed) }()
	give := time.NewTimer(30 * time.Second) // a bound for a broken build, not a timing assertion
	defer give.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 8; ; i++ {
		select {
		case <-closed:
			return
		case <-tick.C:
			if i < len(hb)-1 {
				fr.WriteContinuation(1, false, hb[i:i+1])
			}
		case <-give.C:
			t.Fatal("an HTTP/2 client trickling its header block was never closed")
		}
	}
}
