package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/redistest"
)

// TestSessionTamperRefused: a patient who can write to Redis rewrites their
// own session record to an admin's user id, the admin role and a done
// second factor (HSET on the raw key). The portal refuses the session (401,
// on this request and after) instead of serving the admin API, logs it and
// audits session.tampered once, with the claimed user; another patient's
// untouched session goes on working.
func TestSessionTamperRefused(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	cfg := nodeConfig(t.TempDir())
	cfg.Redis.URL = "redis://" + srv.Addr + "/0"
	h := e2e.Start(t, cfg)
	addAdmin(t, h, "admin@clinic.example")
	admin, err := h.G.Identity.UserByEmail(ctx, "admin@clinic.example")
	if err != nil {
		t.Fatal(err)
	}
	pass := h.AddStaff(staff)
	mallory, _ := claimNew(t, h, pass, "mallory@example.net", patientPW)
	bob, _ := claimNew(t, h, pass, "bob@example.net", patientPW)
	if st, _, b := mallory.Do("GET", "/api/v1/admin/users", nil, nil); st != http.StatusForbidden {
		t.Fatalf("a patient on the admin API before tampering: %d %s", st, b)
	}

	id, _, _ := strings.Cut(nodeCookie(t, mallory), ".")
	key := cfg.Redis.Prefix + "sess:s:" + id
	rdb := srv.Client(t)
	if err := rdb.HSet(ctx, key, "u", admin.ID, "r", "admin", "m", "1").Err(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/v1/admin/users", "/api/v1/messages"} {
		if st, _, b := mallory.Do("GET", path, nil, nil); st != http.StatusUnauthorized {
			t.Errorf("tampered session on %s: %d %s, want 401", path, st, b)
		}
	}
	if n := rdb.Exists(ctx, key).Val(); n != 0 {
		t.Error("the tampered record is still in Redis")
	}
	es := countAudit(t, h, audit.Query{Action: "session.tampered"})
	if len(es) != 1 || es[0].ObjectID != id[:8] || es[0].Outcome != "failed" || es[0].Details["claimed_user"] != admin.ID {
		t.Errorf("audit entries %+v, want one session.tampered for %s claiming %s", es, id[:8], admin.ID)
	}
	if st, _, b := bob.Do("GET", "/api/v1/messages", nil, nil); st != http.StatusOK {
		t.Errorf("untouched session: %d %s", st, b)
	}
}
