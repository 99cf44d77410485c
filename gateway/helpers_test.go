package gateway_test

import (
	"net/url"
	"os"
	"regexp"
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

func regexpFind(t *testing.T, b []byte, expr string) string {
	t.Helper()
	m := regexp.MustCompile(expr).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no match for %s", expr)
	}
	return string(m[1])
}
