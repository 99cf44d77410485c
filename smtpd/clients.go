package smtpd

import (
	"cmp"
	"container/list"
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/phigate/phigate/audit"
)

// AuthLimits throttle failed AUTH attempts (RFC 4954 4: a server should
// limit them). Each failure waits FailureDelay before its 535; a connection
// is dropped (421 4.7.0) at its MaxPerConn-th failure; an address with
// MaxPerIP failures within Window is dropped at once, without its password
// being checked, until the window ends.
type AuthLimits struct {
	FailureDelay time.Duration
	MaxPerConn   int
	MaxPerIP     int
	Window       time.Duration
}

// maxTrackedAddrs bounds the addresses counted at once; the oldest window
// is flushed and forgotten first.
const maxTrackedAddrs = 100_000

// clients counts, per address (IPv6: /64) in fixed windows that start at
// the address's first event, its AUTH failures and what it made us audit
// before authenticating. An unauthenticated client must not be able to
// grow the audit trail without bound (DESIGN invariant 7; issue 8.3): the
// first entry of each kind (action and outcome) in a window is written as
// it happens; the rest are counted and written as one entry with
// details count=N when the window ends.
type clients struct {
	limits AuthLimits
	now    func() time.Time

	mu    sync.Mutex
	addrs map[string]*list.Element
	order *list.List // of *addrWindow, oldest window first
}

type addrWindow struct {
	key, ip   string
	start     time.Time
	authFails int
	blocked   bool
	held      map[heldKind]int // entries counted but not written yet
	seen      map[string]bool  // kinds written in this window
}

// heldKind is what the entries counted together share.
type heldKind struct{ actor, ip, action, objectType, outcome string }

func newClients(l AuthLimits) *clients {
	// Zero fields take the [security] address defaults.
	l.MaxPerIP = cmp.Or(l.MaxPerIP, 20)
	l.Window = cmp.Or(l.Window, 15*time.Minute)
	return &clients{limits: l, now: time.Now, addrs: map[string]*list.Element{}, order: list.New()}
}

// window returns ip's live window, and the windows that ended (to flush).
func (c *clients) window(ip string) (w *addrWindow, ended []*addrWindow) {
	now := c.now()
	ended = c.expire(now)
	key := ipKey(ip)
	if el, ok := c.addrs[key]; ok {
		return el.Value.(*addrWindow), ended
	}
	for len(c.addrs) >= maxTrackedAddrs {
		front := c.order.Front()
		c.order.Remove(front)
		old := front.Value.(*addrWindow)
		delete(c.addrs, old.key)
		ended = append(ended, old)
	}
	w = &addrWindow{key: key, ip: ip, start: now, held: map[heldKind]int{}, seen: map[string]bool{}}
	c.addrs[key] = c.order.PushBack(w)
	return w, ended
}

// expire removes the windows that ended by now and returns them.
func (c *clients) expire(now time.Time) (ended []*addrWindow) {
	for el := c.order.Front(); el != nil; el = c.order.Front() {
		w := el.Value.(*addrWindow)
		if now.Before(w.start.Add(c.limits.Window)) {
			break
		}
		c.order.Remove(el)
		delete(c.addrs, w.key)
		ended = append(ended, w)
	}
	return ended
}

// note counts one unauthenticated audit entry; write says whether it is
// the first of its kind in the window (write it now).
func (c *clients) note(e audit.Entry) (write bool, ended []*addrWindow) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ended := c.window(e.IP)
	kind := e.Action + "/" + e.Outcome
	if !w.seen[kind] {
		w.seen[kind] = true
		return true, ended
	}
	w.held[heldKind{e.Actor, e.IP, e.Action, e.ObjectType, e.Outcome}]++
	return false, ended
}

// blocked says whether ip has used up its AUTH failures for the window.
func (c *clients) blocked(ip string) (bool, []*addrWindow) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ended := c.window(ip)
	return w.blocked, ended
}

// authFailed counts a failure from ip; blockedNow is true for the failure
// that used up the address's allowance (the moment to raise the alert).
func (c *clients) authFailed(ip string) (blockedNow bool, until time.Time, ended []*addrWindow) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ended := c.window(ip)
	w.authFails++
	if !w.blocked && w.authFails >= c.limits.MaxPerIP {
		w.blocked = true
		return true, w.start.Add(c.limits.Window), ended
	}
	return false, time.Time{}, ended
}

// drain removes every window (at shutdown), to flush them.
func (c *clients) drain() []*addrWindow {
	c.mu.Lock()
	defer c.mu.Unlock()
	var all []*addrWindow
	for el := c.order.Front(); el != nil; el = el.Next() {
		all = append(all, el.Value.(*addrWindow))
	}
	clear(c.addrs)
	c.order.Init()
	return all
}

// summaries are the entries that stand for what w held back: one per kind,
// with the count and the window.
func (c *clients) summaries(w *addrWindow) []audit.Entry {
	var out []audit.Entry
	for k, n := range w.held {
		out = append(out, audit.Entry{Actor: k.actor, IP: k.ip, Action: k.action, ObjectType: k.objectType, Outcome: k.outcome,
			Details: map[string]string{"count": fmt.Sprint(n), "aggregated": "true",
				"window_start": w.start.UTC().Format(time.RFC3339), "window": c.limits.Window.String()}})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Action+out[i].Outcome < out[j].Action+out[j].Outcome })
	return out
}

// record writes an audit entry for an unauthenticated client through the
// per-window aggregation; entries of authenticated users are written as
// they are.
func (b *Server) record(ctx context.Context, e audit.Entry, authenticated bool) {
	if b.Audit == nil {
		return
	}
	if !authenticated {
		write, ended := b.clients().note(e)
		b.flush(ended)
		if !write {
			return
		}
	}
	b.writeAudit(ctx, e)
}

func (b *Server) writeAudit(ctx context.Context, e audit.Entry) {
	if err := b.Audit.Record(ctx, e); err != nil {
		b.faults().logAt(ctx, slog.LevelError, "audit write failed "+e.Action, "audit write failed", "action", e.Action, "err", err)
	}
}

// flush writes the summary entries of windows that ended.
func (b *Server) flush(ended []*addrWindow) {
	if b.Audit == nil {
		return
	}
	for _, w := range ended {
		for _, e := range b.clients().summaries(w) {
			b.writeAudit(context.Background(), e)
		}
	}
}

// Run writes the summaries of ended windows every minute, and all of them
// when ctx ends, so counts held back reach the trail even if the address
// never comes back.
func (b *Server) Run(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			b.flush(b.clients().drain())
			return
		case <-t.C:
			c := b.clients()
			c.mu.Lock()
			ended := c.expire(c.now())
			c.mu.Unlock()
			b.flush(ended)
		}
	}
}
