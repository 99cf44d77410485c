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
