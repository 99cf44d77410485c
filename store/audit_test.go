package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestAuditAppendAndList(t *testing.T) {
	forEachBackend(t, func(t *testing.T, node func() *SQL) {
		ctx := context.Background()
		s := node()

		if seq, mac, err := s.AuditHead(ctx); seq != 0 || mac != nil || err != nil {
			t.Fatalf("empty head = %d, %x, %v", seq, mac, err)
		}
		t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
		actions := []string{"auth.login", "auth_x", "authxlogin", "message.read", "auth.logout"}
		err := s.AppendAudit(ctx, func(head int64, mac []byte) ([]AuditRecord, error) {
			var out []AuditRecord
			for i, a := range actions {
				out = append(out, AuditRecord{Seq: head + int64(i) + 1, At: t0.Add(time.Duration(i) * time.Second),
					Actor: "u1", Action: a, Outcome: "ok", MAC: []byte{byte(i + 1)}})
			}
			return out, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		seq, mac, err := s.AuditHead(ctx)
		if seq != 5 || string(mac) != "\x05" || err != nil {
			t.Fatalf("head = %d, %x, %v", seq, mac, err)
		}
		list := func(f AuditFilter) string {
			t.Helper()
			f.Limit = 100
			rs, err := s.ListAudit(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			var seqs []int64
			for _, r := range rs {
				seqs = append(seqs, r.Seq)
			}
			return fmt.Sprint(seqs)
		}
		for _, c := range []struct {
			f    AuditFilter
			want string
		}{
			{AuditFilter{ActionPrefix: "auth."}, "[1 5]"}, // "_" and "x" are not wildcards
			{AuditFilter{Action: "auth_x"}, "[2]"},
			{AuditFilter{From: t0.Add(time.Second), To: t0.Add(3 * time.Second)}, "[2 3]"},
			{AuditFilter{Desc: true, BeforeSeq: 4}, "[3 2 1]"},
			{AuditFilter{AfterSeq: 3}, "[4 5]"},
		} {
			if got := list(c.f); got != c.want {
				t.Errorf("ListAudit(%+v) = %s, want %s", c.f, got, c.want)
			}
		}
		rs, _ := s.ListAudit(ctx, AuditFilter{Limit: 1})
		if !rs[0].At.Equal(t0) || rs[0].Actor != "u1" || len(rs[0].DetailsEnc) != 0 {
			t.Errorf("row %+v", rs[0])
		}

		// Records must continue the chain exactly.
		for _, bad := range []AuditRecord{{Seq: 5, MAC: []byte{1}}, {Seq: 7, MAC: []byte{1}}, {Seq: 6}} {
			err := s.AppendAudit(ctx, func(int64, []byte) ([]AuditRecord, error) { return []AuditRecord{bad}, nil })
			if err == nil {
				t.Errorf("AppendAudit accepted %+v", bad)
			}
		}
		boom := errors.New("boom")
		if err := s.AppendAudit(ctx, func(int64, []byte) ([]AuditRecord, error) { return nil, boom }); !errors.Is(err, boom) {
			t.Errorf("build error: %v", err)
		}
		if seq, _, _ := s.AuditHead(ctx); seq != 5 {
			t.Errorf("head moved to %d", seq)
		}
		if _, err := s.ListAudit(ctx, AuditFilter{}); err == nil {
			t.Error("ListAudit without a limit accepted")
		}
	})
}
