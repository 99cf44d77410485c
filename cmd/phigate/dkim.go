package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/phigate/phigate/notify"
)

// dkimCmd runs `phigate dkim show`: the DNS TXT records that let receivers
// verify the notices' DKIM signatures (issue 10.5).
func dkimCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "show" {
		fmt.Fprintln(stderr, "phigate dkim: show [--data DIR | --config FILE]")
		return 2
	}
	fs := flag.NewFlagSet("dkim show", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	g, err := openAdmin(cf, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "phigate dkim show: %v\n", err)
		return 1
	}
	defer g.Store.Close()
	signer, err := g.DKIMSigner()
	if err != nil {
		fmt.Fprintf(stderr, "phigate dkim show: %v\n", err)
		return 1
	}
	records, err := signer.Records()
	if err != nil {
		fmt.Fprintf(stderr, "phigate dkim show: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "Publish these DNS TXT records; notices from %s carry one signature per key.\n", g.Cfg.Org.NotifyFrom)
	for _, r := range records {
		fmt.Fprintf(stdout, "\n; %s\nname:  %s\nvalue: %s\nzone:  %s\n", dkimAbout[r.Algorithm], r.Name, r.Value, r.ZoneLine())
	}
	return 0
}

var dkimAbout = map[string]string{
	"rsa":     "RSA-2048, rsa-sha256 (RFC 6376): the signature every receiver verifies",
	"ed25519": "Ed25519, ed25519-sha256 (RFC 8463): verified by receivers that support it, ignored by the others",
}

// noticesCmd runs `phigate notices check-templates`: the checks the
// gateway makes at start on the notice templates (issue 10.5).
func noticesCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "reference" {
		return noticeReference(args[1:], stdout, stderr) // issue 13.9, noticeref.go
	}
	if len(args) == 0 || args[0] != "check-templates" {
		fmt.Fprintln(stderr, "phigate notices: check-templates [--dir DIR | --config FILE]\n   or: "+noticeReferenceUsage)
		return 2
	}
	fs := flag.NewFlagSet("notices check-templates", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	dir := fs.String("dir", "", "template `folder` (default: org.notice_templates of the configuration)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *dir == "" {
		cfg, err := cf.load(cf.config == "", nil)
		if err != nil {
			fmt.Fprintf(stderr, "phigate notices check-templates: %v\n", err)
			return 1
		}
		*dir = cfg.Org.NoticeTemplates
	}
	if err := notify.CheckTemplates(*dir); err != nil {
		fmt.Fprintf(stderr, "phigate notices check-templates: refused:\n%v\n", err)
		return 1
	}
	if *dir == "" {
		fmt.Fprintln(stdout, "no template folder configured (org.notice_templates): the built-in templates are in use and pass")
		return 0
	}
	fmt.Fprintf(stdout, "the templates in %s pass\n", *dir)
	return 0
}
