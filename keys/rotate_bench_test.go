package keys_test

import (
	"fmt"
	"testing"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/notify"
	"github.com/phigate/phigate/store"
)

// BenchmarkRotateMaster times one master-key rotation of a store with
// 2,000 pending accounts (sealed address, wrapped pending key, blind
// index), one message with its notice each, and one staff account with an
// app password and ten recovery codes (docs/perf.md):
//
//	go test ./keys -run '^$' -bench BenchmarkRotateMaster -benchtime 1x
func BenchmarkRotateMaster(b *testing.B) {
	const accounts = 2000
	for range b.N {
		b.StopTimer()
		w := newWorld(b)
		staff, err := w.svc.AddUser(ctx, "staff@clinic.example", store.RoleStaff, pw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.svc.AddAppPassword(ctx, "staff@clinic.example", "laptop"); err != nil {
			b.Fatal(err)
		}
		if _, err := w.svc.NewRecoveryCodes(ctx, staff); err != nil {
			b.Fatal(err)
		}
		for i := range accounts {
			u, err := w.svc.EnsureRecipient(ctx, fmt.Sprintf("p%d@patient.example", i))
			if err != nil {
				b.Fatal(err)
			}
			oid := store.NewID()
			sealed, _ := w.ring.SealField(notify.PayloadPurpose(oid), []byte("notice"))
			m := store.Message{ID: store.NewID(), RecipientID: u.ID, SenderID: staff.ID, KeyFpr: u.KeyFpr, CreatedAt: time.Now(),
				ExpiresAt: time.Now().Add(time.Hour), Policy: "portal", KeyPackets: pcrypto.RandomBytes(100), Body: pcrypto.RandomBytes(2000),
				SummaryKeys: pcrypto.RandomBytes(100), Summary: pcrypto.RandomBytes(100)}
			if err := w.st.Deliver(ctx, store.Delivery{Messages: []store.Message{m}, Outbox: []store.OutboxItem{{ID: oid, Kind: "new-message",
				UserID: u.ID, MessageID: m.ID, Payload: sealed, CreatedAt: time.Now(), NextAttemptAt: time.Now().Add(time.Hour)}}}); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		res, err := w.rotation().RotateMaster(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		b.ReportMetric(float64(res.Resealed), "values")
	}
}
