package audit

import (
	"encoding/binary"
	"encoding/json"
	"strconv"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/store"
)

// Domain-separation labels: an entry MAC can never pass for a checkpoint
// tag or the other way round, and a new encoding gets a new label.
const (
	entryLabel      = "phigate audit entry v1"
	checkpointLabel = "phigate audit checkpoint v1"
)

// encoder builds the canonical MAC input: every field is its length (8
// bytes, big endian) followed by its bytes, so no two different entries
// encode alike ("ab"+"c" vs "a"+"bc").
type encoder []byte

func (b *encoder) bytes(p []byte) {
	*b = binary.BigEndian.AppendUint64(*b, uint64(len(p)))
	*b = append(*b, p...)
}

func (b *encoder) str(s string) { b.bytes([]byte(s)) }

func (b *encoder) int(n int64) {
	var p [8]byte
	binary.BigEndian.PutUint64(p[:], uint64(n))
	b.bytes(p[:])
}

// entryMAC is HMAC-SHA256 over (seq, time in UTC nanoseconds, actor, ip,
// action, object type, object id, outcome, correlation, details
// ciphertext, previous MAC).
func entryMAC(key []byte, r store.AuditRecord, prev []byte) []byte {
	var b encoder
	b.str(entryLabel)
	b.int(r.Seq)
	b.int(r.At.UTC().UnixNano())
	for _, s := range []string{r.Actor, r.IP, r.Action, r.ObjectType, r.ObjectID, r.Outcome, r.CID} {
		b.str(s)
	}
	b.bytes(r.DetailsEnc)
	b.bytes(prev)
	return pcrypto.MAC(key, b)
}

func checkpointTag(key []byte, seq, atNanos int64, mac []byte) []byte {
	var b encoder
	b.str(checkpointLabel)
	b.int(seq)
	b.int(atNanos)
	b.bytes(mac)
	return pcrypto.MAC(key, b)
}

func detailsAAD(seq int64) []byte { return []byte("audit:" + strconv.FormatInt(seq, 10)) }

// seal turns an entry into its stored row at seq, chained after prev.
func (t *Trail) seal(e Entry, details []byte, seq int64, prev []byte) (store.AuditRecord, error) {
	r := store.AuditRecord{
		Seq: seq, At: e.Time, Actor: e.Actor, IP: e.IP, Action: e.Action,
		ObjectType: e.ObjectType, ObjectID: e.ObjectID, Outcome: e.Outcome, CID: e.Correlation,
		DetailsEnc: []byte{},
	}
	if len(details) > 0 {
		enc, err := pcrypto.Wrap(t.encKey, details, detailsAAD(seq))
		if err != nil {
			return r, err
		}
		r.DetailsEnc = enc
	}
	r.MAC = entryMAC(t.macKey, r, prev)
	return r, nil
}

// open turns a stored row back into an entry, decrypting its details.
func (t *Trail) open(r store.AuditRecord) (Entry, error) {
	e := Entry{
		Seq: r.Seq, Time: r.At, Actor: r.Actor, IP: r.IP, Action: r.Action,
		ObjectType: r.ObjectType, ObjectID: r.ObjectID, Outcome: r.Outcome, Correlation: r.CID,
	}
	if len(r.DetailsEnc) == 0 {
		return e, nil
	}
	pt, err := pcrypto.Unwrap(t.encFor(r.Seq), r.DetailsEnc, detailsAAD(r.Seq))
	if err != nil {
		return e, &BrokenError{Seq: r.Seq, Reason: "details cannot be decrypted"}
	}
	if err := json.Unmarshal(pt, &e.Details); err != nil {
		return e, &BrokenError{Seq: r.Seq, Reason: "details are not valid JSON"}
	}
	return e, nil
}
