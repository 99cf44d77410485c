package gateway

import (
	"sync"

	"github.com/phigate/phigate/detect"
	"github.com/phigate/phigate/intake"
	"github.com/phigate/phigate/message"
	"github.com/phigate/phigate/policy"
)

// DetectorNames lists the content detectors policies may name.
func DetectorNames() []string { return detect.Names() }

// policyDetector scans with the detector settings of the active policy
// version (MRN pattern, keywords), rebuilding its scanner when the version
// changes.
type policyDetector struct {
	engine *policy.Engine

	mu      sync.Mutex
	version int64
	scanner *detect.Scanner
}

func (p *policyDetector) ScanView(view *message.View) map[string]int {
	doc, v := p.engine.Current()
	p.mu.Lock()
	if p.scanner == nil || p.version != v {
		s, err := detect.New(detect.Config{MRNPattern: doc.Detectors.MRNPattern, Keywords: doc.Detectors.Keywords})
		if err != nil {
			// Parse already compiled the pattern; fall back to the
			// built-in detectors rather than scanning nothing.
			s, _ = detect.New(detect.Config{})
		}
		p.scanner, p.version = s, v
	}
	s := p.scanner
	p.mu.Unlock()
	return s.ScanView(view)
}

func (g *Gateway) detector() intake.Detector { return g.detectorWith(g.Policy) }

func (g *Gateway) detectorWith(e *policy.Engine) intake.Detector { return &policyDetector{engine: e} }

// AdminIntake is an intake for admin commands (explain) that never
// delivers: no sender, no notifier.
func (g *Gateway) AdminIntake(e *policy.Engine) *intake.Intake {
	return &intake.Intake{Store: g.Store, Keys: g.Keys, Identity: g.Identity, Policy: e,
		RecipientKeys: g.recipientKeys(), Detector: g.detectorWith(e), Log: g.Log}
}

func (g *Gateway) pgpBuilder() intake.PGPBuilder {
	return pgpBuilder{identity: g.Identity, gateway: g.Keys.Gateway, hostname: g.Cfg.Server.Hostname}
}

func (g *Gateway) recipientKeys() recipientKeys {
	return recipientKeys{store: g.Store, keys: g.Keys, identity: g.Identity, log: g.Log}
}
