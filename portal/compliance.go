package portal

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/phigate/phigate/compliance"
)

// ComplianceFunc builds the compliance report (issue 14.5) from the live
// configuration and state: the gateway's, the same code as
// `phigate compliance report`.
type ComplianceFunc func(ctx context.Context) (*compliance.Report, error)

var errNoCompliance = errors.New("portal: no compliance report source")

// opComplianceReport builds the report for an admin or the security
// officer. Reading it is a review of the safeguards, so it is on the
// trail like an audit search (the count of failed checks, no PHI).
func (s *Server) opComplianceReport(r *http.Request, _ *viewer, _ struct{}) (*compliance.Report, error) {
	if s.Compliance == nil {
		return nil, errNoCompliance
	}
	rep, err := s.Compliance(r.Context())
	if err != nil {
		return nil, err
	}
	s.audit(r, "compliance.report", "compliance", "", "ok", map[string]string{"failed": strconv.Itoa(rep.Failed)})
	return rep, nil
}

// compliancePage is /admin/compliance. A failing check is part of the
// report, not an error: the page answers 200 either way.
func (s *Server) compliancePage(w http.ResponseWriter, r *http.Request, v *viewer) {
	rep, err := s.opComplianceReport(r, v, struct{}{})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d := s.data("Compliance report")
	d.SignedIn, d.Compliance = true, rep
	s.render(w, r, http.StatusOK, "admin_compliance.html", d)
}

// apiCompliance is GET /api/v1/admin/compliance: the report as
// `phigate compliance report --json` prints it.
func (s *Server) apiCompliance(w http.ResponseWriter, r *http.Request, v *viewer) {
	rep, err := s.opComplianceReport(r, v, struct{}{})
	s.apiAnswer(w, r, http.StatusOK, rep, err)
}
