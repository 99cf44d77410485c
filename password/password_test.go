package password

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

const (
	testEmail = "jane.doe@riverside-clinic.org"
	testOrg   = "Riverside Family Practice"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name   string
		pw     string
		email  string
		inputs []string
		rule   string // "" means accepted
		msg    string // exact message, when given
	}{
		{name: "empty", pw: "", rule: RuleLength, msg: "Enter a password of at least 12 characters."},
		{name: "short", pw: "Tr0ub4dor&3", rule: RuleLength, msg: "Use at least 12 characters (this one has 11)."},
		{name: "nine", pw: "abcdefghi", rule: RuleLength, msg: "Use at least 12 characters (this one has 9)."},
		// Length counts characters, not bytes: 6 emoji are 24 bytes.
		{name: "unicode short", pw: "🦊🐢🦉🐙🦔🐝", rule: RuleLength, msg: "Use at least 12 characters (this one has 6)."},
		{name: "unicode 11 runes 15 bytes", pw: "ñandú ñandú", rule: RuleLength, msg: "Use at least 12 characters (this one has 11)."},
		{name: "unicode long enough", pw: "árbol ñandú café ratón", rule: ""},

		{name: "common password1234", pw: "password1234", rule: RuleStrength,
			msg: "This password is too easy to guess: it is built on a password that very many people use. Try a longer phrase of unrelated words."},
		{name: "common qwertyuiopasdf", pw: "qwertyuiopasdf", rule: RuleStrength},
		{name: "common Summer2024!!", pw: "Summer2024!!", rule: RuleStrength},
		{name: "common Password123!", pw: "Password123!", rule: RuleStrength},
		{name: "look-alike P@ssw0rd2026!", pw: "P@ssw0rd2026!", rule: RuleStrength},
		{name: "full-width password", pw: "ｐａｓｓｗｏｒｄ１２３４", rule: RuleStrength},
		{name: "keyboard walk", pw: "1qaz2wsx3edc4rfv", rule: RuleStrength},
		{name: "keyboard rows", pw: "zxcvbnmasdfgh", rule: RuleStrength},
		{name: "keyboard spatial", pw: "qazwsxedcrfvtgb", rule: RuleStrength},
		{name: "repeated", pw: "aaaaaaaaaaaaaaaa", rule: RuleStrength,
			msg: "This password is too easy to guess: it repeats the same character (like aaa). Try a longer phrase of unrelated words."},
		{name: "repeated accented", pw: "éééééééééééééé", rule: RuleStrength},
		{name: "sequence", pw: "abcdefghijklmnop", rule: RuleStrength,
			msg: "This password is too easy to guess: it uses a sequence (like abc or 1234). Try a longer phrase of unrelated words."},
		{name: "digits", pw: "1234567890123", rule: RuleStrength},
		{name: "name and year", pw: "Jennifer1987!", rule: RuleStrength,
			msg: "This password is too easy to guess: it is built on a name. Try a longer phrase of unrelated words."},
		{name: "organisation name", pw: "Riverside Family Practice 1", inputs: []string{testOrg}, rule: RuleStrength,
			msg: "This password is too easy to guess: it contains your name, your email address or your organisation's name. Try a longer phrase of unrelated words."},
		{name: "organisation words", pw: "RiversidePractice26", inputs: []string{testOrg}, rule: RuleStrength},
		{name: "email domain word", pw: "Clinic2026!!", rule: RuleStrength},

		{name: "local part", pw: "jane.doe-sunny-garden", rule: RuleContainsEmail,
			msg: "Don't use your email name in your password. Choose words that have nothing to do with you."},
		{name: "local part upper case", pw: "JANE.DOE sunny garden", rule: RuleContainsEmail},
		{name: "local part without dot", pw: "Janedoe river stone", rule: RuleContainsEmail},
		{name: "local part piece", pw: "sunny JaNe river stone", rule: RuleContainsEmail},
		{name: "local part accented", pw: "sunny Jané river stone", rule: RuleContainsEmail},
		{name: "local part before strength", pw: "janedoe12345", rule: RuleContainsEmail},
		// Pieces under 4 characters ("doe") are left to zxcvbn.
		{name: "short piece allowed", pw: "doe river mountain lamp", rule: ""},
		{name: "short local part ignored", pw: "jolly green forest lamp", email: "jo@example.org", rule: ""},
		{name: "3-char local part", pw: "bobcat lantern river", email: "bob@example.org", rule: RuleContainsEmail},
		{name: "plus tag piece", pw: "my portal river stone", email: "j_smith+portal@example.org", rule: RuleContainsEmail},
		{name: "underscore piece", pw: "Smith green lamp river", email: "j_smith@example.org", rule: RuleContainsEmail},
		{name: "no email", pw: "correct horse battery staple", email: "-", rule: ""},

		{name: "xkcd passphrase", pw: "correct horse battery staple", rule: ""},
		{name: "passphrase", pw: "blue coffee river lamp", rule: ""},
		{name: "random", pw: "Kw9#xLp2!vQz", rule: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			email := tt.email
			switch email {
			case "":
				email = testEmail
			case "-":
				email = ""
			}
			err := DefaultPolicy().Check(tt.pw, email, tt.inputs...)
			if tt.rule == "" {
				if err != nil {
					t.Fatalf("Check(%q) = %v, want accepted", tt.pw, err)
				}
				return
			}
			var re *RuleError
			if !errors.As(err, &re) {
				t.Fatalf("Check(%q) = %v (%T), want *RuleError", tt.pw, err, err)
			}
			if re.Rule != tt.rule {
				t.Fatalf("Check(%q) rule = %q (%s), want %q", tt.pw, re.Rule, re.Message, tt.rule)
			}
			if tt.msg != "" && re.Message != tt.msg {
				t.Errorf("Check(%q) message = %q, want %q", tt.pw, re.Message, tt.msg)
			}
			if err.Error() != re.Message {
				t.Errorf("Error() = %q, want the message %q", err.Error(), re.Message)
			}
			if utf8.RuneCountInString(tt.pw) >= 6 && strings.Contains(strings.ToLower(re.Message), strings.ToLower(tt.pw)) {
				t.Errorf("message %q repeats the password", re.Message)
			}
		})
	}
}

func TestPolicyValues(t *testing.T) {
	if p := DefaultPolicy(); p.MinLength != 12 || p.MinScore != 3 {
		t.Fatalf("DefaultPolicy() = %+v", p)
	}
	// A zero Policy is the default one: a missing setting never disables a rule.
	if err := (Policy{}).Check("short", testEmail); err == nil {
		t.Fatal("zero Policy accepted a 5-character password")
	}
	if err := (Policy{}).Check("password1234", testEmail); err == nil {
		t.Fatal("zero Policy accepted a common password")
	}
	p := Policy{MinLength: 16, MinScore: 4}
	err := p.Check("purple monkey dishwasher", testEmail) // scores 3
	var re *RuleError
	if !errors.As(err, &re) || re.Rule != RuleStrength {
		t.Fatalf("MinScore 4: %v", err)
	}
	err = p.Check("blue coffee lamp", testEmail) // 16 characters
	if err != nil && errors.As(err, &re) && re.Rule == RuleLength {
		t.Fatalf("16 characters refused by MinLength 16: %v", err)
	}
	err = p.Check("blue coffee la", testEmail)
	if !errors.As(err, &re) || re.Message != "Use at least 16 characters (this one has 14)." {
		t.Fatalf("MinLength 16: %v", err)
	}
	if err := (Policy{MinLength: 8, MinScore: 1}).Check("Nurse2025nurse", testEmail); err != nil {
		t.Fatalf("lenient policy: %v", err)
	}
}

func TestReused(t *testing.T) {
	if HistorySize != 4 {
		t.Fatalf("HistorySize = %d", HistorySize)
	}
	for _, tt := range []struct {
		n    int
		want string
	}{
		{4, "You used this password recently. Choose one you haven't used in your last 4 passwords."},
		{0, "You used this password recently. Choose one you haven't used in your last 4 passwords."},
		{1, "You used this password recently. Choose one different from your last password."},
		{6, "You used this password recently. Choose one you haven't used in your last 6 passwords."},
	} {
		e := Reused(tt.n)
		if e.Rule != RuleReused || e.Message != tt.want || e.Error() != tt.want {
			t.Errorf("Reused(%d) = %+v", tt.n, e)
		}
		var err error = e
		var re *RuleError
		if !errors.As(err, &re) {
			t.Errorf("Reused(%d) is not found by errors.As", tt.n)
		}
	}
}

func TestEmailNameParts(t *testing.T) {
	for _, tt := range []struct {
		local string
		want  []string
	}{
		{"jane.doe", []string{"jane.doe", "janedoe", "jane"}},
		{"jo", nil},
		{"bob", []string{"bob"}},
		{"j_smith+portal", []string{"j_smith+portal", "jsmithportal", "smith", "portal"}},
		{"al.bo", []string{"al.bo", "albo"}},
	} {
		got := emailNameParts(tt.local)
		if strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("emailNameParts(%q) = %q, want %q", tt.local, got, tt.want)
		}
	}
}

// longPasswords are inputs that would take zxcvbn seconds to minutes
// without the limits of score.
func longPasswords() map[string]string {
	return map[string]string{
		"10 KB letters":     strings.Repeat("correct horse battery staple ", 10*1024/29+1),
		"10 KB look-alikes": strings.Repeat("4@8({[<369!|170$5+%2", 10*1024/20+1),
		"10 KB digits":      strings.Repeat("1234567890", 1024),
		"10 KB accents":     strings.Repeat("é", 5*1024),
	}
}

// A 10 KB password completes: zxcvbn only sees MaxScoredRunes characters,
// and its look-alike matcher is skipped when it would try too many readings.
// (Not timed; the benchmarks show the cost.)
func TestCheckLongInput(t *testing.T) {
	for name, pw := range longPasswords() {
		_ = DefaultPolicy().Check(pw, testEmail, testOrg)
		capped := truncateRunes(fold(pw), MaxScoredRunes)
		if n := utf8.RuneCountInString(capped); n != MaxScoredRunes {
			t.Errorf("%s: zxcvbn would see %d characters", name, n)
		}
		if name == "10 KB look-alikes" {
			if n := utf8.RuneCountInString(capped); leetReadings(capped)*n*n <= leetBudget {
				t.Errorf("%s: look-alike matcher would run with %d readings", name, leetReadings(capped))
			}
		}
	}
	// The whole password is checked for the email name, not only the start.
	pw := strings.Repeat("Kw9#xLp2!vQz", 20) + "janedoe"
	var re *RuleError
	if err := DefaultPolicy().Check(pw, testEmail); !errors.As(err, &re) || re.Rule != RuleContainsEmail {
		t.Fatalf("email name after %d characters: %v", len(pw)-7, err)
	}
}

func TestLeetReadings(t *testing.T) {
	for _, tt := range []struct {
		pw   string
		want int
	}{
		{"plain words", 1},
		{"P@ssw0rd!", 1},
		{"4@", 2},          // a as 4 or @
		{"L1ttl3 L!f3", 4}, // i as 1 or !, and 1 as i or l
	} {
		if got := leetReadings(tt.pw); got != tt.want {
			t.Errorf("leetReadings(%q) = %d, want %d", tt.pw, got, tt.want)
		}
	}
	// Realistic look-alike passwords keep the matcher.
	for _, pw := range []string{"P@ssw0rd2026!", "L1ttl3 L!f3 in th3 c1ty", "Tr0ub4dor&3"} {
		if n := utf8.RuneCountInString(pw); leetReadings(pw)*n*n > leetBudget {
			t.Errorf("%q: look-alike matcher skipped", pw)
		}
	}
}

func TestFold(t *testing.T) {
	for in, want := range map[string]string{
		"José García": "Jose Garcia",
		"ｐａｓｓｗｏｒｄ":    "password",
		"plain":       "plain",
		"パスワード":       "ハスワート",
		"한국어":         "한국어",
	} {
		if got := fold(in); got != want {
			t.Errorf("fold(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, pw := range []string{"password1234", "correct horse battery staple", "L1ttl3 L!f3 in th3 c1ty"} {
				_ = DefaultPolicy().Check(pw, testEmail, testOrg)
			}
		}()
	}
	wg.Wait()
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{"", "password1234", "ééééééééééééé", "パスワードパスワード12", "4@8({[<369!|170$5+%2", "\xff\xfe invalid utf8 \xc3", "Müller-Lüdenscheid-Straße", "ﷺﷺﷺ", "19/12/2019 12-12-12"} {
		f.Add(s, testEmail)
	}
	f.Fuzz(func(t *testing.T, pw, email string) {
		err := DefaultPolicy().Check(pw, email, testOrg)
		if err == nil {
			return
		}
		var re *RuleError
		if !errors.As(err, &re) || re.Message == "" {
			t.Fatalf("Check = %v (%T)", err, err)
		}
	})
}

func BenchmarkCheck(b *testing.B) {
	for _, pw := range []string{"password1234", "correct horse battery staple", "L1ttl3 L!f3 in th3 c1ty"} {
		b.Run(pw, func(b *testing.B) {
			for b.Loop() {
				_ = DefaultPolicy().Check(pw, testEmail, testOrg)
			}
		})
	}
}

func BenchmarkCheckLong(b *testing.B) {
	for name, pw := range longPasswords() {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				_ = DefaultPolicy().Check(pw, testEmail, testOrg)
			}
		})
	}
}
