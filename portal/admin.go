package portal

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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

func (s *Server) adminUsersPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.renderAdminUsers(w, r, http.StatusOK, "", "")
}

func (s *Server) renderAdminUsers(w http.ResponseWriter, r *http.Request, status int, notice, problem string) {
	users, err := s.listManaged(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d := s.data("Accounts")
	d.SignedIn, d.Users, d.Roles, d.Notice, d.Error = true, users, managedRoles, notice, problem
	s.render(w, r, status, "admin_users.html", d)
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

func (s *Server) adminCreateSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	email := strings.TrimSpace(r.PostFormValue("email"))
	if _, err := s.createManaged(r, v, email, r.PostFormValue("role")); err != nil {
		s.renderAdminUsers(w, r, http.StatusBadRequest, "", "Could not create the account: "+reason(err))
		return
	}
	s.renderAdminUsers(w, r, http.StatusOK, "Account created. "+email+" has been emailed a link to choose a password.", "")
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

func (s *Server) adminActionSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	msg, err := s.adminAction(r, v, r.PathValue("id"), r.PathValue("action"), r.PostFormValue("role"))
	if errors.Is(err, store.ErrNotFound) {
		s.renderAdminUsers(w, r, http.StatusNotFound, "", "No such account.")
		return
	}
	if err != nil {
		s.renderAdminUsers(w, r, http.StatusBadRequest, "", reason(err))
		return
	}
	s.renderAdminUsers(w, r, http.StatusOK, msg, "")
}

func (s *Server) apiAdminUsers(w http.ResponseWriter, r *http.Request, v *viewer) {
	users, err := s.listManaged(r.Context())
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": users})
}

func (s *Server) apiAdminCreate(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req struct{ Email, Role string }
	if !decodeJSON(w, r, &req) {
		return
	}
	u, err := s.createManaged(r, v, req.Email, req.Role)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, "bad_request", reason(err))
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"user": userJSON{u.ID, u.Role}})
}

func (s *Server) apiAdminAction(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req struct{ Role string }
	if r.ContentLength > 0 && !decodeJSON(w, r, &req) {
		return
	}
	msg, err := s.adminAction(r, v, r.PathValue("id"), r.PathValue("action"), req.Role)
	if errors.Is(err, store.ErrNotFound) {
		writeJSONError(w, http.StatusNotFound, "not_found", "no such account")
		return
	}
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, "bad_request", reason(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": msg})
}

// escrowFromForm reads the escrow private key (uploaded file or pasted
// armor) and its passphrase; the key lives in this request only.
func (s *Server) escrowFromForm(r *http.Request) (*pcrypto.Key, error) {
	// The form was read into memory within the route's bound (body.go).
	armored := []byte(r.FormValue("escrow_key"))
	if f := uploads(r, "escrow_key_file"); len(f) > 0 && len(f[0].Data) > 0 {
		armored = f[0].Data
	}
	return s.Identity.UnlockEscrow(armored, []byte(r.FormValue("passphrase")))
}

func (s *Server) recoverPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	d := s.data("Recover messages")
	d.SignedIn = true
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

func (s *Server) recoverSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	d := s.data("Recover messages")
	d.SignedIn = true
	escrow, err := s.escrowFromForm(r)
	if err == nil {
		d.Recovered, err = s.recoverFor(r, v, r.FormValue("email"), escrow)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		d.Error = "No account has that address."
	case err != nil && (errors.Is(err, identity.ErrEscrowLocked) || strings.Contains(err.Error(), "escrow")):
		d.Error = reason(err)
	case err != nil:
		s.fail(w, r, err)
		return
	default:
		d.Notice = web.Count(d.Recovered, "message") + " " + web.Noun(d.Recovered, "is", "are") + " readable again with the account's new password."
	}
	s.render(w, r, http.StatusOK, "recover.html", d)
}

func (s *Server) apiRecover(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req struct {
		Email      string `json:"email"`
		EscrowKey  string `json:"escrow_key"`
		Passphrase string `json:"passphrase"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	escrow := s.apiUnlockEscrow(w, req.EscrowKey, req.Passphrase)
	if escrow == nil {
		return
	}
	n, err := s.recoverFor(r, v, req.Email, escrow)
	if errors.Is(err, store.ErrNotFound) {
		writeJSONError(w, http.StatusNotFound, "not_found", "no account has that address")
		return
	}
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"recovered": n})
}
