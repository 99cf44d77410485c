package portal

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/identity"
	"github.com/phigate/phigate/store"
	"github.com/phigate/phigate/web"
)

// adminUser is one row of the account list (staff, admins, security
// officers: the accounts admins manage).
type adminUser struct {
	ID          string    `json:"id"`
	Email       string    `json:"email"`
	Role        string    `json:"role"`
	Status      string    `json:"status"`
	TwoFactor   bool      `json:"two_factor"`
	Failures    int       `json:"failed_sign_ins"`
	LockedUntil time.Time `json:"locked_until,omitzero"`
	CreatedAt   time.Time `json:"created_at"`
}

var managedRoles = []string{store.RoleStaff, store.RoleAdmin, store.RoleSecurity}

func (s *Server) listManaged(ctx context.Context) ([]adminUser, error) {
	users, err := s.Store.ListUsers(ctx, managedRoles...)
	if err != nil {
		return nil, err
	}
	out := make([]adminUser, 0, len(users))
	for i := range users {
		u := &users[i]
		email, err := s.Identity.Email(u)
		if err != nil {
			return nil, err
		}
		fails, until, err := s.Limiter.Status(ctx, indexKey(u.EmailIndex))
		if err != nil {
			return nil, err
		}
		out = append(out, adminUser{ID: u.ID, Email: email, Role: u.Role, Status: u.Status,
			TwoFactor: len(u.TOTPSecretEnc) > 0, Failures: fails, LockedUntil: until, CreatedAt: u.CreatedAt})
	}
	return out, nil
}

// accountNotices are the account page's notices after a change (seeOther).
var accountNotices = map[string]string{
	"created": "Account created. The person has been emailed a link to choose a password.",
	"disable": "Account disabled; its sessions and app passwords have ended.",
	"enable":  "Account enabled. App passwords stay revoked; issue new ones if needed.",
	"unlock":  "Account unlocked.",
	"signout": "Signed out everywhere.",
	"role":    "Role changed; the account's sessions have ended.",
}

func (s *Server) adminUsersPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	d := s.data("Accounts")
	d.Notice = doneNotice(r, accountNotices)
	s.renderAdminUsers(w, r, http.StatusOK, d)
}

func (s *Server) renderAdminUsers(w http.ResponseWriter, r *http.Request, status int, d pageData) {
	out, err := s.opListAccounts(r, viewerOf(r), struct{}{})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d.SignedIn, d.Users, d.Roles = true, out.Users, managedRoles
	s.render(w, r, status, "admin_users.html", d)
}

type accountsOut struct {
	Users []adminUser `json:"users"`
}

// opListAccounts lists the accounts admins manage, with their lock-out state.
func (s *Server) opListAccounts(r *http.Request, _ *viewer, _ struct{}) (accountsOut, error) {
	users, err := s.listManaged(r.Context())
	return accountsOut{Users: users}, err
}

// createManaged creates a staff/admin/security account with an unusable
// random password and emails the person a link to choose their own, so an
// admin never handles anyone's password.
func (s *Server) createManaged(r *http.Request, v *viewer, email, role string) (*store.User, error) {
	if role == store.RolePatient {
		return nil, errors.New("patient accounts are created by the first message sent to them")
	}
	u, err := s.Identity.AddUser(r.Context(), email, role, strings.Repeat("x", 4)+pcryptoRandom())
	if err != nil {
		return nil, err
	}
	s.Log.InfoContext(r.Context(), "account created", "by", v.user.ID, "user", u.ID, "role", role, "ip", info(r).ip)
	s.audit(r, "user.create", "user", u.ID, "ok", map[string]string{"role": role, "email": email})
	if role == store.RoleAdmin {
		s.audit(r, "user.role.admin", "user", u.ID, "ok", nil)
	}
	if role == store.RoleAdmin {
		s.Log.WarnContext(r.Context(), "role granted", "role", role, "by", v.user.ID, "user", u.ID)
	}
	return u, s.Identity.RequestReset(r.Context(), email)
}

func pcryptoRandom() string {
	return fmt.Sprintf("%x", pcrypto.RandomBytes(24))
}

type createAccountIn struct {
	Email string `json:"email"`
	Role  string `json:"role"`
}

type createdAccount struct {
	User userJSON `json:"user"`
}

// opCreateAccount creates a staff, admin or security account; the person
// is emailed a link to choose a password. Every refusal of the identity
// service is said in its own words (400).
func (s *Server) opCreateAccount(r *http.Request, v *viewer, in createAccountIn) (createdAccount, error) {
	u, err := s.createManaged(r, v, strings.TrimSpace(in.Email), in.Role)
	if err != nil {
		oe := refused(http.StatusBadRequest, "bad_request", "Could not create the account: "+reason(err), err)
		oe.Field = "email"
		return createdAccount{}, oe
	}
	return createdAccount{User: userJSON{u.ID, u.Role}}, nil
}

func (s *Server) adminCreateSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	in := createAccountIn{Email: r.PostFormValue("email"), Role: r.PostFormValue("role")}
	if _, err := s.opCreateAccount(r, v, in); err != nil {
		d := s.data("Accounts")
		d.Email = strings.TrimSpace(in.Email)
		s.pageRefused(w, r, err, d, func(status int, d pageData) { s.renderAdminUsers(w, r, status, d) })
		return
	}
	seeOther(w, r, "/admin/users", "created")
}

// adminAction applies one account action by an admin: disable, enable,
// unlock, signout (everywhere), or role=ROLE.
func (s *Server) adminAction(r *http.Request, v *viewer, id, action, role string) (string, error) {
	ctx := r.Context()
	u, err := s.Store.UserByID(ctx, id)
	if err != nil {
		return "", err
	}
	log := func(what string) {
		s.Log.InfoContext(ctx, "account changed", "action", what, "by", v.user.ID, "user", u.ID, "ip", info(r).ip)
		action, details := "user."+what, map[string]string(nil)
		if r, ok := strings.CutPrefix(what, "role:"); ok {
			action, details = "user.role", map[string]string{"role": r}
		}
		s.audit(r, action, "user", u.ID, "ok", details)
		if what == "role:"+store.RoleAdmin {
			s.audit(r, "user.role.admin", "user", u.ID, "ok", nil)
		}
	}
	switch action {
	case "disable":
		if u.ID == v.user.ID {
			return "", errors.New("you cannot disable your own account")
		}
		if _, err := s.Identity.SetStatus(ctx, u.ID, store.StatusDisabled); err != nil {
			return "", err
		}
		// Termination procedure: sessions and app passwords end at once.
		s.endUser(ctx, u.ID, "disabled")
		log("disable")
		return "Account disabled; its sessions and app passwords have ended.", nil
	case "enable":
		if _, err := s.Identity.SetStatus(ctx, u.ID, store.StatusActive); err != nil {
			return "", err
		}
		log("enable")
		return "Account enabled. App passwords stay revoked; issue new ones if needed.", nil
	case "unlock":
		if err := s.Limiter.Unlock(ctx, indexKey(u.EmailIndex)); err != nil {
			return "", err
		}
		log("unlock")
		return "Account unlocked.", nil
	case "signout":
		s.endUser(ctx, u.ID, "everywhere")
		log("signout")
		return "Signed out everywhere.", nil
	case "role":
		if u.ID == v.user.ID {
			return "", errors.New("you cannot change your own role")
		}
		if _, err := s.Identity.SetRole(ctx, u.ID, role); err != nil {
			return "", err
		}
		s.endUser(ctx, u.ID, "privilege")
		log("role:" + role)
		if role == store.RoleAdmin {
			s.Log.WarnContext(ctx, "role granted", "role", role, "by", v.user.ID, "user", u.ID)
		}
		return "Role changed to " + role + "; the account's sessions have ended.", nil
	}
	return "", fmt.Errorf("unknown action %q", action)
}

type accountActionIn struct {
	ID     string `json:"-"`
	Action string `json:"-"`
	Role   string `json:"role"`
}

type accountActionOut struct {
	Message string `json:"message"`
}

// opAccountAction applies disable, enable, unlock, signout or role to an
// account (adminAction): 404 for no such account, 400 with the reason for
// a refused change.
func (s *Server) opAccountAction(r *http.Request, v *viewer, in accountActionIn) (accountActionOut, error) {
	msg, err := s.adminAction(r, v, in.ID, in.Action, in.Role)
	if errors.Is(err, store.ErrNotFound) {
		return accountActionOut{}, refused(http.StatusNotFound, "not_found", "No such account.", err)
	}
	if err != nil {
		return accountActionOut{}, refused(http.StatusBadRequest, "bad_request", reason(err), err)
	}
	return accountActionOut{Message: msg}, nil
}

func (s *Server) adminActionSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	in := accountActionIn{ID: r.PathValue("id"), Action: r.PathValue("action"), Role: r.PostFormValue("role")}
	if _, err := s.opAccountAction(r, v, in); err != nil {
		s.pageRefused(w, r, err, s.data("Accounts"), func(status int, d pageData) { s.renderAdminUsers(w, r, status, d) })
		return
	}
	seeOther(w, r, "/admin/users", in.Action)
}

func (s *Server) apiAdminUsers(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opListAccounts(r, v, struct{}{})
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

func (s *Server) apiAdminCreate(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in createAccountIn
	if !decodeJSON(w, r, &in) {
		return
	}
	out, err := s.opCreateAccount(r, v, in)
	s.apiAnswer(w, r, http.StatusCreated, out, err)
}

func (s *Server) apiAdminAction(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in accountActionIn
	if r.ContentLength > 0 && !decodeJSON(w, r, &in) {
		return
	}
	in.ID, in.Action = r.PathValue("id"), r.PathValue("action")
	out, err := s.opAccountAction(r, v, in)
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

// escrowIn is the escrow private key (pasted armor, or a page's uploaded
// file) and its passphrase; the key lives in this request only.
type escrowIn struct {
	EscrowKey  string `json:"escrow_key"`
	Passphrase string `json:"passphrase"`
	keyFile    []byte
}

// escrowFromForm reads the page's escrow key fields (body.go read the form
// into memory within the route's bound).
func escrowFromForm(r *http.Request) escrowIn {
	in := escrowIn{EscrowKey: r.FormValue("escrow_key"), Passphrase: r.FormValue("passphrase")}
	if f := uploads(r, "escrow_key_file"); len(f) > 0 && len(f[0].Data) > 0 {
		in.keyFile = f[0].Data
	}
	return in
}

// unlockEscrow unlocks the escrow key a request carries: 400 bad_escrow_key
// with the reason if it cannot be.
func (s *Server) unlockEscrow(in escrowIn) (*pcrypto.Key, error) {
	armored := []byte(in.EscrowKey)
	if len(in.keyFile) > 0 {
		armored = in.keyFile
	}
	escrow, err := s.Identity.UnlockEscrow(armored, []byte(in.Passphrase))
	if err != nil {
		oe := refused(http.StatusBadRequest, "bad_escrow_key", reason(err), err)
		oe.Field = "passphrase"
		return nil, oe
	}
	return escrow, nil
}

func (s *Server) recoverPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	d := s.data("Recover messages")
	d.SignedIn = true
	if r.URL.Query().Get("done") == "recovered" { // after recoverSubmit: only a count comes back
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		d.Recovered = n
		d.Notice = web.Count(n, "message") + " " + web.Noun(n, "is", "are") + " readable again with the account's new password."
	}
	s.render(w, r, http.StatusOK, "recover.html", d)
}

// recoverFor runs the escrow-assisted recovery for the account of email.
func (s *Server) recoverFor(r *http.Request, v *viewer, email string, escrow *pcrypto.Key) (int, error) {
	u, err := s.Identity.UserByEmail(r.Context(), email)
	if err != nil {
		return 0, err
	}
	n, err := s.Identity.Recover(r.Context(), u.ID, escrow)
	if err != nil {
		return 0, err
	}
	s.Log.WarnContext(r.Context(), "escrow recovery", "by", v.user.ID, "user", u.ID, "messages", n, "ip", info(r).ip)
	s.audit(r, "account.recover", "user", u.ID, "ok", map[string]string{"messages": fmt.Sprint(n)})
	return n, nil
}

type recoverIn struct {
	Email string `json:"email"`
	escrowIn
}

type recoveredOut struct {
	Recovered int `json:"recovered"`
}

// opRecover re-addresses the locked messages of an account to its current
// key with the escrow key (escrow-assisted recovery after a reset).
func (s *Server) opRecover(r *http.Request, v *viewer, in recoverIn) (recoveredOut, error) {
	escrow, err := s.unlockEscrow(in.escrowIn)
	if err != nil {
		return recoveredOut{}, err
	}
	n, err := s.recoverFor(r, v, strings.TrimSpace(in.Email), escrow)
	switch {
	case errors.Is(err, store.ErrNotFound):
		oe := refused(http.StatusNotFound, "not_found", "No account has that address.", err)
		oe.Field = "email"
		return recoveredOut{}, oe
	case errors.Is(err, identity.ErrEscrowLocked):
		return recoveredOut{}, refused(http.StatusBadRequest, "bad_escrow_key", reason(err), err)
	case err != nil:
		return recoveredOut{}, err
	}
	return recoveredOut{Recovered: n}, nil
}

func (s *Server) recoverSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opRecover(r, v, recoverIn{Email: r.FormValue("email"), escrowIn: escrowFromForm(r)})
	if err != nil {
		d := s.data("Recover messages")
		d.SignedIn, d.Email = true, r.FormValue("email")
		// The escrow key and passphrase are never sent back to the page.
		d.Form = url.Values{"email": {r.FormValue("email")}}
		s.pageRefused(w, r, err, d, func(status int, d pageData) { s.render(w, r, status, "recover.html", d) })
		return
	}
	seeOther(w, r, "/admin/recover?n="+strconv.Itoa(out.Recovered), "recovered")
}

func (s *Server) apiRecover(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in recoverIn
	if !decodeJSON(w, r, &in) {
		return
	}
	out, err := s.opRecover(r, v, in)
	s.apiAnswer(w, r, http.StatusOK, out, err)
}
