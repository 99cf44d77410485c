package detect

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fixedNow is "today" for the DOB tests.
var fixedNow = time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC)

func newTestScanner(t testing.TB, cfg Config) *Scanner {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return fixedNow }
	return s
}

type tcase struct {
	name string
	text string
	want int
}

// runTable checks one detector's count for each case, and that no other
// detector's count leaks in from the table's own detector... only the one
// under test is compared: neighbours (e.g. a phone next to an SSN) are
// tested in TestScanTextCombined.
func runTable(t *testing.T, s *Scanner, detector string, cases []tcase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := s.ScanText(tc.text)[detector]
			if got != tc.want {
				t.Errorf("%s(%q) = %d, want %d (all: %v)", detector, tc.text, got, tc.want, s.ScanText(tc.text))
			}
		})
	}
}

func TestSSN(t *testing.T) {
	s := newTestScanner(t, Config{})
	runTable(t, s, SSN, []tcase{
		// true positives
		{"dashes", "Patient SSN 512-34-5678 on file", 1},
		{"dashes no keyword", "512-34-5678", 1},
		{"spaces", "ss no 512 34 5678.", 1},
		{"bare with keyword", "SSN: 512345678", 1},
		{"bare with social security", "Social Security number is 512345678", 1},
		{"bare with SS#", "SS# 512345678", 1},
		{"twice counts twice", "512-34-5678 and again 512-34-5678", 2},
		{"end of sentence", "Her number is 512-34-5678.", 1},
		{"parenthesised", "(512-34-5678)", 1},
		{"nbsp", "SSN 512\u00a034\u00a05678", 1},
		{"en dash", "SSN 512\u201334\u20135678", 1},
		{"zero-width space", "SSN 512-34-56\u200b78", 1},
		{"full-width digits", "SSN \uff15\uff11\uff12-34-5678", 1},
		{"area 899", "899-12-3456", 1},
		// look right, fail validation
		{"area 666", "SSN 666-12-3456", 0},
		{"area 900", "SSN 900-12-3456", 0},
		{"area 999", "SSN 999-12-3456", 0},
		{"area 000", "SSN 000-12-3456", 0},
		{"group 00", "SSN 123-00-4567", 0},
		{"serial 0000", "SSN 123-45-0000", 0},
		{"woolworth", "SSN 078-05-1120", 0},
		{"ssa pamphlet", "SSN 219-09-9999", 0},
		{"advertising range", "SSN 987-65-4321", 0},
		{"bare area 666", "SSN 666123456", 0},
		// true negatives
		{"bare without keyword", "Order 512345678 shipped", 0},
		{"keyword too far", "SSN" + strings.Repeat(" ", 50) + "512345678", 0},
		{"mixed separators", "512-34 5678", 0},
		{"inside longer number", "1512-34-5678", 0},
		{"longer serial", "512-34-56789", 0},
		{"trailing group", "512-34-5678-9", 0},
		{"leading group", "9-512-34-5678", 0},
		{"glued to letters", "ID512-34-5678", 0},
		{"zip+4", "Boston MA 02115-1234", 0},
		{"phone", "212-867-5309", 0},
		{"bare ten digits with keyword", "SSN 5123456789", 0},
		{"decimal", "3.512345678 SSN", 0},
	})
}

func TestNPI(t *testing.T) {
	s := newTestScanner(t, Config{})
	runTable(t, s, NPI, []tcase{
		{"cms example", "NPI 1234567893", 1},
		{"another", "Referring provider 1245319599.", 1},
		{"starts with 2", "2345678900", 1},
		{"two", "1234567893, 1987654328", 2},
		{"bad check digit", "NPI 1234567890", 0},
		{"bad check digit 2", "NPI 1987654321", 0},
		{"first digit 3", "NPI 3234567893", 0},
		{"eleven digits", "12345678930", 0},
		{"nine digits", "123456789", 0},
		{"glued to letter", "A1234567893", 0},
		{"part of dashed number", "1234567893-55", 0},
		{"with spaces is not an npi", "123 456 7893", 0},
	})
}

func TestMBI(t *testing.T) {
	s := newTestScanner(t, Config{})
	runTable(t, s, MBI, []tcase{
		{"cms example dashes", "MBI 1EG4-TE5-MK73", 1},
		{"no dashes", "1EG4TE5MK73", 1},
		{"lower case", "mbi: 1eg4te5mk73", 1},
		{"digits at 3 and 6", "9A04C07DE12", 1},
		{"two", "1EG4TE5MK73 / 9A04C07DE12", 2},
		{"forbidden S at 2", "1SG4TE5MK73", 0},
		{"forbidden L at 3", "1EL4TE5MK73", 0},
		{"forbidden O at 5", "1EG4OE5MK73", 0},
		{"forbidden I at 8", "1EG4TE5IK73", 0},
		{"forbidden B at 9", "1EG4TE5MB73", 0},
		{"forbidden Z at 6", "1EG4TZ5MK73", 0},
		{"leading zero", "0EG4TE5MK73", 0},
		{"letter at 4", "1EGATE5MK73", 0},
		{"letter at 10", "1EG4TE5MKA3", 0},
		{"one dash only", "1EG4-TE5MK73", 0},
		{"too long", "1EG4TE5MK734", 0},
		{"inside word", "X1EG4TE5MK73", 0},
	})
}

func TestICD10(t *testing.T) {
	s := newTestScanner(t, Config{})
	runTable(t, s, ICD10, []tcase{
		{"dotted", "Assessment: E11.9 type 2 diabetes", 1},
		{"seventh character", "S72.001A", 1},
		{"placeholder X", "T36.0X1A adverse effect", 1},
		{"Z code", "Z79.4 long-term insulin", 1},
		{"alpha third char", "C4A.0 and Z3A.08", 2},
		{"covid U07.1", "U07.1", 1},
		{"bare with dx", "Dx: I10", 1},
		{"bare with ICD-10", "ICD-10 code R51 headache", 1},
		{"bare with diagnosis", "Primary diagnosis N18", 1},
		{"undotted long with dx", "dx E119", 1},
		{"list continues", "Diagnoses: E11.9, I10, N18 and K21", 4},
		{"dotted list without keyword", "E11.9; I10.0; Z79.4", 3},
		{"bare without context", "the model A12 is here", 0},
		{"vitamin without context", "take vitamin B12 daily", 0},
		{"U code not in CM", "U12.3", 0},
		{"lower case", "e11.9", 0},
		{"version string", "release R12.1.3", 0},
		{"inside word", "XE11.9", 0},
		{"too many after dot", "S72.001AB", 0},
		{"list broken by prose", "Dx E11.9 and then, much later that day, we walked to room K21", 1},
		{"keyword too far", "dx" + strings.Repeat(" ", 45) + "I10", 0},
	})
}

func TestDOB(t *testing.T) {
	s := newTestScanner(t, Config{})
	runTable(t, s, DOB, []tcase{
		{"slashes", "DOB: 01/05/1980", 1},
		{"dots in keyword", "D.O.B. 1/5/80", 1},
		{"date of birth iso", "Date of birth: 1980-01-05", 1},
		{"born month name", "She was born on January 5, 1980 in Ohio", 1},
		{"born day month", "born 5 Jan 1980", 1},
		{"ehr style", "DOB 05-JAN-1980", 1},
		{"abbrev with dot and ordinal", "dob Sept. 5th 1980", 1},
		{"birthdate", "Birthdate 12-31-1999", 1},
		{"leap day", "DOB 02/29/1980", 1},
		{"two keywords one date", "Date of birth (DOB): 01/05/1980", 1},
		{"two patients", "DOB 01/05/1980 ... DOB 03/04/1975", 2},
		{"two-digit year past century", "DOB 7/4/45", 1},
		{"two-digit this century", "DOB 7/4/19", 1},
		{"today", "DOB 11/15/2026", 1},
		{"within window", "DOB (per patient, verified)   01/05/1980", 1},
		// fail validation
		{"feb 30", "DOB: 02/30/1980", 0},
		{"feb 29 non-leap", "DOB: 02/29/1981", 0},
		{"month 13", "DOB 13/05/1980", 0},
		{"day 32", "DOB 01/32/1980", 0},
		{"future", "DOB: 01/05/2099", 0},
		{"tomorrow", "DOB 11/16/2026", 0},
		{"before 1900", "DOB 1890-01-01", 0},
		{"mixed separators", "DOB 01/05-1980", 0},
		{"bad month name", "born 5 Foo 1980", 0},
		{"april 31", "born April 31, 1980", 0},
		// no keyword / too far
		{"visit date", "Visit on 01/05/1980", 0},
		{"too far", "DOB" + strings.Repeat(".", 45) + "01/05/1980", 0},
		{"year only", "born in 1980", 0},
		{"dobby", "Dobby 01/05/1980", 0},
		{"first date only", "DOB unknown, seen 01/05/2099 and 01/05/1980", 0},
		{"glued digits", "DOB 101/05/1980", 0},
	})
}

func TestCard(t *testing.T) {
	s := newTestScanner(t, Config{})
	runTable(t, s, Card, []tcase{
		{"visa spaces", "Card 4111 1111 1111 1111 exp 12/28", 1},
		{"visa plain", "4111111111111111", 1},
		{"visa dashes", "4111-1111-1111-1111", 1},
		{"visa 13", "4222222222222", 1},
		{"visa 19", "4111 1111 1111 1111 110", 1},
		{"mastercard", "5555 5555 5555 4444", 1},
		{"mastercard 2-series", "2223003122003222", 1},
		{"amex 4-6-5", "3782 822463 10005", 1},
		{"amex plain", "378282246310005", 1},
		{"discover", "6011 1111 1111 1117", 1},
		{"after another number", "Ref 1234 4111 1111 1111 1111", 1},
		{"two cards", "4111111111111111, 5555555555554444", 2},
		{"same card twice", "4111111111111111 4111111111111111", 2},
		// fail validation
		{"luhn fails", "4111 1111 1111 1112", 0},
		{"luhn ok bad prefix", "1234567890123452", 0},
		{"amex prefix wrong length", "3411111111111110", 0},
		{"all zeros", "0000 0000 0000 0000", 0},
		{"all same digit", "4444444444444444", 0},
		{"mixed separators", "4111-1111 1111-1111", 0},
		{"bad grouping", "411 1111 1111 11111", 0},
		{"too long", "41111111111111111111", 0},
		{"glued to letters", "X4111111111111111", 0},
		{"part of decimal", "4111111111111111.5", 0},
		{"short", "411111111111", 0},
	})
}

func TestPhone(t *testing.T) {
	s := newTestScanner(t, Config{})
	runTable(t, s, Phone, []tcase{
		{"parens", "Call (212) 867-5309 today", 1},
		{"parens no space", "(212)867-5309", 1},
		{"dashes", "212-867-5309", 1},
		{"dots", "212.867.5309", 1},
		{"spaces", "212 867 5309", 1},
		{"plus one", "+1 212 867 5309", 1},
		{"one dash", "1-212-867-5309", 1},
		{"plus one parens", "+1 (212) 867-5309", 1},
		{"e164", "+12128675309", 1},
		{"two", "212-867-5309 / (646) 555-1212", 2},
		{"555 outside fiction range", "212-555-1212", 1},
		// fail validation
		{"fictional 555-01xx", "212-555-0123", 0},
		{"toll free", "1-800-867-5309", 0},
		{"area starts with 1", "112-867-5309", 0},
		{"area starts with 0", "012-867-5309", 0},
		{"exchange starts with 1", "212-167-5309", 0},
		{"N11 area", "911-867-5309", 0},
		{"N11 exchange", "212-411-5309", 0},
		{"mixed separators", "212-867.5309", 0},
		{"bare ten digits", "2128675309", 0},
		{"longer line", "212-867-53091", 0},
		{"ssn shape", "512-34-5678", 0},
		{"inside word", "x212-867-5309", 0},
	})
}

func TestMRN(t *testing.T) {
	s := newTestScanner(t, Config{MRNPattern: `[A-Z]{2}\d{6}`})
	runTable(t, s, MRN, []tcase{
		{"match", "MRN AB123456", 1},
		{"two", "AB123456, CD654321", 2},
		{"inside word before", "XAB123456", 0},
		{"inside word after", "AB1234567", 0},
		{"lower case not matched", "ab123456", 0},
	})
	s2 := newTestScanner(t, Config{MRNPattern: `MRN[:# ]*\d{7}`})
	runTable(t, s2, MRN, []tcase{
		{"with label", "MRN: 1234567", 1},
		{"label glued", "MRN#1234567", 1},
		{"longer number", "MRN: 12345678", 0},
	})
	off := newTestScanner(t, Config{})
	if c := off.ScanText("MRN AB123456"); c[MRN] != 0 {
		t.Errorf("MRN detector with empty pattern fired: %v", c)
	}
}

func TestKeywords(t *testing.T) {
	s := newTestScanner(t, Config{Keywords: []string{"HIV", "breast cancer", "cancer", "Schizophrénie", "C. diff", "  methadone  ", "#confidential", "café", "HIV"}})
	runTable(t, s, Keyword, []tcase{
		{"word", "hiv positive", 1},
		{"case", "Positive for HIV.", 1},
		{"hyphen after", "HIV-1 viral load", 1},
		{"inside word", "HIVE and xhiv", 0},
		{"phrase with any space", "Breast \n  Cancer stage II", 1},
		{"shorter keyword alone", "colon cancer", 1},
		{"longest wins at same place", "breast cancer", 1},
		{"unicode fold", "SCHIZOPHRÉNIE", 1},
		{"unicode inside word", "schizophrénieé", 0},
		{"unicode letter before", "éhiv", 0},
		{"punctuation keyword", "positive for c. DIFF today", 1},
		{"trimmed", "on methadone", 1},
		{"repeated", "HIV, HIV and hiv", 3},
		{"none", "nothing to see", 0},
		{"starts with punctuation", "tag #Confidential here", 1},
		{"punctuation keyword glued after", "#confidentiality", 0},
		{"decomposed accent matches precomposed", "caf\u00e9 and cafe\u0301", 2},
		{"non-breaking space in phrase", "breast\u00a0cancer", 1},
	})

	// A long list costs one pass over the words, whatever its length.
	var many []string
	for i := range maxKeywords - 1 {
		many = append(many, fmt.Sprintf("term%d", i))
	}
	big := newTestScanner(t, Config{Keywords: append(many, "HIV")})
	if got := big.ScanText("hiv term4998 term4999 term0")[Keyword]; got != 3 {
		t.Errorf("big list: %d, want 3", got)
	}
	if _, err := New(Config{Keywords: append(many, "x", "y")}); err == nil {
		t.Error("more than maxKeywords accepted")
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad regexp", Config{MRNPattern: `(\d{7}`}, "mrn_pattern"},
		{"empty match", Config{MRNPattern: `\d*`}, "mrn_pattern"},
		{"empty keyword", Config{Keywords: []string{"ok", "  "}}, "keywords[1]"},
		{"long keyword", Config{Keywords: []string{strings.Repeat("a", 300)}}, "keywords[0]"},
		{"bad utf-8", Config{Keywords: []string{"a\xffb"}}, "keywords[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New(%+v) error = %v, want one naming %q", tc.cfg, err, tc.want)
			}
		})
	}
	if _, err := New(Config{MRNPattern: "  ", Keywords: nil}); err != nil {
		t.Errorf("blank MRN pattern should mean off, got %v", err)
	}
}

func TestNames(t *testing.T) {
	want := []string{"ssn", "npi", "mbi", "icd10", "dob", "mrn", "card", "phone", "keyword"}
	got := Names()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Names() = %v", got)
	}
	got[0] = "changed"
	if Names()[0] != "ssn" {
		t.Fatal("Names() shares its slice")
	}
}

// TestScanTextCombined: a clinical note with one of everything; each
// detector counts its own and nothing else.
func TestScanTextCombined(t *testing.T) {
	s := newTestScanner(t, Config{MRNPattern: `MRN[:# ]*\d{7}`, Keywords: []string{"oncology"}})
	note := `Referral to Oncology
Patient: Jane Doe   MRN: 4455667   DOB: 03/14/1962   SSN 512-34-5678
Medicare MBI 1EG4-TE5-MK73. Referring NPI 1234567893.
Dx: E11.9, I10. Call (212) 867-5309. Card on file 4111 1111 1111 1111.
Visit 01/05/2024, room B12, order 123456789, ref 2128675309.`
	got := s.ScanText(note)
	want := Counts{SSN: 1, NPI: 1, MBI: 1, ICD10: 2, DOB: 1, MRN: 1, Card: 1, Phone: 1, Keyword: 1}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ScanText = %v, want %v", got, want)
	}
	if c := s.ScanText("Nothing sensitive here, see you at 3pm."); len(c) != 0 {
		t.Fatalf("clean text: %v", c)
	}
}

func TestLuhn(t *testing.T) {
	for _, tc := range []struct {
		d    string
		want bool
	}{
		{"79927398713", true}, {"79927398710", false}, {"0", true}, {"", false}, {"12a4", false},
	} {
		if got := luhn(tc.d); got != tc.want {
			t.Errorf("luhn(%q) = %v", tc.d, got)
		}
	}
}

func FuzzScanText(f *testing.F) {
	s := newTestScanner(f, Config{MRNPattern: `[A-Z]{2}\d{6}`, Keywords: []string{"HIV", "breast cancer"}})
	for _, seed := range []string{
		"", "SSN 512-34-5678", "DOB: 02/29/1980", "Dx: E11.9, I10", "1EG4-TE5-MK73",
		"4111 1111 1111 1111", "+1 (212) 867-5309", "born 5 Jan 80", "\xff\xfe\x00",
		"DOB" + strings.Repeat("9", 100), "é\u00a0\u200b-", "Date of birth 0/0/0000",
	} {
		f.Add(seed)
	}
	known := map[string]bool{}
	for _, n := range Names() {
		known[n] = true
	}
	f.Fuzz(func(t *testing.T, text string) {
		c := s.ScanText(text)
		for k, v := range c {
			if v <= 0 || !known[k] {
				t.Fatalf("bad count %s=%d", k, v)
			}
		}
	})
}

// clinicalText is ~n bytes of note-like text with identifiers sprinkled in.
func clinicalText(n int) string {
	para := `Progress note. Patient seen for follow-up of type 2 diabetes (E11.9) and
hypertension (I10). DOB: 03/14/1962. MRN: 4455667. Labs reviewed: HbA1c 7.2%,
creatinine 1.1 mg/dL on 10/02/2026. Plan: continue metformin 500 mg BID, recheck
in 3 months. Contact (212) 867-5309. Insurance MBI 1EG4-TE5-MK73; referring NPI
1234567893. Patient reports no chest pain, no dyspnea, ambulating without aid.
`
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(para)
	}
	return b.String()[:n]
}

func BenchmarkScanText20KB(b *testing.B) {
	s := newTestScanner(b, Config{MRNPattern: `MRN[:# ]*\d{7}`, Keywords: []string{"oncology", "HIV", "breast cancer"}})
	text := clinicalText(20 << 10)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		s.ScanText(text)
	}
}
