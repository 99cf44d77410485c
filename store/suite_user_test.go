package store

// Issue 8.8: concurrent account changes never revert each other. Part of
// the backend suite.

import (
	"bytes"
	"context"
	"testing"
	"time"
)

func testUserVersion(t *testing.T, s Store) {
	ctx := context.Background()
	u := mkUser(t, s, RoleStaff, StatusActive)
	stale, err := s.UserByID(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}

	// A second factor set after the read: the stale status change is
	// refused rather than written over it.
	secret := []byte("sealed-totp-secret")
	if err := s.SetTOTP(ctx, u.ID, secret, 42, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	stale.Status = StatusDisabled
	wantErr(t, "UpdateUser on a stale read", s.UpdateUser(ctx, stale), ErrConflict)
	got, _ := s.UserByID(ctx, u.ID)
	if got.Status != StatusActive || !bytes.Equal(got.TOTPSecretEnc, secret) {
		t.Fatalf("after the refused update: status %q, totp %q", got.Status, got.TOTPSecretEnc)
	}

	// Fresh read: the change commits, and only role and status are
	// written (a password field changed in memory is not).
	v := got.Version
	got.Status, got.Role = StatusDisabled, RoleSecurity
	got.PwVerifier = []byte("not to be written")
	if err := s.UpdateUser(ctx, got); err != nil {
		t.Fatal(err)
	}
	if got.Version != v+1 {
		t.Errorf("version after update = %d, want %d", got.Version, v+1)
	}
	again, _ := s.UserByID(ctx, u.ID)
	if again.Status != StatusDisabled || again.Role != RoleSecurity || again.Version != v+1 ||
		!bytes.Equal(again.PwVerifier, u.PwVerifier) || !bytes.Equal(again.TOTPSecretEnc, secret) {
		t.Errorf("after update: %+v", again)
	}
	wantErr(t, "UpdateUser of a missing user", s.UpdateUser(ctx, &User{ID: "nobody", Role: RoleStaff, Status: StatusActive}), ErrNotFound)

	// Two admins (the only ones) each demoted on a read that saw the other
	// active: the second write is refused, one active admin remains.
	a := mkUser(t, s, RoleAdmin, StatusActive)
	b := mkUser(t, s, RoleAdmin, StatusActive)
	if n := len(mustListAdmins(t, s)); n != 2 {
		t.Fatalf("%d admins, want the 2 made here", n)
	}
	ra, _ := s.UserByID(ctx, a.ID)
	rb, _ := s.UserByID(ctx, b.ID)
	ra.Status = StatusDisabled
	if err := s.UpdateUser(ctx, ra); err != nil {
		t.Fatal(err)
	}
	rb.Role = RoleStaff
	wantErr(t, "demoting the last active admin", s.UpdateUser(ctx, rb), ErrConflict)
	if gb, _ := s.UserByID(ctx, b.ID); gb.Role != RoleAdmin || gb.Status != StatusActive {
		t.Errorf("last admin changed: %s %s", gb.Role, gb.Status)
	}
}

func mustListAdmins(t *testing.T, s Store) []User {
	t.Helper()
	us, err := s.ListUsers(context.Background(), RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	return us
}
