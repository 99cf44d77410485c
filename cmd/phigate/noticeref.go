package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/phigate/phigate/notify"
	"github.com/phigate/phigate/web"
)

// noticeReferenceUsage is printed on a usage error.
const noticeReferenceUsage = "phigate notices reference CODE [--data DIR | --config FILE]"

// noticeReference runs `phigate notices reference CODE` (issue 13.9): the
// check a member of staff makes when a patient reads out the reference
// of a notice email on the phone. It prints every notice made with that
// reference (kind, the recipient account's address, when made and sent),
// or says there is none: then the email did not come from this gateway.
// Each look-up is audited (notice.lookup) with the reference and the
// number found.
func noticeReference(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("notices reference", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	// The code may come before or after the flags.
	var code string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		code, args = args[0], args[1:]
	}
	if rc, done := parseFlags(fs, args, stdout, stderr); done {
		return rc
	}
	if code == "" && fs.NArg() == 1 {
		code = fs.Arg(0)
	} else if fs.NArg() > 0 || code == "" {
		fmt.Fprintln(stderr, noticeReferenceUsage)
		return 2
	}
	ref, ok := normalizeReference(code)
	if !ok {
		fmt.Fprintf(stderr, "phigate notices reference: %q is not a notice reference (six letters and digits, e.g. K7P-4QX)\n", code)
		return 2
	}
	g, err := openAdmin(cf, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "phigate notices reference: %v\n", err)
		return 1
	}
	defer g.Store.Close()
	ctx := context.Background()
	found, err := g.Store.NoticesByReference(ctx, ref, 20)
	if err != nil {
		fmt.Fprintf(stderr, "phigate notices reference: %v\n", err)
		return 1
	}
	if err := recordCLI(g, "notice.lookup", "notice", ref, map[string]string{"found": fmt.Sprint(len(found))}); err != nil {
		fmt.Fprintf(stderr, "phigate notices reference: %v\n", err)
		return 1
	}
	if len(found) == 0 {
		fmt.Fprintf(stdout, "no notice has the reference %s: an email showing it did not come from this gateway\n", ref)
		return 1
	}
	loc := g.Cfg.Org.Location()
	for _, n := range found {
		to := "(account deleted)"
		if u, err := g.Store.UserByID(ctx, n.UserID); err == nil {
			if addr, err := g.Identity.Email(u); err == nil {
				to = addr
			}
		}
		sent := "not sent yet"
		if n.SentAt != nil {
			sent = "sent " + web.When(*n.SentAt, loc)
		}
		fmt.Fprintf(stdout, "%s\t%s\tto %s\tmade %s\t%s\n", ref, noticeKindWords[n.Kind], to, web.When(n.CreatedAt, loc), sent)
	}
	return 0
}

var noticeKindWords = map[string]string{
	notify.KindNewMessage:    "new message",
	notify.KindClaimLink:     "new link",
	notify.KindPasswordReset: "password reset",
}

// normalizeReference accepts a reference as people type or read it:
// any case, with or without the dash or spaces.
func normalizeReference(s string) (string, bool) {
	s = strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(strings.TrimSpace(s)))
	if len(s) != 6 {
		return "", false
	}
	for _, c := range s {
		if !strings.ContainsRune(notify.ReferenceAlphabet, c) {
			return "", false
		}
	}
	return s[:3] + "-" + s[3:], true
}
