package portal

import (
	"context"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/web"
)

// namer turns the trail's ids into what people recognise (issue 13.4):
// account ids into addresses, "cli:unknown" into words. One lookup per
// account per page; it is used only on pages for admins, security
// officers, and a message's own sender.
type namer struct {
	s     *Server
	ctx   context.Context
	cache map[string]string
}

func (s *Server) namer(ctx context.Context) *namer {
	return &namer{s: s, ctx: ctx, cache: map[string]string{}}
}

// maxNameLookups bounds the accounts one page resolves (invariant 7);
// beyond it an id is shown as it is.
const maxNameLookups = 500

// user is the address of the account id, or "" when there is none.
func (n *namer) user(id string) string {
	if id == "" {
		return ""
	}
	if a, ok := n.cache[id]; ok {
		return a
	}
	if len(n.cache) >= maxNameLookups {
		return ""
	}
	addr := ""
	if u, err := n.s.Store.UserByID(n.ctx, id); err == nil {
		addr, _ = n.s.Identity.Email(u)
	}
	n.cache[id] = addr
	return addr
}

// actor is who did something, in words.
func (n *namer) actor(a string) string {
	switch {
	case a == "":
		return ""
	case a == "system":
		return "phigate (automatic)"
	case a == "anonymous":
		return "someone not signed in"
	case strings.HasPrefix(a, "smtp:"):
		return "mail client at " + strings.TrimPrefix(a, "smtp:")
	case strings.HasPrefix(a, "cli:"):
		if who := strings.TrimPrefix(a, "cli:"); who != "" && who != "unknown" {
			return "command line (" + who + ")"
		}
		return "command line (user not known)"
	}
	if addr := n.user(a); addr != "" {
		return addr
	}
	return "account " + shortID(a) + " (no longer exists)"
}

// record is what an entry is about, in words.
func (n *namer) record(objType, objID string) string {
	switch objType {
	case "":
		return ""
	case "message":
		if objID == "" {
			return "a message"
		}
		return "message " + web.Ref(objID)
	case "user":
		if addr := n.user(objID); addr != "" {
			return addr
		}
		if objID == "" {
			return "an account"
		}
		return "account " + shortID(objID)
	case "policy":
		return "policy version " + objID
	case "session":
		return "session " + objID
	case "account":
		return "an account (by its index)"
	case "audit":
		if objID != "" {
			return "audit entry " + objID
		}
		return "the audit trail"
	}
	if objID == "" {
		return objType
	}
	return objType + " " + shortID(objID)
}

// shortID is an id's first 12 digits after its creation time.
func shortID(id string) string {
	id = web.IDTail(id)
	if len(id) > 12 {
		return id[:12] + "…"
	}
	return id
}

// entryRow is one audit entry as a page shows it.
type entryRow struct {
	Seq      int64
	Time     time.Time
	Who      string
	IP       string
	What     string // plain words
	Action   string // the stable key, for the title and for filtering
	Record   string
	Outcome  string
	OK       bool
	Details  []string // "key: value", sorted
	Message  string   // message id when the entry is about one
	ActorKey string   // raw actor, for "more from this person"
}

func (n *namer) rows(entries []audit.Entry, details bool) []entryRow {
	out := make([]entryRow, 0, len(entries))
	for _, e := range entries {
		r := entryRow{Seq: e.Seq, Time: e.Time, Who: n.actor(e.Actor), IP: e.IP, What: audit.ActionName(e.Action),
			Action: e.Action, Record: n.record(e.ObjectType, e.ObjectID), Outcome: audit.OutcomeName(e.Outcome),
			OK: e.Outcome == "ok", ActorKey: e.Actor}
		if e.ObjectType == "message" {
			r.Message = e.ObjectID
		}
		if details {
			for k, v := range e.Details {
				r.Details = append(r.Details, k+": "+v)
			}
			sort.Strings(r.Details)
		}
		out = append(out, r)
	}
	return out
}

// zoneName is the organisation's time zone as pages name it.
func (s *Server) zoneName() string {
	if s.Org.TimeZone == "" {
		return "UTC"
	}
	return s.Org.TimeZone
}

// actorFilter turns the audit search's "who" into the trail's actor: an
// email address becomes its account id; anything else (an id, "system",
// "smtp:IP", "cli:NAME") is used as it is. An address with no account is
// a problem to show, not an empty search.
func (s *Server) actorFilter(ctx context.Context, who string) (string, string) {
	who = strings.TrimSpace(who)
	if !strings.Contains(who, "@") || strings.HasPrefix(who, "smtp:") {
		return who, ""
	}
	u, err := s.Identity.UserByEmail(ctx, who)
	if err != nil {
		return "", "No account has the address " + who + "."
	}
	return u.ID, ""
}

// auditSearchSubmit is the filter bar's POST: what was typed (an address
// is PHI) goes into the search as account ids, never into a URL; the
// export links then carry ids only.
func (s *Server) auditSearchSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	q := url.Values{}
	for _, k := range []string{"user", "action", "message", "ip", "from", "to", "outcome"} {
		if x := strings.TrimSpace(r.PostFormValue(k)); x != "" {
			q.Set(k, x)
		}
	}
	s.renderAudit(w, r, v, q)
}

// zoneDates reads the page's from/until dates (YYYY-MM-DD) as days in the
// organisation's time zone, "until" including its whole day: what a person
// means by "from 1 Dec until 6 Dec". Times with a zone (RFC 3339) stay as
// queryFrom read them.
func (s *Server) zoneDates(q *audit.Query, v url.Values) {
	loc := s.Org.Location()
	if t, err := time.ParseInLocation("2006-01-02", v.Get("from"), loc); err == nil {
		q.From = t
	}
	if t, err := time.ParseInLocation("2006-01-02", v.Get("to"), loc); err == nil {
		q.To = t.AddDate(0, 0, 1)
	}
}
