package metrics

import (
	"net/http"
	"net/http/pprof"
	"strconv"
)

// maxProfileSeconds bounds one CPU profile or trace: pprof itself extends
// the write deadline to whatever duration is asked for.
const maxProfileSeconds = 60

// Option changes what Serve mounts beside /metrics.
type Option func(*serveOptions)

type serveOptions struct {
	pprof bool
}

// WithPprof mounts Go's profiler (net/http/pprof) under /debug/pprof/ on the
// metrics listener (serve --debug-pprof). Profiles carry no message content
// (stacks, allocation sites, counts), but they cost CPU while taken and
// describe the process in detail, so Serve refuses it on any address that
// is not loopback, even with metrics.allow_remote. A CPU profile or trace
// lasts at most maxProfileSeconds.
func WithPprof(on bool) Option {
	return func(o *serveOptions) { o.pprof = on }
}

// mountPprof registers the profiler's handlers; the index serves the
// named profiles (heap, allocs, goroutine, block, mutex, threadcreate).
func mountPprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", bounded(pprof.Profile))
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", bounded(pprof.Trace))
}

// bounded refuses a profile longer than maxProfileSeconds (400).
func bounded(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if v := r.FormValue("seconds"); v != "" {
			if sec, err := strconv.ParseFloat(v, 64); err != nil || sec > maxProfileSeconds {
				http.Error(w, "seconds: at most "+strconv.Itoa(maxProfileSeconds), http.StatusBadRequest)
				return
			}
		}
		h(w, r)
	}
}
