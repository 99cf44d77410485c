package store

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// A logical dump (issue 14.1: backups of a PostgreSQL store) is JSON lines:
// for each table, in pgTableOrder, a header {"table":..., "columns":[...]},
// then one {"row":[...]} per row, each value typed ({"b": base64} bytes,
// {"i": n} integer, {"s": text}, {"t": bool}, {"f": float}, null), and a
// last {"counts": {...}} line so a cut dump is noticed.
type dumpLine struct {
	Table   string         `json:"table,omitempty"`
	Columns []string       `json:"columns,omitempty"`
	Row     []*dumpValue   `json:"row,omitempty"`
	Counts  map[string]int `json:"counts,omitempty"`
}

type dumpValue struct {
	B *string  `json:"b,omitempty"`
	I *int64   `json:"i,omitempty"`
	S *string  `json:"s,omitempty"`
	T *bool    `json:"t,omitempty"`
	F *float64 `json:"f,omitempty"`
}

func encodeValue(v any) (*dumpValue, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []byte:
		s := base64.StdEncoding.EncodeToString(x)
		return &dumpValue{B: &s}, nil
	case int64:
		return &dumpValue{I: &x}, nil
	case int32:
		n := int64(x)
		return &dumpValue{I: &n}, nil
	case string:
		return &dumpValue{S: &x}, nil
	case bool:
		return &dumpValue{T: &x}, nil
	case float64:
		return &dumpValue{F: &x}, nil
	case time.Time:
		s := x.UTC().Format(time.RFC3339Nano)
		return &dumpValue{S: &s}, nil
	}
	return nil, fmt.Errorf("store: dump: unsupported value type %T", v)
}

func (d *dumpValue) decode() (any, error) {
	switch {
	case d == nil:
		return nil, nil
	case d.B != nil:
		return base64.StdEncoding.DecodeString(*d.B)
	case d.I != nil:
		return *d.I, nil
	case d.S != nil:
		return *d.S, nil
	case d.T != nil:
		return *d.T, nil
	case d.F != nil:
		return *d.F, nil
	}
	return nil, errors.New("store: load: empty value")
}

// pgTableOrder lists the PostgreSQL schema's tables (goose's own aside)
// in load order, as copyOrder does for SQLite. Every one is dumped, so a
// table added later is not left out.
func pgTableOrder(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) ([]string, error) {
	return tableOrder(ctx, q, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name <> 'goose_db_version'
		ORDER BY table_name`)
}

// Dump writes every row of a PostgreSQL store to w as a logical dump, from
// one REPEATABLE READ read-only transaction: a consistent snapshot taken
// while other nodes keep writing. It returns the rows per table.
func (s *SQL) Dump(ctx context.Context, w io.Writer) (map[string]int, error) {
	if s.serialWrites {
		return nil, errors.New("store: Dump is for PostgreSQL; back SQLite up with VACUUM INTO")
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	order, err := pgTableOrder(ctx, tx)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	counts := map[string]int{}
	for _, table := range order {
		n, err := dumpTable(ctx, tx, enc, table)
		if err != nil {
			return nil, fmt.Errorf("store: dump %s: %w", table, err)
		}
		counts[table] = n
	}
	if err := enc.Encode(dumpLine{Counts: counts}); err != nil {
		return nil, err
	}
	return counts, bw.Flush()
}

func dumpTable(ctx context.Context, tx *sql.Tx, enc *json.Encoder, table string) (int, error) {
	rows, err := tx.QueryContext(ctx, `SELECT * FROM `+table+` ORDER BY 1`) // deterministic: the first column is the key
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, err
	}
	if err := enc.Encode(dumpLine{Table: table, Columns: cols}); err != nil {
		return 0, err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	line := dumpLine{Row: make([]*dumpValue, len(cols))}
	n := 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, err
		}
		for i, v := range vals {
			if line.Row[i], err = encodeValue(v); err != nil {
				return n, err
			}
		}
		if err := enc.Encode(line); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

// Empty reports whether no table of a PostgreSQL store holds a row.
func (s *SQL) Empty(ctx context.Context) (bool, error) {
	order, err := pgTableOrder(ctx, s.db)
	if err != nil {
		return false, err
	}
	for _, table := range order {
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
			return false, err
		}
		if n > 0 {
			return false, nil
		}
	}
	return true, nil
}

// Load inserts a logical dump (Dump) into an empty, migrated PostgreSQL
// store in one transaction: all of it or, on any error (a non-empty
// target, a cut or altered dump, a row count that does not match), none.
func (s *SQL) Load(ctx context.Context, r io.Reader) (map[string]int, error) {
	if s.serialWrites {
		return nil, errors.New("store: Load is for PostgreSQL")
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	order, err := pgTableOrder(ctx, tx)
	if err != nil {
		return nil, err
	}
	for _, table := range order {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
			return nil, err
		}
		if n != 0 {
			return nil, fmt.Errorf("store: the target already holds data (%s has %d rows)", table, n)
		}
	}
	counts, err := loadLines(ctx, tx, r, order)
	if err != nil {
		return nil, err
	}
	return counts, tx.Commit()
}

// loader inserts the rows of one table.
type loader struct {
	table     string
	cols      []string
	ins       *sql.Stmt
	notNullBA map[string]bool
	n         int
}

func loadLines(ctx context.Context, tx *sql.Tx, r io.Reader, order []string) (map[string]int, error) {
	dec := json.NewDecoder(bufio.NewReader(r))
	got := map[string]int{}
	var cur *loader
	defer func() {
		if cur != nil {
			cur.ins.Close()
		}
	}()
	next := 0 // index in order of the next table expected
	for {
		var l dumpLine
		if err := dec.Decode(&l); err != nil {
			return nil, fmt.Errorf("store: load: the dump ends without its counts: %w", err)
		}
		switch {
		case l.Counts != nil:
			if cur != nil {
				got[cur.table] = cur.n
			}
			if next != len(order) {
				return nil, fmt.Errorf("store: load: the dump lacks table %s", order[next])
			}
			for _, t := range order {
				if got[t] != l.Counts[t] {
					return nil, fmt.Errorf("store: load: %s has %d rows, the dump says %d", t, got[t], l.Counts[t])
				}
			}
			return got, nil
		case l.Table != "":
			if next >= len(order) || l.Table != order[next] {
				return nil, fmt.Errorf("store: load: table %q out of order", l.Table)
			}
			next++
			if cur != nil {
				got[cur.table] = cur.n
				cur.ins.Close()
			}
			var err error
			if cur, err = newLoader(ctx, tx, l.Table, l.Columns); err != nil {
				return nil, err
			}
		case l.Row != nil:
			if cur == nil || len(l.Row) != len(cur.cols) {
				return nil, errors.New("store: load: a row without its table, or of the wrong width")
			}
			if err := cur.insert(ctx, l.Row); err != nil {
				return nil, fmt.Errorf("store: load %s: %w", cur.table, err)
			}
		default:
			return nil, errors.New("store: load: an empty line")
		}
	}
}

func newLoader(ctx context.Context, tx *sql.Tx, table string, cols []string) (*loader, error) {
	for _, c := range cols {
		if c == "" || strings.ContainsFunc(c, func(r rune) bool { return !(r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') }) {
			return nil, fmt.Errorf("store: load: bad column name %q", c)
		}
	}
	nn, err := notNullBytea(ctx, tx, table)
	if err != nil {
		return nil, err
	}
	marks := make([]string, len(cols))
	for i := range marks {
		marks[i] = fmt.Sprintf("$%d", i+1)
	}
	ins, err := tx.PrepareContext(ctx, `INSERT INTO `+table+` (`+strings.Join(cols, ", ")+`) VALUES (`+strings.Join(marks, ", ")+`)`)
	if err != nil {
		return nil, err
	}
	return &loader{table: table, cols: cols, ins: ins, notNullBA: nn}, nil
}

func (l *loader) insert(ctx context.Context, row []*dumpValue) error {
	vals := make([]any, len(row))
	for i, d := range row {
		v, err := d.decode()
		if err != nil {
			return err
		}
		if l.notNullBA[l.cols[i]] && v == nil {
			v = []byte{} // an empty bytea, as copyTable does
		}
		vals[i] = v
	}
	if _, err := l.ins.ExecContext(ctx, vals...); err != nil {
		return err
	}
	l.n++
	return nil
}
