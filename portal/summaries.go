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

// openSummaries opens the sealed summaries of msgs for which want is true
// with the viewer's key, verifying the gateway's signature on each. Each
// is one X25519 and one Ed25519 verification, most of an inbox listing's
// time (issue 12: 200 rows were about 20 ms of one core), so they are
// spread over at most GOMAXPROCS goroutines: a bound per request that
// uses the cores rather than adding work. The keys are only read.
func openSummaries(msgs []store.Message, want func(*store.Message) bool, key, verifier *pcrypto.Key) []openedSummary {
	out := make([]openedSummary, len(msgs))
	var todo []int
	for i := range msgs {
		if want(&msgs[i]) {
			todo = append(todo, i)
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(todo))
	if workers <= 1 {
		for _, i := range todo {
			out[i] = openSummary(&msgs[i], key, verifier)
		}
		return out
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			// Worker w takes every workers-th row: no shared cursor.
			for j := w; j < len(todo); j += workers {
				i := todo[j]
				out[i] = openSummary(&msgs[i], key, verifier)
			}
		})
	}
	wg.Wait()
	return out
}

func openSummary(m *store.Message, key, verifier *pcrypto.Key) openedSummary {
	plain, sig, err := pcrypto.Open(&pcrypto.Sealed{KeyPackets: m.SummaryKeys, Data: m.Summary}, key, verifier)
	return openedSummary{plain: plain, sig: sig, err: err}
}
