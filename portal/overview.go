package portal

import (
	"context"
	"net/http"
	"time"

	"github.com/phigate/phigate/alert"
	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/store"
)

// overview is the admin's and security officer's landing page (issue
// 13.3): what waits for them, not an empty patient inbox.
type overview struct {
	// Held and OldestHeld: the quarantine (admins only; -1 for others).
	Held       int
	OldestHeld time.Time
	// FailedNotices: notices that gave up (admins only; -1 for others).
	FailedNotices int
	// Alerts: the latest alerts, newest first; Alerts24h counts a day's.
	Alerts    []alert.Alert
	Alerts24h int
	// LastVerify is the last audit.verify entry (nil: never verified in
	// the portal or API); Checkpoint the last checkpoint written.
	LastVerify   *entryRow
	VerifyBroken bool
	Checkpoint   *audit.Checkpoint
	IsAdmin      bool
}

// overviewAlerts is how many alerts the overview lists.
const overviewAlerts = 5

func (s *Server) overviewData(ctx context.Context, v *viewer) (*overview, error) {
	o := &overview{Held: -1, FailedNotices: -1, IsAdmin: v.user.Role == store.RoleAdmin}
	if o.IsAdmin {
		held, err := s.Store.ListQuarantined(ctx)
		if err != nil {
			return nil, err
		}
		o.Held = len(held)
		if len(held) > 0 {
			o.OldestHeld = held[0].CreatedAt // oldest first
		}
		failed, err := s.Store.FailedOutbox(ctx, 1000)
		if err != nil {
			return nil, err
		}
		o.FailedNotices = len(failed)
	}
	day := s.now().Add(-24 * time.Hour)
	for _, a := range s.recentAlerts() {
		if a.Time.IsZero() {
			continue
		}
		if a.Time.After(day) {
			o.Alerts24h++
		}
		if len(o.Alerts) < overviewAlerts {
			o.Alerts = append(o.Alerts, a)
		}
	}
	if s.Trail != nil {
		last, err := s.Trail.Search(ctx, audit.Query{Action: "audit.verify", Newest: true, Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(last) == 1 {
			rows := s.namer(ctx).rows(last, true)
			o.LastVerify, o.VerifyBroken = &rows[0], last[0].Outcome != audit.OK
		}
		if o.Checkpoint, err = s.Trail.LastCheckpoint(); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func (s *Server) overviewPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	o, err := s.overviewData(r.Context(), v)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d := s.data("Overview")
	d.Overview = o
	s.render(w, r, http.StatusOK, "admin_overview.html", d)
}

// landing is where a person goes after signing in (issue 13.3): staff to
// what they sent, admins and security officers to the overview, patients
// to their messages.
func landing(role string) string {
	switch role {
	case store.RoleStaff:
		return "/sent"
	case store.RoleAdmin, store.RoleSecurity:
		return "/admin"
	}
	return "/inbox"
}
