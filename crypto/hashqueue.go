package crypto

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"time"
)

// HashQueueConfig bounds the memory-hard hashes (password derivation, key
// lock/unlock) and the sign-ins waiting for one. Memory held is at most
// Slots x the Argon2 memory of one hash, plus Total waiting sign-ins (each
// a blocked request, some tens of KiB) and the gateway's own callers,
// which no client can multiply, plus Priority waiting in the priority lane.
// Zero fields take the defaults.
type HashQueueConfig struct {
	Slots     int           // hashes in flight at once (4)
	Wait      time.Duration // longest wait for a slot; past it *HashBusyError (10s)
	PerClient int           // callers one client (address) may have waiting (4)
	Total     int           // named clients' callers waiting in all (256)
	// The priority lane (issue 12.3): callers whose HashClient.Device is
	// set (a sign-in from a browser holding a verified device cookie of
	// the account) are served before every other waiter, at most
	// Priority of them waiting in all (4) and PriorityPerAccount for one
	// account (1). A caller the lane has no room for waits in the
	// ordinary queue instead, so a stolen device cookie, or many, can
	// hold at most Priority places and never refuses anyone.
	Priority           int
	PriorityPerAccount int
	// PriorityRun is how many slots in a row the lane may take while
	// ordinary callers wait (3); the next goes to the ordinary queue. So
	// callers who keep the lane full (accounts whose passwords and device
	// cookies one person holds, signing in again and again) still leave
	// everyone else at least one hash in PriorityRun+1.
	PriorityRun int
}

// DefaultHashQueueConfig returns the defaults stated in docs/configuration.md.
func DefaultHashQueueConfig() HashQueueConfig {
	return HashQueueConfig{Slots: 4, Wait: 10 * time.Second, PerClient: 4, Total: 256, Priority: 4, PriorityPerAccount: 1, PriorityRun: 3}
}

func (c HashQueueConfig) withDefaults() HashQueueConfig {
	d := DefaultHashQueueConfig()
	if c.Slots < 1 {
		c.Slots = d.Slots
	}
	if c.Wait <= 0 {
		c.Wait = d.Wait
	}
	if c.PerClient < 1 {
		c.PerClient = d.PerClient
	}
	if c.Total < 1 {
		c.Total = d.Total
	}
	if c.Priority < 1 {
		c.Priority = d.Priority
	}
	if c.PriorityPerAccount < 1 {
		c.PriorityPerAccount = d.PriorityPerAccount
	}
	if c.PriorityRun < 1 {
		c.PriorityRun = d.PriorityRun
	}
	return c
}

// HashBusyError: no hash slot could be had, because the caller's client or
// the whole queue had as many callers waiting as allowed, or because none
// came free within the wait. Answer "try later" (HTTP 429), never "wrong
// password".
type HashBusyError struct{ RetryAfter time.Duration }

func (e *HashBusyError) Error() string {
	return fmt.Sprintf("crypto: password hashing is busy; retry in %s", e.RetryAfter.Round(time.Second))
}

type hashClientKey struct{}

// HashClient is who a hash is for, as the queue sees it.
type HashClient struct {
	// Key names the client, for example the pseudonym of its address.
	Key string
	// Standing is how many attempts the client has made recently (its
	// failed and pending sign-ins in the lock-out window); clients with
	// fewer are served first, so an address in good standing is not kept
	// waiting behind addresses that are guessing.
	Standing int
	// Device, when set, names the account (its lock-out key) that a
	// verified device cookie sent with this sign-in was issued for, and
	// that is the account being signed into: the hash then waits in the
	// priority lane while the lane has room (HashQueueConfig.Priority).
	// Only named clients (Key set) use the lane.
	Device string
}

// WithHashClient names the client whose share of the hash queue the hashes
// under ctx wait in. Callers without one share the unnamed client's queue,
// which has no bound or deadline (see acquire).
func WithHashClient(ctx context.Context, c HashClient) context.Context {
	return context.WithValue(ctx, hashClientKey{}, c)
}

func hashClient(ctx context.Context) HashClient {
	c, _ := ctx.Value(hashClientKey{}).(HashClient)
	return c
}

// hashLimiter hands out hash slots fairly between clients: each client
// waits in its own FIFO queue, and a free slot goes to the client in the
// best standing (fewest recent attempts), among equals to the next in
// round-robin order. So a client with a hundred callers waiting delays
// another by at most one hash per turn rather than by its whole backlog,
// and a sign-in from an address that has not been guessing goes before
// those of addresses that have (issue 8.1). Before all of them, a free
// slot goes to the priority lane: sign-ins from a browser holding a device
// cookie of the account (issue 12.3), first come first served, in small
// bounds of their own. The number of slots can change at run time.
type hashLimiter struct {
	mu      sync.Mutex
	cfg     HashQueueConfig
	inUse   int
	waiting int // in the clients' queues (not the priority lane)
	clients map[string]*clientQueue
	turns   list.List // of *clientQueue with callers waiting, next turn first

	prio       list.List      // of *prioWaiter, first come first
	prioByAcct map[string]int // the lane's waiters per account
	prioRun    int            // slots the lane took in a row while others waited
}

// prioWaiter is a caller waiting in the priority lane.
type prioWaiter struct {
	acct  string
	ready chan struct{} // closed when granted a slot
}

type clientQueue struct {
	key      string
	standing int       // the latest caller's HashClient.Standing
	waiters  list.List // of chan struct{}, closed when granted a slot
	turn     *list.Element
}

var hashes = newHashLimiter(HashQueueConfig{})

func newHashLimiter(cfg HashQueueConfig) *hashLimiter {
	return &hashLimiter{cfg: cfg.withDefaults(), clients: map[string]*clientQueue{}, prioByAcct: map[string]int{}}
}

// testHookHashing, if set, runs while a hash slot is held (tests count
// in-flight hashes with it).
var testHookHashing func()

// SetHashQueue configures the hash queue (see HashQueueConfig).
func SetHashQueue(cfg HashQueueConfig) { hashes.configure(cfg) }

// SetMaxConcurrentHashes sets how many Argon2 runs may be in flight at once
// (default 4; values below 1 mean 1).
func SetMaxConcurrentHashes(n int) {
	hashes.mu.Lock()
	cfg := hashes.cfg
	hashes.mu.Unlock()
	cfg.Slots = max(n, 1)
	hashes.configure(cfg)
}

func (l *hashLimiter) configure(cfg HashQueueConfig) {
	l.mu.Lock()
	l.cfg = cfg.withDefaults()
	l.grantLocked()
	l.mu.Unlock()
}

func (l *hashLimiter) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	if l.inUse < l.cfg.Slots && l.waiting == 0 && l.prio.Len() == 0 {
		l.inUse++
		l.mu.Unlock()
		return nil
	}
	busy := &HashBusyError{RetryAfter: max(l.cfg.Wait, time.Second)}
	client := hashClient(ctx)
	key := client.Key
	// Unnamed callers are the gateway's own work (key lock and unlock)
	// and steps behind a token or a session (claim, reset, password
	// change): they wait, without a bound or deadline but their ctx, in
	// the unnamed client's queue. Only named clients (sign-in attempts)
	// can be told to come back.
	named := key != ""
	if named && client.Device != "" && l.prio.Len() < l.cfg.Priority && l.prioByAcct[client.Device] < l.cfg.PriorityPerAccount {
		return l.waitPriority(ctx, client.Device, busy) // unlocks l.mu
	}
	q := l.clients[key]
	if named && (l.waiting >= l.cfg.Total || (q != nil && q.waiters.Len() >= l.cfg.PerClient)) {
		l.mu.Unlock()
		return busy
	}
	if q == nil {
		q = &clientQueue{key: key}
		q.turn = l.turns.PushBack(q)
		l.clients[key] = q
	}
	q.standing = client.Standing
	ready := make(chan struct{})
	elem := q.waiters.PushBack(ready)
	l.waiting++
	var deadline <-chan time.Time
	if named {
		wait := time.NewTimer(l.cfg.Wait)
		defer wait.Stop()
		deadline = wait.C
	}
	l.mu.Unlock()

	var err error
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-deadline:
		err = busy
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-ready:
		// Granted just as the wait ended: hand the slot on.
		l.inUse--
		l.grantLocked()
	default:
		q.waiters.Remove(elem)
		l.waiting--
		l.dropIfIdle(q)
	}
	return err
}

// waitPriority queues the caller in the priority lane for account acct and
// waits as acquire does for a named client (ctx, deadline). l.mu is held on
// entry and released.
func (l *hashLimiter) waitPriority(ctx context.Context, acct string, busy *HashBusyError) error {
	w := &prioWaiter{acct: acct, ready: make(chan struct{})}
	elem := l.prio.PushBack(w)
	l.prioByAcct[acct]++
	wait := time.NewTimer(l.cfg.Wait)
	defer wait.Stop()
	l.mu.Unlock()

	var err error
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-wait.C:
		err = busy
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-w.ready:
		// Granted just as the wait ended: hand the slot on.
		l.inUse--
		l.grantLocked()
	default:
		l.prio.Remove(elem)
		l.dropPriority(acct)
	}
	return err
}

func (l *hashLimiter) dropPriority(acct string) {
	if l.prioByAcct[acct]--; l.prioByAcct[acct] <= 0 {
		delete(l.prioByAcct, acct)
	}
}

func (l *hashLimiter) release() {
	l.mu.Lock()
	l.inUse--
	l.grantLocked()
	l.mu.Unlock()
}

// grantLocked gives free slots to the priority lane first, in order of
// arrival (but no more than PriorityRun in a row while ordinary callers
// wait), then to the clients in turn, one each, those in the best
// standing first.
func (l *hashLimiter) grantLocked() {
	for l.inUse < l.cfg.Slots && l.prio.Len() > 0 {
		if l.turns.Len() > 0 && l.prioRun >= l.cfg.PriorityRun {
			l.prioRun = 0
			l.grantOrdinary()
			continue
		}
		w := l.prio.Remove(l.prio.Front()).(*prioWaiter)
		l.dropPriority(w.acct)
		l.inUse++
		if l.turns.Len() > 0 {
			l.prioRun++
		}
		close(w.ready)
	}
	for l.inUse < l.cfg.Slots && l.turns.Len() > 0 {
		l.prioRun = 0
		l.grantOrdinary()
	}
}

// grantOrdinary gives one slot to the next client in turn (one waits).
func (l *hashLimiter) grantOrdinary() {
	q := l.nextTurn()
	ready := q.waiters.Remove(q.waiters.Front()).(chan struct{})
	l.waiting--
	l.inUse++
	close(ready)
	if !l.dropIfIdle(q) {
		l.turns.MoveToBack(q.turn)
	}
}

// nextTurn is the first client in turn order among those in the best
// standing. The scan is bounded by Total (every client here has a caller
// waiting).
func (l *hashLimiter) nextTurn() *clientQueue {
	var best *clientQueue
	for e := l.turns.Front(); e != nil; e = e.Next() {
		if q := e.Value.(*clientQueue); best == nil || q.standing < best.standing {
			best = q
		}
	}
	return best
}

// dropIfIdle forgets a client with nobody waiting, so that the tables stay
// as small as the queue.
func (l *hashLimiter) dropIfIdle(q *clientQueue) bool {
	if q.waiters.Len() > 0 {
		return false
	}
	l.turns.Remove(q.turn)
	delete(l.clients, q.key)
	return true
}

// counts reports the slots in use and the callers waiting, in the
// clients' queues and the priority lane together.
func (l *hashLimiter) counts() (inUse, waiting int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inUse, l.waiting + l.prio.Len()
}
