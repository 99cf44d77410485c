package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// copyFirst orders the tables the foreign keys constrain: parents first.
// Tables not listed (added by later migrations, referring to these) are
// copied after them, by name.
var copyFirst = []string{"users", "app_passwords", "messages", "claim_tokens", "outbox",
	"recovery_codes", "policy_versions", "recipient_keys", "break_glass", "audit_log", "push_subscriptions"}

// CopyAll copies every row of src (an SQLite store) into dst (a freshly
// migrated PostgreSQL store holding no data) in one transaction on dst,
// values as they are: ciphertext stays sealed to the same keys and audit
// rows keep their sequence numbers and MACs. It returns the rows copied
// per table after checking dst has as many.
func CopyAll(ctx context.Context, src, dst *SQL) (map[string]int, error) {
	order, err := copyOrder(ctx, src)
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	err = dst.tx(ctx, func(tx *sql.Tx) error {
		for _, table := range order {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
				return err
			}
			if n != 0 {
				return fmt.Errorf("store: the target already holds data (%s has %d rows)", table, n)
			}
			c, err := copyTable(ctx, src.db, tx, table)
			if err != nil {
				return fmt.Errorf("store: copying %s: %w", table, err)
			}
			counts[table] = c
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, table := range order {
		var n int
		if err := dst.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
			return nil, err
		}
		if n != counts[table] {
			return nil, fmt.Errorf("store: %s has %d rows after the copy, want %d", table, n, counts[table])
		}
	}
	return counts, nil
}

// copyOrder lists src's tables (goose's own aside) in copy order. Every
// one is copied: a table the target lacks fails the copy.
func copyOrder(ctx context.Context, src *SQL) ([]string, error) {
	order, err := tableOrder(ctx, src.db, `SELECT name FROM sqlite_master WHERE type = 'table'
		AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name <> 'goose_db_version' ORDER BY name`)
	if errors.Is(err, errCatalogue) {
		return nil, fmt.Errorf("store: the source must be an SQLite store: %w", err)
	}
	return order, err
}

// errCatalogue marks a failure to read the database's list of tables.
var errCatalogue = errors.New("store: cannot list the tables")

// tableOrder runs catalogue (a query of table names, sorted) and orders
// the names for copying and loading: copyFirst (which every phigate store
// has, in foreign-key order), then the rest by name.
func tableOrder(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, catalogue string) ([]string, error) {
	rows, err := q.QueryContext(ctx, catalogue)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCatalogue, err)
	}
	defer rows.Close()
	have := map[string]bool{}
	var rest []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		have[n] = true
		if !slices.Contains(copyFirst, n) {
			rest = append(rest, n)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, n := range copyFirst {
		if !have[n] {
			return nil, fmt.Errorf("store: no table %s: not a phigate store of this version", n)
		}
	}
	return append(slices.Clone(copyFirst), rest...), nil
}

// copyTable inserts every row of table from src into tx, column by name.
func copyTable(ctx context.Context, src *sql.DB, tx *sql.Tx, table string) (int, error) {
	notNullBytes, err := notNullBytea(ctx, tx, table)
	if err != nil {
		return 0, err
	}
	rows, err := src.QueryContext(ctx, `SELECT * FROM `+table)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, err
	}
	marks := make([]string, len(cols))
	for i := range marks {
		marks[i] = fmt.Sprintf("$%d", i+1)
	}
	ins, err := tx.PrepareContext(ctx, `INSERT INTO `+table+` (`+strings.Join(cols, ", ")+`) VALUES (`+strings.Join(marks, ", ")+`)`)
	if err != nil {
		return 0, err
	}
	defer ins.Close()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	n := 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, err
		}
		for i, c := range cols {
			// SQLite hands back an empty BLOB (a purged body, a sent
			// notice's payload) as a nil slice, which pgx would send as
			// NULL; the column says it is empty.
			if b, isBytes := vals[i].([]byte); notNullBytes[c] && (vals[i] == nil || isBytes && b == nil) {
				vals[i] = []byte{}
			}
		}
		if _, err := ins.ExecContext(ctx, vals...); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

// notNullBytea names table's NOT NULL bytea columns on PostgreSQL.
func notNullBytea(ctx context.Context, tx *sql.Tx, table string) (map[string]bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = $1 AND data_type = 'bytea' AND is_nullable = 'NO'`, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		out[c] = true
	}
	return out, rows.Err()
}
