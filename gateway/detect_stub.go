package gateway

import (
	"github.com/phigate/phigate/intake"
	"github.com/phigate/phigate/outbound"
)

// DetectorNames lists the content detectors policies may name.
func DetectorNames() []string {
	return []string{"ssn", "npi", "mbi", "icd10", "dob", "mrn", "card", "phone", "keyword"}
}

func (g *Gateway) detector() intake.Detector { return nil }

func (g *Gateway) pgpSender(outbound.Sender) intake.PGPSender { return nil }
