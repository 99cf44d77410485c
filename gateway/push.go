package gateway

import (
	"strings"

	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/notify"
)

// pusher sets up the Web Push channel (issue 10.3): the VAPID key is made
// at first start and kept wrapped under the master key beside the other
// keys; every node of a cluster must share the same file (browsers bind
// each subscription to its public key).
func (g *Gateway) pusher() (*notify.Pusher, error) {
	cfg := g.Cfg
	v, err := keys.LoadVAPID(cfg.Keys.VAPIDKeyFile, g.Keys, g.Log)
	if err != nil {
		return nil, err
	}
	// RFC 8292 2.1: a contact the push service can reach.
	subject := cfg.Org.Contact
	if !strings.Contains(subject, "@") {
		subject = cfg.Org.NotifyFrom
	}
	return &notify.Pusher{Store: g.Store, Keys: g.Keys, VAPIDPublic: v.Public, VAPIDPrivate: v.Private,
		Subject: "mailto:" + subject, Org: cfg.Org.Name, PublicURL: cfg.Server.PublicURL,
		Allow: notify.Allowlist(cfg.Push.AllowedHosts), MaxDevices: cfg.Push.MaxDevices, TTL: cfg.Push.TTL.Duration,
		Client: g.PushClient, Audit: g.Audit, Log: g.Log}, nil
}
