package audit

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/phigate/phigate/store"
)

// Query selects entries; empty fields match everything.
type Query struct {
	Actor string
	// Action matches exactly, or by prefix when it ends in ".*"
	// ("auth.*" matches "auth.login" and "auth.logout").
	Action      string
	ObjectType  string
	ObjectID    string
	IP          string
	Outcome     string
	Correlation string    // one SMTP session or HTTP request
	From, To    time.Time // From <= Time < To
	// Limit caps the result: Search defaults to DefaultLimit and never
	// returns more than MaxLimit; Export returns everything when 0.
	Limit int
	// AfterSeq and BeforeSeq page through results: seq > AfterSeq,
	// seq < BeforeSeq (0 = unbounded).
	AfterSeq  int64
	BeforeSeq int64
	// Newest returns the newest entries first (page back with BeforeSeq);
	// otherwise entries come in ascending sequence order (page forward
	// with AfterSeq).
	Newest bool
}

const (
	DefaultLimit = 1000
	MaxLimit     = 10000
)

func (q Query) filter(limit int) store.AuditFilter {
	f := store.AuditFilter{
		Actor: q.Actor, IP: q.IP, ObjectType: q.ObjectType, ObjectID: q.ObjectID, CID: q.Correlation, Outcome: q.Outcome,
		From: q.From, To: q.To, AfterSeq: q.AfterSeq, BeforeSeq: q.BeforeSeq, Desc: q.Newest, Limit: limit,
	}
	if p, ok := strings.CutSuffix(q.Action, "*"); ok {
		f.ActionPrefix = p
	} else {
		f.Action = q.Action
	}
	return f
}

// Search returns the entries matching q with their details decrypted, in
// ascending sequence order (or newest first with q.Newest). An entry whose
// details do not decrypt is reported as a *BrokenError.
func (t *Trail) Search(ctx context.Context, q Query) ([]Entry, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	recs, err := t.st.ListAudit(ctx, q.filter(limit))
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(recs))
	for _, r := range recs {
		e, err := t.open(r)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// History returns every entry about one object, oldest first: for a
// message, its proof of delivery (accepted, sealed, notice sent, read,
// recalled...).
func (t *Trail) History(ctx context.Context, objectType, objectID string) ([]Entry, error) {
	var out []Entry
	err := t.each(ctx, Query{ObjectType: objectType, ObjectID: objectID}, func(e Entry) error {
		out = append(out, e)
		return nil
	})
	return out, err
}

// each calls fn for every entry matching q, in q's order, a page at a time.
func (t *Trail) each(ctx context.Context, q Query, fn func(Entry) error) error {
	left := q.Limit
	for {
		n := verifyPage
		if q.Limit > 0 {
			if left <= 0 {
				return nil
			}
			n = min(n, left)
		}
		recs, err := t.st.ListAudit(ctx, q.filter(n))
		if err != nil {
			return err
		}
		for _, r := range recs {
			e, err := t.open(r)
			if err != nil {
				return err
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(recs) < n {
			return nil
		}
		left -= len(recs)
		if q.Newest {
			q.BeforeSeq = recs[len(recs)-1].Seq
		} else {
			q.AfterSeq = recs[len(recs)-1].Seq
		}
	}
}

// ExportHead is the chain head as an export reports it.
type ExportHead struct {
	Seq int64  `json:"seq"`
	MAC string `json:"mac"`
}

// Export writes the entries matching q (all of them when q.Limit is 0), with
// details decrypted, as "csv" or "json", together with the chain head at
// the start of the export and the last checkpoint, so a reader can tell how
// far the trail went and compare it with the logged checkpoints. Entries
// committed after the export started are left out. The caller records the
// export itself in the trail (action "audit.export").
//
// JSON: {"head":{"seq","mac"},"checkpoint":{...}|null,"exported_at":...,"entries":[...]}.
// CSV: a header line, one row per entry (details as a JSON object), then
// "# head seq=N mac=HEX" and "# checkpoint seq=N time=T mac=HEX" (or
// "# checkpoint none"). Cells that a spreadsheet would run as a formula
// (starting with = + - @ or a tab/CR) are prefixed with an apostrophe.
func (t *Trail) Export(ctx context.Context, w io.Writer, format string, q Query) error {
	if format != "csv" && format != "json" {
		return fmt.Errorf("audit: export format %q: want csv or json", format)
	}
	seq, mac, err := t.st.AuditHead(ctx)
	if err != nil {
		return err
	}
	if q.BeforeSeq <= 0 || q.BeforeSeq > seq+1 {
		q.BeforeSeq = seq + 1
	}
	cp, err := t.LastCheckpoint()
	if err != nil {
		return err
	}
	head := ExportHead{Seq: seq, MAC: hex.EncodeToString(mac)}
	bw := bufio.NewWriter(w)
	if format == "json" {
		err = t.exportJSON(ctx, bw, q, head, cp)
	} else {
		err = t.exportCSV(ctx, bw, q, head, cp)
	}
	if err != nil {
		return err
	}
	return bw.Flush()
}

func (t *Trail) exportJSON(ctx context.Context, w *bufio.Writer, q Query, head ExportHead, cp *Checkpoint) error {
	hb, _ := json.Marshal(head)
	cb, _ := json.Marshal(cp)
	tb, _ := json.Marshal(t.now().UTC())
	fmt.Fprintf(w, "{\"head\":%s,\"checkpoint\":%s,\"exported_at\":%s,\"entries\":[", hb, cb, tb)
	n := 0
	err := t.each(ctx, q, func(e Entry) error {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if n > 0 {
			w.WriteByte(',')
		}
		w.WriteString("\n")
		n++
		_, err = w.Write(b)
		return err
	})
	if err != nil {
		return err
	}
	_, err = w.WriteString("\n]}\n")
	return err
}

var csvHeader = []string{"seq", "time", "actor", "ip", "action", "object_type", "object_id", "outcome", "correlation", "details"}

func (t *Trail) exportCSV(ctx context.Context, w *bufio.Writer, q Query, head ExportHead, cp *Checkpoint) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	err := t.each(ctx, q, func(e Entry) error {
		details := ""
		if len(e.Details) > 0 {
			b, err := json.Marshal(e.Details)
			if err != nil {
				return err
			}
			details = string(b)
		}
		row := []string{strconv.FormatInt(e.Seq, 10), e.Time.Format(time.RFC3339Nano), e.Actor, e.IP, e.Action,
			e.ObjectType, e.ObjectID, e.Outcome, e.Correlation, details}
		for i := range row {
			row[i] = csvSafe(row[i])
		}
		return cw.Write(row)
	})
	if err != nil {
		return err
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	fmt.Fprintf(w, "# head seq=%d mac=%s\n", head.Seq, head.MAC)
	if cp == nil {
		_, err = w.WriteString("# checkpoint none\n")
	} else {
		_, err = fmt.Fprintf(w, "# checkpoint seq=%d time=%s mac=%s tag=%s\n", cp.Seq, cp.Time.Format(time.RFC3339Nano), cp.MAC, cp.Tag)
	}
	return err
}

// csvSafe keeps spreadsheet programs from evaluating a cell as a formula.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
