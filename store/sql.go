package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite"
)

//go:embed migrations/sqlite/*.sql
var sqliteMigrations embed.FS

// SQL implements Store on database/sql with portable queries. The fields
// below db say where the backends differ (OpenSQLite, OpenPostgres set them).
type SQL struct {
	db *sql.DB
	// serialWrites: SQLite. This process's writers queue on wmu.
	// PostgreSQL locks rows, so its writers run side by side.
	serialWrites bool
	// groupCommit: deliveries go through deliverLoop, several to a
	// transaction (see Deliver); otherwise each commits on its own. Off on
	// PostgreSQL: BenchmarkIntake20KB measured no gain there (the server
	// flushes concurrent commits together itself).
	groupCommit bool
	deliverCh   chan *deliverReq
	closed      chan struct{}
	loopDone    chan struct{}
	closeOnce   sync.Once
	// wmu serialises this process's writers. SQLite allows one writer at a
	// time and its busy handler waits by sleeping (1, 2, 5, 10, 20 ms...),
	// which under load costs far more than the write itself; queueing on a
	// mutex instead hands the lock over at once. busy_timeout still covers
	// other processes (the CLI) writing to the same file.
	wmu sync.Mutex
	// wconn is the one connection this process writes through on SQLite
	// (held under wmu; nil until the first write, and again after it
	// broke). SQLite drops a connection's page cache whenever another
	// connection has written to the database since its last transaction:
	// with every write on whichever pooled connection was free, each group
	// commit began with a cold cache and read the B-tree pages it was
	// about to change (pread) again. The only writer keeps its cache, and
	// a larger one (writerCacheKiB).
	wconn *sql.Conn
	// ckptKick wakes checkpointLoop after a write (SQLite; nil
	// otherwise); ckptDone is closed when the loop has ended.
	ckptKick chan struct{}
	ckptDone chan struct{}
	// headLock is appended to the audit head query inside write
	// transactions: "" on SQLite (the write lock is held from BEGIN),
	// " FOR UPDATE" on a server backend.
	headLock string
	// auditLock runs before the audit head is read ("" on SQLite): on
	// PostgreSQL a transaction-scoped advisory lock, so audited writers of
	// every node take turns at the chain's head instead of colliding on
	// unique(seq) and running again.
	auditLock string
	// leaseLock is appended to LeaseOutbox's select: " FOR UPDATE SKIP
	// LOCKED" on PostgreSQL, so nodes leasing at once take disjoint rows
	// without waiting on each other.
	leaseLock string
	// retryable says a transaction failed only because of a concurrent one
	// (PostgreSQL: serialization failure, deadlock) and may run again.
	retryable func(error) bool
	// userTx are the options of UpdateUser's transaction: serializable on
	// PostgreSQL, where its "one active admin remains" check would
	// otherwise let two concurrent demotions both pass.
	userTx *sql.TxOptions
	// checkpointWAL copies the WAL into the main file and truncates it,
	// after changes that drop key material (nil: not SQLite).
	checkpointWAL func(ctx context.Context)
}

// OpenSQLite opens (creating if needed) the database file at path and runs
// migrations. WAL with synchronous=FULL: a committed transaction survives a
// crash or kill -9, which is what lets intake answer 250.
func OpenSQLite(ctx context.Context, path string) (*SQL, error) { return openSQLite(ctx, path, 0) }

// openSQLite is OpenSQLite with the migrations stopped at version upTo
// (0: all of them), for tests of what a migration does to stored rows.
func openSQLite(ctx context.Context, path string, upTo int64) (*SQL, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	// Create the file owner-only before SQLite does; its -wal and -shm
	// inherit these permissions.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	f.Close()
	q := url.Values{}
	// secure_delete: freed space (an old key packet, a claimed account's
	// pending key) is overwritten with zeros, not left in free pages.
	// wal_autocheckpoint: the WAL is copied into the database file when it
	// passes walCheckpointPages (SQLite's default is 1,000): a page changed
	// by several commits in between is copied once (issue 12.5: on a store
	// of 100,000 messages, 7 % fewer bytes written per message).
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS), "foreign_keys(1)", "secure_delete(ON)",
		fmt.Sprintf("wal_autocheckpoint(%d)", walCheckpointPages)} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	// Each connection keeps its compiled statements (stmtcache.go).
	db, err := sql.Open(sqliteCached, "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	// database/sql keeps 2 idle connections by default: under 32 SMTP
	// sessions reading at once, the rest were opened (file, schema,
	// pragmas) and closed again on every burst, about 6% of the intake's
	// CPU (docs/perf.md). Idle ones still close after a minute unused.
	db.SetMaxIdleConns(sqliteMaxIdle)
	db.SetConnMaxIdleTime(time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// The database holds key material and ciphertext: owner-only.
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		_ = os.Chmod(f, 0o600)
	}
	if err := migrate(ctx, db, goose.DialectSQLite3, sqliteMigrations, "migrations/sqlite", upTo); err != nil {
		db.Close()
		return nil, err
	}
	s := &SQL{db: db, serialWrites: true, groupCommit: true}
	s.checkpointWAL = s.truncateWAL
	s.ckptKick = make(chan struct{}, 1)
	s.start()
	return s, nil
}

// truncateWAL copies the WAL into the database file and truncates it to
// zero bytes: the WAL still holds earlier versions of changed pages (the
// pending key, old key packets) until then. A reader still on an older
// snapshot blocks it; rather than hold this process's writers (SMTP
// intake) behind the wait, each try waits briefly and the writers get the
// lock between tries. If readers outlast the tries, the old frames are
// overwritten as the WAL is reused, or go at the next truncation.
func (s *SQL) truncateWAL(ctx context.Context) {
	for try := 0; try < walTruncateTries; try++ {
		if try > 0 {
			select {
			case <-time.After(walTruncatePause):
			case <-ctx.Done():
				return
			}
		}
		if s.tryTruncateWAL(ctx) {
			return
		}
	}
}

const (
	// busyTimeoutMS is how long a connection waits for another process's
	// lock (the CLI writing to the same file).
	busyTimeoutMS    = 10000
	walTruncateTries = 5
	walTruncatePause = 200 * time.Millisecond
	walTruncateWait  = 100 // ms of busy waiting per try
	// walCheckpointPages: 16 MiB of WAL at 4 KiB pages.
	walCheckpointPages = 4000
	// walBackstopPages is the writer's automatic checkpoint when
	// checkpointLoop runs (64 MiB of WAL).
	walBackstopPages = 4 * walCheckpointPages
	checkpointEvery  = 200 * time.Millisecond
)

func (s *SQL) tryTruncateWAL(ctx context.Context) bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	c, err := s.db.Conn(ctx)
	if err != nil {
		return false
	}
	defer c.Close()
	// Short busy wait on this connection only; restored before it goes
	// back to the pool.
	if _, err := c.ExecContext(ctx, fmt.Sprintf(`PRAGMA busy_timeout = %d`, walTruncateWait)); err != nil {
		return false
	}
	defer c.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf(`PRAGMA busy_timeout = %d`, busyTimeoutMS))
	var busy, logFrames, done int
	err = c.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &done)
	return err == nil && busy == 0
}

// flushDeleted makes data a change just dropped unrecoverable from the
// database files (see truncateWAL); called after claim, reset and purge.
func (s *SQL) flushDeleted(ctx context.Context) {
	if s.checkpointWAL != nil {
		s.checkpointWAL(ctx)
	}
}

// migrate runs the migrations in fsys/dir up to version upTo (0: all).
func migrate(ctx context.Context, db *sql.DB, d goose.Dialect, fsys embed.FS, dir string, upTo int64, opts ...goose.ProviderOption) error {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(d, db, sub, opts...)
	if err != nil {
		return err
	}
	if upTo > 0 {
		_, err = p.UpTo(ctx, upTo)
	} else {
		_, err = p.Up(ctx)
	}
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// start makes the channels and starts the group committer if used.
func (s *SQL) start() {
	s.deliverCh, s.closed, s.loopDone = make(chan *deliverReq, maxBatch), make(chan struct{}), make(chan struct{})
	if s.groupCommit {
		go s.deliverLoop()
	} else {
		close(s.loopDone)
	}
	s.ckptDone = make(chan struct{})
	if s.ckptKick != nil {
		go s.checkpointLoop()
	} else {
		close(s.ckptDone)
	}
}

// checkpointLoop copies the WAL into the database file in the background
// (SQLite): a PASSIVE checkpoint on its own connection after writes, at
// most every checkpointEvery. SQLite's automatic checkpoint runs inside
// the commit that crosses its threshold, and every delivery queued behind
// that commit waited for it (page copies and the database file's fsync);
// a passive checkpoint waits for nobody and holds up no writer. The
// writer's automatic checkpoint stays as a bound on the WAL's size
// (walBackstopPages) should this loop fall behind.
func (s *SQL) checkpointLoop() {
	defer close(s.ckptDone)
	ctx := context.Background()
	var c *sql.Conn
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for {
		select {
		case <-s.ckptKick:
		case <-s.closed:
			return
		}
		if c == nil {
			var err error
			if c, err = s.db.Conn(ctx); err != nil {
				c = nil
				continue
			}
		}
		var busy, logFrames, done int
		if err := c.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logFrames, &done); err != nil {
			// Not fatal: the writer's automatic checkpoint still bounds
			// the WAL. Start on a fresh connection next time.
			c.Close()
			c = nil
		}
		select {
		case <-time.After(checkpointEvery):
		case <-s.closed:
			return
		}
	}
}

// kickCheckpoint tells checkpointLoop that the WAL grew.
func (s *SQL) kickCheckpoint() {
	if s.ckptKick == nil {
		return
	}
	select {
	case s.ckptKick <- struct{}{}:
	default:
	}
}

// Close stops the group committer (finishing the batch in hand) and closes
// the database. Deliveries still queued get errClosed: their callers never
// answered 250.
func (s *SQL) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		<-s.loopDone
		for {
			select {
			case r := <-s.deliverCh:
				r.done <- errClosed
				continue
			default:
			}
			break
		}
		<-s.ckptDone
		s.wmu.Lock()
		if s.wconn != nil {
			s.wconn.Close()
			s.wconn = nil
		}
		s.wmu.Unlock()
	})
	return s.db.Close()
}

// DB exposes the handle for tests that inspect raw rows.
func (s *SQL) DB() *sql.DB { return s.db }

func unix(t time.Time) int64 { return t.UTC().UnixNano() }

func fromUnix(n int64) time.Time { return time.Unix(0, n).UTC() }

func fromNull(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromUnix(n.Int64)
	return &t
}

func isUnique(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "UNIQUE constraint") || strings.Contains(err.Error(), "duplicate key"))
}

// lockWrites takes the process write lock where the backend has one
// (SQLite) and returns its release.
func (s *SQL) lockWrites() func() {
	if !s.serialWrites {
		return func() {}
	}
	s.wmu.Lock()
	return s.wmu.Unlock
}

// exec runs one writing statement (under the process write lock on SQLite).
func (s *SQL) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	defer s.lockWrites()()
	if !s.serialWrites {
		return s.db.ExecContext(ctx, query, args...)
	}
	c, err := s.writer(ctx)
	if err != nil {
		return nil, err
	}
	res, err := c.ExecContext(ctx, query, args...)
	s.wrote(err)
	return res, err
}

// writerCacheKiB is the page cache of the writing connection (SQLite's
// default is 2,000 KiB per connection; the readers keep that).
const writerCacheKiB = 65536

// writer returns the writing connection (called under wmu), opening it
// first if needed.
func (s *SQL) writer(ctx context.Context) (*sql.Conn, error) {
	if s.wconn != nil {
		return s.wconn, nil
	}
	c, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	// temp_store MEMORY keeps the sub-journal of each delivery's
	// savepoint in memory: past 64 KiB SQLite spills it to a temporary
	// file, a write syscall per page (about 0.15 ms of a message). It holds
	// only pages of one delivery that existed before it (released with
	// the savepoint), and the writer runs no unbounded sort.
	for _, pragma := range []string{fmt.Sprintf(`PRAGMA cache_size = -%d`, writerCacheKiB), `PRAGMA temp_store = MEMORY`} {
		if _, err := c.ExecContext(ctx, pragma); err != nil {
			c.Close()
			return nil, err
		}
	}
	if s.ckptKick != nil {
		// checkpointLoop checkpoints; the writer only past the backstop.
		if _, err := c.ExecContext(ctx, fmt.Sprintf(`PRAGMA wal_autocheckpoint = %d`, walBackstopPages)); err != nil {
			c.Close()
			return nil, err
		}
	}
	s.wconn = c
	return c, nil
}

// wrote drops the writing connection if err says it broke; the next
// write opens another.
func (s *SQL) wrote(err error) {
	if err == nil {
		s.kickCheckpoint()
	}
	if s.wconn != nil && (errors.Is(err, sql.ErrConnDone) || errors.Is(err, driver.ErrBadConn)) {
		s.wconn.Close()
		s.wconn = nil
	}
}

// maxTxRetries bounds the re-runs of a transaction that failed only
// because of a concurrent one (see SQL.retryable).
const maxTxRetries = 20

// tx runs fn in a write transaction. fn may run more than once (after a
// serialization failure or deadlock on PostgreSQL), so it must start from
// scratch each time.
func (s *SQL) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	return s.txWith(ctx, nil, fn)
}

func (s *SQL) txWith(ctx context.Context, opts *sql.TxOptions, fn func(*sql.Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := s.txOnce(ctx, opts, fn)
		if err == nil || s.retryable == nil || !s.retryable(err) || attempt >= maxTxRetries {
			return err
		}
	}
}

func (s *SQL) txOnce(ctx context.Context, opts *sql.TxOptions, fn func(*sql.Tx) error) error {
	defer s.lockWrites()()
	if !s.serialWrites {
		tx, err := s.db.BeginTx(ctx, opts)
		if err != nil {
			return err
		}
		return runTx(tx, fn)
	}
	c, err := s.writer(ctx)
	if err != nil {
		return err
	}
	tx, err := c.BeginTx(ctx, opts)
	if err == nil {
		err = runTx(tx, fn)
	}
	s.wrote(err)
	return err
}

func runTx(tx *sql.Tx, fn func(*sql.Tx) error) error {
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

const userCols = `id, email_index, email_enc, role, status, pw_params, pw_salt, pw_verifier,
	key_fpr, public_key, private_key_wrapped, key_wrap, totp_secret_enc, totp_last_step, pw_history,
	created_at, updated_at, version`

func scanUser(row interface{ Scan(...any) error }) (*User, error) {
	var u User
	var c, up int64
	err := row.Scan(&u.ID, &u.EmailIndex, &u.EmailEnc, &u.Role, &u.Status, &u.PwParams, &u.PwSalt,
		&u.PwVerifier, &u.KeyFpr, &u.PublicKey, &u.PrivateKeyWrapped, &u.KeyWrap, &u.TOTPSecretEnc,
		&u.TOTPLastStep, &u.PwHistory, &c, &up, &u.Version)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	u.CreatedAt, u.UpdatedAt = fromUnix(c), fromUnix(up)
	return &u, nil
}

func (s *SQL) CreateUser(ctx context.Context, u *User) error {
	_, err := s.exec(ctx, `INSERT INTO users (`+userCols+`)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18)`,
		u.ID, u.EmailIndex, u.EmailEnc, u.Role, u.Status, u.PwParams, u.PwSalt, u.PwVerifier,
		u.KeyFpr, u.PublicKey, u.PrivateKeyWrapped, u.KeyWrap, u.TOTPSecretEnc, u.TOTPLastStep, u.PwHistory,
		unix(u.CreatedAt), unix(u.UpdatedAt), u.Version)
	if isUnique(err) {
		return ErrExists
	}
	return err
}

func (s *SQL) UserByID(ctx context.Context, id string) (*User, error) {
	return scanUser(s.db.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
}

func (s *SQL) UserByEmailIndex(ctx context.Context, idx []byte) (*User, error) {
	return scanUser(s.db.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE email_index = $1`, idx))
}

func (s *SQL) AddAppPassword(ctx context.Context, p AppPassword) error {
	_, err := s.exec(ctx, `INSERT INTO app_passwords (id, user_id, name, mac, created_at)
		VALUES ($1,$2,$3,$4,$5)`, p.ID, p.UserID, p.Name, p.MAC, unix(p.CreatedAt))
	if isUnique(err) {
		return ErrExists
	}
	return err
}

func (s *SQL) RevokeAppPassword(ctx context.Context, userID, name string, at time.Time) error {
	res, err := s.exec(ctx, `UPDATE app_passwords SET revoked_at = $1
		WHERE user_id = $2 AND name = $3 AND revoked_at IS NULL`, unix(at), userID, name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

func (s *SQL) UserByAppPassword(ctx context.Context, mac []byte) (*User, *AppPassword, error) {
	var p AppPassword
	var c int64
	err := s.db.QueryRowContext(ctx, `SELECT id, user_id, name, created_at FROM app_passwords
		WHERE mac = $1 AND revoked_at IS NULL`, mac).Scan(&p.ID, &p.UserID, &p.Name, &c)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	p.CreatedAt = fromUnix(c)
	u, err := s.UserByID(ctx, p.UserID)
	if err != nil {
		return nil, nil, err
	}
	if u.Status != StatusActive {
		return nil, nil, ErrNotFound
	}
	return u, &p, nil
}

// Deliver commits one delivery. Concurrent deliveries are group-committed:
// one writer goroutine puts every delivery waiting at that moment into a
// single transaction, each inside its own savepoint so one failure rolls
// back only its own rows. Each caller still returns only after the commit
// (and its fsync) that holds its rows, so "250 after commit" stays true
// while the fsync cost is shared.
func (s *SQL) Deliver(ctx context.Context, d Delivery) error {
	if !s.groupCommit {
		return s.deliverAlone(ctx, d)
	}
	req := &deliverReq{d: d, done: make(chan error, 1)}
	select {
	case s.deliverCh <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closed:
		return errClosed
	}
	// Once queued, wait for the outcome even if ctx ends: answering before
	// knowing whether the rows committed would make the reply a guess.
	return <-req.done
}

var errClosed = errors.New("store: closed")

// deliverAlone commits one delivery in its own transaction (PostgreSQL:
// concurrent deliveries commit side by side, sharing the WAL flush through
// the server's own group commit). Once begun it runs to the end even if
// ctx ends, for the same reason Deliver waits: the reply must not be a guess.
func (s *SQL) deliverAlone(ctx context.Context, d Delivery) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-s.closed:
		return errClosed
	default:
	}
	ctx = context.WithoutCancel(ctx)
	return s.auditedTx(ctx, func(tx *sql.Tx) error { return s.deliverTx(ctx, tx, d) })
}

type deliverReq struct {
	d    Delivery
	done chan error
}

// maxBatch bounds one group commit.
const maxBatch = 64

func (s *SQL) deliverLoop() {
	defer close(s.loopDone)
	for {
		var first *deliverReq
		select {
		case first = <-s.deliverCh:
		case <-s.closed:
			return
		}
		batch := []*deliverReq{first}
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-s.deliverCh:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.commitBatch(batch)
	}
}

// commitBatch commits batch, then again those deliveries whose audit
// entries lost their sequence numbers to another writer (see appendAudit).
func (s *SQL) commitBatch(batch []*deliverReq) {
	for attempt := 0; len(batch) > 0; attempt++ {
		batch = s.commitOnce(batch, attempt < maxAuditRetries)
	}
}

// commitOnce commits batch in one transaction and answers every request,
// except (when retry) those that hit errAuditConflict: it returns them.
func (s *SQL) commitOnce(batch []*deliverReq, retry bool) []*deliverReq {
	ctx := context.Background()
	errs := make([]error, len(batch))
	err := s.tx(ctx, func(tx *sql.Tx) error {
		for i, r := range batch {
			if _, err := tx.ExecContext(ctx, `SAVEPOINT delivery`); err != nil {
				return err
			}
			errs[i] = s.deliverTx(ctx, tx, r.d)
			undo := `RELEASE SAVEPOINT delivery`
			if errs[i] != nil {
				undo = `ROLLBACK TO SAVEPOINT delivery; RELEASE SAVEPOINT delivery`
			}
			for _, stmt := range strings.Split(undo, "; ") {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return err
				}
			}
		}
		return nil
	})
	var again []*deliverReq
	for i, r := range batch {
		switch {
		case err != nil:
			r.done <- err
		case retry && errors.Is(errs[i], errAuditConflict):
			again = append(again, r)
		default:
			r.done <- errs[i]
		}
	}
	return again
}

// deliverTx writes one delivery: messages, notices and, last, the audit
// entries that record them, so a failure anywhere leaves none of it.
func (s *SQL) deliverTx(ctx context.Context, tx *sql.Tx, d Delivery) error {
	// Touching the recipient row takes its write lock, so a concurrent
	// claim either finished before (key_fpr differs: reseal) or waits.
	type rk struct{ rcpt, fpr string }
	checked := map[rk]bool{}
	for _, m := range d.Messages {
		if checked[rk{m.RecipientID, m.KeyFpr}] {
			continue
		}
		checked[rk{m.RecipientID, m.KeyFpr}] = true
		res, err := tx.ExecContext(ctx, `UPDATE users SET updated_at = updated_at
			WHERE id = $1 AND key_fpr = $2`, m.RecipientID, m.KeyFpr)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrKeyChanged
		}
	}
	for _, m := range d.Messages {
		if _, err := tx.ExecContext(ctx, `INSERT INTO messages (id, recipient_id, sender_id,
			created_at, expires_at, size, policy, key_packets, body, summary_keys, summary, key_fpr, decision, state, reply_to, passcode_hash,
			dispose_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)`,
			m.ID, m.RecipientID, m.SenderID, unix(m.CreatedAt), unix(m.ExpiresAt), m.Size,
			m.Policy, m.KeyPackets, m.Body, m.SummaryKeys, m.Summary, m.KeyFpr, m.Decision, stateOr(m.State), m.ReplyTo, m.PasscodeHash,
			unix(disposeAt(m))); err != nil {
			return err
		}
	}
	if err := insertCopies(ctx, tx, d.Copies); err != nil {
		return err
	}
	if err := insertNotices(ctx, tx, d); err != nil {
		return err
	}
	return s.appendAudit(ctx, tx, d.Audit)
}

// insertNotices writes a delivery's claim tokens and outbox items.
func insertNotices(ctx context.Context, tx *sql.Tx, d Delivery) error {
	for _, t := range d.ClaimTokens {
		if err := insertToken(ctx, tx, t); err != nil {
			return err
		}
	}
	for _, o := range d.Outbox {
		if err := insertOutbox(ctx, tx, o); err != nil {
			return err
		}
	}
	return nil
}

func insertOutbox(ctx context.Context, tx *sql.Tx, o OutboxItem) error {
	if o.Batch != "" && o.Window > 0 {
		return insertBatched(ctx, tx, o)
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO outbox (id, kind, user_id, message_id, payload,
		created_at, next_attempt_at, reference) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`,
		o.ID, o.Kind, nullStr(o.UserID), nullStr(o.MessageID), o.Payload, unix(o.CreatedAt), unix(o.NextAttemptAt), o.Reference)
	return err
}

func nullStr(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

const msgCols = `id, recipient_id, sender_id, created_at, expires_at, size, policy,
	key_packets, summary_keys, summary, read_at, key_fpr, decision, state, reply_to, passcode_hash, passcode_ok_at,
	dispose_at, purged_at`

func scanMessage(row interface{ Scan(...any) error }, withBody bool) (*Message, error) {
	var m Message
	var c, e int64
	var r, pok, disp, purged sql.NullInt64
	dest := []any{&m.ID, &m.RecipientID, &m.SenderID, &c, &e, &m.Size, &m.Policy,
		&m.KeyPackets, &m.SummaryKeys, &m.Summary, &r, &m.KeyFpr, &m.Decision, &m.State, &m.ReplyTo, &m.PasscodeHash, &pok,
		&disp, &purged}
	if withBody {
		dest = append(dest, &m.Body)
	}
	if err := row.Scan(dest...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	m.CreatedAt, m.ExpiresAt, m.ReadAt, m.PasscodeOK = fromUnix(c), fromUnix(e), fromNull(r), fromNull(pok)
	if m.PurgedAt = fromNull(purged); disp.Valid {
		m.DisposeAt = fromUnix(disp.Int64)
	}
	return &m, nil
}

// ListMessages returns a recipient's unexpired messages, newest first,
// without bodies: listing never touches the large ciphertext.
func (s *SQL) ListMessages(ctx context.Context, recipientID string, now time.Time) ([]Message, error) {
	return s.queryMessages(ctx, false, `SELECT `+msgCols+` FROM messages
		WHERE recipient_id = $1 AND expires_at > $2 AND state IN ($3, $4) AND reply_to = '' ORDER BY created_at DESC, id`,
		recipientID, unix(now), StateDelivered, StateRecalled)
}

// queryMessages runs a query selecting msgCols (and body when withBody).
func (s *SQL) queryMessages(ctx context.Context, withBody bool, query string, args ...any) ([]Message, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		m, err := scanMessage(rows, withBody)
		if err != nil {
			return nil, err
		}
		out = append(out, *m)
	}
	return out, rows.Err()
}

func (s *SQL) GetMessage(ctx context.Context, id string) (*Message, error) {
	return scanMessage(s.db.QueryRowContext(ctx, `SELECT `+msgCols+`, body FROM messages WHERE id = $1`, id), true)
}

// MessageMeta is GetMessage without the body (the sealed summary is kept).
func (s *SQL) MessageMeta(ctx context.Context, id string) (*Message, error) {
	return scanMessage(s.db.QueryRowContext(ctx, `SELECT `+msgCols+` FROM messages WHERE id = $1`, id), false)
}

func (s *SQL) MarkRead(ctx context.Context, id string, at time.Time) error {
	_, err := s.exec(ctx, `UPDATE messages SET read_at = $1 WHERE id = $2 AND read_at IS NULL`, unix(at), id)
	return err
}

func (s *SQL) ClaimTokenByHash(ctx context.Context, hash []byte) (*ClaimToken, error) {
	var t ClaimToken
	var c, e int64
	var u sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT token_hash, user_id, created_at, expires_at, used_at, kind
		FROM claim_tokens WHERE token_hash = $1`, hash).Scan(&t.Hash, &t.UserID, &c, &e, &u, &t.Kind)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	t.CreatedAt, t.ExpiresAt, t.UsedAt = fromUnix(c), fromUnix(e), fromNull(u)
	return &t, nil
}

func (s *SQL) MessageKeysForUser(ctx context.Context, userID string) ([]MessageKeys, error) {
	return s.queryKeys(ctx, `SELECT id, key_packets, summary_keys FROM messages
		WHERE recipient_id = $1 ORDER BY id`, userID)
}

// spendToken marks an unexpired, unused token of kind for userID as used,
// or returns ErrTokenSpent: in the same transaction as what the token
// allows, so a token works exactly once.
func spendToken(ctx context.Context, tx *sql.Tx, hash []byte, userID, kind string, at time.Time) error {
	res, err := tx.ExecContext(ctx, `UPDATE claim_tokens SET used_at = $1
		WHERE token_hash = $2 AND user_id = $3 AND used_at IS NULL AND expires_at > $1 AND kind = $4`,
		unix(at), hash, userID, kind)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrTokenSpent
	}
	return nil
}

// Claim activates a pending account: spends the token, stores the new key
// and password verifier, re-wraps every message and drops the pending key.
func (s *SQL) Claim(ctx context.Context, c Claim) error {
	err := s.auditedTx(ctx, func(tx *sql.Tx) error {
		if err := spendToken(ctx, tx, c.TokenHash, c.UserID, TokenClaim, c.At); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE users SET status = $1, key_fpr = $2, public_key = $3,
			private_key_wrapped = $4, key_wrap = $5, pw_params = $6, pw_salt = $7, pw_verifier = $8,
			updated_at = $9, pw_history = $10, version = version + 1 WHERE id = $11 AND status = $12 AND key_fpr = $13`,
			StatusActive, c.NewKeyFpr, c.PublicKey, c.PrivateKeyWrapped, KeyWrapPassword,
			c.PwParams, c.PwSalt, c.PwVerifier, unix(c.At), c.PwHistory, c.UserID, StatusPending, c.OldKeyFpr)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrTokenSpent
		}
		// Every message must have been re-wrapped, or one sealed to the
		// pending key would become unreadable once that key is gone.
		var count int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages WHERE recipient_id = $1`,
			c.UserID).Scan(&count); err != nil {
			return err
		}
		seen := make(map[string]bool, len(c.Rewrapped))
		for _, k := range c.Rewrapped {
			if seen[k.MessageID] {
				return ErrConflict
			}
			seen[k.MessageID] = true
		}
		if count != len(seen) {
			return ErrConflict
		}
		for _, k := range c.Rewrapped {
			res, err := tx.ExecContext(ctx, `UPDATE messages SET key_packets = $1, summary_keys = $2, key_fpr = $3
				WHERE id = $4 AND recipient_id = $5`, k.KeyPackets, k.SummaryKeys, c.NewKeyFpr, k.MessageID, c.UserID)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return ErrConflict
			}
		}
		// Other outstanding claim links for this account die with the claim.
		if _, err = tx.ExecContext(ctx, `UPDATE claim_tokens SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL`,
			unix(c.At), c.UserID); err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, c.Audit)
	})
	if err == nil {
		s.flushDeleted(ctx)
	}
	return err
}

func (s *SQL) DueOutbox(ctx context.Context, now time.Time, limit int) ([]OutboxItem, error) {
	return queryOutbox(ctx, s.db, `WHERE sent_at IS NULL AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2`, unix(now), limit)
}

// queryOutbox reads the outbox rows that where (a WHERE clause with its
// ORDER, LIMIT and any lock) selects, through q (the pool or a transaction).
func queryOutbox(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, where string, args ...any) ([]OutboxItem, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, kind, COALESCE(user_id, ''), COALESCE(message_id, ''),
		payload, created_at, next_attempt_at, attempts, last_error FROM outbox `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []OutboxItem
	for rows.Next() {
		var o OutboxItem
		var c, n int64
		if err := rows.Scan(&o.ID, &o.Kind, &o.UserID, &o.MessageID, &o.Payload, &c, &n, &o.Attempts, &o.LastError); err != nil {
			return nil, err
		}
		o.CreatedAt, o.NextAttemptAt = fromUnix(c), fromUnix(n)
		out = append(out, o)
	}
	return out, rows.Err()
}

// OutboxSent marks items done and drops their payloads: once a notice has
// gone, its sealed address and claim token have no reason to stay.
func (s *SQL) OutboxSent(ctx context.Context, at time.Time, ids ...string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `UPDATE outbox SET sent_at = $1, payload = $2, last_error = ''
				WHERE id = $3`, unix(at), []byte{}, id); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *SQL) OutboxRetry(ctx context.Context, id string, attempts int, next time.Time, lastErr string) error {
	_, err := s.exec(ctx, `UPDATE outbox SET attempts = $1, next_attempt_at = $2, last_error = $3
		WHERE id = $4`, attempts, unix(next), lastErr, id)
	return err
}

func insertToken(ctx context.Context, tx *sql.Tx, t ClaimToken) error {
	kind := t.Kind
	if kind == "" {
		kind = TokenClaim
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO claim_tokens (token_hash, user_id, created_at, expires_at, kind)
		VALUES ($1,$2,$3,$4,$5)`, t.Hash, t.UserID, unix(t.CreatedAt), unix(t.ExpiresAt), kind)
	return err
}

func (s *SQL) AddToken(ctx context.Context, t ClaimToken) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return insertToken(ctx, tx, t) })
}

// UpdateUser writes u's role and status (and updated_at) if the row is
// still at u.Version, counting the version up (u.Version too). The other
// columns have operations of their own (SetTOTP, Reset, Claim ...), so this
// never writes back a password or second factor read earlier. A change
// that would leave no active admin is refused with ErrConflict too: the
// check runs in the same statement, so two admins demoted at once cannot
// both pass it. ErrConflict: re-read and try again.
func (s *SQL) UpdateUser(ctx context.Context, u *User) error {
	return s.txWith(ctx, s.userTx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET role = $1, status = $2, updated_at = $3, version = version + 1
			WHERE id = $4 AND version = $5 AND (($1 = $6 AND $2 = $7) OR NOT (role = $6 AND status = $7)
				OR EXISTS (SELECT 1 FROM users o WHERE o.id <> $4 AND o.role = $6 AND o.status = $7))`,
			u.Role, u.Status, unix(u.UpdatedAt), u.ID, u.Version, RoleAdmin, StatusActive)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			u.Version++
			return nil
		}
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE id = $1`, u.ID).Scan(&one); errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		return ErrConflict
	})
}

func (s *SQL) ListUsers(ctx context.Context, roles ...string) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+userCols+` FROM users ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	want := map[string]bool{}
	for _, r := range roles {
		want[r] = true
	}
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		if len(want) == 0 || want[u.Role] {
			out = append(out, *u)
		}
	}
	return out, rows.Err()
}

func (s *SQL) RevokeAllAppPasswords(ctx context.Context, userID string, at time.Time) (int, error) {
	res, err := s.exec(ctx, `UPDATE app_passwords SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL`,
		unix(at), userID)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

func (s *SQL) AdvanceTOTPStep(ctx context.Context, userID string, step int64) (bool, error) {
	res, err := s.exec(ctx, `UPDATE users SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1`, step, userID)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

func (s *SQL) SetRecoveryCodes(ctx context.Context, userID string, hashes [][]byte) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM recovery_codes WHERE user_id = $1`, userID); err != nil {
			return err
		}
		for _, h := range hashes {
			if _, err := tx.ExecContext(ctx, `INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)`, userID, h); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *SQL) UseRecoveryCode(ctx context.Context, userID string, hash []byte, at time.Time) (bool, error) {
	res, err := s.exec(ctx, `UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL`,
		unix(at), userID, hash)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

func (s *SQL) CountRecoveryCodes(ctx context.Context, userID string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL`, userID).Scan(&n)
	return n, err
}

func (s *SQL) Reset(ctx context.Context, r Reset) error {
	err := s.auditedTx(ctx, func(tx *sql.Tx) error {
		if err := spendToken(ctx, tx, r.TokenHash, r.UserID, TokenReset, r.At); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE users SET key_fpr = $1, public_key = $2, private_key_wrapped = $3,
			key_wrap = $4, pw_params = $5, pw_salt = $6, pw_verifier = $7, pw_history = $8, updated_at = $9,
			version = version + 1 WHERE id = $10 AND status = $11`,
			r.NewKeyFpr, r.PublicKey, r.PrivateKeyWrapped, KeyWrapPassword, r.PwParams, r.PwSalt, r.PwVerifier,
			r.PwHistory, unix(r.At), r.UserID, StatusActive)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrTokenSpent
		}
		if _, err = tx.ExecContext(ctx, `UPDATE claim_tokens SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL AND kind = $3`,
			unix(r.At), r.UserID, TokenReset); err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, r.Audit)
	})
	if err == nil {
		s.flushDeleted(ctx) // the old password-wrapped key
	}
	return err
}

func (s *SQL) LockedMessageKeys(ctx context.Context, userID, fpr string) ([]MessageKeys, error) {
	return s.queryKeys(ctx, `SELECT id, key_packets, summary_keys FROM messages
		WHERE recipient_id = $1 AND key_fpr <> $2 ORDER BY id`, userID, fpr)
}

// queryKeys runs a query selecting id, key_packets, summary_keys.
func (s *SQL) queryKeys(ctx context.Context, query string, args ...any) ([]MessageKeys, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []MessageKeys
	for rows.Next() {
		var k MessageKeys
		if err := rows.Scan(&k.MessageID, &k.KeyPackets, &k.SummaryKeys); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

func (s *SQL) Recover(ctx context.Context, userID, fpr string, keys []MessageKeys) (int, error) {
	n := 0
	err := s.tx(ctx, func(tx *sql.Tx) error {
		n = 0
		for _, k := range keys {
			res, err := tx.ExecContext(ctx, `UPDATE messages SET key_packets = $1, summary_keys = $2, key_fpr = $3
				WHERE id = $4 AND recipient_id = $5 AND key_fpr <> $3`, k.KeyPackets, k.SummaryKeys, fpr, k.MessageID, userID)
			if err != nil {
				return err
			}
			c, _ := res.RowsAffected()
			n += int(c)
		}
		return nil
	})
	return n, err
}

func (s *SQL) AddPolicyVersion(ctx context.Context, v PolicyVersion) (int64, error) {
	for attempt := 0; ; attempt++ {
		id, err := s.addPolicyVersion(ctx, v)
		// Two saves at once on a server backend read the same MAX(id):
		// the later insert hits the primary key and takes the next number.
		if !isUnique(err) || attempt >= maxTxRetries {
			return id, err
		}
	}
}

func (s *SQL) addPolicyVersion(ctx context.Context, v PolicyVersion) (int64, error) {
	var id int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		// Version numbers count up from 1 on every backend.
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) + 1 FROM policy_versions`).Scan(&id); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO policy_versions (id, author_id, created_at, note, body)
			VALUES ($1,$2,$3,$4,$5)`, id, v.AuthorID, unix(v.CreatedAt), v.Note, v.Body)
		return err
	})
	return id, err
}

const policyCols = `id, author_id, created_at, note, body`

func scanPolicy(row interface{ Scan(...any) error }) (*PolicyVersion, error) {
	var v PolicyVersion
	var c int64
	if err := row.Scan(&v.ID, &v.AuthorID, &c, &v.Note, &v.Body); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	v.CreatedAt = fromUnix(c)
	return &v, nil
}

func (s *SQL) PolicyVersionByID(ctx context.Context, id int64) (*PolicyVersion, error) {
	return scanPolicy(s.db.QueryRowContext(ctx, `SELECT `+policyCols+` FROM policy_versions WHERE id = $1`, id))
}

func (s *SQL) LatestPolicyVersion(ctx context.Context) (*PolicyVersion, error) {
	return scanPolicy(s.db.QueryRowContext(ctx, `SELECT `+policyCols+` FROM policy_versions ORDER BY id DESC LIMIT 1`))
}

func (s *SQL) ListPolicyVersions(ctx context.Context) ([]PolicyVersion, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+policyCols+` FROM policy_versions ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PolicyVersion
	for rows.Next() {
		v, err := scanPolicy(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *v)
	}
	return out, rows.Err()
}

func (s *SQL) SetRecipientKey(ctx context.Context, k RecipientKey) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM recipient_keys WHERE email_index = $1`, k.EmailIndex); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO recipient_keys (email_index, fingerprint, public_key_enc, added_by, created_at)
			VALUES ($1,$2,$3,$4,$5)`, k.EmailIndex, k.Fingerprint, k.PublicKeyEnc, k.AddedBy, unix(k.CreatedAt))
		return err
	})
}

func (s *SQL) RecipientKeyByIndex(ctx context.Context, idx []byte) (*RecipientKey, error) {
	var k RecipientKey
	var c int64
	err := s.db.QueryRowContext(ctx, `SELECT email_index, fingerprint, public_key_enc, added_by, created_at
		FROM recipient_keys WHERE email_index = $1`, idx).Scan(&k.EmailIndex, &k.Fingerprint, &k.PublicKeyEnc, &k.AddedBy, &c)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	k.CreatedAt = fromUnix(c)
	return &k, nil
}

func (s *SQL) DeleteRecipientKey(ctx context.Context, idx []byte) error {
	res, err := s.exec(ctx, `DELETE FROM recipient_keys WHERE email_index = $1`, idx)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

func stateOr(s string) string {
	if s == "" {
		return StateDelivered
	}
	return s
}

func (s *SQL) ListQuarantined(ctx context.Context) ([]Message, error) {
	return s.queryMessages(ctx, false, `SELECT `+msgCols+` FROM messages WHERE state = $1 ORDER BY created_at, id`, StateQuarantined)
}

// DecideQuarantine moves a held message to state (delivered or denied) and
// commits d (the release notice) in the same transaction; a message no
// longer held gives ErrConflict (another admin decided first).
func (s *SQL) DecideQuarantine(ctx context.Context, id, state string, d Delivery) error {
	return s.auditedTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE messages SET state = $1 WHERE id = $2 AND state = $3`, state, id, StateQuarantined)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrConflict
		}
		// Decided: the reviewers' copy goes (issue 13.2).
		if err := deleteCopies(ctx, tx, id, CopyReview); err != nil {
			return err
		}
		if err := insertNotices(ctx, tx, d); err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, d.Audit)
	})
}

func (s *SQL) LeaseOutbox(ctx context.Context, now, leaseUntil time.Time, limit int) ([]OutboxItem, error) {
	var out []OutboxItem
	err := s.tx(ctx, func(tx *sql.Tx) error {
		out = nil
		due, err := queryOutbox(ctx, tx, `WHERE sent_at IS NULL AND next_attempt_at <= $1
			ORDER BY next_attempt_at LIMIT $2`+s.leaseLock, unix(now), limit)
		if err != nil {
			return err
		}
		for _, o := range due {
			res, err := tx.ExecContext(ctx, `UPDATE outbox SET next_attempt_at = $1
				WHERE id = $2 AND sent_at IS NULL AND next_attempt_at = $3`, unix(leaseUntil), o.ID, unix(o.NextAttemptAt))
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				out = append(out, o)
			}
		}
		return nil
	})
	return out, err
}

func (s *SQL) SetTOTP(ctx context.Context, userID string, secretEnc []byte, step int64, at time.Time) error {
	res, err := s.exec(ctx, `UPDATE users SET totp_secret_enc = $1, totp_last_step = $2, updated_at = $3,
		version = version + 1 WHERE id = $4`,
		secretEnc, step, unix(at), userID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

func (s *SQL) AddBreakGlass(ctx context.Context, b BreakGlass) error {
	_, err := s.exec(ctx, `INSERT INTO break_glass (id, actor_id, message_id, at, ip, reason_enc) VALUES ($1,$2,$3,$4,$5,$6)`,
		b.ID, b.ActorID, b.MessageID, unix(b.At), b.IP, b.ReasonEnc)
	return err
}

func (s *SQL) OutboxStats(ctx context.Context, now time.Time) (int, time.Time, error) {
	var n int
	var oldest sql.NullInt64
	// Given-up notices wait at a far-future next_attempt_at: not queued.
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*), MIN(created_at) FROM outbox
		WHERE sent_at IS NULL AND next_attempt_at < $1`, unix(now.AddDate(100, 0, 0))).Scan(&n, &oldest)
	if err != nil || !oldest.Valid {
		return n, time.Time{}, err
	}
	return n, fromUnix(oldest.Int64), nil
}

func (s *SQL) ListSent(ctx context.Context, senderID string, limit int) ([]Message, error) {
	return s.queryMessages(ctx, false, `SELECT `+msgCols+` FROM messages WHERE sender_id = $1
		ORDER BY created_at DESC, id LIMIT $2`, senderID, limit)
}

func (s *SQL) Recall(ctx context.Context, id, senderID string, audit AuditFunc) error {
	return s.auditedTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE messages SET state = $1 WHERE id = $2 AND sender_id = $3 AND state IN ($4, $5)`,
			StateRecalled, id, senderID, StateDelivered, StateQuarantined)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return s.appendAudit(ctx, tx, audit)
	})
}

// PurgeCiphertext empties the ciphertext of each message due and appends
// the entries audit makes for them, in one transaction.
func (s *SQL) PurgeCiphertext(ctx context.Context, now time.Time, audit PurgeAudit) (int, error) {
	var n int
	err := s.auditedTx(ctx, func(tx *sql.Tx) error {
		n = 0
		ids, err := s.queryIDs(ctx, tx, `SELECT id FROM messages
			WHERE purged_at IS NULL AND (state IN ($1, $2) OR dispose_at <= $3) ORDER BY id`,
			StateRecalled, StateDenied, unix(now))
		if err != nil || len(ids) == 0 {
			return err
		}
		for _, id := range ids {
			// The condition again: under a server database's read
			// committed, a row may have changed since the select.
			if _, err := tx.ExecContext(ctx, `UPDATE messages SET body = $1, summary = $1, key_packets = $1,
				summary_keys = $1, purged_at = $2 WHERE id = $3 AND purged_at IS NULL`,
				[]byte{}, unix(now), id); err != nil {
				return err
			}
			if err := deleteCopies(ctx, tx, id, ""); err != nil {
				return err
			}
		}
		n = len(ids)
		if audit == nil {
			return nil
		}
		return s.appendAudit(ctx, tx, audit(ids))
	})
	if err != nil {
		return 0, err
	}
	if n > 0 {
		s.flushDeleted(ctx)
	}
	return n, nil
}

func (s *SQL) queryIDs(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func (s *SQL) Replies(ctx context.Context, recipientID, messageID string) ([]Message, error) {
	return s.queryMessages(ctx, true, `SELECT `+msgCols+`, body FROM messages WHERE recipient_id = $1 AND reply_to = $2
		ORDER BY created_at, id`, recipientID, messageID)
}

func (s *SQL) PasscodeGiven(ctx context.Context, id string, at time.Time) error {
	_, err := s.exec(ctx, `UPDATE messages SET passcode_ok_at = $1 WHERE id = $2 AND passcode_ok_at IS NULL`, unix(at), id)
	return err
}
