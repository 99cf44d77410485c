// Package audit is phigate's audit trail (DESIGN.md invariant 3, issue #5):
// every access to PHI and every change of access is recorded through it, by
// every part of phigate, with who (Actor), from where (IP), what (Action),
// which record (ObjectType, ObjectID), when (Time), the Outcome and the
// correlation id of the SMTP session or HTTP request.
//
// # What is plaintext and what is not
//
// Actor, IP, Action, ObjectType, ObjectID, Outcome and Correlation are
// stored in the clear so the trail can be searched; they must hold ids,
// names of actions and IP addresses only. Anything that may identify a
// patient (addresses, names, free-text reasons) goes into Details, which is
// encrypted at rest (AES-256-GCM under a key derived from the master key,
// bound to the entry's sequence number). Record refuses a plaintext field
// that contains "@", the commonest way an address would leak into a column.
//
// # Tamper evidence
//
// Entries are numbered 1, 2, 3, ... without gaps and chained: each carries
// HMAC-SHA256(MACKey, canonical encoding of its own fields, with Details as
// ciphertext, and the previous entry's MAC). Editing, deleting, reordering
// or inserting a row, or rewriting the chain without the key, is found by
// Verify. Truncating the tail leaves a valid but shorter chain; to catch
// that the head (sequence number and MAC) is checkpointed every
// CheckpointEvery entries, every CheckpointInterval while entries arrive,
// and on Close: appended (fsynced) to CheckpointFile and written to the
// log, which operators should ship off the machine. Verify compares the
// chain with every checkpoint in the file; a head older than the last
// checkpoint means the tail was cut. Inside the product the table is also
// append-only at the database level (triggers refuse UPDATE and DELETE).
//
// # Retention
//
// Entries are kept at least six years (HIPAA 164.316(b)(2)(i)) and in
// practice for ever: neither this package nor the store has any way to
// delete or change an entry, and no retention job touches the audit table.
// Archiving older entries, if ever needed, must copy them out with Export
// and keep the database rows.
//
// # Failure
//
// Record returns only after the entry is committed (durably, like a
// delivery). When it fails, the caller should fail the audited action too
// where it can (refuse the read, answer 4xx in SMTP): an access that could
// not be audited should not happen.
//
// # Ordering
//
// Search returns entries in ascending sequence order (the order they were
// committed) unless Query.Newest asks for newest first; History is always
// oldest first; Export follows Search.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/phigate/phigate/logx"
	"github.com/phigate/phigate/store"
)

// Entry is one audit record.
type Entry struct {
	Seq         int64             `json:"seq"`
	Time        time.Time         `json:"time"`
	Actor       string            `json:"actor"` // user id, "system", or "smtp:<ip>" for an unauthenticated client
	IP          string            `json:"ip"`
	Action      string            `json:"action"`      // dotted names, e.g. "message.read", "auth.login", "smtp.accept"
	ObjectType  string            `json:"object_type"` // "message", "user", "policy", "session", "outbox", "key", "audit", ...
	ObjectID    string            `json:"object_id"`
	Outcome     string            `json:"outcome"` // "ok", "denied", "failed", "refused", ...
	Correlation string            `json:"correlation"`
	Details     map[string]string `json:"details,omitempty"` // encrypted at rest; may hold addresses, reasons
}

// Common outcomes.
const (
	OK      = "ok"
	Denied  = "denied"
	Failed  = "failed"
	Refused = "refused"
)

// Defaults.
const (
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = 5 * time.Minute
	// maxBatch bounds the entries committed in one transaction.
	maxBatch = 256
	// maxConflicts bounds the retries when other nodes keep taking the
	// next sequence number first.
	maxConflicts = 50
)

// ErrClosed is returned by Record after Close.
var ErrClosed = errors.New("audit: trail closed")

// Options configure a Trail.
type Options struct {
	Store          store.AuditStore
	MACKey, EncKey []byte // 32 bytes each, different
	// Epochs, when set, are every master-key epoch's audit keys (issue
	// 14.3, epoch.go), FromSeq ascending; the last one's keys write and
	// MACKey/EncKey are taken from it.
	Epochs []KeyEpoch
	// CheckpointEvery is the number of entries between checkpoints
	// (default 1000). A checkpoint is written when a commit crosses a
	// multiple of it.
	CheckpointEvery int
	// CheckpointInterval also writes a checkpoint when this trail has
	// committed entries not yet checkpointed and this long has passed
	// (default 5 minutes; negative: never), so a quiet system's tail is
	// covered too.
	CheckpointInterval time.Duration
	// CheckpointFile is an append-only file of checkpoints, one JSON line
	// each; "" keeps them in the log only.
	CheckpointFile string
	// Log receives each checkpoint (INFO "audit checkpoint", seq, mac).
	Log *slog.Logger
	Now func() time.Time
}

// Trail is the audit trail. It is safe for concurrent use, and several
// Trails (one per node) may share one database: they extend one chain.
type Trail struct {
	st       store.AuditStore
	macKey   []byte
	encKey   []byte
	epochs   []KeyEpoch
	every    int64
	interval time.Duration
	file     string
	log      *slog.Logger
	now      func() time.Time

	mu     sync.RWMutex // guards closed against Record's send
	closed bool
	reqs   chan *request
	stop   chan struct{}
	done   chan struct{}

	cpMu     sync.Mutex
	lastSeq  int64 // highest seq this trail committed
	lastMAC  []byte
	cpSeq    int64 // highest seq this trail checkpointed
	closeErr error
	once     sync.Once
}

type request struct {
	e       Entry
	details []byte // JSON, not yet encrypted (the seq is part of the AAD)
	done    chan error
}

// New checks the options and starts the trail's group committer.
func New(o Options) (*Trail, error) {
	if o.Store == nil {
		return nil, errors.New("audit: no store")
	}
	if err := checkEpochs(o.Epochs); err != nil {
		return nil, err
	}
	if n := len(o.Epochs); n > 0 {
		o.MACKey, o.EncKey = o.Epochs[n-1].MAC, o.Epochs[n-1].Enc
	}
	if len(o.MACKey) != 32 || len(o.EncKey) != 32 {
		return nil, errors.New("audit: MAC and encryption keys must be 32 bytes each")
	}
	if string(o.MACKey) == string(o.EncKey) {
		return nil, errors.New("audit: MAC and encryption keys must differ")
	}
	t := &Trail{
		st:       o.Store,
		macKey:   append([]byte(nil), o.MACKey...),
		encKey:   append([]byte(nil), o.EncKey...),
		epochs:   append([]KeyEpoch(nil), o.Epochs...),
		every:    int64(o.CheckpointEvery),
		interval: o.CheckpointInterval,
		file:     o.CheckpointFile,
		log:      o.Log,
		now:      o.Now,
		reqs:     make(chan *request, maxBatch),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if t.every <= 0 {
		t.every = DefaultCheckpointEvery
	}
	if t.interval == 0 {
		t.interval = DefaultCheckpointInterval
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if t.now == nil {
		t.now = time.Now
	}
	if t.file != "" {
		if err := prepareCheckpointFile(t.file); err != nil {
			return nil, err
		}
		if cp, err := t.LastCheckpoint(); err == nil && cp != nil {
			t.cpSeq = cp.Seq
		}
	}
	go t.loop()
	return t, nil
}

// Record appends e to the trail and returns once it is committed. Seq is
// assigned; Time is set to now unless the caller gave one; Correlation
// comes from ctx (logx.Correlation) unless given.
func (t *Trail) Record(ctx context.Context, e Entry) error {
	e, details, err := t.normalize(ctx, e)
	if err != nil {
		return err
	}
	r := &request{e: e, details: details, done: make(chan error, 1)}
	t.mu.RLock()
	if t.closed {
		t.mu.RUnlock()
		return ErrClosed
	}
	select {
	case t.reqs <- r:
	case <-ctx.Done():
		t.mu.RUnlock()
		return ctx.Err()
	}
	t.mu.RUnlock()
	// Once queued, wait for the outcome even if ctx ends: the caller must
	// know whether the entry exists.
	return <-r.done
}

// normalize fills in what Record and Prepare leave to the trail (time,
// correlation), checks the entry and encodes its details.
func (t *Trail) normalize(ctx context.Context, e Entry) (Entry, []byte, error) {
	if e.Correlation == "" {
		e.Correlation = logx.Correlation(ctx)
	}
	e = bound(e) // what a client typed is stored only up to a bound (bound.go)
	if e.Time.IsZero() {
		e.Time = t.now()
	}
	e.Time = e.Time.UTC().Round(0)
	e.Seq = 0
	if err := validate(e); err != nil {
		return e, nil, err
	}
	var details []byte
	if len(e.Details) > 0 {
		var err error
		if details, err = json.Marshal(e.Details); err != nil {
			return e, nil, err
		}
	}
	return e, details, nil
}

func validate(e Entry) error {
	if e.Actor == "" || e.Action == "" || e.Outcome == "" {
		return errors.New("audit: entry needs an actor, an action and an outcome")
	}
	for _, f := range []struct{ name, v string }{
		{"actor", e.Actor}, {"ip", e.IP}, {"action", e.Action}, {"object_type", e.ObjectType},
		{"object_id", e.ObjectID}, {"outcome", e.Outcome}, {"correlation", e.Correlation},
	} {
		if strings.Contains(f.v, "@") {
			return fmt.Errorf("audit: %s looks like an address; plaintext fields hold ids only, put it in Details", f.name)
		}
	}
	return nil
}

func (t *Trail) loop() {
	defer close(t.done)
	var tick <-chan time.Time
	if t.interval > 0 {
		tk := time.NewTicker(t.interval)
		defer tk.Stop()
		tick = tk.C
	}
	for {
		select {
		case r := <-t.reqs:
			t.commit(t.fill([]*request{r}))
		case <-tick:
			t.cpMu.Lock()
			due := t.lastSeq > t.cpSeq
			seq, mac := t.lastSeq, t.lastMAC
			t.cpMu.Unlock()
			if due {
				t.checkpoint(seq, mac)
			}
		case <-t.stop:
			// No sender remains (Close set closed under the lock): commit
			// what is queued, then stop.
			for {
				select {
				case r := <-t.reqs:
					t.commit(t.fill([]*request{r}))
					continue
				default:
				}
				return
			}
		}
	}
}

func (t *Trail) fill(batch []*request) []*request {
	for len(batch) < maxBatch {
		select {
		case r := <-t.reqs:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// commit writes batch in one transaction on top of the current head,
// recomputing the chain when another node appended meanwhile.
func (t *Trail) commit(batch []*request) {
	ctx := context.Background()
	var first, last int64
	var lastMAC []byte
	var err error
	for attempt := 0; ; attempt++ {
		err = t.st.AppendAudit(ctx, func(headSeq int64, headMAC []byte) ([]store.AuditRecord, error) {
			recs := make([]store.AuditRecord, len(batch))
			prev := headMAC
			for i, r := range batch {
				rec, err := t.seal(r.e, r.details, headSeq+int64(i)+1, prev)
				if err != nil {
					return nil, err
				}
				recs[i] = rec
				prev = rec.MAC
			}
			first, last, lastMAC = headSeq+1, headSeq+int64(len(batch)), prev
			return recs, nil
		})
		if !errors.Is(err, store.ErrConflict) || attempt >= maxConflicts {
			break
		}
		time.Sleep(time.Duration(rand.Int64N(int64(2*time.Millisecond))) * time.Duration(1+attempt/10))
	}
	if err != nil {
		t.log.Error("audit write failed", "entries", len(batch), "err", err)
	} else {
		// Checkpoint before answering, so a caller that sees its entry
		// committed also sees the checkpoint that covers it.
		t.noteCommitted(first, last, lastMAC)
	}
	for _, r := range batch {
		r.done <- err
	}
}

// noteCommitted records that entries first..last (last's MAC lastMAC) are
// committed, by this trail or inside another transaction (Batch), and
// writes a checkpoint when they cross a multiple of CheckpointEvery.
func (t *Trail) noteCommitted(first, last int64, lastMAC []byte) {
	if last < first {
		return
	}
	t.cpMu.Lock()
	if last > t.lastSeq {
		t.lastSeq, t.lastMAC = last, lastMAC
	}
	t.cpMu.Unlock()
	if (first-1)/t.every != last/t.every {
		t.checkpoint(last, lastMAC)
	}
}

// Head returns the newest entry's sequence number and MAC.
func (t *Trail) Head(ctx context.Context) (seq int64, mac []byte, err error) {
	return t.st.AuditHead(ctx)
}

// Close commits the entries still queued, writes a final checkpoint of the
// head, and refuses further Records. It does not close the store.
func (t *Trail) Close() error {
	t.once.Do(func() {
		t.mu.Lock()
		t.closed = true
		t.mu.Unlock()
		close(t.stop)
		<-t.done
		t.closeErr = t.Checkpoint(context.Background())
	})
	return t.closeErr
}
