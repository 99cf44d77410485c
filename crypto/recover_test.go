package crypto

import (
	"bytes"
	"errors"
	"testing"
)

func TestRecoverViaEscrow(t *testing.T) {
	gw, rcpt, escrow, fresh := freshKey(t, "gw"), freshKey(t, "rcpt"), freshKey(t, "escrow"), freshKey(t, "fresh")
	plain := []byte("recover me")
	s, err := Seal(plain, gw, rcpt.Public(), escrow.Public())
	if err != nil {
		t.Fatal(err)
	}
	kp, err := Recover(s.KeyPackets, escrow, fresh.Public())
	if err != nil {
		t.Fatal(err)
	}
	r := &Sealed{KeyPackets: kp, Data: s.Data}
	for name, k := range map[string]*Key{"new key": fresh, "escrow": escrow} {
		got, sig, err := Open(r, k, gw.Public())
		if err != nil || !bytes.Equal(got, plain) || sig != SigVerified {
			t.Errorf("%s: %v %q %v", name, err, got, sig)
		}
	}
	if _, _, err := Open(r, rcpt, gw.Public()); err == nil {
		t.Error("the lost key still opens the recovered message")
	}
	if _, err := Recover(s.KeyPackets, fresh, rcpt.Public()); !errors.Is(err, ErrNoKeyPacket) {
		t.Errorf("recover via a non-recipient: %v", err)
	}
}
