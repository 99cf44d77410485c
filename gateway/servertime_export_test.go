package gateway

import (
	"net/http"
	"time"
)

// TimeHTTPS wraps the portal's HTTPS handler (health routes included) so
// that observe gets each request's server time: from the handler's start
// to its return, TLS and the network excluded (issue 12 read benchmarks).
// Call it right after Start (which makes the server), before the first
// portal request.
func TimeHTTPS(g *Gateway, observe func(r *http.Request, d time.Duration)) {
	h := g.httpSrv.Handler
	g.httpSrv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		h.ServeHTTP(w, r)
		observe(r, time.Since(t0))
	})
}
