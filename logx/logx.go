// Package logx sets up slog and provides redacting value types, so that an
// address, subject or name passed to a logger can never print as plaintext.
package logx

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"strings"
	"sync"
)

var (
	pseudoMu  sync.RWMutex
	pseudoKey = randomKey()
)

func randomKey() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic(err)
	}
	return k
}

// SetPseudonymKey fixes the key for Addr pseudonyms, so the same address maps
// to the same token across restarts (derived from the master key at start).
func SetPseudonymKey(k []byte) {
	pseudoMu.Lock()
	pseudoKey = append([]byte(nil), k...)
	pseudoMu.Unlock()
}

// Pseudonym returns a short keyed hash of s: the same input gives the same
// token, which lets an operator correlate log lines without seeing the value.
func Pseudonym(s string) string {
	pseudoMu.RLock()
	m := hmac.New(sha256.New, pseudoKey)
	pseudoMu.RUnlock()
	m.Write([]byte(strings.ToLower(strings.TrimSpace(s))))
	return hex.EncodeToString(m.Sum(nil)[:6])
}

// Addr is an email address that logs as a pseudonym.
type Addr string

func (a Addr) LogValue() slog.Value { return slog.StringValue("addr#" + Pseudonym(string(a))) }
func (a Addr) String() string       { return "addr#" + Pseudonym(string(a)) }

// Secret is any PHI-bearing text (subject, name, body); it logs its length only.
type Secret string

func (s Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }
func (s Secret) String() string       { return "[redacted]" }

type ctxKey struct{}

// WithCorrelation stores a correlation id in ctx; Handler adds it to every line.
func WithCorrelation(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// Correlation returns the id stored by WithCorrelation, or "".
func Correlation(ctx context.Context) string {
	s, _ := ctx.Value(ctxKey{}).(string)
	return s
}

// NewCorrelationID returns a short random id for one SMTP session or request.
func NewCorrelationID() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

type corrHandler struct{ slog.Handler }

func (h corrHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := Correlation(ctx); id != "" {
		r.AddAttrs(slog.String("cid", id))
	}
	return h.Handler.Handle(ctx, r)
}
func (h corrHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return corrHandler{h.Handler.WithAttrs(a)}
}
func (h corrHandler) WithGroup(n string) slog.Handler { return corrHandler{h.Handler.WithGroup(n)} }

// New returns a logger writing text or JSON at level to w.
func New(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(corrHandler{h})
}
