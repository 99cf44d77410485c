package logx

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRedactingTypes(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		log := New(&buf, format, "debug")
		ctx := WithCorrelation(context.Background(), "cid123")
		log.DebugContext(ctx, "x", "to", Addr("Patient.Name@example.net"), "subject", Secret("HIV test results"))
		out := buf.String()
		for _, leak := range []string{"Patient", "patient.name", "HIV", "example.net"} {
			if strings.Contains(strings.ToLower(out), strings.ToLower(leak)) {
				t.Errorf("%s: %q leaked: %s", format, leak, out)
			}
		}
		if !strings.Contains(out, "addr#") || !strings.Contains(out, "[redacted]") || !strings.Contains(out, "cid123") {
			t.Errorf("%s: missing pseudonym, redaction or correlation id: %s", format, out)
		}
	}
}

func TestPseudonymStableAndKeyed(t *testing.T) {
	SetPseudonymKey([]byte("key one"))
	a, b := Pseudonym("a@example.net"), Pseudonym(" A@Example.NET ")
	if a != b {
		t.Errorf("same address, different pseudonyms: %s %s", a, b)
	}
	if a == Pseudonym("b@example.net") {
		t.Error("different addresses, same pseudonym")
	}
	SetPseudonymKey([]byte("key two"))
	if a == Pseudonym("a@example.net") {
		t.Error("pseudonym does not depend on the key")
	}
}

func TestLevels(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, "text", "warn").Info("hidden")
	if buf.Len() != 0 {
		t.Errorf("info logged at warn level: %s", buf.String())
	}
}
