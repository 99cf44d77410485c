package totp

import "testing"

func TestGroup(t *testing.T) {
	for in, want := range map[string]string{
		"":                                 "",
		"ABC":                              "ABC",
		"ABCD":                             "ABCD",
		"ABCDE":                            "ABCD E",
		"UO7KJGH2FYB53MZSE4UAPQ6424D4HEM3": "UO7K JGH2 FYB5 3MZS E4UA PQ64 24D4 HEM3",
	} {
		if got := Group(in); got != want {
			t.Errorf("Group(%q) = %q, want %q", in, got, want)
		}
	}
}

// Again gives back the same key, URI and a QR code of it.
func TestAgain(t *testing.T) {
	e, err := New("Example Clinic", "pat@example.net")
	if err != nil {
		t.Fatal(err)
	}
	a, err := Again("Example Clinic", "pat@example.net", e.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if a.Secret != e.Secret || a.URI != e.URI || len(a.QRPNG) == 0 {
		t.Errorf("Again: %q %q, want %q %q", a.Secret, a.URI, e.Secret, e.URI)
	}
	if _, err := Again("Example Clinic", "pat@example.net", "not base32!"); err == nil {
		t.Error("Again accepted a secret that is not base32")
	}
}
