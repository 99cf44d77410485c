package portal

// Recipients' OpenPGP keys (issue 13.11: one operation each behind the
// admin page and the API, and behind the account page and the API).

import (
	"net/http"
	"regexp"
	"strings"
)

type recipientKeyIn struct {
	Email string `json:"email"`
	Key   string `json:"key"`
}

type keyOut struct {
	Fingerprint string `json:"fingerprint"`
}

// registerKey registers key for email and audits it; a refused key is 400
// bad_key with the reason (private, expired, revoked, weak, not naming the
// address). details is the audit entry's (the address, for an admin's).
func (s *Server) registerKey(r *http.Request, v *viewer, email, key string, details map[string]string) (keyOut, error) {
	fpr, err := s.Identity.RegisterRecipientKey(r.Context(), email, []byte(key), v.user.ID)
	if err != nil {
		oe := refused(http.StatusBadRequest, "bad_key", "The key was refused: "+reason(err), err)
		oe.Field = "key"
		return keyOut{}, oe
	}
	s.Log.InfoContext(r.Context(), "recipient key registered", "by", v.user.ID, "fingerprint", fpr)
	s.audit(r, "key.register", "key", fpr, "ok", details)
	return keyOut{Fingerprint: fpr}, nil
}

// opRegisterRecipientKey registers a recipient's key (admins).
func (s *Server) opRegisterRecipientKey(r *http.Request, v *viewer, in recipientKeyIn) (keyOut, error) {
	email := strings.TrimSpace(in.Email)
	return s.registerKey(r, v, email, in.Key, map[string]string{"email": email})
}

type ownKeyIn struct {
	Key string `json:"key"`
}

// opRegisterOwnKey lets a recipient register their own OpenPGP key; later
// messages may then come as PGP/MIME if the policy says so.
func (s *Server) opRegisterOwnKey(r *http.Request, v *viewer, in ownKeyIn) (keyOut, error) {
	email, err := s.Identity.Email(v.user)
	if err != nil {
		return keyOut{}, err
	}
	return s.registerKey(r, v, email, in.Key, nil)
}

// fingerprintRE is what a redirect may carry back to show: a key's
// fingerprint, never an address (a URL carries no PHI).
var fingerprintRE = regexp.MustCompile(`^[0-9A-Fa-f]{16,64}$`)

func registeredFingerprint(r *http.Request) string {
	if f := r.URL.Query().Get("fpr"); r.URL.Query().Get("done") == "key" && fingerprintRE.MatchString(f) {
		return f
	}
	return ""
}

// keysPage registers a recipient's OpenPGP key from the admin pages.
func (s *Server) keysPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	d := s.data("Recipient keys")
	if f := registeredFingerprint(r); f != "" {
		d.Notice = "Registered key " + f + ". Messages to its address can now go as PGP/MIME if the policy says so."
	}
	s.render(w, r, http.StatusOK, "admin_keys.html", d)
}

func (s *Server) keysSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	in := recipientKeyIn{Email: r.PostFormValue("email"), Key: r.PostFormValue("key")}
	out, err := s.opRegisterRecipientKey(r, v, in)
	if err != nil {
		d := s.data("Recipient keys")
		d.Email = strings.TrimSpace(in.Email)
		s.pageRefused(w, r, err, d, func(status int, d pageData) { s.render(w, r, status, "admin_keys.html", d) })
		return
	}
	seeOther(w, r, "/admin/keys?fpr="+out.Fingerprint, "key")
}

// ownKeySubmit lets a recipient register their own key from the account page.
func (s *Server) ownKeySubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opRegisterOwnKey(r, v, ownKeyIn{Key: r.PostFormValue("key")})
	if err != nil {
		s.pageRefused(w, r, err, s.accountData(r, v), func(status int, d pageData) { s.render(w, r, status, "account.html", d) })
		return
	}
	seeOther(w, r, "/account?fpr="+out.Fingerprint, "key")
}

func (s *Server) apiRecipientKey(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in recipientKeyIn
	if !decodeJSON(w, r, &in) {
		return
	}
	out, err := s.opRegisterRecipientKey(r, v, in)
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

func (s *Server) apiOwnKey(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in ownKeyIn
	if !decodeJSON(w, r, &in) {
		return
	}
	out, err := s.opRegisterOwnKey(r, v, in)
	s.apiAnswer(w, r, http.StatusOK, out, err)
}
