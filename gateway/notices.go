package gateway

import (
	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/notify"
)

// noticeMail sets up how notice emails are worded and signed (issue
// 10.5): the admin's templates, checked now so that a template reaching
// for anything but the PHI-free fields stops the start, and the DKIM keys,
// made at first start and kept wrapped under the master key.
func (g *Gateway) noticeMail() error {
	t, err := notify.LoadTemplates(g.Cfg.Org.NoticeTemplates)
	if err != nil {
		return err
	}
	signer, err := g.DKIMSigner()
	if err != nil {
		return err
	}
	g.Dispatcher.Templates, g.Dispatcher.DKIM = t, signer
	return nil
}

// DKIMSigner loads (or creates) the DKIM keys named in the configuration
// (phigate dkim show uses it too).
func (g *Gateway) DKIMSigner() (*notify.DKIMSigner, error) {
	k, err := keys.LoadDKIM(g.Cfg.Keys.DKIMKeyFile, g.Keys, g.Log)
	if err != nil {
		return nil, err
	}
	return &notify.DKIMSigner{Domain: g.Cfg.DKIM.Domain, Selector: g.Cfg.DKIM.Selector, RSA: k.RSA, Ed25519: k.Ed25519}, nil
}
