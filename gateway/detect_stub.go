package gateway

import (
	"github.com/phigate/phigate/intake"
	"github.com/phigate/phigate/outbound"
	"github.com/phigate/phigate/policy"
)

// DetectorNames lists the content detectors policies may name.
func DetectorNames() []string {
	return []string{"ssn", "npi", "mbi", "icd10", "dob", "mrn", "card", "phone", "keyword"}
}

func (g *Gateway) detector() intake.Detector { return nil }

// AdminIntake is an intake for admin commands (explain) that never
// delivers: no sender, no notifier.
func (g *Gateway) AdminIntake(e *policy.Engine) *intake.Intake {
	return &intake.Intake{Store: g.Store, Keys: g.Keys, Identity: g.Identity, Policy: e,
		Keys2: recipientKeys{g.Store, g.Keys}, Detector: g.detectorWith(e), Log: g.Log}
}

func (g *Gateway) detectorWith(*policy.Engine) intake.Detector { return nil }

func (g *Gateway) pgpSender(outbound.Sender) intake.PGPSender { return nil }
