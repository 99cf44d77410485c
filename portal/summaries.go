package portal

import (
	"runtime"
	"sync"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/store"
)

// openedSummary is one message's summary, opened for the inbox.
type openedSummary struct {
	plain []byte
	sig   pcrypto.SignatureStatus
	err   error
}

// verifiedSummaries is the server's memo of summaries whose gateway
// signature this process has checked (crypto.RememberVerified): listing
// the same inbox again decrypts each summary and checks its integrity,
// but does not verify the same signature again. Bounded
// (crypto.DefaultVerifiedMemoEntries); it holds no plaintext.
func (s *Server) verifiedSummaries() *pcrypto.VerifiedMemo {
	s.memoOnce.Do(func() { s.memo = pcrypto.NewVerifiedMemo(pcrypto.DefaultVerifiedMemoEntries) })
	return s.memo
}

// ForgetVerifiedSummaries empties the memo of verified summaries, so the
// next listing checks every signature again (the cold-start benchmark).
func (s *Server) ForgetVerifiedSummaries() { s.verifiedSummaries().Reset() }

// openSummaries opens the sealed summaries of msgs for which want is true
// with the viewer's key, verifying the gateway's signature on each (or
// finding it in memo: see verifiedSummaries; nil: always verify). Each
// is one X25519 and one Ed25519 verification, most of an inbox listing's
// time (issue 12: 200 rows were about 20 ms of one core), so they are
// spread over at most GOMAXPROCS goroutines: a bound per request that
// uses the cores rather than adding work. The keys are only read.
func openSummaries(msgs []store.Message, want func(*store.Message) bool, key, verifier *pcrypto.Key, memo *pcrypto.VerifiedMemo) []openedSummary {
	out := make([]openedSummary, len(msgs))
	var todo []int
	for i := range msgs {
		if want(&msgs[i]) {
			todo = append(todo, i)
		}
	}
	var opts []pcrypto.OpenOption
	if memo != nil {
		opts = append(opts, pcrypto.RememberVerified(memo))
	}
	workers := min(runtime.GOMAXPROCS(0), len(todo))
	if workers <= 1 {
		for _, i := range todo {
			out[i] = openSummary(&msgs[i], key, verifier, opts)
		}
		return out
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			// Worker w takes every workers-th row: no shared cursor.
			for j := w; j < len(todo); j += workers {
				i := todo[j]
				out[i] = openSummary(&msgs[i], key, verifier, opts)
			}
		})
	}
	wg.Wait()
	return out
}

func openSummary(m *store.Message, key, verifier *pcrypto.Key, opts []pcrypto.OpenOption) openedSummary {
	plain, sig, err := pcrypto.Open(&pcrypto.Sealed{KeyPackets: m.SummaryKeys, Data: m.Summary}, key, verifier, opts...)
	return openedSummary{plain: plain, sig: sig, err: err}
}
