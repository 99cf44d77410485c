package gateway_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/compliance"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/store"
)

// TestCompliancePage (issue 14.5): /admin/compliance and its API show the
// report phigate compliance report prints (one builder,
// gateway.ComplianceReport), to admins and the security officer only.
func TestCompliancePage(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	patient, _ := claimNew(t, h, pass, "report@example.net", patientPW)
	ctx := t.Context()
	if _, err := h.G.Identity.AddUser(ctx, "so@clinic.example", store.RoleSecurity, adminPW); err != nil {
		t.Fatal(err)
	}
	addAdmin(t, h, "admin@clinic.example")
	admin, _ := signInStaff(t, h, "admin@clinic.example", adminPW, time.Now())
	officer, _ := signInStaff(t, h, "so@clinic.example", adminPW, time.Now())
	staffer, _ := signInStaff(t, h, staff, "staff portal password 123", time.Now())

	want, err := h.G.ComplianceReport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for who, c := range map[string]*e2e.Client{"admin": admin, "security officer": officer} {
		var got compliance.Report
		c.JSON("GET", "/api/v1/admin/compliance", nil, 200, &got)
		if len(got.Safeguards) != len(want.Safeguards) || got.Failed != want.Failed || got.OK != want.OK {
			t.Fatalf("%s: API report has %d safeguards, %d failed; the CLI's builder %d, %d", who, len(got.Safeguards), got.Failed,
				len(want.Safeguards), want.Failed)
		}
		for i, s := range got.Safeguards {
			if s.Rule != want.Safeguards[i].Rule || len(s.Checks) != len(want.Safeguards[i].Checks) {
				t.Errorf("%s: safeguard %d is %s with %d checks, want %s with %d", who, i, s.Rule, len(s.Checks),
					want.Safeguards[i].Rule, len(want.Safeguards[i].Checks))
			}
		}
		st, _, page := c.Do("GET", "/admin/compliance", nil, nil)
		if st != 200 || !bytes.Contains(page, []byte("<h1>Compliance report</h1>")) {
			t.Fatalf("%s: page %d", who, st)
		}
		for _, s := range want.Safeguards {
			if !bytes.Contains(page, []byte(s.Title)) {
				t.Errorf("%s: the page lacks %q", who, s.Title)
			}
		}
		// The fresh gateway has no backup yet: that check fails, and the
		// page says so.
		if !bytes.Contains(page, []byte("<strong>Failed</strong>")) || !bytes.Contains(page, []byte("no backup recorded")) {
			t.Errorf("%s: the page does not show the failed backup check", who)
		}
	}
	// Staff and patients are refused, on both faces.
	for who, c := range map[string]*e2e.Client{"staff": staffer, "patient": patient} {
		for _, p := range []string{"/api/v1/admin/compliance", "/admin/compliance"} {
			if st, _, b := c.Do("GET", p, nil, nil); st != 403 || bytes.Contains(b, []byte("164.312")) {
				t.Errorf("%s GET %s: %d, want 403 without the report", who, p, st)
			}
		}
	}
	// Each reading is on the trail.
	es, err := h.G.Trail.Search(ctx, audit.Query{Action: "compliance.report"})
	if err != nil || len(es) != 4 {
		t.Errorf("compliance.report entries: %d, %v; want 4 (two faces, two readers)", len(es), err)
	}
}
