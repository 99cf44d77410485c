package portal

import (
	"bytes"
	"fmt"
	"testing"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/store"
)

// TestOpenSummariesMemo lists the same inbox several times with the
// server's memo of verified summaries: every row reads as without it, a
// tampered row (a flipped byte, key packets swapped between two rows)
// fails as it did before even after its untampered bytes were
// memoised, and a summary signed by another key is never "verified".
func TestOpenSummariesMemo(t *testing.T) {
	key := func(name string) *pcrypto.Key {
		k, err := pcrypto.GenerateKey(pcrypto.KeyOptions{Name: name, Email: name + "@example.test"})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	gw, other, reader := key("gateway"), key("other"), key("reader")
	verifier := gw.Public()
	const rows = 24
	msgs := make([]store.Message, rows)
	for i := range msgs {
		signer := gw
		if i == rows-1 {
			signer = other
		}
		s, err := pcrypto.Seal(fmt.Appendf(nil, `{"subject":"row %d"}`, i), signer, reader.Public())
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = store.Message{SummaryKeys: s.KeyPackets, Summary: s.Data}
	}
	all := func(*store.Message) bool { return true }
	srv := &Server{}
	memo := srv.verifiedSummaries()
	check := func(what string, msgs []store.Message) []openedSummary {
		t.Helper()
		want := openSummaries(msgs, all, reader, verifier, nil)
		for range 3 {
			got := openSummaries(msgs, all, reader, verifier, memo)
			for i := range got {
				if !bytes.Equal(got[i].plain, want[i].plain) || got[i].sig != want[i].sig || fmt.Sprint(got[i].err) != fmt.Sprint(want[i].err) {
					t.Fatalf("%s, row %d: %q %v %v; without the memo %q %v %v", what, i,
						got[i].plain, got[i].sig, got[i].err, want[i].plain, want[i].sig, want[i].err)
				}
			}
		}
		return want
	}
	got := check("untampered", msgs)
	for i, o := range got {
		want := pcrypto.SigVerified
		if i == rows-1 {
			want = pcrypto.SigUnknownSigner
		}
		if o.err != nil || o.sig != want || string(o.plain) != fmt.Sprintf(`{"subject":"row %d"}`, i) {
			t.Fatalf("row %d: %q %v %v", i, o.plain, o.sig, o.err)
		}
	}
	if memo.Len() != rows-1 {
		t.Fatalf("memo holds %d, want %d (not the row signed by another key)", memo.Len(), rows-1)
	}

	tampered := append([]store.Message(nil), msgs...)
	tampered[3].Summary = bytes.Clone(tampered[3].Summary)
	tampered[3].Summary[len(tampered[3].Summary)/2] ^= 0x01
	tampered[5].SummaryKeys, tampered[6].SummaryKeys = msgs[6].SummaryKeys, msgs[5].SummaryKeys
	got = check("tampered", tampered)
	for _, i := range []int{3, 5, 6} {
		if got[i].err == nil {
			t.Fatalf("tampered row %d opened: %v", i, got[i].sig)
		}
	}
	srv.ForgetVerifiedSummaries()
	if memo.Len() != 0 {
		t.Fatal("ForgetVerifiedSummaries left entries")
	}
}
