package gateway_test

import (
	"net/url"
	"os"
	"testing"

	"github.com/phigate/phigate/internal/e2e"
)

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestMain(m *testing.M) {
	e2e.Silence()
	os.Exit(m.Run())
}
