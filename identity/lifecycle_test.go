package identity

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp"
	ptotp "github.com/pquerna/otp/totp"

	"github.com/phigate/phigate/store"
	"github.com/phigate/phigate/totp"
)

// TestConcurrentAccountChanges (issue 8.8): status, role, password and
// second factor of one account changed at the same moment, many times
// over; every change survives (none writes back a row read before another
// committed). Run with -race.
func TestConcurrentAccountChanges(t *testing.T) {
	f := newFixture(t)
	f.svc.OrgName = "Riverside Family Practice" // the authenticator's issuer
	if _, err := f.svc.AddUser(ctx, "keeper@example.org", store.RoleAdmin, goodPassword); err != nil {
		t.Fatal(err)
	}
	const rounds = 6
	for round := range rounds {
		// Odd rounds re-enable (a write that must not undo the reset),
		// even rounds disable; a reset that comes after the disable is
		// refused, as it should be, and then must have changed nothing.
		status := store.StatusActive
		if round%2 == 0 {
			status = store.StatusDisabled
		}
		u, err := f.svc.AddUser(ctx, fmt.Sprintf("user%d@example.org", round), store.RoleAdmin, goodPassword)
		if err != nil {
			t.Fatal(err)
		}
		raw, tok := f.svc.NewClaimToken(u.ID, time.Hour)
		tok.Kind = store.TokenReset
		if err := f.st.AddToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		enr, err := f.svc.StartTOTP(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		code, err := ptotp.GenerateCodeCustom(enr.Secret, f.now, ptotp.ValidateOpts{Period: totp.Period,
			Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			t.Fatal(err)
		}

		var (
			wg                          sync.WaitGroup
			start                       = make(chan struct{})
			statusErr, roleErr, totpErr error
			resetErr                    error
			reset                       *store.User
		)
		run := func(fn func()) {
			wg.Add(1)
			go func() { defer wg.Done(); <-start; fn() }()
		}
		run(func() { _, statusErr = f.svc.SetStatus(ctx, u.ID, status) })
		run(func() { _, roleErr = f.svc.SetRole(ctx, u.ID, store.RoleSecurity) })
		run(func() {
			reset, resetErr = f.svc.CompleteReset(ctx, raw, "a new and long passphrase "+fmt.Sprint(round), testIP)
		})
		run(func() { _, totpErr = f.svc.FinishTOTP(ctx, &store.User{ID: u.ID}, enr.Pending, code) })
		close(start)
		wg.Wait()
		for name, err := range map[string]error{"status": statusErr, "role": roleErr, "totp": totpErr} {
			if err != nil {
				t.Fatalf("round %d: %s change: %v", round, name, err)
			}
		}
		got, err := f.st.UserByID(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != status || got.Role != store.RoleSecurity || len(got.TOTPSecretEnc) == 0 {
			t.Errorf("round %d: status %q (want %q), role %q, second factor set %v", round, got.Status, status, got.Role, len(got.TOTPSecretEnc) > 0)
		}
		switch {
		case resetErr == nil:
			if got.KeyFpr != reset.KeyFpr || got.KeyFpr == u.KeyFpr || string(got.PwVerifier) == string(u.PwVerifier) {
				t.Errorf("round %d: the new password did not survive", round)
			}
		case status == store.StatusDisabled && errors.Is(resetErr, ErrBadToken):
			if got.KeyFpr != u.KeyFpr || string(got.PwVerifier) != string(u.PwVerifier) {
				t.Errorf("round %d: a refused reset changed the password", round)
			}
		default:
			t.Errorf("round %d: reset: %v", round, resetErr)
		}
	}
}
