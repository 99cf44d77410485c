package audit

// Issue 14.3: a master-key rotation gives the trail new keys, but the
// table is append-only: entries keep the keys they were written under.
// Each epoch's keys cover the entries from its FromSeq on; the entry just
// before (FromSeq-1) is the KeySwitchAction entry that switched, written
// under the previous keys, naming the new epoch in its ObjectID. Verify
// checks that marker too, so moving an epoch's start in the database
// (key_epochs.audit_from_seq) is found, not trusted.

import (
	"errors"
	"strconv"
)

// KeySwitchAction is the entry that ends an audit key epoch.
const KeySwitchAction = "keys.rotate_master"

// KeyEpoch is one epoch's audit keys and the first entry they cover.
type KeyEpoch struct {
	Epoch    int64
	FromSeq  int64
	MAC, Enc []byte
}

func checkEpochs(eps []KeyEpoch) error {
	for i, e := range eps {
		if len(e.MAC) != 32 || len(e.Enc) != 32 {
			return errors.New("audit: epoch keys must be 32 bytes each")
		}
		if i == 0 && e.FromSeq > 1 {
			return errors.New("audit: the first key epoch must start at entry 1")
		}
		if i > 0 && e.FromSeq <= eps[i-1].FromSeq {
			return errors.New("audit: key epochs must start in ascending order")
		}
	}
	return nil
}

// epochFor returns the index of the epoch covering seq (-1: no epochs).
func (t *Trail) epochFor(seq int64) int {
	for i := len(t.epochs) - 1; i >= 0; i-- {
		if seq >= t.epochs[i].FromSeq {
			return i
		}
	}
	return len(t.epochs) - 1
}

func (t *Trail) macFor(seq int64) []byte {
	if i := t.epochFor(seq); i >= 0 {
		return t.epochs[i].MAC
	}
	return t.macKey
}

func (t *Trail) encFor(seq int64) []byte {
	if i := t.epochFor(seq); i >= 0 {
		return t.epochs[i].Enc
	}
	return t.encKey
}

// switchAt returns the epoch whose marker entry must be at seq, if any.
func (t *Trail) switchAt(seq int64) (KeyEpoch, bool) {
	for _, e := range t.epochs[min(1, len(t.epochs)):] {
		if e.FromSeq-1 == seq {
			return e, true
		}
	}
	return KeyEpoch{}, false
}

// checkpointMACs are the keys a checkpoint tag may be under: a line is
// tagged with the key of the trail that wrote it, which may be the epoch
// before its entry's. (A tag under a retired key can only add a claim
// that Verify then checks against the chain; it cannot make a cut chain
// pass.)
func (t *Trail) checkpointMACs() [][]byte {
	if len(t.epochs) == 0 {
		return [][]byte{t.macKey}
	}
	out := make([][]byte, 0, len(t.epochs))
	for i := len(t.epochs) - 1; i >= 0; i-- {
		out = append(out, t.epochs[i].MAC)
	}
	return out
}

func epochName(e int64) string { return strconv.FormatInt(e, 10) }
