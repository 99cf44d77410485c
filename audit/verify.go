package audit

import (
	"context"
	"crypto/hmac"
	"fmt"
	"time"

	"github.com/phigate/phigate/store"
)

// BrokenError names the first entry at which the trail fails verification.
type BrokenError struct {
	Seq    int64
	Reason string
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("audit trail broken at entry %d: %s", e.Seq, e.Reason)
}

// verifyPage is how many rows Verify and Export read per query.
const verifyPage = 2000

// Verify walks the whole chain from entry 1 and returns how many entries
// it checked, and nil or a *BrokenError naming the first bad one:
//
//   - "sequence gap": an entry is missing (deleted) — Seq is the missing number;
//   - "mac mismatch": an entry was changed, moved to another number, or
//     written without the key (its MAC does not cover its fields and its
//     predecessor's MAC);
//   - "differs from checkpoint": the entry at a checkpointed number is not
//     the one that was checkpointed (tail cut and rewritten);
//   - "missing before checkpoint": the chain ends before the last
//     checkpoint (tail truncated) — Seq is the first missing number;
//   - a checkpoint line that is forged or edited.
//
// Other errors (database unreachable) are returned as they are.
func (t *Trail) Verify(ctx context.Context) (checked int64, err error) {
	cps, err := t.readCheckpoints()
	if err != nil {
		return 0, err
	}
	at := make(map[int64][]cpLine, len(cps))
	var last *cpLine
	for i := range cps {
		at[cps[i].Seq] = append(at[cps[i].Seq], cps[i])
		if last == nil || cps[i].Seq > last.Seq {
			last = &cps[i]
		}
	}
	var prev []byte
	next := int64(1)
	for {
		recs, err := t.st.ListAudit(ctx, store.AuditFilter{AfterSeq: next - 1, Limit: verifyPage})
		if err != nil {
			return checked, err
		}
		for _, r := range recs {
			if r.Seq != next {
				return checked, &BrokenError{Seq: next, Reason: fmt.Sprintf("sequence gap: entry %d is missing (the next one is %d)", next, r.Seq)}
			}
			if !hmac.Equal(r.MAC, entryMAC(t.macFor(r.Seq), r, prev)) {
				return checked, &BrokenError{Seq: r.Seq, Reason: "mac mismatch: the entry was changed, moved or written without the key"}
			}
			if e, ok := t.switchAt(r.Seq); ok && (r.Action != KeySwitchAction || r.ObjectID != epochName(e.Epoch)) {
				return checked, &BrokenError{Seq: r.Seq, Reason: fmt.Sprintf("key epoch %d is recorded to start after this entry, which is not the rotation that switched to it", e.Epoch)}
			}
			for _, cp := range at[r.Seq] {
				if !hmac.Equal(cp.mac, r.MAC) {
					return checked, &BrokenError{Seq: r.Seq, Reason: fmt.Sprintf("differs from checkpoint of %s (line %d): the entries from here on were replaced",
						cp.Time.Format(time.RFC3339), cp.line)}
				}
			}
			prev = r.MAC
			next++
			checked++
		}
		if len(recs) < verifyPage {
			break
		}
	}
	for _, e := range t.epochs[min(1, len(t.epochs)):] {
		if e.FromSeq-1 >= next {
			return checked, &BrokenError{Seq: next, Reason: fmt.Sprintf("the trail ends at entry %d, before the rotation to key epoch %d (entry %d)", next-1, e.Epoch, e.FromSeq-1)}
		}
	}
	if last != nil && last.Seq >= next {
		return checked, &BrokenError{Seq: next, Reason: fmt.Sprintf("missing before checkpoint: the trail ends at entry %d but the checkpoint of %s (line %d) recorded entry %d; the tail was truncated",
			next-1, last.Time.Format(time.RFC3339), last.line, last.Seq)}
	}
	return checked, nil
}
