package portal

import (
	"net/http"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/logx"
)

// audit writes one trail entry for this request: who (the signed-in user,
// or "anonymous"), from where, what, which record, outcome. details are
// encrypted at rest and may hold addresses or reasons.
func (s *Server) audit(r *http.Request, action, objType, objID, outcome string, details map[string]string) error {
	actor := "anonymous"
	if v := viewerOf(r); v != nil {
		actor = v.user.ID
	}
	return s.auditAs(r, actor, action, objType, objID, outcome, details)
}

func (s *Server) auditAs(r *http.Request, actor, action, objType, objID, outcome string, details map[string]string) error {
	if s.Audit == nil {
		return nil
	}
	err := s.Audit.Record(r.Context(), audit.Entry{Actor: actor, IP: info(r).ip, Action: action, ObjectType: objType,
		ObjectID: objID, Outcome: outcome, Correlation: logx.Correlation(r.Context()), Details: details})
	if err != nil {
		s.Log.ErrorContext(r.Context(), "audit write failed", "action", action, "err", err)
	}
	return err
}
